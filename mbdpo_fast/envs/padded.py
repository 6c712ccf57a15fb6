"""One task's environment as a multi-task agent sees it (TD-MPC2's multi-task convention)."""
from __future__ import annotations

import numpy as np


class PaddedTaskEnv:
    """Observations zero-padded to obs_dim; actions [action_dim] cut to the task's own dims (the
    agent masks the others to zero). Everything else (random_state, has_success, episode_length,
    action_repeat, ...) is the wrapped env's."""

    def __init__(self, env, obs_dim: int, action_dim: int):
        from ..config import ConfigError

        if env.obs_dim > obs_dim or env.action_dim > action_dim:
            raise ConfigError(f"task {getattr(env, 'task', '?')} has obs/action dims ({env.obs_dim}, {env.action_dim}), "
                              f"more than the model's padded ({obs_dim}, {action_dim})")
        self.env, self.obs_dim, self.action_dim = env, int(obs_dim), int(action_dim)
        self.own_action_dim = int(env.action_dim)

    def __getattr__(self, name):  # only called for attributes not found on the wrapper
        if name == "env":
            raise AttributeError(name)
        return getattr(self.env, name)

    def _pad(self, obs) -> np.ndarray:
        out = np.zeros(self.obs_dim, dtype=np.float32)
        out[: len(obs)] = obs
        return out

    def reset(self) -> np.ndarray:
        return self._pad(self.env.reset())

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(np.asarray(action)[: self.own_action_dim])
        return self._pad(obs), reward, terminated, truncated, info

    def close(self) -> None:
        if hasattr(self.env, "close"):
            self.env.close()
