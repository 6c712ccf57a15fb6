"""A gymnasium VectorEnv whose workers run under another Python interpreter (a suite's own virtual
environment). multiprocessing's spawn hands the parent's sys.path to its children, which would
import the main environment's MuJoCo; these workers are plain subprocesses of the suite's
interpreter (mbdpo_fast.envs.cpu.suite_worker) talking over an authenticated Unix socket.

Semantics match gymnasium's AsyncVectorEnv with AutoresetMode.SAME_STEP: an env whose episode
ends is reset within the same step; info["final_obs"] / info["final_info"] (masks "_final_obs",
"_final_info") hold what it ended on.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from multiprocessing.connection import Listener
from pathlib import Path

import gymnasium as gym
import numpy as np

import mbdpo_fast

from ... import errors as errors_module
from ...errors import UserError, WorkerError
from . import SINGLE_THREAD_ENV

_SOURCE_ROOT = str(Path(mbdpo_fast.__file__).resolve().parent.parent)


class SubprocessVectorEnv(gym.vector.VectorEnv):
    metadata = {"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}

    def __init__(self, task: str, num_envs: int, seed: int, python: str, action_repeat: int | None = None,
                 episode_length: int | None = None, start_timeout: float = 300.0):
        self.num_envs = int(num_envs)
        self._dir = tempfile.mkdtemp(prefix="mbdpo-workers-")
        address = os.path.join(self._dir, "socket")
        authkey = os.urandom(16)
        self._listener = Listener(address, family="AF_UNIX", authkey=authkey)
        env = dict(os.environ, PYTHONPATH=_SOURCE_ROOT, MUJOCO_GL=os.environ.get("MUJOCO_GL", "disable"),
                   **SINGLE_THREAD_ENV)
        self._procs = []
        for i in range(self.num_envs):
            args = json.dumps({"task": task, "seed": seed + i, "action_repeat": action_repeat,
                               "episode_length": episode_length})
            self._procs.append(subprocess.Popen([python, "-m", "mbdpo_fast.envs.cpu.suite_worker", address, authkey.hex(),
                                                 str(i), args], env=env, stdout=subprocess.DEVNULL))
        self._conns = [None] * self.num_envs
        dims = self._accept_all(start_timeout)
        obs_dim, action_dim = dims
        self.single_observation_space = gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)
        self.single_action_space = gym.spaces.Box(-1.0, 1.0, (action_dim,), np.float32)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, self.num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, self.num_envs)

    def _accept_all(self, timeout: float) -> tuple[int, int]:
        hellos: list = []

        def accept():
            try:
                for _ in range(self.num_envs):
                    conn = self._listener.accept()
                    hellos.append((conn, conn.recv()))
            except OSError:
                pass  # listener closed after a timeout or failure

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        deadline = time.monotonic() + timeout
        while thread.is_alive() and time.monotonic() < deadline:
            thread.join(0.2)
            dead = [p for p in self._procs if p.poll() is not None and p.returncode != 0]
            if dead and len(hellos) < self.num_envs:
                break
        user = [msg for _, msg in hellos if msg[0] == "user_error"]
        if user:  # the same error class the worker raised, with its message (one `error:` line)
            self.close()
            cls = getattr(errors_module, user[0][2], None)
            raise (cls if isinstance(cls, type) and issubclass(cls, UserError) else UserError)(user[0][3])
        errors = [msg[2] for _, msg in hellos if msg[0] == "error"]
        if errors or len(hellos) < self.num_envs:
            self.close()
            detail = errors[0] if errors else f"{self.num_envs - len(hellos)} worker(s) did not start within {timeout:.0f} s"
            raise WorkerError(f"suite worker failed:\n{detail}")
        for conn, (_, index, obs_dim, action_dim) in hellos:
            self._conns[index] = conn
        return hellos[0][1][2], hellos[0][1][3]

    def _gather(self) -> list:
        out = []
        for conn in self._conns:
            msg = conn.recv()
            if msg[0] == "error":
                raise WorkerError(f"suite worker {msg[1]} failed:\n{msg[2]}")
            out.append(msg[1])
        return out

    def reset(self, *, seed=None, options=None):
        for conn in self._conns:
            conn.send(("reset",))
        return np.stack(self._gather()).astype(np.float32), {}

    def step(self, actions):
        for conn, a in zip(self._conns, np.asarray(actions, dtype=np.float32)):
            conn.send(("step", a))
        results = self._gather()
        obs = np.stack([r[0] for r in results]).astype(np.float32)
        reward = np.array([r[1] for r in results], dtype=np.float64)
        terminated = np.array([r[2] for r in results], dtype=bool)
        truncated = np.array([r[3] for r in results], dtype=bool)
        done = terminated | truncated
        info = {"success": np.array([r[4].get("success", 0.0) for r in results]), "_success": np.ones(self.num_envs, bool)}
        if done.any():
            final_obs = np.empty(self.num_envs, dtype=object)
            final_success = np.zeros(self.num_envs)
            for i, r in enumerate(results):
                if done[i]:
                    final_obs[i] = r[5]
                    final_success[i] = r[6].get("success", 0.0)
            info.update(final_obs=final_obs, _final_obs=done,
                        final_info={"success": final_success, "_success": done}, _final_info=done)
        return obs, reward, terminated, truncated, info

    def render_rgb(self, indices: list[int], size: int) -> list[np.ndarray]:
        """The current frames of workers `indices`, uint8 [size, size, 3] each."""
        for i in indices:
            self._conns[i].send(("render", int(size)))
        out = []
        for i in indices:
            msg = self._conns[i].recv()
            if msg[0] == "error":
                raise WorkerError(f"suite worker {msg[1]} failed:\n{msg[2]}")
            out.append(msg[1])
        return out

    def close_extras(self, **kwargs) -> None:
        for conn in self._conns:
            if conn is not None:
                try:
                    conn.send(("close",))
                    conn.close()
                except OSError:
                    pass
        for p in self._procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        self._listener.close()
        shutil.rmtree(self._dir, ignore_errors=True)
