"""dm_control's dog-stand, -walk, -trot, -run and -fetch on MJX's Warp implementation (MuJoCo Warp).

MuJoCo Playground has no dog, and MJX's JAX implementation cannot load it (the dog's ellipsoid
collision geoms against the floor's box are not implemented there), so these tasks run with
impl=warp, which the config chooses for them (impl=auto) and requires (impl=jax is refused).

The model is dm_control's own (`dm_control.suite.dog.get_model_and_assets`: a floor of time limit x
speed metres, no ball, target or walls; Fetch keeps them, see `DogFetch`), with its 5 ms timestep, 4 no-slip iterations and 3
physics steps per control step (15 ms); the task computes what dm_control's `Stand` and `Move`
tasks compute:

- reset: the default pose (qpos0) turned by a uniformly random azimuth about the vertical; root
  velocities x, y and yaw rate drawn from N(0, 2^2), the rest zero; every actuator's activation
  uniform in its control range; then a forward pass without actuation (dm_control's after_reset);
- observation (223): the 73 hinge angles and velocities, torso and pelvis heights (2), the world-z
  rows of the skull, torso and pelvis frames (9), the centre-of-mass velocity in the torso frame (3),
  accelerometer, velocimeter and gyro (9), the feet's and hands' 3-d forces (12), the palms' and
  soles' touch sensors (4) and the 38 activations, in dm_control's order;
- step: 3 physics steps, then what dm_control's (legacy) step leaves to observe, as for the
  quadruped (envs/mjx/quadruped.py): acceleration-stage sensors from the last physics step;
- reward: the product of torso and pelvis height tolerances (90% of the default pose's heights),
  three upright tolerances (within 30 degrees of vertical), a foot-contact tolerance (touch sum up to
  body weight) and, for Move, (4 x forward-speed tolerance + 1) / 5 with the speed in [v, 2v] for
  walk 1, trot 3, run 9 m/s; no termination.

Parity with dm_control: tests/test_mjx_parity.py (matched states) and tests/test_mjx_dog.py (one
trajectory over 100 agent steps); measured differences in docs/mjx_physics.md.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jp
import mujoco
import numpy as np
from ml_collections import config_dict
from mujoco import mjx
from mujoco_playground._src import mjx_env, reward

from .dmc_model import DmControlModelEnv

# TD-MPC2 name -> desired forward speed (m/s; dm_control's _WALK_SPEED, _TROT_SPEED, _RUN_SPEED);
# None: the Stand task (dog-fetch: DogFetch)
DOG_SPEEDS = {"dog-stand": None, "dog-walk": 1.0, "dog-trot": 3.0, "dog-run": 9.0}
_TIME_LIMIT = 15  # dm_control's episode (s); the floor is time limit x speed wide (stand: walk's)
_STAND_HEIGHT_FRACTION = 0.9
_MIN_UPRIGHT_COSINE = float(np.cos(np.deg2rad(30)))
# Contacts and constraint rows a world may hold in MuJoCo Warp's buffers. Measured with C MuJoCo
# over 4,000 control steps of random actions on stand and run: at most 31 contacts and 131
# constraint rows; twice that is kept.
CONTACTS_PER_WORLD = 64
CONSTRAINTS_PER_WORLD = 264


def default_config() -> config_dict.ConfigDict:
    return config_dict.create(ctrl_dt=0.015, sim_dt=0.005, episode_length=1000, action_repeat=1, vision=False,
                              impl="warp", naconmax=CONTACTS_PER_WORLD, njmax=CONSTRAINTS_PER_WORLD)


def dog_model(speed: float | None) -> tuple[str, dict]:
    """dm_control's dog model of the stand/move tasks and its assets, as its suite builds them."""
    from dm_control.suite import dog

    xml, assets = dog.get_model_and_assets(floor_size=_TIME_LIMIT * (speed or 1.0))
    return (xml.decode() if isinstance(xml, bytes) else xml), assets


