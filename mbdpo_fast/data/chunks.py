"""TD-MPC2 dataset chunks (`chunk_*.pt`): recorded episodes of equal length T (501 for mt30's
DMControl episodes, 101 in mt80):

    obs    [episodes, T, obs_dim]     float
    action [episodes, T, action_dim]  float, NaN (or 0) at t=0: slot t holds the action that led to obs t
    reward [episodes, T]              float, NaN (or 0) at t=0
    task   [episodes, T] or [episodes]  int task index
    tasks  list[str], optional        task names: id i means tasks[i] (chunks written by this package)

That slot layout is the replay buffer's own (replay.py), so windows of H+1 consecutive slots of one
episode are training windows; a window starting at slot s reads actions/rewards of slots s+1..s+H
only, so slot 0's NaN is never sampled. Chunks may differ in obs_dim / action_dim (exported from
different tasks): the dataset zero-pads to the largest. The files are torch.save'd dicts or
TensorDicts (TD-MPC2's own; reading them needs the tensordict package, which registers its classes
with torch's safe weights_only loader; `allow_pickle=True` is for files that need full unpickling).

Loading is eager (one padded float32 tensor per field, on `device`) or memory-mapped (each chunk's
tensors stay views of its file; a sample reads only the windows it draws, then casts, pads and
moves them), for the 40-80 GB datasets that do not fit in RAM.
"""
from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import DatasetError
from ..batch import Batch

KEYS = ("obs", "action", "reward", "task")


# ------------------------------------------------------------------------------------------------
# One file
def _read(path: Path, mmap: bool, allow_pickle: bool, legacy_fallback: bool = False):
    try:
        return torch.load(path, map_location="cpu", mmap=mmap, weights_only=not allow_pickle)
    except RuntimeError as e:
        if mmap and "mmap can only be used" in str(e) and _is_legacy(path):
            if legacy_fallback:  # an eager load only maps to avoid a second copy; legacy files just load
                return _read(path, False, allow_pickle)
            raise DatasetError(f"{path}: saved in torch's legacy (non-zip) format, which cannot be "
                               f"memory-mapped; load with mmap=false or re-save it") from e
        raise _unreadable(path, e) from e
    except Exception as e:  # noqa: BLE001  (zip errors, truncation, unpickling refusals)
        raise _unreadable(path, e) from e


def _is_legacy(path: Path) -> bool:
    """torch's pre-1.6 format: a bare pickle stream (protocol 2) rather than a zip archive."""
    with open(path, "rb") as f:
        return f.read(2) == b"\x80\x02"


def _unreadable(path: Path, e: Exception) -> DatasetError:
    hint = (" (a TensorDict chunk? install tensordict: pip install 'mbdpo_fast[offline]'; for trusted files "
            "that need full unpickling pass allow_pickle=true)") if "weights_only" in str(e) else ""
    return DatasetError(f"{path}: not a readable dataset chunk: {type(e).__name__}: "
                        f"{str(e).splitlines()[0][:200] if str(e) else ''}{hint}")


def load_chunk(path: str | os.PathLike, mmap: bool = False, allow_pickle: bool = False,
               check_nan: str | None = None, _legacy_fallback: bool = False) -> dict:
    """One chunk as a validated dict: obs [n, T, D], action [n, T, A], reward [n, T] (CPU tensors,
    memory-mapped views of the file when mmap=True, dtypes as stored), task [n] long, and
    "tasks" (list of names) when the file has it.

    check_nan: "all" scans every value, "first" only episode 0, None: "all" unless mmap (a full
    scan of a mapped file reads all of it into the page cache, which mapping is meant to avoid)."""
    path = Path(path)
    raw = _read(path, mmap, allow_pickle, _legacy_fallback)
    try:
        chunk = {k: raw[k] for k in KEYS}
    except (KeyError, TypeError, IndexError) as e:
        have = sorted(raw.keys()) if hasattr(raw, "keys") else type(raw).__name__
        raise DatasetError(f"{path}: a dataset chunk needs keys {list(KEYS)}, found {have}") from e
    names = raw["tasks"] if "tasks" in raw.keys() else None
    if names is not None:
        if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
            raise DatasetError(f"{path}: 'tasks' must be a list of task names, got {type(names).__name__}")
        chunk["tasks"] = list(names)
    return validate_chunk(chunk, path, check_nan or ("first" if mmap else "all"))


