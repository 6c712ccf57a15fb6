"""MetaWorld, MyoSuite and ManiSkill tasks under TD-MPC2's names and conventions.

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
- ManiSkill `ms-*`: ManiSkill3 (CPU physics, nothing rendered) or, under a ManiSkill2 interpreter,
  the reference's ManiSkill2 tasks; state observations, the `normalized_dense` reward, action
  repeat 2 with rewards summed and the repeat cut short where the suite says done, 100 agent steps
  per episode (the suite's own limits lifted), success = info["success"].
Action repeat and episode length are the wrappers of wrappers.py, applied by make_suite_env.
"""
from __future__ import annotations

import sys

import numpy as np

from ...task_registry import METAWORLD, REFUSED, get
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

    def _render(self, model, data, size: int, camera) -> np.ndarray:
        """The simulator's current state rendered by MuJoCo, uint8 [size, size, 3] (headless OpenGL:
        the worker inherits MUJOCO_GL from a trainer that chose it, envs/cpu/pixels.py)."""
        import mujoco

        if getattr(self, "_renderer", None) is None or self._renderer.height != size:
            self._renderer = mujoco.Renderer(model, size, size)
        self._renderer.update_scene(data, camera=camera)
        return self._renderer.render().copy()

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

    def render_rgb(self, size: int) -> np.ndarray:
        """The scene from MetaWorld's corner2 camera (TD-MPC2's), uint8 [size, size, 3]."""
        return self._render(self._env.model, self._env.data, size, "corner2")

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

    def render_rgb(self, size: int) -> np.ndarray:
        """The hand from its hand_side_inter camera (TD-MPC2's), uint8 [size, size, 3]."""
        import mujoco

        env = self._env.unwrapped
        cam = "hand_side_inter" if mujoco.mj_name2id(env.mj_model, mujoco.mjtObj.mjOBJ_CAMERA, "hand_side_inter") >= 0 else -1
        return self._render(env.mj_model, env.mj_data, size, cam)

    def reset(self) -> np.ndarray:
        obs, _ = self._env.reset(seed=self._seed)
        self._seed = None  # seed the first reset only; later resets continue the stream
        return np.asarray(obs, dtype=np.float32)


# TD-MPC2 name -> (ManiSkill2 id, ManiSkill3 id or None, controller), the reference's controllers.
MANISKILL_IDS = {
    "ms-lift-cube": ("LiftCube-v0", None, "pd_ee_delta_pos"),
    "ms-pick-cube": ("PickCube-v0", "PickCube-v1", "pd_ee_delta_pos"),
    "ms-stack-cube": ("StackCube-v0", "StackCube-v1", "pd_ee_delta_pos"),
    "ms-pick-ycb": ("PickSingleYCB-v0", "PickSingleYCB-v1", "pd_ee_delta_pose"),
    "ms-turn-faucet": ("TurnFaucet-v0", "TurnFaucet-v1", "pd_ee_delta_pose"),
}


# ManiSkill3's TurnFaucet-v1 has no dense reward (its reward modes: sparse, none): trained on the
# sparse success reward, a documented departure from the paper's normalized_dense.
MANISKILL3_SPARSE = {"ms-turn-faucet"}


def maniskill_version() -> int:
    """3 where this interpreter has ManiSkill3 (`mani_skill`), 2 where it has ManiSkill2 (`mani_skill2`)."""
    import importlib.util

    if importlib.util.find_spec("mani_skill") is not None:
        return 3
    if importlib.util.find_spec("mani_skill2") is not None:
        return 2
    raise ImportError("neither mani_skill (ManiSkill3) nor mani_skill2 is installed in this interpreter")


def import_maniskill() -> None:
    """Import ManiSkill3's tasks (registering them with gymnasium)."""
    import warnings

    # sapien falls back to its bundled libvulkan (never used: nothing renders) and says so
    warnings.filterwarnings("ignore", message="Failed to find system libvulkan")
    import mani_skill.envs  # noqa: F401


def make_maniskill3(task: str, num_envs: int, sim_backend: str, **kwargs):
    """ManiSkill3's environment of an ms-* task (unwrapped): state observations, the reference's
    controller, normalized_dense reward (sparse for MANISKILL3_SPARSE), nothing rendered."""
    import gymnasium as gym

    _, ms3_id, control = MANISKILL_IDS[task]
    _inert_render_materials()
    reward = "sparse" if task in MANISKILL3_SPARSE else "normalized_dense"
    return gym.make(ms3_id, num_envs=num_envs, obs_mode="state", control_mode=control, reward_mode=reward,
                    sim_backend=sim_backend, render_backend="none", **kwargs).unwrapped


def _inert_render_materials() -> None:
    """ManiSkill3's tasks create sapien.render.RenderMaterial objects even when nothing is rendered
    (render_backend="none"), and creating one fails without a Vulkan rendering device. Where that
    happens, RenderMaterial becomes an inert record of its settings: the scene never draws, so the
    materials are never read."""
    import sapien

    try:
        sapien.render.RenderMaterial()
        return
    except RuntimeError:
        pass

    class InertRenderMaterial:
        def __init__(self, *args, **kwargs):
            self.__dict__.update(kwargs)

        def __getattr__(self, name):  # set_base_color(...), get_*(): accepted and ignored
            if name.startswith(("set_", "get_")):
                return lambda *a, **k: None
            raise AttributeError(name)

    # sapien.render re-exports the native module's class, which sapien's own builders check against;
    # these modules bound the name at import.
    import importlib

    sapien.render.RenderMaterial = sapien.pysapien.render.RenderMaterial = InertRenderMaterial
    for name in ("sapien.wrapper.renderer", "sapien.wrapper.urdf_loader", "mani_skill.utils.building._mjcf_loader"):
        module = importlib.import_module(name)
        if hasattr(module, "RenderMaterial"):
            module.RenderMaterial = InertRenderMaterial


