"""MetaWorld and MyoSuite tasks under TD-MPC2's names and conventions.

These run inside worker processes started under each suite's own interpreter (MetaWorld 3 pins
mujoco 3.3, MyoSuite 3 needs gymnasium < 1.3; neither fits the main environment), so this module
imports only numpy, the suite itself and the (standard-library) task registry: no torch, no
project config.

Conventions (TD-MPC2):
- MetaWorld `mw-<name>`: the v3 goal-observable task, goal and object positions re-drawn (seeded)
  at every reset, one zero-action step after reset (the reset observation is returned), action
  repeat 2 with rewards summed, 100 agent steps per episode, success = info["success"].
- MyoSuite `myo-*`: no action repeat, 100 agent steps per episode regardless of the suite's own
  limits and early terminations (as TD-MPC2's wrapper ignores them), success = info["solved"].
Action repeat and episode length are the wrappers of wrappers.py, applied by make_suite_env.
"""
from __future__ import annotations

import numpy as np

from ...task_registry import METAWORLD, get
from .wrappers import ActionRepeat, TimeLimit


# TD-MPC2 name -> MyoSuite environment id (the task list is the registry's).
MYOSUITE_IDS = {
    "myo-reach": "myoHandReachFixed-v0", "myo-reach-hard": "myoHandReachRandom-v0",
    "myo-pose": "myoHandPoseFixed-v0", "myo-pose-hard": "myoHandPoseRandom-v0",
    "myo-obj-hold": "myoHandObjHoldFixed-v0", "myo-obj-hold-hard": "myoHandObjHoldRandom-v0",
    "myo-key-turn": "myoHandKeyTurnFixed-v0", "myo-key-turn-hard": "myoHandKeyTurnRandom-v0",
    "myo-pen-twirl": "myoHandPenTwirlFixed-v0", "myo-pen-twirl-hard": "myoHandPenTwirlRandom-v0",
}


class _SuiteAdapter:
    """Shared step of the MetaWorld/MyoSuite adapters: one simulator step of the clipped action;
    the suite's own terminations and time limits ignored (TD-MPC2: fixed-length episodes, cut by
    wrappers.TimeLimit). Subclasses set `_env` and define `_success(info) -> float`."""

    has_success = True

    def _init_dims(self) -> None:
        self.obs_dim = int(self._env.observation_space.shape[0])
        self.action_dim = int(self._env.action_space.shape[0])

    def step(self, action):
        a = np.clip(np.asarray(action, dtype=np.float32), -1, 1)
        obs, r, _, _, info = self._env.step(a.copy())
        return np.asarray(obs, dtype=np.float32), float(r), False, False, {"success": self._success(info)}


class MetaWorldEnv(_SuiteAdapter):
    """reset() -> obs [39]; step(a [4]) -> obs, reward, terminated, truncated, info{"success"}."""

    suite_name = "metaworld"

    def __init__(self, task: str, seed: int):
        from metaworld import ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE as GOAL_OBSERVABLE

        name = task[len("mw-"):]
        if name not in METAWORLD:
            raise KeyError(task)
        self.task = task
        self._env = GOAL_OBSERVABLE[f"{name}-v3-goal-observable"](seed=seed)
        self._env._freeze_rand_vec = False  # a new goal/object layout at every reset
        self._env.seeded_rand_vec = True  # drawn from the env's seeded generator
        self._init_dims()

    def _success(self, info: dict) -> float:
        return float(info["success"])

    def reset(self) -> np.ndarray:
        obs, _ = self._env.reset()
        self._env.step(np.zeros(self.action_dim, dtype=np.float32))
        return obs.astype(np.float32)


class MyoSuiteEnv(_SuiteAdapter):
    """reset() -> obs; step(a) -> obs, reward, terminated, truncated, info{"success"}."""

    suite_name = "myosuite"

    def __init__(self, task: str, seed: int, max_steps: int = 101):
        import myosuite  # noqa: F401  (registers the environments)
        from myosuite.utils import gym as gym_utils

        if task not in MYOSUITE_IDS:
            raise KeyError(task)
        self.task = task
        # The suite's own TimeLimit is lifted past our episode (max_steps simulator steps); its
        # early terminations are ignored, as TD-MPC2's wrapper does (fixed-length episodes).
        self._env = gym_utils.make(MYOSUITE_IDS[task], max_episode_steps=max_steps)
        self._seed = seed
        self._init_dims()

    def _success(self, info: dict) -> float:
        return float(bool(info["solved"]))

    def reset(self) -> np.ndarray:
        obs, _ = self._env.reset(seed=self._seed)
        self._seed = None  # seed the first reset only; later resets continue the stream
        return np.asarray(obs, dtype=np.float32)


def make_suite_env(task: str, seed: int, action_repeat: int | None = None, episode_length: int | None = None,
                   pixels: bool = False):
    """Any task by name, in this process, with TD-MPC2's action repeat and time limit (the suite's
    unless given): TimeLimit(ActionRepeat(adapter, action_repeat), episode_length); pixels (the
    dm_control tasks of task_registry.PIXEL_CAMERAS): stacked RGB frames rendered after each
    repeated action, TimeLimit(PixelObservation(ActionRepeat(...)), episode_length)."""
    row = get(task)
    repeat = row.action_repeat if action_repeat is None else int(action_repeat)
    length = row.episode_length if episode_length is None else int(episode_length)
    if row.suite == "metaworld":
        adapter = MetaWorldEnv(task, seed)
    elif row.suite == "myosuite":
        adapter = MyoSuiteEnv(task, seed, max_steps=length * repeat + 1)
    else:
        from .dmcontrol import DMControlEnv

        adapter = DMControlEnv(task, seed)
    env = ActionRepeat(adapter, repeat)
    if pixels:
        from ...task_registry import PIXEL_CAMERAS, PIXEL_FRAMES, PIXEL_SIZE
        from .pixels import PixelObservation

        if row.suite != "dmcontrol" or task not in PIXEL_CAMERAS:
            raise ValueError(f"{task} has no pixel observations (tasks: {sorted(PIXEL_CAMERAS)})")
        env = PixelObservation(env, PIXEL_SIZE, PIXEL_CAMERAS[task], PIXEL_FRAMES)
    return TimeLimit(env, length)
