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


def _data_options(pg) -> dict:
    """make_data's implementation and (MuJoCo Warp's) buffer sizes for a task's MJX model."""
    cfg = pg._config
    return {"impl": pg.mjx_model.impl.value, "naconmax": cfg.get("naconmax"), "njmax": cfg.get("njmax")}


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
        # dm_control's step leaves acceleration-stage sensors (quadruped's accelerometer and toe
        # forces) from the last physics step's state; a forward pass brings them to this state,
        # which is what mjx.forward computes below (positions and velocities are unchanged)
        ph.forward()
        obs_dm = dm._flatten(dm._env.task.get_observation(ph))
        rew_dm = float(dm._env.task.get_reward(ph))
        d = mjx_env.make_data(pg.mj_model, qpos=jp.asarray(ph.data.qpos), qvel=jp.asarray(ph.data.qvel),
                              ctrl=jp.asarray(ph.data.ctrl), act=jp.asarray(ph.data.act) if ph.model.na else None,
                              **_data_options(pg))
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


def trajectory_errors(task: str, steps: int = 100, seed: int = 0, repeat: int = 2) -> dict:
    """dm_control and the MJX task from the same initial state (dm_control's seeded reset copied into
    MJX), driven by the same random actions for `steps` agent steps of `repeat` control steps each
    (rewards summed, as the training environments do). Returns per agent step the max |obs
    difference| and |reward difference| (lists), and the first step where the obs differs by > 1e-3."""
    dm, pg = DMControlEnv(task, seed), build_task(task)
    step = jax.jit(pg.step)
    rng = np.random.default_rng(seed)
    dm.reset()
    ph = dm.physics
    data = mjx_env.make_data(pg.mj_model, qpos=jp.asarray(ph.data.qpos), qvel=jp.asarray(ph.data.qvel),
                             act=jp.asarray(ph.data.act) if ph.model.na else None, **_data_options(pg))
    data = jax.jit(mjx.forward)(pg.mjx_model, data)  # eagerly, op by op, it compiled for minutes on CPU
    state = mjx_env.State(data, jax.jit(pg._get_obs)(data, {}), jp.zeros(()), jp.zeros(()), {},
                          {"rng": jax.random.PRNGKey(0)})
    lo, hi = pg.mj_model.actuator_ctrlrange[:, 0], pg.mj_model.actuator_ctrlrange[:, 1]
    obs_err, rew_err = [], []
    for _ in range(steps):
        a = rng.uniform(-1, 1, dm.action_dim)
        r_dm = r_pg = 0.0
        for _ in range(repeat):
            obs_dm, r, _, _, _ = dm.step(a)
            r_dm += r
            state = step(state, jp.asarray(lo + (a + 1) * 0.5 * (hi - lo), dtype=jp.float32))
            r_pg += float(state.reward)
        obs_err.append(float(np.abs(np.asarray(state.obs) - obs_dm).max()))
        rew_err.append(abs(r_pg - r_dm))
    first = next((i + 1 for i, e in enumerate(obs_err) if e > 1e-3), None)
    return {"obs": obs_err, "reward": rew_err, "first_obs_above_1e-3": first}


def assert_batched_env_contract(env, steps: int, obs_dim: int, action_dim: int) -> None:
    """An MJXVecEnv of E envs with `steps`-step episodes: shapes, finite observations, rewards in
    [0, 2] (two summed control-step rewards in [0, 1]), every episode truncated together at its
    last step, and reset and step each traced once."""
    import torch

    E = env.num_envs
    obs = env.reset(seed=0)
    assert obs.shape == (E, obs_dim) and env.action_dim == action_dim
    for _ in range(steps):
        obs, r, term, trunc, info = env.step(torch.rand(E, action_dim) * 2 - 1)
        assert torch.isfinite(obs).all() and ((r >= 0) & (r <= 2)).all()
    assert bool(info["done"].all()) and bool(trunc.all()) and not term.any()
    assert env.compiled_counts() == {"reset": 1, "step": 1}
