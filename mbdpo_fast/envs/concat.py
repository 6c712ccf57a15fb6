"""Several tasks' batched environments as one, for online training on several tasks at once."""
from __future__ import annotations

import torch


class ConcatEnv:
    """envs[k] (each padded to one model's dims, see padded.py) side by side: copies 0..n_0-1 are
    envs[0]'s, the next n_1 envs[1]'s, and so on. task_ids [E] long: each copy's task index
    (task_indices[k] for envs[k]'s copies). reset(seed) re-seeds envs[k] with seed + 1000 k;
    step() splits the actions [E, A] and concatenates what comes back (success: 0 for envs that
    report none)."""

    def __init__(self, envs: list, task_indices: list[int]):
        dims = {(e.obs_dim, e.action_dim) for e in envs}
        if len(dims) != 1:
            raise ValueError(f"the environments differ in (obs_dim, action_dim): {sorted(dims)}")
        self.envs, self.sizes = list(envs), [int(e.num_envs) for e in envs]
        self.num_envs = sum(self.sizes)
        self.obs_dim, self.action_dim = dims.pop()
        self.device = envs[0].device
        self.has_success = any(getattr(e, "has_success", False) for e in envs)
        self.episode_length = max(int(e.episode_length) for e in envs)
        self.task_ids = torch.cat([torch.full((n,), int(i), dtype=torch.long) for n, i in zip(self.sizes, task_indices)])

    def reset(self, seed: int | None = None) -> torch.Tensor:
        return torch.cat([e.reset(seed=None if seed is None else seed + 1000 * k) for k, e in enumerate(self.envs)])

    def step(self, actions: torch.Tensor):
        outs = [e.step(a) for e, a in zip(self.envs, actions.split(self.sizes))]
        obs, reward, terminated, truncated = (torch.cat([o[j] for o in outs]) for j in range(4))
        info = {k: torch.cat([o[4][k] for o in outs]) for k in ("terminal_obs", "episode_return", "episode_length", "done")}
        if self.has_success:
            info["success"] = torch.cat([o[4].get("success", torch.zeros(n, device=o[0].device))
                                         for o, n in zip(outs, self.sizes)])
        return obs, reward, terminated, truncated, info

    def _joined(self, name: str) -> list | None:
        parts = [getattr(e, name, None) for e in self.envs]
        return None if any(p is None for p in parts) else [x for p in parts for x in p]

    @property
    def random_states(self) -> list | None:
        return self._joined("random_states")

    @property
    def random_states_before_reset(self) -> list | None:
        return self._joined("random_states_before_reset")

    def close(self) -> None:
        for e in self.envs:
            e.close()