class Dog(DmControlModelEnv):
    """dm_control's dog Stand (speed None) or Move task as a Playground MjxEnv.

    num_envs sizes MuJoCo Warp's contact buffer (shared by all worlds: CONTACTS_PER_WORLD each)."""

    def __init__(self, speed: float | None, num_envs: int = 1, config: config_dict.ConfigDict | None = None,
                 config_overrides: dict | None = None):
        self._speed = None if speed is None else float(speed)
        self._num_envs = max(1, int(num_envs))
        super().__init__(config or default_config(), config_overrides)

    def _model_xml(self) -> tuple[str, dict]:
        return dog_model(self._speed)

    def _post_init(self) -> None:
        m = self._mj_model
        hinges = np.flatnonzero(m.jnt_type == mujoco.mjtJoint.mjJNT_HINGE)
        self._hinge_qpos = jp.asarray(m.jnt_qposadr[hinges])
        self._hinge_qvel = jp.asarray(m.jnt_dofadr[hinges])
        self._torso, self._pelvis, self._skull = (m.body(n).id for n in ("torso", "pelvis", "skull"))

        def data_of(*names):  # sensordata indices of these sensors, in this order
            return jp.asarray(np.concatenate([np.arange(m.sensor_adr[m.sensor(n).id],
                                                        m.sensor_adr[m.sensor(n).id] + m.sensor_dim[m.sensor(n).id])
                                              for n in names]))

        self._com_vel = data_of("torso_linvel")
        self._inertial = data_of("accelerometer", "velocimeter", "gyro")
        self._touch = data_of("palm_L", "palm_R", "sole_L", "sole_R")
        self._foot_forces = data_of("foot_L", "foot_R", "hand_L", "hand_R")
        root = m.joint("root").id
        self._root_qpos, self._root_dof = int(m.jnt_qposadr[root]), int(m.jnt_dofadr[root])
        # dm_control measures these at the default pose after its reset: constants of the model
        d = mujoco.MjData(m)
        mujoco.mj_forward(m, d)
        self._stand_height = tuple(float(h) * _STAND_HEIGHT_FRACTION for h in d.xpos[[self._torso, self._pelvis], 2])
        self._body_weight = float(-m.opt.gravity[2] * m.body_subtreemass[self._torso])
        if not ((m.actuator_gaintype == int(mujoco.mjtGain.mjGAIN_FIXED)).all()
                and (m.actuator_biastype == int(mujoco.mjtBias.mjBIAS_NONE)).all()):
            raise ValueError("the dog's reset forward pass without actuation assumes fixed-gain, bias-free actuators")
        self._ctrl_lo = jp.asarray(m.actuator_ctrlrange[:, 0], dtype=jp.float32)
        self._ctrl_hi = jp.asarray(m.actuator_ctrlrange[:, 1], dtype=jp.float32)

    # ------------------------------------------------------------------------------------------
    def reset(self, rng: jax.Array) -> mjx_env.State:
        rng, k_az, k_vel, k_act = jax.random.split(rng, 4)
        azimuth = jax.random.uniform(k_az, (), minval=0.0, maxval=2 * jp.pi)
        r, v = self._root_qpos, self._root_dof
        qpos = jp.asarray(self._mj_model.qpos0, dtype=jp.float32)
        qpos = qpos.at[r + 3:r + 7].set(jp.stack([jp.cos(azimuth / 2), 0.0, 0.0, jp.sin(azimuth / 2)]))
        qvel = jp.zeros(self._mj_model.nv).at[jp.array([v, v + 1, v + 5])].set(2 * jax.random.normal(k_vel, (3,)))
        act = jax.random.uniform(k_act, (self._mj_model.na,), minval=self._ctrl_lo, maxval=self._ctrl_hi)
        rng, key = jax.random.split(rng)
        qpos, qvel = self._place_objects(key, qpos, qvel)
        data = self._forward_without_actuation(self._make_data(qpos, qvel, act))
        info = {"rng": rng}
        zero = jp.zeros(())
        return mjx_env.State(data, self._get_obs(data, info), zero, zero, {}, info)

    def _place_objects(self, key: jax.Array, qpos: jax.Array, qvel: jax.Array) -> tuple[jax.Array, jax.Array]:
        """What a task adds to the stand pose at reset (Fetch: the thrown ball)."""
        del key
        return qpos, qvel

    def _make_data(self, qpos, qvel, act) -> mjx.Data:
        return mjx_env.make_data(self.mj_model, qpos=qpos, qvel=qvel, act=act, impl=self.mjx_model.impl.value,
                                 naconmax=self._config.naconmax * self._num_envs, njmax=self._config.njmax)

    def _forward_without_actuation(self, data: mjx.Data) -> mjx.Data:
        """dm_control's after_reset: a forward pass with actuation disabled. The dog's actuators have
        fixed gain and no bias (force = gain x activation), so a forward pass with zero activations
        computes the same state; the drawn activations are put back."""
        act = data.act
        data = mjx.forward(self.mjx_model, data.replace(act=jp.zeros_like(act)))
        return data.replace(act=act)

    def step(self, state: mjx_env.State, action: jax.Array) -> mjx_env.State:
        data = mjx_env.step(self.mjx_model, state.data, action, self.n_substeps)
        # dm_control's legacy step: positions and velocities (and their sensors) at the new state,
        # acceleration-stage sensors (accelerometer, touch, foot forces) from the last physics step
        acc = data.sensordata[self._acc_sensors]
        data = mjx.forward(self.mjx_model, data)
        data = data.replace(sensordata=data.sensordata.at[self._acc_sensors].set(acc))
        obs = self._get_obs(data, state.info)
        rew = self._get_reward(data, action, state.info, state.metrics)
        done = (jp.isnan(data.qpos).any() | jp.isnan(data.qvel).any()).astype(float)
        return mjx_env.State(data, obs, rew, done, state.metrics, state.info)

    # ------------------------------------------------------------------------------------------
    def _heights(self, data: mjx.Data) -> jax.Array:
        return data.xpos[jp.array([self._torso, self._pelvis]), 2]

    def _z_projection(self, data: mjx.Data) -> jax.Array:
        """[3, 3]: the world-z row (zx, zy, zz) of the skull, torso and pelvis frames."""
        return data.xmat[jp.array([self._skull, self._torso, self._pelvis]), 2, :]

    def _torso_com_velocity(self, data: mjx.Data) -> jax.Array:
        """The centre-of-mass velocity (world) in the torso's frame: v . R (dm_control's order)."""
        return data.sensordata[self._com_vel] @ data.xmat[self._torso]

    def _get_obs(self, data: mjx.Data, info: dict[str, Any]) -> jax.Array:
        del info
        return jp.concatenate([
            data.qpos[self._hinge_qpos], data.qvel[self._hinge_qvel],   # joint_angles, joint_velocites
            self._heights(data),                                        # torso_pelvis_height
            self._z_projection(data).reshape(-1),                       # z_projection
            self._torso_com_velocity(data),                             # torso_com_velocity
            data.sensordata[self._inertial],                            # inertial_sensors
            data.sensordata[self._foot_forces],                         # foot_forces
            data.sensordata[self._touch],                               # touch_sensors
            data.act,                                                   # actuator_state
        ])

    def _standing(self, data: mjx.Data) -> jax.Array:
        """dm_control's Stand reward: the product of its height, upright and foot-contact factors."""
        h = self._heights(data)
        torso = reward.tolerance(h[0], bounds=(self._stand_height[0], float("inf")), margin=self._stand_height[0])
        pelvis = reward.tolerance(h[1], bounds=(self._stand_height[1], float("inf")), margin=self._stand_height[1])
        upright = reward.tolerance(self._z_projection(data)[:, 2], bounds=(_MIN_UPRIGHT_COSINE, float("inf")),
                                   sigmoid="linear", margin=_MIN_UPRIGHT_COSINE + 1, value_at_margin=0)
        touch = reward.tolerance(data.sensordata[self._touch].sum(), bounds=(self._body_weight, float("inf")),
                                 margin=self._body_weight, sigmoid="linear", value_at_margin=0.9)
        return torso * pelvis * jp.prod(upright) * touch

    def _get_reward(self, data: mjx.Data, action, info, metrics) -> jax.Array:
        del action, info, metrics
        r = self._standing(data)
        if self._speed is not None:
            forward = reward.tolerance(self._torso_com_velocity(data)[0], bounds=(self._speed, 2 * self._speed),
                                       margin=max(1.0, self._speed), value_at_margin=0, sigmoid="linear")
            r = r * (4 * forward + 1) / 5
        return r

    @property
    def xml_path(self) -> str:
        return "dm_control/suite/dog.xml"


