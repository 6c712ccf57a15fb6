"""What every training loop shares: the divergence check, the progress bar, and the RNG states of
in-process environments as checkpointable tensors."""
from __future__ import annotations

import math
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


def progress_bar(cfg, initial: int, desc: str, unit: str, enabled: bool = True) -> tqdm:
    return tqdm(total=cfg.steps, initial=initial, disable=not (cfg.progress_bar and enabled), dynamic_ncols=True,
                desc=desc, unit=unit)


def np_rng_to_tensors(rs: np.random.RandomState) -> dict:
    name, keys, pos, has_gauss, gauss = rs.get_state()
    return {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
            "gauss": float(gauss)}


def np_rng_from_tensors(rs: np.random.RandomState, s: dict) -> None:
    rs.set_state(("MT19937", s["keys"].numpy().astype(np.uint32), s["pos"], s["has_gauss"], s["gauss"]))
