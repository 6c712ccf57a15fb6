"""Composing configs exactly as the CLI does (Hydra), and running the trainer in-process."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mbdpo_fast
from mbdpo_fast.config import compose_config

CFG_DIR = str(Path(mbdpo_fast.__file__).parent / "cfgs")

# A tiny, fast configuration on cheetah-run: 50-step episodes, a 32-wide model, small planner.
TINY = ["device=cpu", "model_size=1", "enc_dim=32", "mlp_dim=32", "latent_dim=16", "num_q=2",
        "num_samples=32", "num_elites=4", "num_pi_trajs=4", "diffusion_steps=4", "batch_size=16",
        "buffer_size=5000", "episode_length=50", "seed_steps=60", "eval_episodes=1", "progress_bar=false"]


def compose_cfg(overrides: list[str], work_dir: str | os.PathLike):
    return compose_config(overrides, work_dir)


def run_cli(module: str, args: list[str], cwd, timeout=600) -> subprocess.CompletedProcess:
    env = dict(os.environ, WANDB_MODE="disabled", MUJOCO_GL="disable", HYDRA_FULL_ERROR="0")
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
