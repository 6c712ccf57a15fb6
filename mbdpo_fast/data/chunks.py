"""TD-MPC2 dataset chunks (`chunk_*.pt`): recorded episodes of equal length T (501 for mt30's
DMControl episodes, 101 in mt80), padded to the largest task's dims:

    obs    [episodes, T, obs_dim]     float
    action [episodes, T, action_dim]  float, NaN (or 0) at t=0: slot t holds the action that led to obs t
    reward [episodes, T]              float, NaN (or 0) at t=0
    task   [episodes, T] or [episodes]  int task index

That slot layout is the replay buffer's own (replay.py), so windows of H+1 consecutive slots of one
episode are training windows. The files are torch.save'd dicts (or TensorDicts, which need
`allow_pickle=True` and the tensordict package); loading is eager or memory-mapped.
"""
from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..agent import Batch

KEYS = ("obs", "action", "reward", "task")


class DatasetError(ValueError):
    pass


def load_chunk(path: str | os.PathLike, mmap: bool = False, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """One chunk as a dict of CPU tensors (validated). mmap=True maps the file instead of reading it."""
    path = Path(path)
    try:
        raw = torch.load(path, map_location="cpu", mmap=mmap, weights_only=not allow_pickle)
    except Exception as e:  # noqa: BLE001  (zip errors, truncation, unpickling refusals)
        hint = " (a TensorDict chunk: pass allow_pickle=true, with tensordict installed)" if "weights_only" in str(e) \
            else ""
        raise DatasetError(f"{path}: not a readable dataset chunk: {type(e).__name__}: "
                           f"{str(e).splitlines()[0][:200]}{hint}") from e
    try:
        chunk = {k: raw[k] for k in KEYS}
    except (KeyError, TypeError) as e:
        have = sorted(raw.keys()) if hasattr(raw, "keys") else type(raw).__name__
        raise DatasetError(f"{path}: a dataset chunk needs keys {list(KEYS)}, found {have}") from e
    return validate_chunk(chunk, path)


def validate_chunk(chunk: dict[str, torch.Tensor], path="chunk") -> dict[str, torch.Tensor]:
    obs, action, reward, task = (chunk[k] for k in KEYS)
    if obs.dim() != 3 or action.dim() != 3 or reward.dim() != 2:
        raise DatasetError(f"{path}: expected obs [eps, T, D], action [eps, T, A], reward [eps, T]; got "
                           f"{tuple(obs.shape)}, {tuple(action.shape)}, {tuple(reward.shape)}")
    n, T = obs.shape[:2]
    if action.shape[:2] != (n, T) or reward.shape != (n, T) or task.shape not in ((n, T), (n,)):
        raise DatasetError(f"{path}: episode/time dims disagree: obs {tuple(obs.shape)}, action "
                           f"{tuple(action.shape)}, reward {tuple(reward.shape)}, task {tuple(task.shape)}")
    if T < 2:
        raise DatasetError(f"{path}: episodes of {T} steps are too short")
    if torch.isnan(obs).any() or torch.isnan(action[:, 1:]).any() or torch.isnan(reward[:, 1:]).any():
        raise DatasetError(f"{path}: NaN in observations, or in actions/rewards after t=0")
    return {"obs": obs, "action": action, "reward": reward, "task": task if task.dim() == 1 else task[:, 0]}


def chunk_paths(directory: str | os.PathLike) -> list[Path]:
    paths = sorted(Path(p) for p in glob.glob(os.path.join(str(directory), "chunk_*.pt")))
    if not paths:
        raise DatasetError(f"no chunk_*.pt files in {directory}")
    return paths


@dataclass
class OfflineDataset:
    """All episodes of a directory of chunks: obs [eps, T, D], action [eps, T, A] (0 at t=0),
    reward [eps, T] (0 at t=0), task [eps] (long)."""

    obs: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor
    task: torch.Tensor

    @classmethod
    def load(cls, directory: str | os.PathLike, mmap: bool = False, allow_pickle: bool = False,
             device: str | torch.device = "cpu") -> "OfflineDataset":
        chunks = [load_chunk(p, mmap, allow_pickle) for p in chunk_paths(directory)]
        shapes = {(c["obs"].shape[1:], c["action"].shape[2]) for c in chunks}
        if len(shapes) > 1:
            raise DatasetError(f"chunks in {directory} disagree on (T, obs_dim) / action_dim: {sorted(map(str, shapes))}")
        cat = lambda k: torch.cat([c[k] for c in chunks]) if len(chunks) > 1 else chunks[0][k]
        act, rew = cat("action").float().clone(), cat("reward").float().clone()
        act[:, 0], rew[:, 0] = 0.0, 0.0  # TD-MPC2 stores NaN before the first action
        return cls(cat("obs").float().to(device), act.to(device), rew.to(device), cat("task").long().to(device))

    @property
    def num_episodes(self) -> int:
        return self.obs.shape[0]

    @property
    def episode_length(self) -> int:
        return self.obs.shape[1]

    def sample(self, batch_size: int, horizon: int, generator: torch.Generator | None = None) -> Batch:
        """Windows of horizon+1 consecutive slots of one episode each, time-major like replay.sample:
        obs [H+1, B, D], action/reward/terminated [H, B, .], task [B]."""
        n, T = self.obs.shape[:2]
        if T < horizon + 1:
            raise DatasetError(f"episodes of {T} slots cannot hold windows of horizon+1={horizon + 1}")
        dev = self.obs.device
        ep = torch.randint(n, (batch_size,), device=dev, generator=generator)
        start = torch.randint(T - horizon, (batch_size,), device=dev, generator=generator)
        t = start.unsqueeze(0) + torch.arange(horizon + 1, device=dev).unsqueeze(1)  # [H+1, B]
        e = ep.unsqueeze(0).expand_as(t)
        obs = self.obs[e, t]
        action, reward = self.action[e[1:], t[1:]], self.reward[e[1:], t[1:]].unsqueeze(-1)
        return Batch(obs=obs, action=action, reward=reward, terminated=torch.zeros_like(reward), task=self.task[ep])


def write_synthetic_chunks(directory: str | os.PathLike, task_dims: list[tuple[int, int]], episodes_per_task: int,
                           episode_length: int, chunks: int = 2, seed: int = 0, nan_first: bool = True) -> list[Path]:
    """A small dataset in the chunk format: for task i with (obs_dim_i, action_dim_i), episodes of
    `episode_length` slots padded to the largest dims with zeros; observations follow a simple
    linear system so that a world model can learn something. Returns the written paths."""
    g = torch.Generator().manual_seed(seed)
    D, A = max(d for d, _ in task_dims), max(a for _, a in task_dims)
    obs, act, rew, task = [], [], [], []
    for i, (d, a) in enumerate(task_dims):
        for _ in range(episodes_per_task):
            o = torch.zeros(episode_length, D)
            u = torch.zeros(episode_length, A)
            r = torch.zeros(episode_length)
            o[0, :d] = torch.randn(d, generator=g) * 0.1
            for t in range(1, episode_length):
                u[t, :a] = torch.rand(a, generator=g) * 2 - 1
                o[t, :d] = 0.9 * o[t - 1, :d] + 0.1 * torch.cat([u[t, :a], torch.zeros(max(d - a, 0))])[:d]
                r[t] = 1.0 - o[t, :d].abs().mean()
            if nan_first:
                u[0], r[0] = float("nan"), float("nan")
            obs.append(o), act.append(u), rew.append(r), task.append(torch.full((episode_length,), i))
    order = torch.randperm(len(obs), generator=g)
    stack = lambda xs: torch.stack(xs)[order]
    data = {"obs": stack(obs), "action": stack(act), "reward": stack(rew), "task": stack(task)}
    Path(directory).mkdir(parents=True, exist_ok=True)
    paths = []
    for j, idx in enumerate(torch.arange(len(obs)).chunk(chunks)):
        p = Path(directory) / f"chunk_{j}.pt"
        tmp = p.with_suffix(".tmp")
        torch.save({k: v[idx].clone() for k, v in data.items()}, tmp)
        os.replace(tmp, p)
        paths.append(p)
    return paths
