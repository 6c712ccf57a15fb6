"""What every training loop shares: the divergence check, the progress bar (and an evaluation's
progress shown in it), stopping on a signal, and the RNG states of in-process environments as
checkpointable tensors."""
from __future__ import annotations

import math
import os
import signal
import threading
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


# Exit code of a run stopped by a signal after writing its checkpoint (sysexits' EX_TEMPFAIL: the
# work is unfinished, and running the resume command continues it).
EXIT_STOPPED = 75


class StopSignals:
    """SIGTERM, SIGINT, SIGUSR1 (SLURM's warning before a preemption or the time limit) and, under
    submitit, its preemption signal (SUBMITIT_PREEMPT_SIGNAL, default USR2) become a request that
    the training loop polls: it finishes the step it is in, writes a checkpoint and stops. A second
    signal ends the process at once (the signal's default action).

        with StopSignals() as stop:
            ... if stop.requested: save and leave the loop ...
        stop.pass_on()   # after the checkpoint: the handler that was there before, if any (submitit
                         # requeues the job from it), then it is up to the caller to exit

    Installed only in the main thread (Python delivers signals there); elsewhere it never fires."""

    def __init__(self):
        names = ["SIGTERM", "SIGINT", "SIGUSR1"]
        if os.environ.get("SUBMITIT_EXECUTOR"):
            names.append("SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2").upper().removeprefix("SIG"))
        self.signals = [getattr(signal, n) for n in dict.fromkeys(names) if hasattr(signal, n)]
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:  # the second signal: no more waiting
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.signum = signum

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for s in self.signals:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, h in self._previous.items():
            signal.signal(s, h)
        self._previous = {}

    def pass_on(self) -> None:
        """Call, with the checkpoint written, the handler the received signal had before (a
        launcher's: submitit's requeues the job and exits). Python's defaults are not called."""
        prev = self._previous.get(self.signum)
        self.__exit__()
        if callable(prev) and prev is not signal.default_int_handler:
            prev(self.signum, None)


class EvaluationStopped(Exception):
    """Raised from an evaluation's progress callback when a stop was requested mid-evaluation: the
    evaluation is dropped (no row) and runs again when the run resumes."""


def np_rng_to_tensors(rs: np.random.RandomState) -> dict:
    name, keys, pos, has_gauss, gauss = rs.get_state()
    return {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
            "gauss": float(gauss)}


def np_rng_from_tensors(rs: np.random.RandomState, s: dict) -> None:
    rs.set_state(("MT19937", s["keys"].numpy().astype(np.uint32), s["pos"], s["has_gauss"], s["gauss"]))
