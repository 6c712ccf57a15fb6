"""python -m mbdpo_fast.evaluate checkpoint=PATH [episodes=10] [device=auto] [seed=0] [output=FILE]

Evaluates a checkpoint's policy (planner in eval mode, no action noise) on its task for N
episodes; writes one CSV row per episode (task,episode,return[,success]) and prints a summary.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import hydra
import numpy as np
import torch
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from .agent import MBDPO, seed_everything
from .checkpoint import CheckpointError, load_checkpoint
from .cli import user_errors
from .config import ConfigError, resolve_device
from .envs import make_env
from .trainers.online import evaluate_agent


@dataclass
class EvaluateConfig:
    checkpoint: str = MISSING
    episodes: int = 10
    device: str = "auto"
    seed: int = 0
    output: str | None = None  # default: eval_<task>_<step>.csv next to the checkpoint


ConfigStore.instance().store(name="evaluate_schema", node=EvaluateConfig)


def load_agent(path: str | Path, device: str = "auto") -> tuple[MBDPO, DictConfig, int]:
    """Rebuild the agent a checkpoint was trained with; returns (agent, its config, its step)."""
    payload = load_checkpoint(path)
    cfg = OmegaConf.create(payload["config"])
    cfg.device = str(resolve_device(device))
    agent = MBDPO(cfg)
    try:
        agent.load_state_dict(payload["agent"])
    except (RuntimeError, KeyError) as exc:
        raise CheckpointError(f"{path}: agent state does not load ({str(exc).splitlines()[0][:300]})") from None
    return agent, cfg, int(payload["trainer"]["step"])


def run(ecfg: DictConfig) -> dict:
    if ecfg.episodes < 1:
        raise ConfigError("episodes must be >= 1")
    seed_everything(ecfg.seed)
    agent, cfg, step = load_agent(ecfg.checkpoint, ecfg.device)
    env = make_env(cfg.task, ecfg.seed, cfg.action_repeat, cfg.episode_length)
    res = evaluate_agent(agent, env, ecfg.episodes, seed=ecfg.seed)
    out = Path(ecfg.output) if ecfg.output else Path(ecfg.checkpoint).parent / f"eval_{cfg.task}_{step}.csv"
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["task", "step", "episode", "return"])
        for i, r in enumerate(res["returns"]):
            w.writerow([cfg.task, step, i, f"{r:.4f}"])
    rets = np.asarray(res["returns"])
    print(f"{cfg.task} step {step}: return {rets.mean():.1f} +- {rets.std():.1f} over {len(rets)} episodes "
          f"(min {rets.min():.1f}, max {rets.max():.1f}) -> {out}")
    return {"task": cfg.task, "step": step, "mean": float(rets.mean()), "returns": res["returns"], "csv": str(out)}


@hydra.main(version_base=None, config_path="cfgs", config_name="evaluate")
def _main(ecfg: DictConfig) -> None:
    with user_errors():
        run(ecfg)


def main() -> None:
    _main()


if __name__ == "__main__":
    main()
