"""The task registry: every task this package can build and the facts the rest of it reads.

One row per task (TD-MPC2's names): its suite, observation and action sizes, whether the paper
benchmarks it, and its MJX (MuJoCo Playground) counterpart if any. The suite fixes action repeat,
episode length (agent steps) and whether episodes report success (TD-MPC2's values). The
multi-task sets mt30/mt80 are written here once, in the task-id order of TD-MPC2's datasets.
Standard library only: configuration, environment backends, suite worker processes (which run
under other interpreters) and tests all import it. tests/test_task_registry.py checks every row
against the environment it names.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass

from .errors import ConfigError


@dataclass(frozen=True)
class Suite:
    name: str
    action_repeat: int  # simulator steps per agent step, rewards summed
    episode_length: int  # agent steps per episode (truncation)
    has_success: bool  # episodes report a success flag (the suite's normalised score is success x 100)


SUITES: dict[str, Suite] = {
    "dmcontrol": Suite("dmcontrol", 2, 500, False),
    "metaworld": Suite("metaworld", 2, 100, True),
    "myosuite": Suite("myosuite", 1, 100, True),
    "maniskill": Suite("maniskill", 2, 100, True),
}


@dataclass(frozen=True)
class Task:
    name: str
    suite: str
    obs_dim: int
    action_dim: int
    paper: bool  # one of the paper's benchmark tasks (DMControl 39, MetaWorld 50, MyoSuite 10)
    playground: str | None = None  # MuJoCo Playground's environment name; None: no stock MJX version
    custom: bool = False  # one of TD-MPC2's 11 custom DMControl tasks (CPU and MJX, envs/custom_tasks.py)
    dmc_mjx: bool = False  # on MJX through dm_control's own model (no Playground version: envs/mjx/quadruped.py, dog.py)
    mjx_impl: str | None = None  # the only MJX implementation it runs on (jax | warp); None: either

    @property
    def action_repeat(self) -> int:
        return SUITES[self.suite].action_repeat

    @property
    def episode_length(self) -> int:
        return SUITES[self.suite].episode_length

    @property
    def has_success(self) -> bool:
        return SUITES[self.suite].has_success

    @property
    def mjx(self) -> bool:
        """Whether the task runs on MJX (env_backend=mjx)."""
        return self.playground is not None or self.custom or self.dmc_mjx

    @property
    def sets(self) -> tuple[str, ...]:
        """The multi-task sets that contain this task."""
        return tuple(name for name, members in TASK_SETS.items() if self.name in members)


# DMControl tasks without an MJX version, and why (the others: Task.mjx)
NO_MJX_REASON = {
    "quadruped-escape": "its bowl-shaped heightfield terrain, redrawn every episode, would need a model per "
                        "MJX world, and it observes 20 rangefinders against that terrain: not built here",
}
# Why a task runs on one MJX implementation only (Task.mjx_impl), for the error line of the other
MJX_IMPL_REASON = {
    "jax": "its reset's contact search is tested on MJX's JAX implementation only",
    "warp": "MJX's JAX implementation has no collisions between the dog's ellipsoids and the floor's box",
}


def mjx_impl(name: str, requested: str = "auto", pixels: bool = False) -> str:
    """The MJX implementation a task runs on when `requested` (auto | jax | warp) is asked for: auto
    gives the task's own (Task.mjx_impl), warp for pixels (MuJoCo Warp's renderer needs its physics),
    else jax; an explicit choice is returned as asked (the config refuses one the task cannot run)."""
    if requested != "auto":
        return requested
    return get(name).mjx_impl or ("warp" if pixels else "jax")


def mjx_impl_refusal(name: str, requested: str) -> str | None:
    """The error line for asking `name` to run on an MJX implementation it cannot run on, else None."""
    need = get(name).mjx_impl
    if need is None or requested in ("auto", need):
        return None
    return (f"impl={requested}: {name} runs on MJX's {'Warp' if need == 'warp' else 'JAX'} implementation only "
            f"({MJX_IMPL_REASON[need]}); set impl={need} or leave impl=auto")


def _dmc(name: str, obs: int, act: int, paper: bool = True, playground: str | None = None,
         custom: bool = False, mjx_impl: str | None = None) -> Task:
    """A DMControl task; mjx_impl: on MJX through dm_control's own model, with that implementation only."""
    return Task(name, "dmcontrol", obs, act, paper, playground, custom, mjx_impl is not None, mjx_impl)


