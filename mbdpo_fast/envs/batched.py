"""Batched environments for the vectorised trainer, by backend: `mjx` (MJX on the config's device)
or `dmc` (CPU suites in worker processes). Both expose the same torch interface."""
from __future__ import annotations

from omegaconf import DictConfig


def make_batched_env(cfg: DictConfig, num_envs: int, seed: int, backend: str | None = None):
    from ..config import ConfigError, resolve_device, unset_to_none

    backend = backend or cfg.env_backend
    repeat, length = unset_to_none(cfg.action_repeat), unset_to_none(cfg.episode_length)
    if backend == "mjx":
        from ..envs_gpu import make_mjx_env

        return make_mjx_env(cfg.task, num_envs, seed=seed, action_repeat=repeat or 2, episode_length=length or 500,
                            impl=cfg.impl, device=resolve_device(cfg.device))
    if backend == "dmc":
        from .vector import AsyncVecEnv

        return AsyncVecEnv(cfg.task, num_envs, seed=seed, action_repeat=repeat, episode_length=length,
                           device=resolve_device(cfg.device))
    raise ConfigError(f"env_backend={backend!r}: use dmc (CPU suites in worker processes) or mjx")
