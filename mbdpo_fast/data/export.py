"""Replay buffer -> TD-MPC2 dataset chunks: every complete episode a ReplayBuffer (or a run's saved
replay file) holds, written as chunk_0.pt, chunk_1.pt, ... that OfflineDataset.load reads back.

    python -m mbdpo_fast.data.export RUN_DIR [OUT_DIR] [--episode-slots N] [--episodes-per-chunk K]

Replay slot layout (replay.py): stream s holds T ring slots written in order; `step[s, j]` is the
step within the episode of slot j (0: the episode's first observation, -1: empty) and `ptr[s]` the
number of writes, so once ptr[s] > T the oldest slot is ptr[s] % T. An episode of L slots is a
chronological run with steps 0, 1, ..., L-1 followed by a new episode (step 0) or by the write head.
Episodes of other lengths (early terminations, or longer than L), episodes the ring has partly
overwritten and episodes still being written (fewer than L slots so far) are left out: a dataset
holds episodes of one length.
The replay's `terminated` flags are not exported (the chunk format has no such field).
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import torch

from .checkpoint import CHECKPOINT_NAME, atomic_save, load_checkpoint, safe_load
from ..errors import CheckpointError, DatasetError, NoEpisodesError

CHUNK_NAME = re.compile(r"chunk_(\d+)\.pt")


def complete_episodes(step: torch.Tensor, ptr: torch.Tensor, episode_slots: int | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """step [S, F] (F stored slots per stream: the ring size T whenever some ptr exceeds it), ptr [S]
    -> (stream [n], slots [n, L]): the slot indices of every complete episode of L = episode_slots
    slots (default: max(step) + 1), in chronological order per stream."""
    step, ptr = step.cpu().long(), ptr.cpu().long()
    S, F = step.shape
    L = int(step.max()) + 1 if episode_slots is None else int(episode_slots)
    streams, slots = [], []
    for s in range(S):
        n = min(int(ptr[s]), F)
        if L < 1 or n < L:
            continue
        order = (int(ptr[s]) - n + torch.arange(n)) % F  # chronological slot indices
        st = step[s, order]
        begins = (st[:n - L + 1] == 0) & (st[L - 1:] == L - 1)
        # A step-0 slot right after the run (or the write head) ends it: longer episodes are not L-slot ones.
        after = torch.cat([st[L:], torch.zeros(1, dtype=st.dtype)])
        pos = (begins & (after == 0)).nonzero().squeeze(1)
        streams.append(torch.full((len(pos),), s, dtype=torch.long))
        slots.append(order[pos.unsqueeze(1) + torch.arange(L)])
    if not streams:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, max(L, 0), dtype=torch.long)
    return torch.cat(streams), torch.cat(slots)


def episode_tensors(obs: torch.Tensor, action: torch.Tensor, reward: torch.Tensor, task: torch.Tensor,
                    stream: torch.Tensor, slots: torch.Tensor) -> dict[str, torch.Tensor]:
    """obs [S, F, D], action [S, F, A], reward [S, F], task [n] ids; stream [n], slots [n, L] ->
    the chunk layout on CPU: obs [n, L, D] float32, action [n, L, A] and reward [n, L] float32 with
    NaN at t=0 (as TD-MPC2 stores them), task [n, L] int64."""
    dev = obs.device
    s, j = stream.to(dev).unsqueeze(1).expand_as(slots), slots.to(dev)
    o = obs[s, j].float().cpu()
    a = action[s, j].float().cpu()
    r = reward[s, j].float().cpu()
    a[:, 0], r[:, 0] = float("nan"), float("nan")
    return {"obs": o, "action": a, "reward": r, "task": task.long().cpu().unsqueeze(1).expand(-1, slots.shape[1]).clone()}


def export_slots(directory: str | Path, obs: torch.Tensor, action: torch.Tensor, reward: torch.Tensor,
                 step: torch.Tensor, ptr: torch.Tensor, task_names: list[str], task: torch.Tensor | None = None,
                 episode_slots: int | None = None, episodes_per_chunk: int = 1000,
                 task_index: int | None = None) -> list[Path]:
    """The shared core of replay_to_chunks and the CLI. obs [S, F, D], action [S, F, A],
    reward [S, F], step [S, F], ptr [S] as in replay.py; task [S, F] ids into task_names (a
    multi-task buffer) or None: every episode gets task_index (default 0). Returns the chunk paths."""
    if not task_names or not all(isinstance(n, str) for n in task_names):
        raise DatasetError(f"task_names must be a non-empty list of task names, got {task_names!r}")
    stream, slots = complete_episodes(step, ptr, episode_slots)
    if len(stream) == 0:
        L = episode_slots if episode_slots is not None else int(step.max()) + 1
        raise NoEpisodesError(f"no complete episode of {L} slots in the replay data "
                           f"(writes per stream: {ptr.tolist()}); nothing to export")
    if task is not None:
        ids = task.cpu()[stream, slots[:, 0].cpu()]
    else:
        ids = torch.full((len(stream),), 0 if task_index is None else int(task_index), dtype=torch.long)
    if (ids < 0).any() or (ids >= len(task_names)).any():
        raise DatasetError(f"task ids {sorted(set(ids.tolist()))} do not all index the {len(task_names)} task "
                           f"names {task_names}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, sel in enumerate(torch.arange(len(stream)).split(max(1, int(episodes_per_chunk)))):
        data = episode_tensors(obs, action, reward, ids[sel], stream[sel], slots[sel])
        data["tasks"] = list(task_names)
        path = directory / f"chunk_{k}.pt"
        atomic_save(data, path, "dataset chunk")
        paths.append(path)
    _remove_stale(directory, paths)
    return paths


def _remove_stale(directory: Path, keep: list[Path]) -> None:
    """Chunks of an earlier, larger export would otherwise be loaded alongside the new ones."""
    for old in directory.glob("chunk_*.pt"):
        if old not in keep and CHUNK_NAME.fullmatch(old.name):
            old.unlink()


def replay_to_chunks(buffer, directory: str | Path, task_names: list[str], episode_slots: int | None = None,
                     episodes_per_chunk: int = 1000, task_index: int | None = None) -> list[Path]:
    """Every complete episode in `buffer` (a ReplayBuffer, all streams) as chunks in `directory`,
    task ids from the buffer's when it is multi-task, else task_index (default 0). Reads the
    buffer's state_dict (the format its replay files have), not its storage."""
    state = buffer.state_dict()
    return export_slots(directory, state["obs"], state["action"], state["reward"], state["step"], state["ptr"],
                        task_names, task=state.get("task"), episode_slots=episode_slots,
                        episodes_per_chunk=episodes_per_chunk, task_index=task_index)