_DMCONTROL = (
    # dm_control's suite: the 28 tasks of the paper's benchmark
    _dmc("acrobot-swingup", 6, 1, playground="AcrobotSwingup"),
    _dmc("cartpole-balance", 5, 1, playground="CartpoleBalance"),
    _dmc("cartpole-balance-sparse", 5, 1, playground="CartpoleBalanceSparse"),
    _dmc("cartpole-swingup", 5, 1, playground="CartpoleSwingup"),
    _dmc("cartpole-swingup-sparse", 5, 1, playground="CartpoleSwingupSparse"),
    _dmc("cheetah-run", 17, 6, playground="CheetahRun"),
    _dmc("cup-catch", 8, 2, playground="BallInCup"),
    _dmc("dog-run", 223, 38, mjx_impl="warp"), _dmc("dog-stand", 223, 38, mjx_impl="warp"),
    _dmc("dog-trot", 223, 38, mjx_impl="warp"), _dmc("dog-walk", 223, 38, mjx_impl="warp"),
    _dmc("finger-spin", 9, 2, playground="FingerSpin"),
    _dmc("finger-turn-easy", 12, 2, playground="FingerTurnEasy"),
    _dmc("finger-turn-hard", 12, 2, playground="FingerTurnHard"),
    _dmc("fish-swim", 24, 5, playground="FishSwim"),
    _dmc("hopper-hop", 15, 4, playground="HopperHop"),
    _dmc("hopper-stand", 15, 4, playground="HopperStand"),
    _dmc("humanoid-run", 67, 21, playground="HumanoidRun"),
    _dmc("humanoid-stand", 67, 21, playground="HumanoidStand"),
    _dmc("humanoid-walk", 67, 21, playground="HumanoidWalk"),
    _dmc("pendulum-swingup", 3, 1, playground="PendulumSwingup"),
    _dmc("quadruped-run", 78, 12, mjx_impl="jax"), _dmc("quadruped-walk", 78, 12, mjx_impl="jax"),
    _dmc("reacher-easy", 6, 2, playground="ReacherEasy"),
    _dmc("reacher-hard", 6, 2, playground="ReacherHard"),
    _dmc("walker-run", 24, 6, playground="WalkerRun"),
    _dmc("walker-stand", 24, 6, playground="WalkerStand"),
    _dmc("walker-walk", 24, 6, playground="WalkerWalk"),
    # TD-MPC2's 11 custom tasks (part of the paper's 39)
    _dmc("cheetah-run-backwards", 17, 6, custom=True), _dmc("cheetah-run-front", 17, 6, custom=True),
    _dmc("cheetah-run-back", 17, 6, custom=True), _dmc("cheetah-jump", 17, 6, custom=True),
    _dmc("walker-walk-backwards", 24, 6, custom=True), _dmc("walker-run-backwards", 24, 6, custom=True),
    _dmc("hopper-hop-backwards", 15, 4, custom=True), _dmc("reacher-three-easy", 8, 3, custom=True),
    _dmc("reacher-three-hard", 8, 3, custom=True), _dmc("cup-spin", 8, 2, custom=True),
    _dmc("pendulum-spin", 3, 1, custom=True),
    # the rest of dm_control's suite (buildable, not benchmarked by the paper)
    _dmc("acrobot-swingup-sparse", 6, 1, False, "AcrobotSwingupSparse"),
    _dmc("cartpole-three-poles", 11, 1, False), _dmc("cartpole-two-poles", 8, 1, False),
    _dmc("cmuhumanoid-run", 137, 56, False), _dmc("cmuhumanoid-stand", 137, 56, False),
    _dmc("cmuhumanoid-walk", 137, 56, False), _dmc("dog-fetch", 232, 38, False, mjx_impl="warp"),
    _dmc("fish-upright", 21, 5, False), _dmc("humanoid-run-pure-state", 55, 21, False),
    _dmc("lqr-lqr-2-1", 4, 1, False), _dmc("lqr-lqr-6-2", 12, 2, False),
    _dmc("manipulator-bring-ball", 44, 5, False), _dmc("manipulator-bring-peg", 44, 5, False),
    _dmc("manipulator-insert-ball", 44, 5, False), _dmc("manipulator-insert-peg", 44, 5, False),
    _dmc("pointmass-easy", 4, 2, False, "PointMass"), _dmc("pointmass-hard", 4, 2, False),
    _dmc("quadruped-escape", 101, 12, False), _dmc("quadruped-fetch", 90, 12, False, mjx_impl="jax"),
    _dmc("stacker-stack-2", 49, 5, False), _dmc("stacker-stack-4", 63, 5, False),
    _dmc("swimmer-swimmer15", 61, 14, False), _dmc("swimmer-swimmer6", 25, 5, False, "SwimmerSwimmer6"),
)

# MetaWorld v3 goal-observable tasks as `mw-<name>`, in the task-id order of TD-MPC2's mt80 datasets.
METAWORLD = (
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
)

# MyoSuite hand tasks: TD-MPC2 name -> (obs_dim, action_dim).
_MYOSUITE = {
    "myo-reach": (115, 39), "myo-reach-hard": (115, 39), "myo-pose": (108, 39), "myo-pose-hard": (108, 39),
    "myo-obj-hold": (91, 39), "myo-obj-hold-hard": (91, 39), "myo-key-turn": (93, 39),
    "myo-key-turn-hard": (93, 39), "myo-pen-twirl": (83, 39), "myo-pen-twirl-hard": (83, 39),
}

