"""MJX tasks under TD-MPC2 names: MuJoCo Playground's DM Control Suite, plus TD-MPC2's custom
tasks built on Playground's task classes (models and rewards from envs/custom_tasks.py).

Where Playground 0.2.0 departs from dm_control in what a task *observes*, the task here follows
dm_control (the parity tests in tests/test_mjx_parity.py check observation and reward on matched
physics states). Known differences in the physics settings are listed in PHYSICS_NOTES.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET

import jax
import jax.numpy as jp
import mujoco
from mujoco import mjx
from mujoco_playground import registry as pg_registry
from mujoco_playground._src import mjx_env, reward
from mujoco_playground._src.dm_control_suite import (ball_in_cup, cheetah, fish, hopper, pendulum, reacher,
                                                     walker)

from ..envs import custom_tasks as ct

PLAYGROUND_NAMES = {
    "acrobot-swingup": "AcrobotSwingup", "acrobot-swingup-sparse": "AcrobotSwingupSparse",
    "cartpole-balance": "CartpoleBalance", "cartpole-balance-sparse": "CartpoleBalanceSparse",
    "cartpole-swingup": "CartpoleSwingup", "cartpole-swingup-sparse": "CartpoleSwingupSparse",
    "cheetah-run": "CheetahRun", "cup-catch": "BallInCup", "finger-spin": "FingerSpin",
    "finger-turn-easy": "FingerTurnEasy", "finger-turn-hard": "FingerTurnHard", "fish-swim": "FishSwim",
    "hopper-hop": "HopperHop", "hopper-stand": "HopperStand", "humanoid-run": "HumanoidRun",
    "humanoid-stand": "HumanoidStand", "humanoid-walk": "HumanoidWalk", "pendulum-swingup": "PendulumSwingup",
    "pointmass-easy": "PointMass", "reacher-easy": "ReacherEasy", "reacher-hard": "ReacherHard",
    "swimmer-swimmer6": "SwimmerSwimmer6", "walker-run": "WalkerRun", "walker-stand": "WalkerStand",
    "walker-walk": "WalkerWalk",
}

# Where Playground's physics settings differ from dm_control's for the same task (read off both
# libraries' models: timesteps, control steps).
PHYSICS_NOTES = {
    "swimmer-swimmer6": "Playground simulates at 0.003 s per physics step, dm_control at 0.002 s "
                        "(control step 0.03 s in both).",
    "cup-catch": "Playground's reset always starts the ball at rest below the cup (deterministic); "
                 "dm_control draws a random collision-free ball position.",
    "reacher-easy": "Playground moves the target as a mocap body; dm_control moves the target geom in the model.",
    "reacher-hard": "Playground moves the target as a mocap body; dm_control moves the target geom in the model.",
}


def _patch_playground_reacher() -> None:
    """Playground 0.2.0 picks the MjSpec API by comparing version *strings* ("3.17.0" < "3.3.0"),
    so with MuJoCo >= 3.10 it calls MjSpec.find_body, which no longer exists. Same model, current API."""
    if hasattr(mujoco.MjSpec, "find_body"):
        return

    def _make_model(xml_path, target_size, assets):
        spec = mujoco.MjSpec.from_string(xml_path.read_text(), assets)
        spec.body("target").first_geom().size[0] = target_size
        return spec.compile()

    reacher._make_model = _make_model


_patch_playground_reacher()


def _replace_model(env: mjx_env.MjxEnv, xml: str) -> None:
    """Swap a Playground task's model for an edited one and redo its id lookups."""
    env._mj_model = mujoco.MjModel.from_xml_string(xml, env._model_assets)
    env._mj_model.opt.timestep = env.sim_dt
    env._mjx_model = mjx.put_model(env._mj_model, impl=env._config.impl)
    env._post_init()


def _sensor(env, data, name):
    return mjx_env.get_sensor_data(env.mj_model, data, name)


class Walker(walker.PlanarWalker):
    """Playground's planar walker observing what dm_control's does: orientations (xx, xz of every
    body), the torso *height* (Playground 0.2.0 puts the torso's zz orientation there) and qvel."""

    def _get_obs(self, data, info):
        del info
        orientations = data.xmat[1:, [0, 0], [0, 2]].ravel()
        return jp.concatenate([orientations, data.xpos[self._torso_id, 2].reshape(1), data.qvel])


class Pendulum(pendulum.SwingUp):
    """Playground's pendulum observing dm_control's orientation order (zz, xz), then the angular velocity."""

    def _get_obs(self, data, info):
        del info
        xmat = data.xmat[self._pole_body_id]
        return jp.stack([xmat[2, 2], xmat[0, 2], self._angular_velocity(data)])


