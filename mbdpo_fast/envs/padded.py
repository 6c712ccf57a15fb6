"""One task's batched environment as a multi-task agent sees it (TD-MPC2's multi-task convention)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import ConfigError


class PaddedEnv:
    """Observations [E, d] zero-padded to [E, obs_dim] (also info["terminal_obs"]); actions
    [E, action_dim] cut to the task's own [E, a] (the agent masks the others to zero). Everything
    else (num_envs, has_success, episode_length, random_states, ...) is the wrapped env's."""

    def __init__(self, env, obs_dim: int, action_dim: int):
        if env.obs_dim > obs_dim or env.action_dim > action_dim:
            raise ConfigError(f"task {getattr(env, 'task', '?')} has obs/action dims ({env.obs_dim}, {env.action_dim}), "
                              f"more than the model's padded ({obs_dim}, {action_dim})")
        self.env, self.obs_dim, self.action_dim = env, int(obs_dim), int(action_dim)
        self.own_action_dim = int(env.action_dim)

    def __getattr__(self, name):  # only called for attributes not found on the wrapper
        if name == "env":
            raise AttributeError(name)
        return getattr(self.env, name)

    def _pad(self, obs: torch.Tensor) -> torch.Tensor:
        return F.pad(obs, (0, self.obs_dim - obs.shape[-1]))

    def reset(self, seed: int | None = None) -> torch.Tensor:
        return self._pad(self.env.reset(seed=seed))

    def step(self, actions: torch.Tensor):
        obs, reward, terminated, truncated, info = self.env.step(actions[:, : self.own_action_dim].contiguous())
        return self._pad(obs), reward, terminated, truncated, {**info, "terminal_obs": self._pad(info["terminal_obs"])}

    def close(self) -> None:
        if hasattr(self.env, "close"):
            self.env.close()
