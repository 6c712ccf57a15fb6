"""dm_control's quadruped-walk, -run and -fetch on MJX (MuJoCo Playground has no quadruped).

The model is dm_control's own (`dm_control.suite.quadruped.make_model`: flat floor, no walls, ball,
terrain or rangefinders; Fetch keeps its walls, ball and target, see `QuadrupedFetch`) with its 5 ms timestep and 4 physics steps per control step (20 ms); the
task computes what dm_control's `Move` task computes:

- reset: a uniformly random orientation of the torso (a normalised 4-d Gaussian quaternion), every
  joint at its reference position, and the torso raised from the floor in 1 cm steps until no geom
  touches another (dm_control's `_find_non_contacting_height`); zero velocities and activations;
- observation (78): egocentric state (the 16 hinge positions, their velocities, the 12 actuator
  activations), the torso velocimeter (3), torso upright (1), the IMU (accelerometer, gyro: 6) and
  arcsinh of the 4 toe force and 4 toe torque sensors (24), in dm_control's order;
- step: 4 physics steps, then what dm_control's step leaves to observe (see `step`);
- reward: tolerance(forward torso velocity, bounds (speed, inf), margin speed, value 0.5 at the
  margin, linear) times the upright reward (linear from 0 upside down to 1 upright); no termination.

MJX's JAX implementation (impl=jax; the config refuses impl=warp for these tasks: untested there).
Parity with dm_control: tests/test_mjx_parity.py and tests/test_mjx_quadruped.py.
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

# TD-MPC2 name -> desired forward speed (dm_control's _WALK_SPEED, _RUN_SPEED)
QUADRUPED_SPEEDS = {"quadruped-walk": 0.5, "quadruped-run": 5.0}
_TIME_LIMIT = 20  # dm_control's default episode (s); the floor is time limit x speed wide


def default_config() -> config_dict.ConfigDict:
    return config_dict.create(ctrl_dt=0.02, sim_dt=0.005, episode_length=1000, action_repeat=1, vision=False,
                              impl="jax", naconmax=100_000, njmax=200)


def quadruped_xml(speed: float) -> str:
    """dm_control's model of the walk/run tasks, as its suite builds it."""
    from dm_control.suite import quadruped

    xml = quadruped.make_model(floor_size=_TIME_LIMIT * speed)
    return xml.decode() if isinstance(xml, bytes) else xml


