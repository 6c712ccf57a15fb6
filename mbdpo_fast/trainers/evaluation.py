"""The one evaluator: episodes of the planner without action noise, on a batched environment,
for every trainer and for `python -m mbdpo_fast.evaluate`; and the per-task evaluation of a
(multi-task) agent with the paper's normalised score.

Per task: mean return and success over N episodes, and the normalised score (DMControl return /
10, MetaWorld and MyoSuite success x 100); `summarize` averages the scores over the evaluated
tasks (and per suite).
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..config import RunSpec
from ..envs import make_env
from ..errors import StorageError
from ..task_registry import normalized_score, suite_of


# Videos: square frames of this many pixels, played at this many agent steps per second.
VIDEO_SIZE = 256
VIDEO_FPS = 30


def write_video(frames: list[np.ndarray], path: Path, fps: int = VIDEO_FPS) -> Path:
    """frames: uint8 [H, W, 3] each -> an H.264 MP4 at `path` (imageio with its bundled ffmpeg),
    written under a temporary name and renamed, so a reader never sees half a file."""
    import imageio.v2 as imageio

    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        imageio.mimwrite(tmp, frames, fps=fps, codec="libx264", quality=7, macro_block_size=16,
                         ffmpeg_log_level="error")
        os.replace(tmp, path)
    except OSError as exc:
        raise StorageError.writing(path, exc, "video") from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


class EpisodeRecorder:
    """Frames of the episodes that chosen copies of a batched env play, each written as an MP4 when
    it ends. The env renders copy i's current state with `render_rgb(indices, size)` -> a list of
    uint8 [size, size, 3] frames. One frame per agent step: the state the agent acts on (an episode
    of L steps gives L frames; the state after its last step is not shown, since the env has
    already reset that copy).

    copies: env copy indices to record; episodes: episodes recorded per copy (None: all);
    path_of(copy, k): the file of copy's k-th episode (k from 0)."""

    def __init__(self, env, copies: list[int], path_of: Callable[[int, int], Path], episodes: int | None = 1,
                 size: int = VIDEO_SIZE):
        self.env, self.copies, self.path_of = env, list(copies), path_of
        self.episodes, self.size = episodes, int(size)
        self.frames: dict[int, list] = {i: [] for i in self.copies}
        self.done: dict[int, int] = {i: 0 for i in self.copies}
        self.paths: list[Path] = []

    def _active(self) -> list[int]:
        return [i for i in self.copies if self.episodes is None or self.done[i] < self.episodes]

    def _capture(self) -> None:
        active = self._active()
        if active:
            for i, frame in zip(active, self.env.render_rgb(active, self.size)):
                self.frames[i].append(np.asarray(frame, dtype=np.uint8))

    def reset(self) -> None:
        """After env.reset(): every recorded copy starts an episode."""
        self.frames = {i: [] for i in self.copies}
        self._capture()

    def step(self, done: list[bool]) -> None:
        """After env.step(): copies whose episode ended (done[i]) write theirs; then every copy
        still recording captures its current state (a new episode's first where one ended)."""
        for i in self._active():
            if done[i]:
                self.paths.append(write_video(self.frames[i], self.path_of(i, self.done[i])))
                self.frames[i] = []
                self.done[i] += 1
        self._capture()


