"""Shared entry-point plumbing: one clear error line instead of a traceback for user mistakes."""
from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from .data.checkpoint import CHECKPOINT_NAME, load_checkpoint
from .errors import ConfigError, UserError


@contextmanager
def user_errors():
    """The one place that turns a user's error (errors.UserError: configuration, task, checkpoint,
    dataset, replay capacity, divergence) into `error: ...` on stderr and exit code 2."""
    try:
        yield
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def run_checkpoint(cfg: DictConfig) -> Path:
    """The checkpoint path of cfg.work_dir. ConfigError when work_dir is unset, or when a
    checkpoint is already there and resume=false (a new run must not overwrite it)."""
    if cfg.get("work_dir") in (None, "???") or OmegaConf.is_missing(cfg, "work_dir"):
        raise ConfigError("work_dir is not set")
    ckpt = Path(cfg.work_dir) / CHECKPOINT_NAME
    if ckpt.exists() and not cfg.resume:
        step = load_checkpoint(ckpt)["trainer"]["step"]
        raise ConfigError(f"{cfg.work_dir} already holds a checkpoint at step {step}: pass resume=true to continue "
                          f"it, or choose another exp_name/seed for a new run")
    return ckpt


def resume_or_start(trainer, ckpt: Path, resume: bool) -> bool:
    """Load `ckpt` into an online trainer when resuming (True); else start fresh, dropping log rows
    of an earlier run in the same directory that never checkpointed (False)."""
    if resume and ckpt.exists():
        trainer.load(ckpt)
        print(f"resumed {ckpt} at step {trainer.step}")
        return True
    trainer.logger.truncate_after(-1)
    return False


def save_spec(spec, path: Path) -> None:
    """The run spec as config.yaml beside the run (every field, derived ones included)."""
    OmegaConf.save(OmegaConf.create(spec.to_dict()), path)


def train_and_report(trainer, spec, banner: str) -> dict:
    """Save the run spec beside the run, print the banner, train, print the summary."""
    save_spec(spec, Path(spec.work_dir) / "config.yaml")
    print(banner)
    summary = trainer.train()
    print(f"done: {summary}")
    return summary


def hydra_entry(cfg: DictConfig, run) -> None:
    """The body of a training entry point's @hydra.main: work_dir defaults to Hydra's run
    directory, user mistakes become one error line (exit 2)."""
    from hydra.core.hydra_config import HydraConfig

    with open_dict(cfg):
        if OmegaConf.is_missing(cfg, "work_dir"):
            cfg.work_dir = HydraConfig.get().runtime.output_dir
    with user_errors():
        run(cfg)
