"""python -m mbdpo_fast.evaluate checkpoint=PATH [tasks=[...]] [episodes=10] [device=auto] [seed=0] [output=FILE]
                                 [save_video=true]

Evaluates a checkpoint's policy (planner in eval mode, no action noise) for N episodes on each
task of `tasks` (default: every task the checkpoint was trained on; set names mt30/mt80 expand;
a multi-task checkpoint evaluates only tasks it knows, fine-tune for others). Writes one CSV row
per episode (task,index,step,episode,return,success) and a summary CSV (per task: mean/std return,
success, the paper's normalised score) and prints the table and the mean normalised score.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import hydra
import numpy as np
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from .agent import MBDPO, seed_everything
from .data.checkpoint import load_checkpoint
from .errors import CheckpointError, ConfigError
from .cli import choose_renderer, precheck, user_errors
from .config import RunSpec, check_video_writer, resolve_device, saved_spec
from .trainers.evaluation import evaluate_task, summarize
from .task_registry import expand


@dataclass
class EvaluateConfig:
    checkpoint: str = MISSING
    tasks: list[str] = field(default_factory=list)  # [] = the checkpoint's own task(s)
    episodes: int = 10
    device: str = "auto"
    seed: int = 0
    output: str | None = None  # per-episode CSV; default eval_<task>_<step>.csv next to the checkpoint
    save_video: bool = False  # one MP4 per episode: videos/<task>_<step>_ep<k>.mp4 beside the CSV


ConfigStore.instance().store(name="evaluate_schema", node=EvaluateConfig)


def load_agent(path: str | Path, device: str = "auto") -> tuple[MBDPO, RunSpec, int]:
    """Rebuild the agent a checkpoint was trained with; returns (agent, its run spec, its step)."""
    payload = load_checkpoint(path)
    # evaluation acts episode by episode: nothing for cudagraphs/compile to amortise
    cfg = saved_spec(payload["config"], device=str(resolve_device(device)), cudagraphs=False, compile=False)
    agent = MBDPO(cfg)
    try:
        agent.load_state_dict(payload["agent"])
    except (RuntimeError, KeyError) as exc:
        raise CheckpointError(f"{path}: agent state does not load ({str(exc).splitlines()[0][:300]})") from None
    return agent, cfg, int(payload["trainer"]["step"])


def task_indices(cfg: RunSpec, requested: list[str]) -> list[int]:
    """Positions in the checkpoint's task list of the requested tasks (all of them by default)."""
    known = list(cfg.tasks) if cfg.multitask else [cfg.task]
    names = expand(requested) if requested else known
    unknown = [t for t in names if t not in known]
    if unknown:
        raise ConfigError(f"the checkpoint was not trained on {unknown} (it knows {len(known)} tasks: "
                          f"{', '.join(known[:8])}{', ...' if len(known) > 8 else ''}); fine-tune it on a new task "
                          f"with python -m mbdpo_fast.finetune")
    return [known.index(t) for t in names]


def check_command(ecfg: DictConfig) -> None:
    if OmegaConf.is_missing(ecfg, "checkpoint") or not ecfg.checkpoint:
        raise ConfigError("checkpoint is not set: pass checkpoint=PATH (a run's checkpoint.pt)")
    if ecfg.episodes < 1:
        raise ConfigError(f"episodes={ecfg.episodes} must be >= 1")
    load_checkpoint(ecfg.checkpoint)
    if ecfg.get("save_video"):
        check_video_writer()
        choose_renderer(ecfg)  # a RenderingError (one line) now rather than after loading the agent


def run(ecfg: DictConfig) -> dict:
    check_command(ecfg)
    seed_everything(ecfg.seed)
    agent, cfg, step = load_agent(ecfg.checkpoint, ecfg.device)
    indices = task_indices(cfg, list(ecfg.tasks))
    label = (cfg.tasks[indices[0]] if cfg.multitask else cfg.task) if len(indices) == 1 else f"{len(indices)}tasks"
    out = Path(ecfg.output) if ecfg.output else Path(ecfg.checkpoint).parent / f"eval_{label}_{step}.csv"
    summary_path = out.with_name(out.stem + "_summary.csv")
    results = []
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["task", "index", "step", "episode", "return", "success"])
        for i in indices:
            task = cfg.tasks[i] if cfg.multitask else cfg.task
            video_of = (lambda k, task=task: out.parent / "videos" / f"{task}_{step}_ep{k}.mp4") if ecfg.save_video else None
            r = evaluate_task(agent, cfg, i, ecfg.episodes, seed=ecfg.seed + 7919 * i, video_of=video_of)
            results.append(r)
            for k, ret in enumerate(r.returns):
                w.writerow([r.task, i, step, k, f"{ret:.4f}", f"{r.successes[k]:.0f}" if r.successes else ""])
            f.flush()
            print(f"{r.task:32s} return {r.mean_return:8.1f} +- {np.std(r.returns):6.1f}"
                  f"{'' if r.success is None else f'  success {r.success:.2f}'}  score {r.score:6.1f}")
    with open(summary_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["task", "index", "step", "episodes", "mean_return", "std_return", "success", "score"])
        for r in results:
            w.writerow([r.task, r.index, step, len(r.returns), f"{r.mean_return:.4f}", f"{np.std(r.returns):.4f}",
                        "" if r.success is None else f"{r.success:.4f}", f"{r.score:.4f}"])
    totals = summarize(results)
    print(f"step {step}: mean normalised score {totals['score']:.2f} over {len(results)} tasks "
          f"({ecfg.episodes} episodes each) -> {out}, {summary_path}")
    if ecfg.save_video:
        print(f"videos: {out.parent / 'videos'}")
    return {"step": step, "results": results, **totals, "csv": str(out), "summary_csv": str(summary_path)}


@hydra.main(version_base=None, config_path="cfgs", config_name="evaluate")
def _main(ecfg: DictConfig) -> None:
    with user_errors():
        run(ecfg)


def main() -> None:
    precheck("evaluate", EvaluateConfig, check_command)
    _main()


if __name__ == "__main__":
    main()