@torch.no_grad()
def run_episodes(agent, env, episodes: int, seed: int | None = None, task: int | None = None,
                 progress=None, recorder: EpisodeRecorder | None = None) -> dict:
    """`episodes` episodes on a batched env of E copies (episodes a multiple of E): the env is reset
    (re-seeded with `seed` when given) and each copy runs episodes / E episodes in a row, continuing
    from its own auto-reset; so E = 1 runs them one after another, E = episodes all at once.
    task: the task's index for a multi-task agent (the env is then padded, envs/padded.py).
    Returns {"reward": mean return, "returns": [...], "successes": [...], "success": mean or None};
    returns in the order the episodes ended (copy order within a step).
    progress: called as progress(vector_steps_done) after every step (a progress display);
    recorder: an EpisodeRecorder of this env (videos of chosen copies' episodes)."""
    E = env.num_envs
    if episodes < 1 or episodes % E:
        raise ValueError(f"episodes={episodes} must be a positive multiple of the env's {E} copies")
    per_env, dev = episodes // E, agent.device
    obs = env.reset(seed=seed).to(dev)
    if recorder is not None:
        recorder.reset()
    plan = agent.planner.initial_plan(E)
    first = torch.ones(E, dtype=torch.bool, device=dev)
    task_t = None if task is None else torch.full((E,), int(task), dtype=torch.long, device=dev)
    finished = [0] * E
    returns, successes = [], []
    steps = 0
    while min(finished) < per_env:
        action, plan = agent.act(obs, plan, first=first, task=task_t, eval_mode=True)
        obs, _, _, _, info = env.step(action.to(getattr(env, "device", dev)))
        obs, first = obs.to(dev), info["done"].to(dev)
        steps += 1
        if recorder is not None:
            recorder.step(first.tolist())
        if progress is not None:
            progress(steps)
        if bool(first.any()):
            ended = first.nonzero().flatten().tolist()
            ret = info["episode_return"].tolist()
            succ = info["success"].tolist() if "success" in info else None
            for i in ended:
                if finished[i] < per_env:
                    finished[i] += 1
                    returns.append(float(ret[i]))
                    if succ is not None:
                        successes.append(float(succ[i]))
    return {"reward": float(np.mean(returns)), "returns": returns, "successes": successes,
            "success": float(np.mean(successes)) if successes else None}


# eval.csv of a multi-task run (mean normalised score, per suite) and its per-task eval_tasks.csv
EVAL_FIELDS = ["step", "score", "score_dmcontrol", "score_metaworld", "score_myosuite", "seed"]
TASK_FIELDS = ["step", "task", "index", "mean_return", "success", "score"]


@dataclass
class TaskResult:
    task: str
    index: int
    returns: list[float]
    successes: list[float]
    mean_return: float
    success: float | None
    score: float

    def row(self) -> dict:
        d = asdict(self)
        d.pop("returns"), d.pop("successes")
        return d

    @classmethod
    def of(cls, task: str, index: int, res: dict) -> "TaskResult":
        """From run_episodes' result on `task` (its position `index` in the model's task list)."""
        return cls(task, index, res["returns"], res["successes"], float(np.mean(res["returns"])), res["success"],
                   normalized_score(task, res["reward"], res["success"]))


def evaluate_task(agent, cfg: RunSpec, index: int, episodes: int, seed: int,
                  video_of: Callable[[int], Path] | None = None) -> TaskResult:
    """`episodes` episodes, one after another, of cfg.tasks[index] (single-task configs: index 0,
    cfg.task) on its CPU environment (padded to the model's dims when multi-task).
    video_of(k): with it, every episode is also written as an MP4 there (k from 0)."""
    task = cfg.tasks[index] if cfg.multitask else cfg.task
    env = make_env(cfg, 1, seed, backend="dmc", task=task)
    try:
        recorder = None if video_of is None else EpisodeRecorder(env, [0], lambda i, k: video_of(k), episodes=None)
        res = run_episodes(agent, env, episodes, seed=seed, task=index if cfg.multitask else None, recorder=recorder)
    finally:
        env.close()
    return TaskResult.of(task, index, res)


def evaluate_tasks(agent, cfg: RunSpec, indices: list[int], episodes: int, seed: int) -> list[TaskResult]:
    """Evaluate each task of `indices` (positions in cfg.tasks) for `episodes` episodes."""
    return [evaluate_task(agent, cfg, i, episodes, seed + 7919 * i) for i in indices]


def summarize(results: list[TaskResult]) -> dict[str, float]:
    """{"score": mean normalised score, "score_dmcontrol"/"score_metaworld"/"score_myosuite": per
    suite where present}."""
    out = {"score": float(np.mean([r.score for r in results]))}
    for suite in ("dmcontrol", "metaworld", "myosuite"):
        s = [r.score for r in results if suite_of(r.task) == suite]
        if s:
            out[f"score_{suite}"] = float(np.mean(s))
    return out


def log_task_results(logger, task_log, step: int, results: list[TaskResult]) -> dict[str, float]:
    """One evaluation of several tasks: a row per task in task_log (eval_tasks.csv, TASK_FIELDS),
    the summary in the logger's eval.csv (EVAL_FIELDS). Returns the summary."""
    summary = summarize(results)
    for r in results:
        task_log.write({"step": step, **{k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.row().items()}})
    logger.log_eval_row({"step": step, **summary})
    return summary
