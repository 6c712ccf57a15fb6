"""Parity of MJX tasks with dm_control: the same physics state gives the same observation and reward.

For a task, dm_control runs a few random steps from a seeded reset; its qpos, qvel, ctrl (and the
target, which dm_control keeps in the model and Playground in a mocap body) are copied into MJX
data, `mjx.forward` fills the derived quantities, and the MJX task's own observation and reward
functions are compared with dm_control's.
"""
from __future__ import annotations

import jax
import jax.numpy as jp
import numpy as np
from mujoco import mjx
from mujoco_playground._src import mjx_env

from mbdpo_fast.envs.cpu.dmcontrol import DMControlEnv
from mbdpo_fast.envs.mjx.tasks import build_task

# Tasks whose target dm_control stores in the model: (model field, name, columns copied).
_TARGETS = {"reacher": ("geom_pos", [0, 1]), "swimmer": ("geom_pos", [0, 1]), "fish": ("geom_pos", [0, 1, 2]),
            "finger": ("site_pos", [0, 2])}


def parity_errors(task: str, seed: int = 0, states: int = 4) -> tuple[float, float]:
    """(max |obs difference|, max |reward difference|) over `states` matched states."""
    dm, pg = DMControlEnv(task, seed), build_task(task)

    @jax.jit  # one compiled program per task (compiling each of its operations eagerly cost more on CPU)
    def observe(d, ctrl):
        d = mjx.forward(pg.mjx_model, d)
        info = {"rng": jax.random.PRNGKey(0)}
        return pg._get_obs(d, info), pg._get_reward(d, ctrl, info, {})

    rng = np.random.default_rng(seed)
    dm.reset()
    err_obs = err_rew = 0.0
    for _ in range(states):
        for _ in range(int(rng.integers(3, 30))):
            dm.step(rng.uniform(-1, 1, dm.action_dim))
        ph = dm.physics
        obs_dm = dm._flatten(dm._env.task.get_observation(ph))
        rew_dm = float(dm._env.task.get_reward(ph))
        d = mjx_env.make_data(pg.mj_model, qpos=jp.asarray(ph.data.qpos), qvel=jp.asarray(ph.data.qvel),
                              ctrl=jp.asarray(ph.data.ctrl), impl="jax")
        domain = task.split("-")[0]
        if domain in _TARGETS and task not in ("finger-spin",):
            field, cols = _TARGETS[domain]
            src = getattr(ph.named.model, field)["target"]
            mocap = pg.mj_model.body("target").mocapid[0]
            d = d.replace(mocap_pos=d.mocap_pos.at[mocap, jp.array(cols)].set(jp.asarray(src[cols])))
        obs, rew = observe(d, jp.asarray(ph.data.ctrl))
        obs, rew = np.asarray(obs), float(rew)
        assert obs.shape == obs_dm.shape, (obs.shape, obs_dm.shape)
        err_obs = max(err_obs, float(np.abs(obs - obs_dm).max()))
        err_rew = max(err_rew, abs(rew - rew_dm))
    return err_obs, err_rew