class Fish(fish.Swim):
    """Playground's fish observing in dm_control's order: joint angles, upright, mouth-to-target
    (mouth frame), velocity (Playground puts upright first)."""

    def _get_obs(self, data, info):
        obs = super()._get_obs(data, info)
        return jp.concatenate([obs[1:1 + self._joints_qposadr.shape[0]], obs[:1], obs[1 + self._joints_qposadr.shape[0]:]])


class CheetahCustom(cheetah.Run):
    def __init__(self, goal: str, move_speed: float, config=None, config_overrides=None):
        super().__init__(config or cheetah.default_config(), config_overrides)
        _replace_model(self, ct.lengthen_floor(cheetah._XML_PATH.read_text(), "ground", 200))
        self._goal, self._move_speed = goal, move_speed

    def _post_init(self) -> None:
        super()._post_init()
        self._body_ids = {b: self.mj_model.body(b).id for b in ("torso", "bfoot", "ffoot")}

    def _get_reward(self, data, action, info, metrics):
        z = {f"{b}_z": data.xpos[i, 2] for b, i in self._body_ids.items()}
        q = dict(speed=_sensor(self, data, "torso_subtreelinvel")[0], **z)
        return ct.cheetah_reward(self._goal, q, reward.tolerance, self._move_speed)


class WalkerBackwards(Walker):
    def __init__(self, move_speed: float, config=None, config_overrides=None):
        super().__init__(move_speed, config or walker.default_config(), config_overrides)
        _replace_model(self, ct.lengthen_floor(walker._XML_PATH.read_text(), "floor", 500))
        self._get_reward = self._backwards_reward  # PlanarWalker binds its reward per instance

    def _backwards_reward(self, data, action, info, metrics):
        q = dict(torso_height=data.xpos[self._torso_id, 2], torso_upright=data.xmat[self._torso_id, 2, 2],
                 horizontal_velocity=_sensor(self, data, "torso_subtreelinvel")[0])
        return ct.walker_backwards_reward(q, reward.tolerance, self._move_speed)


class HopperBackwards(hopper.Hopper):
    def __init__(self, config=None, config_overrides=None):
        super().__init__(True, config or hopper.default_config(), config_overrides)
        self._get_reward = self._backwards_reward

    def _backwards_reward(self, data, action, info, metrics):
        return ct.hopper_backwards_reward(dict(height=self._height(data), speed=self._speed(data)), reward.tolerance)


class PendulumSpin(Pendulum):
    def _get_reward(self, data, action, info, metrics):
        return ct.pendulum_spin_reward(dict(angular_speed=jp.abs(self._angular_velocity(data))), reward.tolerance)


class CupSpin(ball_in_cup.BallInCup):
    """Ball-in-cup spin: reset draws a collision-free ball position inside the cup (outside it in
    10% of episodes), as TD-MPC2's task does, by rejection sampling inside a while loop."""

    def _post_init(self) -> None:
        super()._post_init()
        self._ball_qpos = jp.array([self.mj_model.jnt_qposadr[self.mj_model.joint(j).id] for j in ("ball_x", "ball_z")])
        self._ball_qvel = jp.array([self.mj_model.jnt_dofadr[self.mj_model.joint(j).id] for j in ("ball_x", "ball_z")])

    def _in_target(self, data):
        target = data.site_xpos[self._target_site_id, jp.array([0, 2])]
        ball = data.xpos[self._ball_body_id, jp.array([0, 2])]
        return jp.all(jp.abs(target - ball) < self._target_size - self._ball_size).astype(jp.float32)

    def reset(self, rng):
        rng, key_out = jax.random.split(rng)
        out_of_target = jax.random.uniform(key_out) < 0.1
        base = mjx_env.make_data(self.mj_model, impl=self.mjx_model.impl.value, naconmax=self._config.naconmax,
                                 njmax=self._config.njmax)

        def place(key):
            kx, kz = jax.random.split(key)
            qpos = base.qpos.at[self._ball_qpos].set(jp.array([jax.random.uniform(kx, minval=-0.2, maxval=0.2),
                                                              jax.random.uniform(kz, minval=0.2, maxval=0.5)]))
            return mjx.forward(self.mjx_model, base.replace(qpos=qpos))

        def rejected(carry):
            data, _ = carry
            penetrating = jp.any(data._impl.contact.dist < 0)
            return penetrating | ~((self._in_target(data) > 0) | out_of_target)

        def redraw(carry):
            _, key = carry
            key, sub = jax.random.split(key)
            return place(sub), key

        rng, first = jax.random.split(rng)
        data, rng = jax.lax.while_loop(rejected, redraw, (place(first), rng))
        state = super().reset(rng)
        return state.replace(data=data, obs=self._get_obs(data, state.info))

    def _get_reward(self, data, action, info, metrics):
        target = data.site_xpos[self._target_site_id, jp.array([0, 2])]
        ball = data.xpos[self._ball_body_id, jp.array([0, 2])]
        q = dict(dist=jp.linalg.norm(target - ball), ball_speed=jp.linalg.norm(jp.abs(data.qvel[self._ball_qvel])),
                 in_target=self._in_target(data))
        return ct.cup_spin_reward(q, reward.tolerance)


