"""CPU suites as one batched environment of E worker processes, exposing the same interface as
envs.mjx.MJXVecEnv on torch tensors:

    reset() -> obs [E, obs_dim];  step(actions [E, A]) -> obs, reward, terminated, truncated, info
    info: terminal_obs [E, obs_dim], episode_return [E], episode_length [E], done [E] (and success [E]
    for suites that report it); envs that ended are reset in the same step (auto-reset).

dm_control tasks run in gymnasium's AsyncVectorEnv workers, started with `forkserver` (default) or
`spawn`, never `fork` (a forked child of a process that has started JAX or CUDA can deadlock), or,
with asynchronous=False, in this process through gymnasium's SyncVectorEnv (the paper's
single-environment mode: no worker round trip per step, and the environments' RNG states can be
saved with a checkpoint). MetaWorld
and MyoSuite workers run under their suites' own interpreters (SubprocessVectorEnv); both
backends follow gymnasium's same-step auto-reset, so the conversion below serves both.
"""
from __future__ import annotations

import multiprocessing
from functools import partial

import gymnasium as gym
import numpy as np
import torch


class GymTask(gym.Env):
    """A single in-process CPU task (the adapters' reset/step API) as a gymnasium Env for workers."""

    def __init__(self, task: str, seed: int, action_repeat: int | None, episode_length: int | None,
                 pixels: bool = False, index: int = 0):
        from .suites import make_suite_env

        self.index = index  # this copy's position in the batched env (render_rgb)
        self.env = make_suite_env(task, seed, action_repeat, episode_length, pixels)
        if pixels:
            self.observation_space = gym.spaces.Box(0, 255, self.env.obs_shape, np.uint8)
        else:
            self.observation_space = gym.spaces.Box(-np.inf, np.inf, (self.env.obs_dim,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (self.env.action_dim,), np.float32)

    def reset(self, *, seed=None, options=None):
        if seed is not None:
            self.env.random_state.seed(seed)
        # the RNG as it was before this reset: restoring it and resetting again repeats the reset
        self.rng_before_reset = np.random.RandomState()
        self.rng_before_reset.set_state(self.env.random_state.get_state())
        return self.env.reset(), {}

    def step(self, action):
        return self.env.step(action)

    def render_rgb(self, indices: list[int], size: int):
        """This copy's current frame, uint8 [size, size, 3], if its index is among `indices`, else
        None (the vector env's `call` reaches every copy)."""
        return self.env.render_rgb(size) if self.index in indices else None


def _make(task, seed, action_repeat, episode_length, worker: bool, pixels: bool = False, index: int = 0):
    # A worker process: one thread (see envs.cpu.SINGLE_THREAD_ENV). gymnasium's AsyncVectorEnv also
    # calls this in the trainer's own process (a dummy copy for the spaces), whose threads stay.
    if worker and multiprocessing.parent_process() is not None:
        torch.set_num_threads(1)
    return GymTask(task, seed, action_repeat, episode_length, pixels, index)


class AsyncVecEnv:
    def __init__(self, task: str, num_envs: int, seed: int = 0, action_repeat: int | None = None,
                 episode_length: int | None = None, device: str | torch.device = "cpu", context: str = "forkserver",
                 asynchronous: bool = True, pixels: bool = False, maniskill: int = 3):
        """pixels: observations are stacked RGB frames (envs/cpu/pixels.py), uint8 [E, 9, 64, 64]
        (headless OpenGL chosen here, before any worker starts); maniskill: 2 runs ms-* tasks under
        the ManiSkill2 interpreter (suite_python("maniskill2"))."""
        from ...task_registry import get
        from . import single_threaded_children, suite_python

        if context not in ("forkserver", "spawn"):
            raise ValueError(f"context={context!r} is refused: use forkserver or spawn (forking after JAX/CUDA "
                             f"start can deadlock)")
        row = get(task, maniskill)
        self.task, self.num_envs, self.device = task, int(num_envs), torch.device(device)
        suite = row.suite
        self.action_repeat = row.action_repeat if action_repeat is None else int(action_repeat)
        self.episode_length = row.episode_length if episode_length is None else int(episode_length)
        self.has_success = suite != "dmcontrol"
        if pixels:
            from .pixels import use_headless_gl

            use_headless_gl()
        if suite == "dmcontrol":
            fns = [partial(_make, task, seed + i, action_repeat, episode_length, asynchronous, pixels, i)
                   for i in range(self.num_envs)]
            if asynchronous:
                with single_threaded_children():
                    self.vec = gym.vector.AsyncVectorEnv(fns, context=context, shared_memory=False,
                                                         autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
            else:
                self.vec = gym.vector.SyncVectorEnv(fns, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
        else:
            from .subprocess_vector import SubprocessVectorEnv

            venv = "maniskill2" if suite == "maniskill" and maniskill == 2 else suite
            self.vec = SubprocessVectorEnv(task, self.num_envs, seed, suite_python(venv), action_repeat, episode_length)
        space = self.vec.single_observation_space
        self.obs_shape = tuple(space.shape)
        self.obs_dim = int(np.prod(space.shape))
        self._obs_dtype = torch.uint8 if space.dtype == np.uint8 else torch.float32
        self.action_dim = int(self.vec.single_action_space.shape[0])
        self._seed = seed
        self._ret = np.zeros(self.num_envs)
        self._len = np.zeros(self.num_envs, dtype=np.int64)

    def _t(self, x, dtype=torch.float32) -> torch.Tensor:
        return torch.as_tensor(np.asarray(x), dtype=dtype, device=self.device)

    def reset(self, seed: int | None = None) -> torch.Tensor:
        """Start fresh episodes: env i re-seeded with seed + i, or (seed=None) continuing its
        random stream. Worker processes of MetaWorld/MyoSuite always continue their streams."""
        obs, _ = self.vec.reset(seed=seed)
        self._ret[:] = 0
        self._len[:] = 0
        return self._t(obs, self._obs_dtype)

    def step(self, actions: torch.Tensor):
        if tuple(actions.shape) != (self.num_envs, self.action_dim):
            raise ValueError(f"actions must be [{self.num_envs}, {self.action_dim}], got {list(actions.shape)}")
        obs, reward, terminated, truncated, info = self.vec.step(actions.detach().cpu().numpy().astype(np.float32))
        done = np.logical_or(terminated, truncated)
        self._ret += reward
        self._len += 1
        terminal = np.array(obs, copy=True)
        if done.any():
            for i in np.flatnonzero(done):
                terminal[i] = info["final_obs"][i]
        out = {"terminal_obs": self._t(terminal, self._obs_dtype), "episode_return": self._t(self._ret.copy()),
               "episode_length": self._t(self._len.copy(), torch.int64), "done": self._t(done, torch.bool)}
        if self.has_success:
            success = np.asarray(info.get("success", np.zeros(self.num_envs)), dtype=np.float32).copy()
            if done.any():
                final = info["final_info"]
                success[done] = np.asarray(final["success"], dtype=np.float32)[done]
            out["success"] = self._t(success)
        self._ret[done] = 0
        self._len[done] = 0
        return (self._t(obs, self._obs_dtype), self._t(reward), self._t(terminated, torch.bool),
                self._t(truncated, torch.bool), out)

    def render_rgb(self, indices: list[int], size: int) -> list[np.ndarray]:
        """The current frames of copies `indices`, uint8 [size, size, 3] each (evaluation videos;
        the process must have chosen headless OpenGL before MuJoCo was imported:
        envs/cpu/pixels.use_headless_gl)."""
        if isinstance(self.vec, (gym.vector.AsyncVectorEnv, gym.vector.SyncVectorEnv)):
            frames = self.vec.call("render_rgb", list(indices), int(size))
            return [frames[i] for i in indices]
        return self.vec.render_rgb(indices, size)

    @property
    def random_states(self) -> list | None:
        """The in-process environments' numpy RandomStates (asynchronous=False), else None."""
        envs = getattr(self.vec, "envs", None)
        return [e.env.random_state for e in envs] if envs is not None else None

    @property
    def random_states_before_reset(self) -> list | None:
        """Each in-process environment's RandomState as it was before its latest reset (a copy):
        restored into `random_states`, a reset(seed=None) repeats that reset exactly. None with
        worker processes."""
        envs = getattr(self.vec, "envs", None)
        return [e.unwrapped.rng_before_reset for e in envs] if envs is not None else None

    def close(self) -> None:
        self.vec.close()

    def __del__(self):
        try:
            self.vec.close()
        except Exception:
            pass