# ManiSkill tasks (Panda arm, state observations) as `ms-<name>`, ManiSkill3's versions of the
# paper's ManiSkill2 tasks (envs/cpu/suites.py MANISKILL_IDS): pick-cube and stack-cube measured from
# the environments; pick-ycb and turn-faucet summed from their observation code (ManiSkill 3.0.1:
# 18 joint values + 27 / 15), since their assets are downloads.
_MANISKILL = {"ms-pick-cube": (42, 4), "ms-stack-cube": (48, 4), "ms-pick-ycb": (45, 7), "ms-turn-faucet": (33, 7)}
# The paper's own ManiSkill2 (0.5.3) versions, used with maniskill=2: sizes summed from ManiSkill2's
# observation code (joints 18 + robot base pose 7 + the task's terms), not measured here (ManiSkill2
# cannot create an environment without an NVIDIA Vulkan device).
_MANISKILL2 = {"ms-lift-cube": (42, 4), "ms-pick-cube": (51, 4), "ms-stack-cube": (55, 4), "ms-pick-ycb": (51, 7),
               "ms-turn-faucet": (40, 7)}
# Paper tasks that cannot be built here, with why and what to use instead.
REFUSED = {
    "ms-lift-cube": "ms-lift-cube is ManiSkill2's LiftCube-v0, which ManiSkill3 does not have: train ms-pick-cube "
                    "(PickCube-v1: the cube lifted and carried to a goal) instead, or use ManiSkill2 (maniskill=2, "
                    "make venv-maniskill2; needs an NVIDIA Vulkan device)",
}

TASKS: dict[str, Task] = {t.name: t for t in _DMCONTROL}
TASKS.update({f"mw-{n}": Task(f"mw-{n}", "metaworld", 39, 4, True) for n in METAWORLD})
TASKS.update({n: Task(n, "myosuite", d, a, True) for n, (d, a) in _MYOSUITE.items()})
TASKS.update({n: Task(n, "maniskill", d, a, True) for n, (d, a) in _MANISKILL.items()})

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
MT80 = MT30 + tuple(f"mw-{n}" for n in METAWORLD)
TASK_SETS: dict[str, tuple[str, ...]] = {"mt30": MT30, "mt80": MT80}

# Learning from pixels (obs=rgb): the paper's 10 DMControl tasks -> the camera TD-MPC2 renders them
# from (quadruped 2, the others 0); frames of PIXEL_SIZE x PIXEL_SIZE RGB, the last PIXEL_FRAMES stacked.
PIXEL_CAMERAS: dict[str, int] = {
    "acrobot-swingup": 0, "cheetah-run": 0, "finger-spin": 0, "finger-turn-easy": 0, "finger-turn-hard": 0,
    "quadruped-walk": 2, "reacher-easy": 0, "reacher-hard": 0, "walker-run": 0, "walker-walk": 0}
PIXEL_SIZE, PIXEL_FRAMES = 64, 3


def pixel_shape() -> tuple[int, int, int]:
    """The stacked pixel observation [3 x frames, size, size] (uint8)."""
    return 3 * PIXEL_FRAMES, PIXEL_SIZE, PIXEL_SIZE


def suggest(name: str, known) -> str:
    """' Did you mean X?' for a misspelt name, or ''."""
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
    return f" Did you mean {' or '.join(close)}?" if close else ""


def get(name: str, maniskill: int = 3) -> Task:
    """The registry row of a task; ConfigError (with a suggestion) for an unknown name. maniskill=2:
    an ms-* task's row in its ManiSkill2 version (the paper's; lift-cube included)."""
    if maniskill == 2 and name in _MANISKILL2:
        obs, act = _MANISKILL2[name]
        return Task(name, "maniskill", obs, act, True)
    if name in REFUSED:
        raise ConfigError(REFUSED[name])
    try:
        return TASKS[name]
    except KeyError:
        raise ConfigError(f"unknown task {name!r}.{suggest(name, TASKS)} Known tasks: {', '.join(names())}") from None


def names(suite: str | None = None, paper: bool | None = None, mjx: bool | None = None) -> list[str]:
    """Task names in table order, optionally only those of a suite / of the paper's benchmark / on MJX."""
    return [t.name for t in TASKS.values() if (suite is None or t.suite == suite)
            and (paper is None or t.paper == paper) and (mjx is None or t.mjx == mjx)]


def suite_of(name: str) -> str:
    return get(name).suite


def expand(task_names) -> list[str]:
    """Task names with set names (mt30, mt80) expanded, in order; duplicates and unknown names refused."""
    out: list[str] = []
    for name in task_names:
        out.extend(TASK_SETS.get(name, (name,)))
    dup = sorted({t for t in out if out.count(t) > 1})
    if dup:
        raise ConfigError(f"task list names {dup} more than once")
    for name in out:
        get(name)
    return out


def default_task_dim(task_names) -> int:
    """The reference code's task-embedding size: 64 for the mt30 set, 96 for mt80 and any other list
    (TD-MPC2's mt30 checkpoints have 64-d embeddings, its mt80 ones 96-d)."""
    return 64 if tuple(task_names) == MT30 else 96


def normalized_score(name: str, mean_return: float, success: float | None) -> float:
    """The paper's per-task score: DMControl return / 10, MetaWorld and MyoSuite success x 100."""
    if get(name).has_success:
        if success is None:
            raise ValueError(f"{name}: a success rate is needed for its normalised score")
        return 100.0 * float(success)
    return float(mean_return) / 10.0