class ManiSkillEnv(_SuiteAdapter):
    """One ManiSkill task on CPU physics, state observations, the `normalized_dense` reward:
    reset() -> obs; step(a) -> obs, reward, False, False, info{"success", "done"}. The suite's own
    episode ends are ignored (TD-MPC2: fixed 100-step episodes cut by wrappers.TimeLimit); its
    `done` (success, or failure) is reported for ActionRepeat to cut the repeat short."""

    suite_name = "maniskill"

    def __init__(self, task: str, seed: int, max_steps: int = 201):
        import gymnasium as gym

        if task not in MANISKILL_IDS:
            raise KeyError(task)
        from ...errors import AssetError, ConfigError

        self.task, self.version = task, maniskill_version()
        ms2_id, ms3_id, control = MANISKILL_IDS[task]
        if self.version == 3:
            if ms3_id is None:
                raise ConfigError(REFUSED[task])
            import_maniskill()
            from mani_skill.utils.assets.data import (DATA_GROUPS, expand_data_group_into_individual_data_source_ids,
                                                      is_data_source_downloaded)
            from mani_skill.utils.registration import REGISTERED_ENVS

            for asset in REGISTERED_ENVS[ms3_id].asset_download_ids:  # a source, or a group of them
                sources = expand_data_group_into_individual_data_source_ids(asset) if asset in DATA_GROUPS else [asset]
                if not all(map(is_data_source_downloaded, sources)):
                    raise AssetError(f"{task} ({ms3_id}) needs ManiSkill's {asset!r} assets, which are not on this "
                                     f"machine: download them with `{sys.executable} -m mani_skill.utils.download_asset "
                                     f"{asset}` (under MS_ASSET_DIR, default ~/.maniskill/data)")
            self._env = make_maniskill3(task, 1, "cpu", max_episode_steps=max_steps)
        else:
            import mani_skill2.envs  # noqa: F401

            self._env = gym.make(ms2_id, obs_mode="state", control_mode=control, reward_mode="normalized_dense",
                                 max_episode_steps=max_steps).unwrapped
        self._seed = seed
        self._init_dims()

    @staticmethod
    def _numpy(x):
        x = x.cpu().numpy() if hasattr(x, "cpu") else np.asarray(x)
        return x.reshape(-1) if x.ndim > 1 else x

    def _init_dims(self) -> None:
        space = getattr(self._env, "single_observation_space", self._env.observation_space)
        self.obs_dim = int(np.prod(space.shape))
        actions = getattr(self._env, "single_action_space", self._env.action_space)
        self.action_dim = int(actions.shape[0])

    def reset(self) -> np.ndarray:
        obs, _ = self._env.reset(seed=self._seed)
        self._seed = None  # seed the first reset only; later resets continue the stream
        return self._numpy(obs).astype(np.float32)

    def step(self, action):
        a = np.clip(np.asarray(action, dtype=np.float32), -1, 1)
        out = self._env.step(a[None] if self.version == 3 else a)
        if len(out) == 5:
            obs, r, terminated, truncated, info = out
            done = bool(np.asarray(self._numpy(terminated)).any())
        else:  # ManiSkill2 on the old gym API: obs, reward, done, info
            obs, r, done, info = out
        success = float(np.asarray(self._numpy(info["success"])).any())
        return (self._numpy(obs).astype(np.float32), float(np.asarray(self._numpy(r)).sum()), False, False,
                {"success": success, "done": bool(done)})


def make_suite_env(task: str, seed: int, action_repeat: int | None = None, episode_length: int | None = None,
                   pixels: bool = False):
    """Any task by name, in this process, with TD-MPC2's action repeat and time limit (the suite's
    unless given): TimeLimit(ActionRepeat(adapter, action_repeat), episode_length); pixels (the
    dm_control tasks of task_registry.PIXEL_CAMERAS): stacked RGB frames rendered after each
    repeated action, TimeLimit(PixelObservation(ActionRepeat(...)), episode_length)."""
    row = get(task, maniskill_version() if task in MANISKILL_IDS else 3)
    repeat = row.action_repeat if action_repeat is None else int(action_repeat)
    length = row.episode_length if episode_length is None else int(episode_length)
    stop = None
    if row.suite == "metaworld":
        adapter = MetaWorldEnv(task, seed)
    elif row.suite == "myosuite":
        adapter = MyoSuiteEnv(task, seed, max_steps=length * repeat + 1)
    elif row.suite == "maniskill":
        adapter, stop = ManiSkillEnv(task, seed, max_steps=length * repeat + 1), "done"
    else:
        from .dmcontrol import DMControlEnv

        adapter = DMControlEnv(task, seed)
    env = ActionRepeat(adapter, repeat, stop_info=stop)
    if pixels:
        from ...task_registry import PIXEL_CAMERAS, PIXEL_FRAMES, PIXEL_SIZE
        from .pixels import PixelObservation

        if row.suite != "dmcontrol" or task not in PIXEL_CAMERAS:
            raise ValueError(f"{task} has no pixel observations (tasks: {sorted(PIXEL_CAMERAS)})")
        env = PixelObservation(env, PIXEL_SIZE, PIXEL_CAMERAS[task], PIXEL_FRAMES)
    return TimeLimit(env, length)