def validate_chunk(chunk: dict, path="chunk", check_nan: str = "all") -> dict:
    """Check ranks, agreeing episode/time dims, T >= 2, float data and NaN (over all episodes, or
    over episode 0 only with check_nan="first"); returns the chunk with task reduced to [n] long."""
    obs, action, reward, task = (chunk[k] for k in KEYS)
    if obs.dim() != 3 or action.dim() != 3 or reward.dim() != 2:
        raise DatasetError(f"{path}: expected obs [eps, T, D], action [eps, T, A], reward [eps, T]; got "
                           f"{tuple(obs.shape)}, {tuple(action.shape)}, {tuple(reward.shape)}")
    n, T = obs.shape[:2]
    if action.shape[:2] != (n, T) or reward.shape != (n, T) or task.shape not in ((n, T), (n,)):
        raise DatasetError(f"{path}: episode/time dims disagree: obs {tuple(obs.shape)}, action "
                           f"{tuple(action.shape)}, reward {tuple(reward.shape)}, task {tuple(task.shape)}")
    if T < 2 or n < 1:
        raise DatasetError(f"{path}: {n} episodes of {T} steps: need at least one episode of >= 2 steps")
    if not all(x.is_floating_point() for x in (obs, action, reward)) or task.is_floating_point():
        raise DatasetError(f"{path}: obs/action/reward must be float and task integer; got dtypes "
                           f"{obs.dtype}, {action.dtype}, {reward.dtype}, {task.dtype}")
    if check_nan != "none":
        eps = slice(None) if check_nan == "all" else slice(0, 1)
        if _has_nan(obs[eps], action[eps, 1:], reward[eps, 1:]):
            raise DatasetError(f"{path}: NaN in observations, or in actions/rewards after t=0")
    out = {"obs": obs, "action": action, "reward": reward, "task": (task if task.dim() == 1 else task[:, 0]).long()}
    if "tasks" in chunk:
        out["tasks"] = chunk["tasks"]
    return out


def _has_nan(*xs: torch.Tensor) -> bool:
    return any(bool(torch.isnan(x).any()) for x in xs)


def chunk_paths(directory: str | os.PathLike) -> list[Path]:
    paths = sorted(Path(p) for p in glob.glob(os.path.join(str(directory), "chunk_*.pt")))
    if not paths:
        raise DatasetError(f"no chunk_*.pt files in {directory}")
    return paths


# ------------------------------------------------------------------------------------------------
# Task ids
def remap_task_ids(ids: torch.Tensor, names: list[str] | None, tasks: list[str] | None, path="chunk") -> torch.Tensor:
    """ids [n] of one chunk -> ids [n] into `tasks`. A chunk with `names` is remapped by name; one
    without keeps its ids (TD-MPC2's own chunks index the mt30/mt80 list), checked against len(tasks)."""
    if (ids < 0).any():
        raise DatasetError(f"{path}: negative task id {int(ids.min())}")
    top = int(ids.max())
    if names is not None and top >= len(names):
        raise DatasetError(f"{path}: task id {top} but the chunk names only {len(names)} tasks {names}")
    if tasks is None:
        return ids
    if names is None:
        if top >= len(tasks):
            raise DatasetError(f"{path}: task id {top} is out of range for the {len(tasks)} tasks given "
                               f"({tasks[:3]}...)")
        return ids
    used = [names[i] for i in ids.unique().tolist()]
    unknown = [n for n in used if n not in tasks]
    if unknown:
        raise DatasetError(f"{path}: tasks {unknown} are not among the tasks given ({tasks})")
    table = torch.tensor([tasks.index(n) if n in tasks else -1 for n in names], dtype=torch.long)
    return table[ids]


def _common_names(chunks: list[dict], paths: list[Path]) -> list[str] | None:
    named = {tuple(c["tasks"]): p for c, p in zip(chunks, paths) if "tasks" in c}
    if len(named) > 1:
        raise DatasetError(f"chunks name different task lists ({', '.join(str(p) for p in named.values())}); "
                           f"pass tasks=[...] to map them onto one list")
    return list(next(iter(named))) if named else None


# ------------------------------------------------------------------------------------------------
@dataclass
class EpisodeChunk:
    """Episodes of one file (mmap) or of all files (eager): obs [n, T, D_c], action [n, T, A_c],
    reward [n, T]; any float dtype, padded to the dataset's dims only when read."""

    obs: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor
    path: Path | None = None

    @property
    def num_episodes(self) -> int:
        return self.obs.shape[0]


