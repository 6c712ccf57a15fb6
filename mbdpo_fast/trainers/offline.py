"""Offline (multi-task) pretraining on a dataset of recorded episodes (TD-MPC2's mt30/mt80 chunks).

`steps` counts updates. Every update samples `batch_size` windows (split evenly across DDP
processes when launched by torchrun) and runs the same update as online training (docs/algorithm.md
section 5). Every `eval_freq` updates (and at the end) each task is evaluated for
`eval_episodes` episodes in its environment (tasks split across processes); eval.csv gets the
mean normalised score, eval_tasks.csv the per-task rows. Checkpoints (model, optimisers,
statistics, RNG and sampler states; no replay: the dataset is the data) every `checkpoint_freq`
updates, at the time limit and at the end, written atomically by rank 0; resume=true continues.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from ..config import RunSpec
from ..agent import MBDPO
from ..batch import Batch
from ..data.checkpoint import CHECKPOINT_NAME, load_run, save_run
from ..errors import ConfigError
from .common import check_finite, progress_bar, raise_if_diverged
from .evaluation import EVAL_FIELDS, TASK_FIELDS, evaluate_tasks, log_task_results
from .logger import CSVLog, Logger
from .timing import RegionTimer

TRAIN_FIELDS = ["step", "elapsed_s", "updates_per_s", "update_ms", "total_loss", "consistency_loss", "reward_loss", "value_loss",
                "energy_loss", "pi_loss", "pi_entropy", "grad_norm", "q_scale", "energy_mu", "energy_sigma"]


class OfflineTrainer:
    def __init__(self, cfg: RunSpec, dataset, work_dir: str | Path, dist_ctx=None):
        """cfg: the run spec (config.resolve_tasks for multi-task); dataset: data.chunks.OfflineDataset whose
        task ids index cfg.tasks; dist_ctx: distributed.DistContext under torchrun, else None."""
        self.cfg, self.dataset, self.ctx = cfg, dataset, dist_ctx
        self.work_dir = Path(work_dir)
        self.rank, self.world = (dist_ctx.rank, dist_ctx.world_size) if dist_ctx else (0, 1)
        if cfg.batch_size % self.world:
            raise ConfigError(f"batch_size={cfg.batch_size} must divide evenly over {self.world} processes")
        self.local_batch = cfg.batch_size // self.world
        self.agent = MBDPO(cfg)
        self.device = self.agent.device
        self.generator = torch.Generator(device=dataset.device).manual_seed(cfg.seed * 1_000_003 + self.rank)
        self.timer = RegionTimer(self.device)
        self.step, self.elapsed = 0, 0.0
        self.last_eval: int | None = None
        self.main = self.rank == 0
        if self.main:
            self.work_dir.mkdir(parents=True, exist_ok=True)
            self.logger = Logger(cfg, self.work_dir, eval_fields=EVAL_FIELDS, train_fields=TRAIN_FIELDS)
            self.task_log = CSVLog(self.work_dir / "eval_tasks.csv", TASK_FIELDS)

    @property
    def checkpoint_path(self) -> Path:
        return self.work_dir / CHECKPOINT_NAME

    def save(self) -> Path | None:
        if not self.main:
            return None
        return save_run(self.work_dir, self.cfg, self.agent, None, {
            "step": self.step, "elapsed": self.elapsed, "last_eval": -1 if self.last_eval is None else self.last_eval,
            "sampler": self.generator.get_state()}, self.step)

    def load(self, path: str | Path) -> None:
        """Restore a checkpoint (every rank reads it; call before `distribute`)."""
        tr = load_run(path, self.cfg, self.agent, None)
        self.step, self.elapsed = int(tr["step"]), float(tr["elapsed"])
        self.last_eval = None if int(tr["last_eval"]) < 0 else int(tr["last_eval"])
        if self.world == 1:
            self.generator.set_state(tr["sampler"])
        else:  # a fresh, distinct stream per rank (exact resume is a single-process property)
            self.generator.manual_seed(self.cfg.seed * 1_000_003 + self.rank + 7 * self.step)
            torch.manual_seed(self.cfg.seed + 1000 * self.rank + self.step)
        if self.main:
            self.logger.truncate_after(self.step)
            self.task_log.truncate_after(self.step)

    def distribute(self) -> None:
        """Wrap the update in DDP (torchrun); ranks draw different update noise from here on."""
        if self.ctx is not None:
            self.agent.enable_ddp(self.ctx)
            if self.step == 0:
                torch.manual_seed(self.cfg.seed + 1000 * self.rank)

    # ----------------------------------------------------------------------------------------
    def sample(self) -> Batch:
        b = self.dataset.sample(self.local_batch, self.cfg.horizon, generator=self.generator)
        dev = self.device
        to = lambda x: x.to(dev, non_blocking=True)
        return Batch(to(b.obs), to(b.action), to(b.reward), to(b.terminated),
                     to(b.task) if self.cfg.multitask else None)

    def evaluate(self) -> dict | None:
        """Every rank evaluates its share of the tasks; rank 0 gathers and logs. Returns the summary
        on rank 0."""
        cfg = self.cfg
        self.last_eval = self.step
        if cfg.eval_episodes == 0:
            return None
        n = len(cfg.tasks) if cfg.multitask else 1
        mine = list(range(self.rank, n, self.world))
        results = evaluate_tasks(self.agent, cfg, mine, cfg.eval_episodes, seed=cfg.seed * 100_003 + self.step)
        if self.world > 1:
            import torch.distributed as dist

            gathered: list = [None] * self.world
            dist.all_gather_object(gathered, results)
            results = sorted((r for part in gathered for r in part), key=lambda r: r.index)
        if not self.main:
            return None
        return log_task_results(self.logger, self.task_log, self.step, results)

    def _stop_now(self, stop) -> bool:
        """Whether a stop was requested (StopSignals) in this process or, under DDP, in any rank:
        every rank leaves at the same update, or the others would wait in the next all-reduce. Under
        DDP the ranks agree at train-row updates only (every log_every), where _log syncs anyway,
        so that the check adds no host synchronisation to the other updates."""
        asked = stop is not None and stop.requested
        if self.world > 1:
            if self.step % self.cfg.log_every:
                return False
            import torch.distributed as dist

            flag = torch.tensor([float(asked)], device=self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            asked = bool(flag.item())
        return asked

    def train(self, stop=None) -> dict:
        """Run until cfg.steps updates, the time limit or a signal (stop: trainers.common.StopSignals;
        the checkpoint is then written at the update where it arrived). Returns a summary dict."""
        cfg = self.cfg
        start_wall = time.perf_counter() - self.elapsed
        wall_at_start = time.perf_counter()
        window = (self.step, time.perf_counter())
        stop_reason, metrics = "steps", {}
        last_save = time.perf_counter()
        pbar = progress_bar(cfg, self.step, f"pretrain {cfg.task} s{cfg.seed}", "update", enabled=self.main)
        try:
            while self.step < cfg.steps:
                if self.step % cfg.eval_freq == 0 and self.last_eval != self.step:
                    summary = self.evaluate()
                    if summary:
                        pbar.set_postfix(score=f"{summary['score']:.1f}", refresh=False)
                with self.timer.region("update"):
                    batch = self.sample()
                    try:
                        metrics = self.agent.update(batch)
                    except (RuntimeError, IndexError) as exc:
                        raise_if_diverged(self.agent.model, batch, self.step, self.checkpoint_path, exc)
                        raise
                self.step += 1
                pbar.update(1)
                self.elapsed = time.perf_counter() - start_wall
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    window = self._log(metrics, window)
                if self.step % cfg.checkpoint_freq == 0 or (
                        cfg.checkpoint_minutes > 0 and time.perf_counter() - last_save >= 60 * cfg.checkpoint_minutes):
                    self.save()
                    last_save = time.perf_counter()
                if cfg.time_limit > 0 and time.perf_counter() - wall_at_start >= cfg.time_limit:
                    stop_reason = "time_limit"
                    break
                if self._stop_now(stop):
                    stop_reason = stop.name if stop is not None and stop.requested else "a signal to another rank"
                    break
            if self.last_eval != self.step and stop_reason in ("steps", "time_limit"):
                self.evaluate()
            self.save()
        finally:
            pbar.close()
            if self.main:
                self.logger.close()
        return {"step": self.step, "elapsed_s": self.elapsed, "stop": stop_reason,
                "checkpoint": str(self.checkpoint_path)}

    def _log(self, metrics: dict, window: tuple[int, float]) -> tuple[int, float]:
        """Fetch the latest update's metrics (a host sync), stop on NaN/inf, log a train row."""
        values = {k: float(v) for k, v in metrics.items()}
        if self.world > 1:  # every rank stops together, or the others would wait in the next all-reduce
            import math

            import torch.distributed as dist

            flag = torch.tensor([float(not all(math.isfinite(v) for v in values.values()))], device=self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            if flag.item() and all(math.isfinite(v) for v in values.values()):
                values["loss_on_another_rank"] = float("nan")
        check_finite(values, self.step, self.checkpoint_path)
        now = time.perf_counter()
        update_ms = self.timer.mean_ms().get("update", float("nan"))  # every rank: clears its events
        if self.main:
            rate = (self.step - window[0]) / max(now - window[1], 1e-9)
            self.logger.log_train({"step": self.step, "elapsed_s": float(self.elapsed), "updates_per_s": float(rate),
                                   "update_ms": update_ms,
                                   **{k: v for k, v in values.items() if k in TRAIN_FIELDS}})
        return self.step, now