class DogFetch(Dog):
    """dm_control's dog Fetch task: the model with its ball, target and walls (a 20 m arena); at reset
    the ball is thrown from 7.5 m at a random azimuth towards the centre (horizontal speed U(0, 5)
    m/s with N(0, 0.05^2) noise in its direction, vertical speed of a drop from U(0, 3) m); the
    observation adds the ball's position and velocity relative to the head and the target's
    position, in the head's frame (232); the reward multiplies the Stand factors by reaching the ball
    with the mouth ((6 r + 1) / 7, 1 once the ball is at the target) and the ball's nearness to the
    target ((r + 1) / 2)."""

    def __init__(self, num_envs: int = 1, config: config_dict.ConfigDict | None = None,
                 config_overrides: dict | None = None):
        super().__init__(None, num_envs, config, config_overrides)

    def _model_xml(self) -> tuple[str, dict]:
        from dm_control.suite import dog

        xml, assets = dog.get_model_and_assets(remove_ball=False)
        return (xml.decode() if isinstance(xml, bytes) else xml), assets

    def _post_init(self) -> None:
        super()._post_init()
        m = self._mj_model
        ball = m.joint("ball_root").id
        self._ball_qpos, self._ball_dof = int(m.jnt_qposadr[ball]), int(m.jnt_dofadr[ball])
        self._head = m.site("head").id
        self._head_body = int(m.site_bodyid[self._head])
        self._head_root = int(m.body_rootid[self._head_body])
        self._ball_geom, self._target = m.geom("ball").id, m.geom("target").id
        self._ball_body = int(m.geom_bodyid[self._ball_geom])
        self._ball_root = int(m.body_rootid[self._ball_body])
        self._bites = jp.array([m.site("upper_bite").id, m.site("lower_bite").id])
        self._floor_size = float(m.geom("floor").size[0])
        self._bite_radius = float(m.site("upper_bite").size[0])
        self._target_radius = float(m.geom("target").size[0])

    def _place_objects(self, key, qpos, qvel):
        k_az, k_h, k_speed, k_dir = jax.random.split(key, 4)
        radius = 0.75 * self._floor_size
        azimuth = jax.random.uniform(k_az, (), minval=0.0, maxval=2 * jp.pi)
        position = jp.stack([radius * jp.sin(azimuth), radius * jp.cos(azimuth), jp.float32(0.05)])
        height = jax.random.uniform(k_h, (), minval=0.0, maxval=3.0)
        vertical = jp.sqrt(2 * -self._mj_model.opt.gravity[2] * height)
        speed = jax.random.uniform(k_speed, (), minval=0.0, maxval=5.0)
        direction = jp.stack([-jp.sin(azimuth), -jp.cos(azimuth)]) + 0.05 * jax.random.normal(k_dir, (2,))
        b, v = self._ball_qpos, self._ball_dof
        qpos = qpos.at[b:b + 3].set(position)
        qvel = qvel.at[v:v + 3].set(jp.concatenate([speed * direction, vertical[None]]))
        return qpos, qvel

    def _point_velocity(self, data: mjx.Data, body: int, root: int, point: jax.Array) -> jax.Array:
        """World linear velocity of a point fixed to `body` (mj_objectVelocity's linear part): the
        body's spatial velocity, given at its tree's centre of mass, moved to the point."""
        w, v = data.cvel[body, :3], data.cvel[body, 3:]
        return v + jp.cross(w, point - data.subtree_com[root])

    def _ball_and_target(self, data: mjx.Data) -> jax.Array:
        """ball_state (6) and target_position (3) in the head's frame (dm_control's order)."""
        frame, head = data.site_xmat[self._head], data.site_xpos[self._head]
        ball = data.geom_xpos[self._ball_geom]
        ball_vel = self._point_velocity(data, self._ball_body, self._ball_root, ball)
        head_vel = self._point_velocity(data, self._head_body, self._head_root, head)
        return jp.concatenate([(ball - head) @ frame, (ball_vel - head_vel) @ frame,
                               (data.geom_xpos[self._target] - head) @ frame])

    def _get_obs(self, data: mjx.Data, info: dict[str, Any]) -> jax.Array:
        return jp.concatenate([super()._get_obs(data, info), self._ball_and_target(data)])

    def _get_reward(self, data: mjx.Data, action, info, metrics) -> jax.Array:
        del action, info, metrics
        ball = data.geom_xpos[self._ball_geom]
        mouth = 0.5 * jp.linalg.norm(ball[None] - data.site_xpos[self._bites], axis=-1).sum()
        reach = reward.tolerance(mouth, bounds=(0, self._bite_radius), sigmoid="reciprocal", margin=2)
        reach = (6 * reach + 1) / 7
        to_target = jp.linalg.norm(ball - data.geom_xpos[self._target])
        near = reward.tolerance(to_target, bounds=(0, self._target_radius), sigmoid="reciprocal",
                                margin=self._floor_size)
        reach = jp.where(to_target < 2 * self._target_radius, 1.0, reach)  # let go once it is fetched
        return self._standing(data) * reach * (near + 1) / 2
