"""The one evaluator: episodes of the planner without action noise, on a batched environment,
for every trainer and for `python -m mbdpo_fast.evaluate`; and the per-task evaluation of a
(multi-task) agent with the paper's normalised score.

Per task: mean return and success over N episodes, and the normalised score (DMControl return /
10, MetaWorld and MyoSuite success x 100); `summarize` averages the scores over the evaluated
tasks (and per suite).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from ..config import RunSpec
from ..envs import make_env
from ..task_registry import normalized_score, suite_of


@torch.no_grad()
def run_episodes(agent, env, episodes: int, seed: int | None = None, task: int | None = None,
                 progress=None) -> dict:
    """`episodes` episodes on a batched env of E copies (episodes a multiple of E): the env is reset
    (re-seeded with `seed` when given) and each copy runs episodes / E episodes in a row, continuing
    from its own auto-reset; so E = 1 runs them one after another, E = episodes all at once.
    task: the task's index for a multi-task agent (the env is then padded, envs/padded.py).
    Returns {"reward": mean return, "returns": [...], "successes": [...], "success": mean or None};
    returns in the order the episodes ended (copy order within a step).
    progress: called as progress(vector_steps_done) after every step (a progress display)."""
    E = env.num_envs
    if episodes < 1 or episodes % E:
        raise ValueError(f"episodes={episodes} must be a positive multiple of the env's {E} copies")
    per_env, dev = episodes // E, agent.device
    obs = env.reset(seed=seed).to(dev)
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


def evaluate_task(agent, cfg: RunSpec, index: int, episodes: int, seed: int) -> TaskResult:
    """`episodes` episodes, one after another, of cfg.tasks[index] (single-task configs: index 0,
    cfg.task) on its CPU environment (padded to the model's dims when multi-task)."""
    task = cfg.tasks[index] if cfg.multitask else cfg.task
    env = make_env(cfg, 1, seed, backend="dmc", task=task)
    try:
        res = run_episodes(agent, env, episodes, seed=seed, task=index if cfg.multitask else None)
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
