"""TD-MPC2's multi-task sets (mt30, mt80) and the per-task facts multi-task training needs.

The order of MT80 is the task-id order of TD-MPC2's datasets (`task` in the chunk files); MT30 is
its first 30 entries, so mt30 ids are also mt80 ids. Observation/action dims are those of our
environments (verified against them by tests/test_multitask.py); the episode length is in agent
steps (the chunk files hold episode_length + 1 slots).
"""
from __future__ import annotations

MT30 = (
    # 19 dm_control suite tasks
    "walker-stand", "walker-walk", "walker-run", "cheetah-run", "reacher-easy",
    "reacher-hard", "acrobot-swingup", "pendulum-swingup", "cartpole-balance", "cartpole-balance-sparse",
    "cartpole-swingup", "cartpole-swingup-sparse", "cup-catch", "finger-spin", "finger-turn-easy",
    "finger-turn-hard", "fish-swim", "hopper-stand", "hopper-hop",
    # 11 TD-MPC2 custom DMControl tasks
    "walker-walk-backwards", "walker-run-backwards", "cheetah-run-backwards", "cheetah-run-front",
    "cheetah-run-back", "cheetah-jump", "hopper-hop-backwards", "reacher-three-easy", "reacher-three-hard",
    "cup-spin", "pendulum-spin",
)

MT80 = MT30 + tuple(f"mw-{t}" for t in (
    "assembly", "basketball", "button-press-topdown", "button-press-topdown-wall", "button-press",
    "button-press-wall", "coffee-button", "coffee-pull", "coffee-push", "dial-turn",
    "disassemble", "door-open", "door-close", "drawer-close", "drawer-open",
    "faucet-open", "faucet-close", "hammer", "handle-press-side", "handle-press",
    "handle-pull-side", "handle-pull", "lever-pull", "peg-insert-side", "peg-unplug-side",
    "pick-out-of-hole", "pick-place", "pick-place-wall", "plate-slide", "plate-slide-side",
    "plate-slide-back", "plate-slide-back-side", "push-back", "push", "push-wall",
    "reach", "reach-wall", "shelf-place", "soccer", "stick-push",
    "stick-pull", "sweep-into", "sweep", "window-open", "window-close",
    "bin-picking", "box-close", "door-lock", "door-unlock", "hand-insert",
))

TASK_SETS: dict[str, tuple[str, ...]] = {"mt30": MT30, "mt80": MT80}

# (obs_dim, action_dim) of the DMControl tasks of MT30; every MetaWorld task is (39, 4).
_DMC_DIMS = {
    "walker-stand": (24, 6), "walker-walk": (24, 6), "walker-run": (24, 6), "cheetah-run": (17, 6),
    "reacher-easy": (6, 2), "reacher-hard": (6, 2), "acrobot-swingup": (6, 1), "pendulum-swingup": (3, 1),
    "cartpole-balance": (5, 1), "cartpole-balance-sparse": (5, 1), "cartpole-swingup": (5, 1),
    "cartpole-swingup-sparse": (5, 1), "cup-catch": (8, 2), "finger-spin": (9, 2), "finger-turn-easy": (12, 2),
    "finger-turn-hard": (12, 2), "fish-swim": (24, 5), "hopper-stand": (15, 4), "hopper-hop": (15, 4),
    "walker-walk-backwards": (24, 6), "walker-run-backwards": (24, 6), "cheetah-run-backwards": (17, 6),
    "cheetah-run-front": (17, 6), "cheetah-run-back": (17, 6), "cheetah-jump": (17, 6),
    "hopper-hop-backwards": (15, 4), "reacher-three-easy": (8, 3), "reacher-three-hard": (8, 3),
    "cup-spin": (8, 2), "pendulum-spin": (3, 1),
}
METAWORLD_DIMS = (39, 4)


def task_dims(task: str) -> tuple[int, int]:
    """(obs_dim, action_dim) of a task: from the tables above, else by building its environment."""
    if task in _DMC_DIMS:
        return _DMC_DIMS[task]
    if task.startswith("mw-"):
        return METAWORLD_DIMS
    from .envs import make_env

    env = make_env(task, 0)
    dims = (int(env.obs_dim), int(env.action_dim))
    if hasattr(env, "close"):
        env.close()
    return dims


def suite_defaults(task: str) -> tuple[int, int]:
    """(action_repeat, episode_length in agent steps) of the task's suite (TD-MPC2's values)."""
    from .envs.suites import SUITE_DEFAULTS, suite_of

    return SUITE_DEFAULTS[suite_of(task)]


def expand_tasks(names: list[str] | tuple[str, ...]) -> list[str]:
    """Task names with set names (mt30, mt80) expanded, in order, duplicates refused."""
    from .config import ConfigError

    out: list[str] = []
    for name in names:
        out.extend(TASK_SETS.get(name, (name,)))
    dup = sorted({t for t in out if out.count(t) > 1})
    if dup:
        raise ConfigError(f"task list names {dup} more than once")
    return out


def normalized_score(task: str, mean_return: float, success: float | None) -> float:
    """The paper's per-task score: DMControl return / 10, MetaWorld (and MyoSuite) success x 100."""
    if task.startswith(("mw-", "myo-")):
        if success is None:
            raise ValueError(f"{task}: a success rate is needed for its normalised score")
        return 100.0 * float(success)
    return float(mean_return) / 10.0