class ThreeLinkReacher(reacher.Reacher):
    """Reacher on the three-link model; reset draws every joint as dm_control's
    randomize_limited_and_rotational_joints does (unlimited hinge: uniform(-pi, pi), limited:
    uniform over its range) and the target at radius .05-.20."""

    def __init__(self, target_size: float, config=None, config_overrides=None):
        super().__init__(target_size, config or reacher.default_config(), config_overrides)
        root = ET.fromstring(ct.three_link_reacher(reacher._XML_PATH.read_text()))
        target = root.find(".//geom[@name='target']")
        target.set("size", f"{target_size:g}")
        _replace_model(self, ET.tostring(root, encoding="unicode"))

    def _post_init(self) -> None:
        m = self.mj_model
        if m.nu != 3:  # the stock model, before __init__ swaps in the three-link one
            return super()._post_init()
        self._target_mocap_body_id = m.body("target").mocapid[0]
        self._finger_geom_id, self._target_geom_id = m.geom("finger").id, m.geom("target").id
        self._radii = m.geom_size[[self._target_geom_id, self._finger_geom_id], 0].sum()
        joints = [m.joint(j).id for j in ("shoulder0", "shoulder1", "wrist")]
        self._joint_qpos = jp.array([m.jnt_qposadr[j] for j in joints])
        limited = m.jnt_limited[joints].astype(bool)
        self._joint_lo = jp.where(limited, m.jnt_range[joints, 0], -jp.pi)
        self._joint_hi = jp.where(limited, m.jnt_range[joints, 1], jp.pi)

    def reset(self, rng):
        rng, kq, ka, kr = jax.random.split(rng, 4)
        qpos = jp.zeros(self.mjx_model.nq).at[self._joint_qpos].set(
            jax.random.uniform(kq, (3,), minval=self._joint_lo, maxval=self._joint_hi))
        data = mjx_env.make_data(self.mj_model, qpos=qpos, impl=self.mjx_model.impl.value,
                                 naconmax=self._config.naconmax, njmax=self._config.njmax)
        data = mjx.forward(self.mjx_model, data)
        angle = jax.random.uniform(ka) * 2 * jp.pi
        radius = jax.random.uniform(kr, minval=0.05, maxval=0.2)
        xy = radius * jp.array([jp.sin(angle), jp.cos(angle)])
        data = data.replace(mocap_pos=data.mocap_pos.at[self._target_mocap_body_id, :2].set(xy))
        data = mjx.forward(self.mjx_model, data)
        info = {"rng": rng}
        zero = jp.zeros(())
        return mjx_env.State(data, self._get_obs(data, info), zero, zero, {}, info)


def _custom(name: str, overrides: dict):
    spec = ct.CUSTOM_TASKS[name]
    d = spec["domain"]
    if d == "cheetah":
        return CheetahCustom(spec["goal"], spec["move_speed"], config_overrides=overrides)
    if d == "walker":
        return WalkerBackwards(spec["move_speed"], config_overrides=overrides)
    if d == "hopper":
        return HopperBackwards(config_overrides=overrides)
    if d == "reacher":
        return ThreeLinkReacher(spec["target_size"], config_overrides=overrides)
    if d == "ball_in_cup":
        return CupSpin(config_overrides=overrides)
    if d == "pendulum":
        return PendulumSpin(config_overrides=overrides)
    raise ValueError(d)


_WALKERS = {"walker-run": walker.RUN_SPEED, "walker-walk": walker.WALK_SPEED, "walker-stand": 0.0}
# Playground tasks whose observation layout is corrected to dm_control's (see the classes).
_OBS_FIXED = {"pendulum-swingup": Pendulum, "fish-swim": Fish}


def mjx_task_names() -> list[str]:
    return sorted(set(PLAYGROUND_NAMES) | set(ct.CUSTOM_TASKS))


def build_task(name: str, impl: str = "jax") -> mjx_env.MjxEnv:
    """A Playground MjxEnv for a TD-MPC2 task name (KeyError if unknown)."""
    overrides = {"impl": impl}
    if name in ct.CUSTOM_TASKS:
        return _custom(name, overrides)
    if name in _WALKERS:
        return Walker(_WALKERS[name], walker.default_config(), overrides)
    if name in _OBS_FIXED:
        cls = _OBS_FIXED[name]
        return cls(config=pg_registry.get_default_config(PLAYGROUND_NAMES[name]), config_overrides=overrides)
    return pg_registry.load(PLAYGROUND_NAMES[name], config_overrides=overrides)