def export_training_replay(cfg, buffer, work_dir: str | Path) -> list[Path]:
    """save_dataset=true: a trainer's replay as chunks in work_dir/dataset (episodes of the run's
    episode_length + 1 slots; ids index cfg.tasks for a multi-task run, else 0 with [cfg.task]).
    Before the first episode completes there is nothing to write, which is not an error."""
    names = list(cfg.tasks) if cfg.multitask else [cfg.task]
    try:
        return replay_to_chunks(buffer, Path(work_dir) / "dataset", names, episode_slots=int(cfg.episode_length) + 1,
                                task_index=None if cfg.multitask else 0)
    except NoEpisodesError:
        return []


def run_task_names(cfg: dict) -> tuple[list[str], int]:
    """(task names, id of a single-task run's task) from a checkpoint's config."""
    names = list(cfg.get("tasks") or []) or [cfg["task"]]
    return names, names.index(cfg["task"]) if cfg.get("task") in names else 0


def run_to_chunks(run_dir: str | Path, out_dir: str | Path | None = None, episode_slots: int | None = None,
                  episodes_per_chunk: int = 1000) -> list[Path]:
    """Export the replay file saved with RUN_DIR/checkpoint.pt to out_dir (default RUN_DIR/dataset)."""
    run_dir = Path(run_dir)
    ckpt = run_dir / CHECKPOINT_NAME
    payload = load_checkpoint(ckpt)
    if not payload.get("replay_file"):
        raise DatasetError(f"{ckpt} has no replay file (the run had save_replay=false): nothing to export")
    state = safe_load(run_dir / payload["replay_file"], what="replay file")
    missing = [k for k in ("obs", "action", "reward", "step", "ptr") if k not in state]
    if missing:
        raise DatasetError(f"replay file {run_dir / payload['replay_file']} lacks {missing}")
    names, index = run_task_names(payload["config"])
    return export_slots(out_dir if out_dir is not None else run_dir / "dataset", state["obs"], state["action"],
                        state["reward"], state["step"], state["ptr"], names, task=state.get("task"),
                        episode_slots=episode_slots, episodes_per_chunk=episodes_per_chunk, task_index=index)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mbdpo_fast.data.export",
                                     description="Write the complete episodes of a run's replay buffer as "
                                                 "TD-MPC2 dataset chunks.")
    parser.add_argument("run_dir", type=Path, help="run directory holding checkpoint.pt and its replay file")
    parser.add_argument("out_dir", type=Path, nargs="?", default=None, help="default: RUN_DIR/dataset")
    parser.add_argument("--episode-slots", type=int, default=None,
                        help="slots per episode (default: the longest episode in the buffer)")
    parser.add_argument("--episodes-per-chunk", type=int, default=1000)
    args = parser.parse_args(argv)
    try:
        paths = run_to_chunks(args.run_dir, args.out_dir, args.episode_slots, args.episodes_per_chunk)
    except (DatasetError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {len(paths)} chunk(s) to {paths[0].parent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