@dataclass
class OfflineDataset:
    """Episodes of a directory of chunks, in `chunks` (eager: one padded float32 chunk on `device`
    with action/reward 0 at t=0; mmap: one memory-mapped chunk per file, as stored), and their task
    ids `task` [episodes] long on `device`. All episodes have `episode_length` slots."""

    chunks: list[EpisodeChunk]
    task: torch.Tensor
    obs_dim: int
    action_dim: int
    device: torch.device
    mmap: bool = False
    task_names: list[str] | None = None
    _starts: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self):
        counts = torch.tensor([c.num_episodes for c in self.chunks], dtype=torch.long)
        self._starts = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])  # [chunks+1], CPU

    @classmethod
    def load(cls, directory: str | os.PathLike, tasks: list[str] | None = None, obs_dim: int | None = None,
             action_dim: int | None = None, mmap: bool = False, allow_pickle: bool = False,
             device: str | torch.device = "cpu") -> "OfflineDataset":
        """Load every chunk_*.pt of `directory`, padded to (obs_dim, action_dim) (default: the
        largest over chunks; smaller than a chunk's -> DatasetError), task ids remapped onto
        `tasks` (see remap_task_ids)."""
        paths = chunk_paths(directory)
        # Both modes map the files first: an eager load then copies each once into the padded
        # result instead of holding the raw chunks and their concatenation at the same time.
        raw = [load_chunk(p, mmap=True, allow_pickle=allow_pickle, check_nan="first", _legacy_fallback=not mmap)
               for p in paths]
        T, D, A = _dims(raw, paths, obs_dim, action_dim)
        task = torch.cat([remap_task_ids(c["task"], c.get("tasks"), tasks, p) for c, p in zip(raw, paths)])
        names = list(tasks) if tasks is not None else _common_names(raw, paths)
        device = torch.device(device)
        if mmap:
            chunks = [EpisodeChunk(c["obs"], c["action"], c["reward"], p) for c, p in zip(raw, paths)]
        else:
            chunks = [_concat_padded(raw, paths, T, D, A, device)]
        return cls(chunks, task.to(device), D, A, device, mmap, names)

    # --------------------------------------------------------------------------------------------
    @property
    def num_episodes(self) -> int:
        return int(self._starts[-1])

    @property
    def episode_length(self) -> int:
        return self.chunks[0].obs.shape[1]

    def _eager(self, name: str) -> torch.Tensor:
        if self.mmap:
            raise DatasetError(f"a memory-mapped dataset has no single {name} tensor: read .chunks, "
                               f"episodes(idx) or sample()")
        return getattr(self.chunks[0], name)

    @property
    def obs(self) -> torch.Tensor:
        """[episodes, T, obs_dim] float32 (eager loads only)."""
        return self._eager("obs")

    @property
    def action(self) -> torch.Tensor:
        """[episodes, T, action_dim] float32, 0 at t=0 (eager loads only)."""
        return self._eager("action")

    @property
    def reward(self) -> torch.Tensor:
        """[episodes, T] float32, 0 at t=0 (eager loads only)."""
        return self._eager("reward")

    def pad_to(self, obs_dim: int, action_dim: int) -> None:
        """Widen the padded dims (e.g. to a task list's largest, beyond what the data holds); a
        mapped dataset pads as it reads, an eager one re-pads its tensors."""
        if obs_dim < self.obs_dim or action_dim < self.action_dim:
            raise DatasetError(f"cannot pad (obs_dim, action_dim)=({self.obs_dim}, {self.action_dim}) down to "
                               f"({obs_dim}, {action_dim})")
        if not self.mmap and (obs_dim, action_dim) != (self.obs_dim, self.action_dim):
            c = self.chunks[0]
            c.obs = torch.nn.functional.pad(c.obs, (0, obs_dim - self.obs_dim))
            c.action = torch.nn.functional.pad(c.action, (0, action_dim - self.action_dim))
        self.obs_dim, self.action_dim = obs_dim, action_dim

    def task_counts(self) -> dict[int, int]:
        """Episodes per task id."""
        ids, counts = self.task.unique(return_counts=True)
        return {int(i): int(c) for i, c in zip(ids.tolist(), counts.tolist())}

    # --------------------------------------------------------------------------------------------
    def sample(self, batch_size: int, horizon: int, generator: torch.Generator | None = None) -> Batch:
        """Uniform over windows of horizon+1 consecutive slots of one episode, time-major like
        replay.sample: obs [H+1, B, D], action/reward/terminated [H, B, .] float32, task [B] long,
        all on the dataset's device. Indices are drawn on the generator's device (default: the
        data's device when eager, CPU when mapped)."""
        T = self.episode_length
        if T < horizon + 1:
            raise DatasetError(f"episodes of {T} slots cannot hold windows of horizon+1={horizon + 1}")
        dev = generator.device if generator is not None else (torch.device("cpu") if self.mmap else self.device)
        # Equal-length episodes: a uniform episode then a uniform start is uniform over windows.
        ep = torch.randint(self.num_episodes, (batch_size,), device=dev, generator=generator)
        start = torch.randint(T - horizon, (batch_size,), device=dev, generator=generator)
        t = start.unsqueeze(0) + torch.arange(horizon + 1, device=dev).unsqueeze(1)  # [H+1, B]
        obs, action, reward = self._windows(ep, t)
        reward = reward.unsqueeze(-1)
        return Batch(obs=obs, action=action, reward=reward, terminated=torch.zeros_like(reward),
                     task=self.task[ep.to(self.device)])

    def episodes(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Whole episodes idx [n] (global): obs [n, T, D], action [n, T, A], reward [n, T], float32
        padded, action/reward 0 at t=0, on the dataset's device."""
        idx = torch.as_tensor(idx, dtype=torch.long).view(-1)
        t = torch.arange(self.episode_length).unsqueeze(1).expand(-1, idx.numel())  # [T, n]
        obs, action, reward = self._windows(idx, t)
        action = torch.cat([torch.zeros_like(action[:1]), action])  # slot 0 is never read: fill 0
        reward = torch.cat([torch.zeros_like(reward[:1]), reward])
        return obs.transpose(0, 1), action.transpose(0, 1), reward.transpose(0, 1)

    def _windows(self, ep: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """ep [B] global episodes, t [W, B] slots -> obs [W, B, D], action [W-1, B, A] and
        reward [W-1, B] of slots t[1:], float32 padded, on the dataset's device."""
        if not self.mmap:
            c = self.chunks[0]
            ep, t = ep.to(c.obs.device), t.to(c.obs.device)
            return _gather(c, ep, t)
        ep, t = ep.cpu(), t.cpu()
        W, B = t.shape
        obs = torch.zeros(W, B, self.obs_dim)
        action = torch.zeros(W - 1, B, self.action_dim)
        reward = torch.zeros(W - 1, B)
        which = torch.searchsorted(self._starts[1:], ep, right=True)  # chunk of each episode
        for k in which.unique().tolist():
            sel = (which == k).nonzero().squeeze(1)
            o, a, r = _gather(self.chunks[k], ep[sel] - self._starts[k], t[:, sel])
            obs[:, sel, :o.shape[-1]] = o.float()
            action[:, sel, :a.shape[-1]] = a.float()
            reward[:, sel] = r.float()
        return obs.to(self.device), action.to(self.device), reward.to(self.device)


def _gather(chunk: EpisodeChunk, ep: torch.Tensor, t: torch.Tensor):
    """ep [B] chunk-local episodes, t [W, B] -> obs [W, B, D_c]; action [W-1, B, A_c], reward [W-1, B]
    of slots t[1:]. Advanced indexing reads only these slots (of a mapped file: only their pages)."""
    e = ep.unsqueeze(0).expand_as(t)
    return chunk.obs[e, t], chunk.action[e[1:], t[1:]], chunk.reward[e[1:], t[1:]]


def _dims(chunks: list[dict], paths: list[Path], obs_dim: int | None, action_dim: int | None) -> tuple[int, int, int]:
    """(T, D, A): the shared episode length and the padded dims."""
    lengths = {c["obs"].shape[1] for c in chunks}
    if len(lengths) > 1:
        per = ", ".join(f"{p.name}: {c['obs'].shape[1]}" for c, p in zip(chunks, paths))
        raise DatasetError(f"chunks disagree on the episode length T ({per}); all chunks need the same T")
    D = max(c["obs"].shape[2] for c in chunks)
    A = max(c["action"].shape[2] for c in chunks)
    for want, have, what, key in ((obs_dim, D, "obs_dim", "obs"), (action_dim, A, "action_dim", "action")):
        if want is not None and want < have:
            big = next(p for c, p in zip(chunks, paths) if c[key].shape[2] == have)
            raise DatasetError(f"{big}: {what}={have} exceeds the requested {what}={want}")
    return lengths.pop(), max(D, obs_dim or 0), max(A, action_dim or 0)


def _concat_padded(chunks: list[dict], paths: list[Path], T: int, D: int, A: int,
                   device: torch.device) -> EpisodeChunk:
    """One float32 chunk of all episodes, zero-padded to (D, A), action/reward 0 at t=0, each file
    NaN-checked in full as it is copied."""
    n = sum(c["obs"].shape[0] for c in chunks)
    obs, action, reward = torch.zeros(n, T, D), torch.zeros(n, T, A), torch.zeros(n, T)
    lo = 0
    for c, p in zip(chunks, paths):
        hi = lo + c["obs"].shape[0]
        obs[lo:hi, :, :c["obs"].shape[2]] = c["obs"]
        action[lo:hi, 1:, :c["action"].shape[2]] = c["action"][:, 1:]
        reward[lo:hi, 1:] = c["reward"][:, 1:]
        if _has_nan(obs[lo:hi], action[lo:hi], reward[lo:hi]):
            raise DatasetError(f"{p}: NaN in observations, or in actions/rewards after t=0")
        lo = hi
    return EpisodeChunk(obs.to(device), action.to(device), reward.to(device))