class Quadruped(DmControlModelEnv):
    """dm_control's quadruped Move task (walk at 0.5 m/s, run at 5 m/s) as a Playground MjxEnv."""

    def __init__(self, speed: float, config: config_dict.ConfigDict | None = None,
                 config_overrides: dict | None = None):
        self._speed = float(speed)
        super().__init__(config or default_config(), config_overrides)

    def _model_xml(self) -> tuple[str, dict]:
        from dm_control.suite import common

        return quadruped_xml(self._speed), dict(common.ASSETS)

    def _post_init(self) -> None:
        m = self._mj_model
        hinges = np.flatnonzero(m.jnt_type == mujoco.mjtJoint.mjJNT_HINGE)
        self._hinge_qpos = jp.asarray(m.jnt_qposadr[hinges])
        self._hinge_qvel = jp.asarray(m.jnt_dofadr[hinges])
        self._torso = m.body("torso").id

        def data_of(ids):  # sensordata indices of these sensors, in sensor order
            return jp.asarray(np.concatenate([np.arange(m.sensor_adr[i], m.sensor_adr[i] + m.sensor_dim[i]) for i in ids]))

        def of_type(*types):
            return data_of([i for i in range(m.nsensor) if int(m.sensor_type[i]) in {int(t) for t in types}])

        S = mujoco.mjtSensor
        self._imu = of_type(S.mjSENS_GYRO, S.mjSENS_ACCELEROMETER)
        self._force_torque = of_type(S.mjSENS_FORCE, S.mjSENS_TORQUE)
        self._velocimeter = of_type(S.mjSENS_VELOCIMETER)
        root = m.joint("root").id
        self._root_qpos = int(m.jnt_qposadr[root])

    # ------------------------------------------------------------------------------------------
    def _contacting(self, data: mjx.Data) -> jax.Array:
        """Whether any geom pair is in contact (dm_control: data.ncon > 0)."""
        contact = data._impl.contact
        return jp.any(contact.dist < contact.includemargin)

    def _pose(self, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        """The torso's orientation (a normalised 4-d Gaussian) and horizontal position (the origin)."""
        orientation = jax.random.normal(key, (4,))
        return orientation / jp.linalg.norm(orientation), jp.zeros(2)

    def _place_objects(self, key: jax.Array, data: mjx.Data) -> mjx.Data:
        """What a task adds after the torso is placed (Fetch: the ball)."""
        del key
        return data

    def reset(self, rng: jax.Array) -> mjx_env.State:
        rng, key, k_objects = jax.random.split(rng, 3)
        orientation, xy = self._pose(key)
        base = mjx_env.make_data(self.mj_model, impl=self.mjx_model.impl.value, naconmax=self._config.naconmax,
                                 njmax=self._config.njmax)
        r = self._root_qpos

        def at(z):
            return base.qpos.at[r:r + 3].set(jp.concatenate([xy, z[None]])).at[r + 3:r + 7].set(orientation)

        def placed(z):  # positions and contacts only: what the search tests
            return mjx.collision(self.mjx_model, mjx.kinematics(self.mjx_model, base.replace(qpos=at(z))))

        # up in 1 cm steps from inside the floor until nothing touches (at most 10,000 tries, as dm_control)
        def touching(carry):
            z, data, n = carry
            return self._contacting(data) & (n < 10_000)

        def higher(carry):
            z, _, n = carry
            return z + 0.01, placed(z + 0.01), n + 1

        z, _, _ = jax.lax.while_loop(touching, higher, (jp.float32(0.0), placed(jp.float32(0.0)), 0))
        data = mjx.forward(self.mjx_model, self._place_objects(k_objects, base.replace(qpos=at(z))))
        info = {"rng": rng}
        zero = jp.zeros(())
        return mjx_env.State(data, self._get_obs(data, info), zero, zero, {}, info)

    def step(self, state: mjx_env.State, action: jax.Array) -> mjx_env.State:
        m = self.mjx_model
        data = mjx_env.step(m, state.data, action, self.n_substeps)
        # What dm_control's (legacy) step leaves to observe: positions, velocities and their sensors
        # at the new state (its closing mj_step1), the acceleration-stage sensors (accelerometer,
        # toe forces and torques) from the last physics step's own forward pass, which MJX's step
        # computed before integrating. So the position and velocity stages only (no collision or
        # constraint solve, which mj_step1 does not observe either), those sensors kept.
        acc = data.sensordata[self._acc_sensors]
        data = mjx.sensor_vel(m, mjx.com_vel(m, mjx.sensor_pos(m, mjx.com_pos(m, mjx.kinematics(m, data)))))
        data = data.replace(sensordata=data.sensordata.at[self._acc_sensors].set(acc))
        obs = self._get_obs(data, state.info)
        rew = self._get_reward(data, action, state.info, state.metrics)
        done = (jp.isnan(data.qpos).any() | jp.isnan(data.qvel).any()).astype(float)
        return mjx_env.State(data, obs, rew, done, state.metrics, state.info)

    def _get_obs(self, data: mjx.Data, info: dict[str, Any]) -> jax.Array:
        del info
        return jp.concatenate([
            data.qpos[self._hinge_qpos], data.qvel[self._hinge_qvel], data.act,   # egocentric_state
            data.sensordata[self._velocimeter],                                   # torso_velocity
            data.xmat[self._torso, 2, 2].reshape(1),                              # torso_upright
            data.sensordata[self._imu],                                           # imu
            jp.arcsinh(data.sensordata[self._force_torque]),                      # force_torque
        ])

    def _get_reward(self, data: mjx.Data, action, info, metrics) -> jax.Array:
        del action, info, metrics
        upright = reward.tolerance(data.xmat[self._torso, 2, 2], bounds=(1.0, float("inf")), sigmoid="linear",
                                   margin=2.0, value_at_margin=0)
        move = reward.tolerance(data.sensordata[self._velocimeter][0], bounds=(self._speed, float("inf")),
                                margin=self._speed, value_at_margin=0.5, sigmoid="linear")
        return upright * move

    @property
    def xml_path(self) -> str:
        return "dm_control/suite/quadruped.xml"


class QuadrupedFetch(Quadruped):
    """dm_control's quadruped Fetch task: the model with its ball, walls and target; at reset the torso
    turned by a random azimuth at a random horizontal position within 90% of the floor's half-width
    (raised until nothing touches, as Move), the ball at a random horizontal position 2 m up with a
    horizontal velocity from N(0, 5^2); the observation adds the ball's position, velocity and
    angular velocity relative to the torso and the target's position, in the torso's frame (90);
    the reward is upright x reach (linear from the arena's diagonal to the workspace touching the
    ball, horizontally) x (0.5 + 0.5 x the ball's nearness to the target)."""

    def __init__(self, config: config_dict.ConfigDict | None = None, config_overrides: dict | None = None):
        super().__init__(0.0, config, config_overrides)

    def _model_xml(self) -> tuple[str, dict]:
        from dm_control.suite import common, quadruped

        xml = quadruped.make_model(walls_and_ball=True)
        return (xml.decode() if isinstance(xml, bytes) else xml), dict(common.ASSETS)

    def _post_init(self) -> None:
        super()._post_init()
        m = self._mj_model
        ball = m.joint("ball_root").id
        self._ball_qpos, self._ball_dof = int(m.jnt_qposadr[ball]), int(m.jnt_dofadr[ball])
        self._root_dof = int(m.jnt_dofadr[m.joint("root").id])
        self._ball = m.body("ball").id
        self._target, self._workspace = m.site("target").id, m.site("workspace").id
        floor = float(m.geom("floor").size[0])
        self._spawn_radius = 0.9 * floor
        self._arena_radius = floor * float(np.sqrt(2))
        self._reach_bound = float(m.site("workspace").size[0] + m.geom("ball").size[0])
        self._target_radius = float(m.site("target").size[0])

    def _pose(self, key):
        k_az, k_xy = jax.random.split(key)
        azimuth = jax.random.uniform(k_az, (), minval=0.0, maxval=2 * jp.pi)
        orientation = jp.stack([jp.cos(azimuth / 2), 0.0, 0.0, jp.sin(azimuth / 2)])
        return orientation, jax.random.uniform(k_xy, (2,), minval=-self._spawn_radius, maxval=self._spawn_radius)

    def _place_objects(self, key, data):
        k_pos, k_vel = jax.random.split(key)
        b, v = self._ball_qpos, self._ball_dof
        xy = jax.random.uniform(k_pos, (2,), minval=-self._spawn_radius, maxval=self._spawn_radius)
        qpos = data.qpos.at[b:b + 2].set(xy).at[b + 2].set(2.0)
        qvel = data.qvel.at[v:v + 2].set(5 * jax.random.normal(k_vel, (2,)))
        return data.replace(qpos=qpos, qvel=qvel)

    def _get_obs(self, data: mjx.Data, info: dict[str, Any]) -> jax.Array:
        frame, torso = data.xmat[self._torso], data.xpos[self._torso]
        b, r = self._ball_dof, self._root_dof
        ball_state = jp.stack([data.xpos[self._ball] - torso,                  # ball_state: position,
                               data.qvel[b:b + 3] - data.qvel[r:r + 3],        # velocity,
                               data.qvel[b + 3:b + 6]]) @ frame                # angular velocity
        target = (data.site_xpos[self._target] - torso) @ frame
        return jp.concatenate([super()._get_obs(data, info), ball_state.reshape(-1), target])

    def _get_reward(self, data: mjx.Data, action, info, metrics) -> jax.Array:
        del action, info, metrics
        upright = reward.tolerance(data.xmat[self._torso, 2, 2], bounds=(1.0, float("inf")), sigmoid="linear",
                                   margin=2.0, value_at_margin=0)
        ball = data.xpos[self._ball]
        to_ball = jp.linalg.norm((data.site_xpos[self._workspace] - ball)[:2])
        reach = reward.tolerance(to_ball, bounds=(0, self._reach_bound), sigmoid="linear",
                                 margin=self._arena_radius, value_at_margin=0)
        to_target = jp.linalg.norm((data.site_xpos[self._target] - ball)[:2])
        fetch = reward.tolerance(to_target, bounds=(0, self._target_radius), sigmoid="linear",
                                 margin=self._arena_radius, value_at_margin=0)
        return upright * reach * (0.5 + 0.5 * fetch)
