"""Run logging: evaluation CSV in the published curves' format, training CSV, optional wandb.

eval.csv columns: step,reward,seed (+ success for suites that report it), one row per
evaluation, reward the mean episode return over the evaluation episodes; the online trainers add
wall_s (seconds the run has taken when the evaluation ended, from its command's start: start-up,
compilation and earlier evaluations included, summed over resumed commands) and eval_s (how many of
those seconds went to evaluation).

tensorboard=true also writes TensorBoard event files in the run directory: train/<column> for every
train row and eval/<column> for every evaluation, against env steps (`tensorboard --logdir runs`).
"""
from __future__ import annotations

import csv
import math
import os
from pathlib import Path

from ..config import RunSpec
from ..errors import ConfigError, StorageError


class CSVLog:
    """Append-only CSV with a fixed header; `truncate_after(step)` drops rows of a crashed tail."""

    def __init__(self, path: Path, fields: list[str]):
        """A file that exists keeps its own header (a run written by an earlier version resumes in
        its columns); a new one gets `fields`."""
        self.path, self.fields = Path(path), list(fields)
        if not self.path.exists() or self.path.stat().st_size == 0:
            with open(self.path, "w", newline="") as f:
                csv.writer(f).writerow(self.fields)
        else:
            with open(self.path, newline="") as f:
                self.fields = next(csv.reader(f), None) or self.fields

    def write(self, row: dict) -> None:
        try:
            with open(self.path, "a", newline="") as f:
                csv.DictWriter(f, self.fields, extrasaction="ignore").writerow(row)
        except OSError as exc:  # disk full, quota: one error line, the checkpoint is untouched
            raise StorageError.writing(self.path, exc, "log") from None

    def rows(self) -> list[dict]:
        with open(self.path, newline="") as f:
            return list(csv.DictReader(f))

    def truncate_after(self, step: int) -> None:
        """Keep rows with step <= `step` (rows logged after the checkpoint a run resumes from)."""
        keep = [r for r in self.rows() if int(float(r["step"])) <= step]
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, self.fields, extrasaction="ignore")
            w.writeheader()
            w.writerows(keep)
        os.replace(tmp, self.path)


TRAIN_FIELDS = ["step", "episode", "episode_reward", "elapsed_s", "env_steps_per_s", "plan_ms", "update_ms", "env_ms",
                "total_loss", "consistency_loss", "reward_loss", "value_loss", "energy_loss", "pi_loss",
                "q_scale", "energy_mu", "energy_sigma"]


class Logger:
    def __init__(self, cfg: RunSpec, work_dir: Path, with_success: bool = False,
                 eval_fields: list[str] | None = None, train_fields: list[str] | None = None):
        """eval_fields / train_fields replace the online trainers' columns (offline pretraining)."""
        self.work_dir = Path(work_dir)
        self.seed = cfg.seed
        if eval_fields is None:
            eval_fields = ["step", "reward", "seed"] + (["success"] if with_success else []) + ["wall_s", "eval_s"]
        self.eval = CSVLog(self.work_dir / "eval.csv", eval_fields)
        self.train = CSVLog(self.work_dir / "train.csv", train_fields or TRAIN_FIELDS)
        self._wandb = self._tb = None
        self._tb_on, self._tb_purge = bool(cfg.get("tensorboard")), None
        if self._tb_on:
            try:
                import torch.utils.tensorboard  # noqa: F401
            except ImportError:
                raise ConfigError("tensorboard=true but tensorboard is not installed: pip install "
                                  "'mbdpo_fast[tensorboard]' or set tensorboard=false") from None
        if cfg.wandb.mode != "disabled":
            try:
                import wandb
            except ImportError:
                raise ConfigError("wandb.mode is not 'disabled' but wandb is not installed: "
                                   "pip install 'mbdpo_fast[wandb]' or set wandb.mode=disabled") from None
            self._wandb = wandb.init(project=cfg.wandb.project, entity=cfg.wandb.entity, group=cfg.wandb.group,
                                     mode=cfg.wandb.mode, dir=str(self.work_dir), name=f"{cfg.task}-s{cfg.seed}",
                                     config=cfg.to_dict(), resume="allow")

    def truncate_after(self, step: int) -> None:
        self.eval.truncate_after(step)
        self.train.truncate_after(step)
        if step >= 0:  # a resumed run: TensorBoard hides the earlier command's events after `step`
            self._tb_purge = step + 1

    def log_eval(self, step: int, reward: float, success: float | None = None,
                 wall_s: float | None = None, eval_s: float | None = None) -> None:
        row = {"step": step, "reward": f"{reward:.4f}", "seed": self.seed}
        if success is not None:
            row["success"] = f"{success:.4f}"
        for k, v in (("wall_s", wall_s), ("eval_s", eval_s)):
            if v is not None:
                row[k] = f"{v:.2f}"
        self.eval.write(row)
        scalars = {"eval/reward": reward, **({"eval/success": success} if success is not None else {})}
        self._scalars(scalars, step)
        if self._wandb is not None:
            self._wandb.log(scalars, step=step)

    def log_eval_row(self, row: dict) -> None:
        """One evaluation row with the columns given at construction (numbers as they come)."""
        self.eval.write({"seed": self.seed, **{k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in row.items()}})
        self._scalars({f"eval/{k}": v for k, v in row.items() if k != "step"}, row["step"])
        if self._wandb is not None:
            self._wandb.log({f"eval/{k}": v for k, v in row.items() if k != "step"}, step=row["step"])

    def log_train(self, row: dict) -> None:
        self.train.write({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
        self._scalars({f"train/{k}": v for k, v in row.items() if k != "step"}, row["step"])
        if self._wandb is not None:
            self._wandb.log({f"train/{k}": v for k, v in row.items() if k != "step"}, step=row["step"])

    def log_video(self, step: int, path: Path) -> None:
        """An evaluation video already written to `path`: logged to wandb as eval/video (the file
        itself is the record for CSV and TensorBoard users)."""
        if self._wandb is not None:
            import wandb

            self._wandb.log({"eval/video": wandb.Video(str(path), format="mp4")}, step=step)

    def _scalars(self, values: dict, step: int) -> None:
        """TensorBoard: every finite number of a row as a scalar at `step` env steps."""
        if not self._tb_on:
            return
        if self._tb is None:  # opened at the first row, after a resume has set purge_step
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(self.work_dir), purge_step=self._tb_purge, flush_secs=30)
        for k, v in values.items():
            if isinstance(v, (int, float)) and math.isfinite(float(v)):
                self._tb.add_scalar(k, float(v), global_step=int(step))

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()
