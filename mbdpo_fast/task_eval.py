"""Evaluation of a (multi-task) agent over a list of tasks, with the paper's normalised score.

Per task: mean return and success over N episodes without action noise, and the normalised score
(DMControl return / 10, MetaWorld and MyoSuite success x 100); the summary averages the scores
over the evaluated tasks (and per suite).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from omegaconf import DictConfig

from .envs import make_env
from .envs.padded import PaddedTaskEnv
from .task_sets import normalized_score
from .trainers.online import evaluate_agent


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


def make_task_env(cfg: DictConfig, index: int, seed: int):
    """The environment of cfg.tasks[index] (single-task configs: index 0, cfg.task), padded to the
    model's dims when multi-task."""
    task = cfg.tasks[index] if cfg.multitask else cfg.task
    env = make_env(task, seed, int(cfg.action_repeats[index]), int(cfg.episode_lengths[index]))
    return PaddedTaskEnv(env, cfg.obs_dim, cfg.action_dim) if cfg.multitask else env


def evaluate_task(agent, cfg: DictConfig, index: int, episodes: int, seed: int) -> TaskResult:
    env = make_task_env(cfg, index, seed)
    try:
        res = evaluate_agent(agent, env, episodes, seed=seed, task=index if cfg.multitask else None)
    finally:
        if hasattr(env, "close"):
            env.close()
    task = cfg.tasks[index] if cfg.multitask else cfg.task
    succ = res["successes"]
    success = float(np.mean(succ)) if succ else None
    return TaskResult(task, index, [float(r) for r in res["returns"]], [float(s) for s in succ],
                      float(np.mean(res["returns"])), success, normalized_score(task, res["reward"], success))


def evaluate_tasks(agent, cfg: DictConfig, indices: list[int], episodes: int, seed: int) -> list[TaskResult]:
    """Evaluate each task of `indices` (positions in cfg.tasks) for `episodes` episodes."""
    return [evaluate_task(agent, cfg, i, episodes, seed + 7919 * i) for i in indices]


def summarize(results: list[TaskResult]) -> dict[str, float]:
    """{"score": mean normalised score, "score_dmcontrol"/"score_metaworld"/"score_myosuite": per
    suite where present}."""
    from .envs.suites import suite_of

    out = {"score": float(np.mean([r.score for r in results]))}
    for suite in ("dmcontrol", "metaworld", "myosuite"):
        s = [r.score for r in results if suite_of(r.task) == suite]
        if s:
            out[f"score_{suite}"] = float(np.mean(s))
    return out
