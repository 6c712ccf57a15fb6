"""What every training loop shares: the divergence check, the progress bar (and an evaluation's
progress shown in it), and the RNG states of in-process environments as checkpointable tensors."""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..errors import TrainingDivergedError


def check_finite(metrics: dict[str, float], step: int, checkpoint_path: Path) -> None:
    """Raise TrainingDivergedError naming the non-finite metrics and the state of the checkpoint."""
    bad = sorted(k for k, v in metrics.items() if not math.isfinite(v))
    if bad:
        last = (f"the last checkpoint ({checkpoint_path}) is untouched" if checkpoint_path.exists()
                else "no checkpoint was written yet")
        raise TrainingDivergedError(f"non-finite {', '.join(bad)} at step {step}: training diverged and stopped; {last}")


@torch.no_grad()
def _nonfinite_parts(model, batch) -> list[str]:
    """The modules whose parameters, or whose outputs on the batch's first step, are NaN/inf."""
    bad = {name.split(".")[0] for name, p in model.named_parameters() if not torch.isfinite(p).all()}
    z = model.encode(batch.obs[0], batch.task)
    outputs = {"encoder": z, "dynamics": model.next(z, batch.action[0], batch.task),
               "reward_head": model.reward(z, batch.action[0], batch.task),
               "qs": model.Q(z, batch.action[0], batch.task, mode="all")}
    bad |= {name for name, out in outputs.items() if not torch.isfinite(out).all()}
    return sorted(bad)


def raise_if_diverged(model: torch.nn.Module, batch, step: int, checkpoint_path: Path, exc: Exception) -> None:
    """After an update on `batch` raised `exc`: TrainingDivergedError if the model's parameters or
    its outputs on the batch are NaN/inf (an update on non-finite values fails inside the two-hot
    encoding of its targets before any loss is logged); otherwise return, and the caller re-raises
    `exc` (a bug, with its traceback)."""
    bad = _nonfinite_parts(model, batch)
    if bad:
        last = (f"the last checkpoint ({checkpoint_path}) is untouched" if checkpoint_path.exists()
                else "no checkpoint was written yet")
        raise TrainingDivergedError(f"non-finite parameters or outputs in {', '.join(bad)} at step {step} (the update "
                                    f"failed: {type(exc).__name__}): training diverged and stopped; {last}; "
                                    f"lower lr or check the task's rewards") from None


def progress_bar(cfg, initial: int, desc: str, unit: str, enabled: bool = True) -> tqdm:
    return tqdm(total=cfg.steps, initial=initial, disable=not (cfg.progress_bar and enabled), dynamic_ncols=True,
                desc=desc, unit=unit)


class EvalProgress:
    """A progress display for one evaluation: `stage(text)` is told the steps done of the expected
    total (episodes x episode length per env copy), the rate and the time left, at most once a second."""

    def __init__(self, stage, label: str, total: int):
        self.stage, self.label, self.total = stage, label, max(int(total), 1)
        self.t0 = self.shown = 0.0

    def __call__(self, done: int) -> None:
        now = time.perf_counter()
        if done == 1:
            self.t0 = now  # the rate leaves out the first step (it may compile or capture)
        if now - self.shown < 1.0 and done < self.total:
            return
        self.shown = now
        rate = (done - 1) / (now - self.t0) if done > 1 and now > self.t0 else 0.0
        left = f", ~{max(self.total - done, 0) / rate:.0f} s left" if rate > 0 else ""
        self.stage(f"{self.label}: {min(done, self.total)}/{self.total} steps, {rate:.1f} steps/s{left}")


def np_rng_to_tensors(rs: np.random.RandomState) -> dict:
    name, keys, pos, has_gauss, gauss = rs.get_state()
    return {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
            "gauss": float(gauss)}


def np_rng_from_tensors(rs: np.random.RandomState, s: dict) -> None:
    rs.set_state(("MT19937", s["keys"].numpy().astype(np.uint32), s["pos"], s["has_gauss"], s["gauss"]))
