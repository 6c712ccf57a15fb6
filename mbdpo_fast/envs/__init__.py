"""Environment construction by TD-MPC2 task name, with one clear error for unknown tasks."""
from __future__ import annotations

from ..config import ConfigError, suggest


def known_tasks() -> list[str]:
    from .dmcontrol import suite_tasks

    return sorted(suite_tasks())


def make_env(task: str, seed: int, action_repeat: int = 2, episode_length: int = 500):
    """A single CPU environment for `task` (dm_control for now)."""
    from .dmcontrol import DMControlEnv

    try:
        return DMControlEnv(task, seed, action_repeat=action_repeat, episode_length=episode_length)
    except KeyError:
        tasks = known_tasks()
        raise ConfigError(f"unknown task {task!r}.{suggest(task, tasks)} Known tasks: {', '.join(tasks)}") from None
