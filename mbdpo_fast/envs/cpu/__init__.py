"""The CPU environment backend: dm_control in this process (and in gymnasium worker processes),
MetaWorld, MyoSuite and ManiSkill in worker processes under their own interpreters. Imports nothing heavy
(suite workers import parts of it)."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

SUITE_VENV = {"metaworld": ("MBDPO_METAWORLD_PYTHON", ".venv-metaworld", "make venv-metaworld"),
              "myosuite": ("MBDPO_MYOSUITE_PYTHON", ".venv-myosuite", "make venv-myosuite"),
              "maniskill": ("MBDPO_MANISKILL_PYTHON", ".venv-maniskill", "make venv-maniskill"),
              "maniskill2": ("MBDPO_MANISKILL2_PYTHON", ".venv-maniskill2", "make venv-maniskill2")}


def suite_python(suite: str) -> str:
    """The interpreter that runs a suite's workers (ConfigError naming the fix if there is none)."""
    from ...errors import ConfigError

    var, venv, make = SUITE_VENV[suite]
    if os.environ.get(var):
        path = Path(os.environ[var])
        if not path.exists():
            raise ConfigError(f"{var}={path} does not exist")
        return str(path)
    for root in (Path.cwd(), Path(__file__).resolve().parents[3]):
        candidate = root / venv / "bin" / "python"
        if candidate.exists():
            return str(candidate)
    raise ConfigError(f"{suite} tasks run in their own Python environment, which is not installed: "
                      f"run `{make}` (creates {venv}) or set {var} to an interpreter that has {suite}")


# Worker processes step while the trainer waits for them (never at the same time as its torch
# threads), so the trainer keeps every core; each worker itself is one thread: these variables are
# read by OpenMP/BLAS when a worker's interpreter loads them.
SINGLE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@contextlib.contextmanager
def single_threaded_children():
    """os.environ with SINGLE_THREAD_ENV while worker processes start (gymnasium's forkserver takes
    the environment it starts with), restored afterwards for this process."""
    saved = {k: os.environ.get(k) for k in SINGLE_THREAD_ENV}
    os.environ.update(SINGLE_THREAD_ENV)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
