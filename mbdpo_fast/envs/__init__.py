"""Environments by TD-MPC2 task name (the task registry's), behind one constructor:

    make_env(cfg, num_envs, seed) -> E copies of cfg.task on one torch interface:
    reset(seed=None) -> obs [E, obs_dim]
    step(actions [E, A]) -> obs, reward [E], terminated [E] bool, truncated [E] bool, info
    info: terminal_obs [E, obs_dim], episode_return [E], episode_length [E], done [E] (+ success [E])

Episodes that end are reset in the same step (auto-reset). Backends in their own subpackages:
`dmc` (envs/cpu: dm_control in this process at E = 1 and in gymnasium worker processes above;
MetaWorld `mw-*`, MyoSuite `myo-*` and ManiSkill `ms-*` always in worker processes under their own
interpreters, since they pin versions that cannot share this environment: `make venv-metaworld` /
`make venv-myosuite` / `make venv-maniskill` create `.venv-metaworld` / `.venv-myosuite` /
`.venv-maniskill`, or point MBDPO_METAWORLD_PYTHON / MBDPO_MYOSUITE_PYTHON / MBDPO_MANISKILL_PYTHON
at any interpreter that has the suite and numpy)
`mjx` (envs/mjx: MuJoCo Playground on the config's device, handed to torch by DLPack) and
`maniskill` (envs/maniskill.py: ManiSkill3's GPU simulation in this process).
A multi-task model's environments are padded to its dims (envs/padded.py).
This package imports nothing heavy at import time (suite workers import parts of it).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..config import RunSpec

def trains_every_task(cfg: RunSpec) -> bool:
    """A multi-task run whose `task` is a label (mt30, or any name outside cfg.tasks): every task
    of cfg.tasks is trained (else the run trains cfg.task, one of them, e.g. fine-tuning)."""
    return bool(cfg.get("multitask")) and cfg.task not in cfg.tasks


def envs_per_task(cfg: RunSpec, num_envs: int) -> int:
    """num_envs / T for a run that trains all T tasks of cfg.tasks; ConfigError unless it divides."""
    from ..errors import ConfigError

    T = len(cfg.tasks)
    if num_envs % T:
        raise ConfigError(f"num_envs={num_envs} must be a multiple of the {T} tasks (num_envs / {T} "
                          f"environments per task)")
    return num_envs // T


def make_env(cfg: RunSpec, num_envs: int, seed: int, backend: str | None = None, task: str | None = None):
    """E = num_envs copies of `task` (default cfg.task; seeded seed, seed + 1, ...) on `backend`
    (default cfg.env_backend), with cfg's action repeat / episode length (the suite's where unset).
    A run that trains every task of cfg.tasks (trains_every_task) gets num_envs / T copies of each
    of its T tasks side by side (concat.py)."""
    from ..config import resolve_device, unset_to_none, uses_pixels
    from ..errors import ConfigError

    if task is None and trains_every_task(cfg):
        from .concat import ConcatEnv

        per = envs_per_task(cfg, num_envs)
        return ConcatEnv([make_env(cfg, per, seed + k * per, backend, task=t) for k, t in enumerate(cfg.tasks)],
                         list(range(len(cfg.tasks))))
    backend, task = backend or cfg.env_backend, task or cfg.task
    multitask = bool(cfg.get("multitask"))
    if multitask:  # a multi-task spec holds every task's own repeat and length
        i = list(cfg.tasks).index(task)
        repeat, length = int(cfg.action_repeats[i]), int(cfg.episode_lengths[i])
    else:
        repeat, length = unset_to_none(cfg.action_repeat), unset_to_none(cfg.episode_length)
    if backend == "mjx":
        from .mjx import make_mjx_env

        env = make_mjx_env(task, num_envs, seed=seed, action_repeat=repeat or 2, episode_length=length or 500,
                           impl=cfg.impl, device=resolve_device(cfg.device), pixels=uses_pixels(cfg))
    elif backend == "maniskill":
        from .maniskill import ManiSkillVecEnv

        env = ManiSkillVecEnv(task, num_envs, seed=seed, action_repeat=repeat or 2, episode_length=length or 100,
                              device=resolve_device(cfg.device))
    elif backend == "dmc":
        from .cpu.vector import AsyncVecEnv

        env = AsyncVecEnv(task, num_envs, seed=seed, action_repeat=repeat, episode_length=length,
                          device=resolve_device(cfg.device), asynchronous=num_envs > 1,
                          pixels=uses_pixels(cfg), maniskill=int(cfg.get("maniskill", 3)))
    else:
        raise ConfigError(f"env_backend={backend!r}: use dmc (CPU suites), mjx or maniskill")
    if multitask:
        from .padded import PaddedEnv

        env = PaddedEnv(env, cfg.obs_dim, cfg.action_dim)
    return env


def make_eval_envs(cfg: RunSpec) -> dict:
    """name -> batched evaluation env of a run spec (empty at eval_episodes = 0): one copy
    running the episodes one after another at num_envs = 1 (the paper's protocol), else
    eval_episodes copies at once; with env_backend=mjx also dm_control's own task (dmc_eval).
    A run that trains every task of cfg.tasks: task name -> that task's env on the training backend."""
    if cfg.eval_episodes == 0:
        return {}
    copies = 1 if cfg.num_envs == 1 else cfg.eval_episodes
    if trains_every_task(cfg):
        return {t: make_env(cfg, copies, cfg.seed + 10_000 + 100 * k, task=t) for k, t in enumerate(cfg.tasks)}
    evals = {cfg.env_backend: make_env(cfg, copies, cfg.seed + 10_000)}
    if cfg.env_backend == "mjx" and cfg.dmc_eval:
        evals["dmc"] = make_env(cfg, copies, cfg.seed + 20_000, backend="dmc")
    return evals
