"""Environment construction by TD-MPC2 task name, with one clear error for unknown tasks or a
suite that is not installed.

dm_control tasks run in this process. MetaWorld (`mw-*`) and MyoSuite (`myo-*`) pin MuJoCo
versions that cannot share this environment, so they run in worker processes under their own
interpreters: `make venv-metaworld` / `make venv-myosuite` create `.venv-metaworld` /
`.venv-myosuite`, or point MBDPO_METAWORLD_PYTHON / MBDPO_MYOSUITE_PYTHON at any interpreter
that has the suite (and numpy) installed.
This package imports nothing heavy at import time (suite workers import parts of it).
"""
from __future__ import annotations

import os
from pathlib import Path

SUITE_VENV = {"metaworld": ("MBDPO_METAWORLD_PYTHON", ".venv-metaworld", "make venv-metaworld"),
              "myosuite": ("MBDPO_MYOSUITE_PYTHON", ".venv-myosuite", "make venv-myosuite")}


def known_tasks() -> list[str]:
    from .dmcontrol import dmc_task_names
    from .suites import METAWORLD_TASKS, MYOSUITE_TASKS

    return dmc_task_names() + [f"mw-{t}" for t in METAWORLD_TASKS] + sorted(MYOSUITE_TASKS)


def suite_python(suite: str) -> str:
    """The interpreter that runs a suite's workers (ConfigError naming the fix if there is none)."""
    from ..config import ConfigError

    var, venv, make = SUITE_VENV[suite]
    if os.environ.get(var):
        path = Path(os.environ[var])
        if not path.exists():
            raise ConfigError(f"{var}={path} does not exist")
        return str(path)
    for root in (Path.cwd(), Path(__file__).resolve().parents[2]):
        candidate = root / venv / "bin" / "python"
        if candidate.exists():
            return str(candidate)
    raise ConfigError(f"{suite} tasks run in their own Python environment, which is not installed: "
                      f"run `{make}` (creates {venv}) or set {var} to an interpreter that has {suite}")


def check_task(task: str) -> None:
    from ..config import ConfigError, suggest

    tasks = known_tasks()
    if task not in tasks:
        raise ConfigError(f"unknown task {task!r}.{suggest(task, tasks)} Known tasks: {', '.join(tasks)}")


def make_env(task: str, seed: int, action_repeat: int | None = None, episode_length: int | None = None):
    """A single environment for `task` (suite defaults for action repeat / episode length when None)."""
    from .suites import SUITE_DEFAULTS, suite_of

    check_task(task)
    suite = suite_of(task)
    repeat, length = SUITE_DEFAULTS[suite]
    repeat = repeat if action_repeat is None else action_repeat
    length = length if episode_length is None else episode_length
    if suite == "dmcontrol":
        from .dmcontrol import DMControlEnv

        return DMControlEnv(task, seed, action_repeat=repeat, episode_length=length)
    from .subprocess_vector import RemoteEnv

    return RemoteEnv(task, seed, suite_python(suite), repeat, length)
