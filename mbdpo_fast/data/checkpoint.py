"""Checkpoints: atomic writes, validated loads, one clear error for corrupt or mismatched files.

A checkpoint is one torch file holding only tensors and plain containers (loaded with
weights_only=True): {"format", "config", "agent", "trainer", "replay_file"}. The replay buffer
goes to its own file, written first and named in the checkpoint, so a crash between the two
writes leaves the previous checkpoint and its replay file intact.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from ..config import RunSpec

from ..errors import CheckpointError, StorageError

FORMAT = "mbdpo_fast.checkpoint.v1"
# Fields that fix parameter shapes: a checkpoint only loads into a config that agrees on these.
SHAPE_KEYS = ("obs_dim", "action_dim", "latent_dim", "mlp_dim", "enc_dim", "num_enc_layers", "num_q",
              "num_bins", "task_dim", "multitask", "episodic", "score_net", "horizon", "simnorm_dim",
              "time_embed_dim")


def atomic_save(obj, path: str | os.PathLike, what: str = "file") -> None:
    """torch.save to a temporary file in the same directory, fsync, then rename over `path`. A
    write that fails (disk full, quota) leaves `path` as it was, removes the temporary file and
    raises StorageError naming the file and the cause."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:  # torch.save passes the file's own OSError (ENOSPC from a full disk) through
        raise StorageError.writing(path, exc, what) from None
    finally:
        if tmp.exists():
            tmp.unlink()
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def safe_load(path: str | os.PathLike, what: str = "checkpoint") -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no {what} at {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for truncated/garbage files
        raise CheckpointError(f"{what} {path} is corrupt or not a torch file "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Load and validate the structure of a checkpoint (not yet its fit to a config)."""
    payload = safe_load(path)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"{path} is not an mbdpo_fast checkpoint (format {found!r}, expected {FORMAT!r})")
    for key in ("config", "agent", "trainer"):
        if key not in payload:
            raise CheckpointError(f"checkpoint {path} lacks its {key!r} section (corrupt or truncated)")
    return payload


def check_compatible(saved_cfg: dict, cfg: RunSpec, path: str | os.PathLike = "checkpoint") -> None:
    """Raise CheckpointError naming every shape field on which the checkpoint and cfg disagree."""
    # task_dim only shapes a multi-task model (single-task configs once stored an unused 96).
    keys = [k for k in SHAPE_KEYS if k != "task_dim" or cfg.get("multitask") or saved_cfg.get("multitask")]
    bad = [f"{k}: checkpoint {saved_cfg.get(k)!r} vs config {cfg.get(k)!r}"
           for k in keys if saved_cfg.get(k) != cfg.get(k)]
    if saved_cfg.get("tasks", []) != list(cfg.get("tasks", [])):
        bad.append(f"tasks: checkpoint {saved_cfg.get('tasks')} vs config {list(cfg.get('tasks', []))}")
    if bad:
        raise CheckpointError(f"{path} does not fit this config (task {saved_cfg.get('task')!r}, "
                              f"model_size {saved_cfg.get('model_size')}):\n  " + "\n  ".join(bad))


def config_to_dict(cfg) -> dict:
    return cfg.to_dict()


CHECKPOINT_NAME = "checkpoint.pt"


def rng_state(device) -> dict:
    state = {"cpu": torch.get_rng_state()}
    if torch.device(device).type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device) -> None:
    torch.set_rng_state(state["cpu"])
    if torch.device(device).type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def save_run(work_dir: Path, cfg: RunSpec, agent, buffer, trainer_state: dict, step: int) -> Path:
    """Write the replay file (if cfg.save_replay and there is a buffer), then the checkpoint naming
    it, then drop older replay files: a crash at any point leaves a consistent checkpoint/replay pair."""
    work_dir = Path(work_dir)
    path = work_dir / CHECKPOINT_NAME
    before = path.exists()
    existing = {p.name for p in work_dir.glob("replay_*.pt")}
    replay_file = None
    try:
        if cfg.save_replay and buffer is not None:
            replay_file = f"replay_{step:09d}.pt"
            atomic_save(buffer.state_dict(), work_dir / replay_file, "replay file")
        payload = {"format": FORMAT, "config": config_to_dict(cfg), "agent": agent.state_dict(),
                   "trainer": {**trainer_state, "rng": rng_state(agent.device)}, "replay_file": replay_file}
        atomic_save(payload, path, "checkpoint")
    except StorageError as exc:
        if replay_file and replay_file not in existing and (work_dir / replay_file).exists():
            (work_dir / replay_file).unlink()  # the new replay file no checkpoint names
        kept = (f"the previous checkpoint {path} and its replay file are unchanged and resume (resume=true) "
                f"once there is room" if before else "no checkpoint was written before")
        raise StorageError(f"{exc}; the run stopped at step {step}: {kept}") from None
    for old in work_dir.glob("replay_*.pt"):
        if old.name != replay_file:
            old.unlink()
    return path


def load_run(path: str | os.PathLike, cfg: RunSpec, agent, buffer) -> dict:
    """Validate and load a checkpoint into agent and buffer, restore the torch RNG; returns the
    trainer state saved with it."""
    payload = load_checkpoint(path)
    check_compatible(payload["config"], cfg, path)
    try:
        agent.load_state_dict(payload["agent"])
    except (RuntimeError, KeyError, ValueError) as exc:
        raise CheckpointError(f"{path}: agent state does not load ({str(exc).splitlines()[0][:300]})") from None
    if payload.get("replay_file") and buffer is not None:
        state = safe_load(Path(path).parent / payload["replay_file"], what="replay file")
        try:
            buffer.load_state_dict(state)
        except (ValueError, KeyError, RuntimeError) as exc:
            raise CheckpointError(f"replay file of {path} does not fit: {exc}") from None
    trainer = payload["trainer"]
    set_rng_state(trainer["rng"], agent.device)
    return trainer
