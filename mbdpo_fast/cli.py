"""Shared entry-point plumbing: one clear error line instead of a traceback for user mistakes."""
from __future__ import annotations

import sys
from contextlib import contextmanager

from .checkpoint import CheckpointError
from .config import ConfigError
from .data.chunks import DatasetError
from .replay import ReplayCapacityError
from .trainers.online import TrainingDivergedError

USER_ERRORS = (ConfigError, CheckpointError, ReplayCapacityError, TrainingDivergedError, DatasetError)


@contextmanager
def user_errors():
    """Turn configuration/checkpoint/dataset/capacity/divergence errors into `error: ...` on stderr and exit code 2."""
    try:
        yield
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
