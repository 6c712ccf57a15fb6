"""Composing configs exactly as the CLI does (Hydra), and running the trainer in-process."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

import mbdpo_fast
from mbdpo_fast.config import compose_config

CFG_DIR = str(Path(mbdpo_fast.__file__).parent / "cfgs")

# A tiny, fast configuration on cheetah-run: 50-step episodes, a 32-wide model, small planner.
TINY = ["device=cpu", "model_size=1", "enc_dim=32", "mlp_dim=32", "latent_dim=16", "num_q=2",
        "num_samples=32", "num_elites=4", "num_pi_trajs=4", "diffusion_steps=4", "batch_size=16",
        "buffer_size=5000", "episode_length=50", "seed_steps=60", "eval_episodes=1", "progress_bar=false"]


def tiny_with(*overrides: str) -> list[str]:
    """TINY with these key=value items replacing its own or added to it."""
    keys = {o.split("=", 1)[0] for o in overrides}
    return [a for a in TINY if a.split("=", 1)[0] not in keys] + list(overrides)


def compose_cfg(overrides: list[str], work_dir: str | os.PathLike):
    return compose_config(overrides, work_dir)


def run_cli(module: str, args: list[str], cwd, timeout=600, env: dict | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, WANDB_MODE="disabled", MUJOCO_GL="disable", HYDRA_FULL_ERROR="0", **(env or {}))
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def write_synthetic_chunks(directory: str | os.PathLike, task_dims: list[tuple[int, int]], episodes_per_task: int,
                           episode_length: int, chunks: int = 2, seed: int = 0, nan_first: bool = True,
                           task_names: list[str] | None = None) -> list[Path]:
    """A small dataset in the chunk format: for task i with (obs_dim_i, action_dim_i), episodes of
    `episode_length` slots padded to the largest dims with zeros; observations follow a simple
    linear system so that a world model can learn something. task_names (one per task) are stored
    as the chunks' "tasks". Returns the written paths."""
    if task_names is not None and len(task_names) != len(task_dims):
        raise ValueError(f"{len(task_names)} task_names for {len(task_dims)} tasks")
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
        payload = {k: v[idx].clone() for k, v in data.items()}
        if task_names is not None:
            payload["tasks"] = list(task_names)
        torch.save(payload, tmp)
        os.replace(tmp, p)
        paths.append(p)
    return paths
