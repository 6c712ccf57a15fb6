"""Pixel observations of dm_control tasks (TD-MPC2's obs=rgb), on CPU through headless OpenGL.

    PixelObservation(ActionRepeat(adapter, 2), size=64, camera=0, frames=3)

renders one RGB frame per agent step, after the action repeat, and returns the stack of the last
`frames` frames channel-first as uint8 [3 x frames, size, size] (on reset the first frame repeated).
Rendering needs an OpenGL backend that works without a display: `headless_gl()` picks EGL or OSMesa
(MuJoCo reads MUJOCO_GL when it is first imported, so the choice is made before any worker starts).
"""
from __future__ import annotations

import os
import subprocess
import sys
from collections import deque

import numpy as np

from ...errors import RenderingError
from .wrappers import _Wrapper

HEADLESS_BACKENDS = ("egl", "osmesa")
_RENDERS: set = set()  # backends that rendered in this process's probe (training and evaluation envs share it)

_PROBE = """
import mujoco
m = mujoco.MjModel.from_xml_string('<mujoco><worldbody><light pos="0 0 1"/><geom size=".1"/></worldbody></mujoco>')
d = mujoco.MjData(m)
mujoco.mj_forward(m, d)
r = mujoco.Renderer(m, 8, 8)
r.update_scene(d)
assert r.render().shape == (8, 8, 3)
r.close()
print("ok")
"""


def headless_gl(environ=None) -> str:
    """The MuJoCo OpenGL backend for rendering without a display: MUJOCO_GL when it names egl or
    osmesa, else the first of them that renders a frame in a child process. RenderingError naming
    what failed and what to install when none does."""
    environ = dict(os.environ if environ is None else environ)
    asked = environ.get("MUJOCO_GL", "")
    candidates = [asked] if asked in HEADLESS_BACKENDS else list(HEADLESS_BACKENDS)
    failed = []
    for backend in candidates:
        if backend in _RENDERS:
            return backend
        env = {**environ, "MUJOCO_GL": backend, "PYOPENGL_PLATFORM": backend}
        try:
            p = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=120)
        except subprocess.TimeoutExpired:
            failed.append(f"{backend}: timed out")
            continue
        if p.returncode == 0 and p.stdout.strip().endswith("ok"):
            _RENDERS.add(backend)
            return backend
        last = (p.stderr.strip().splitlines() or ["no output"])[-1]
        failed.append(f"{backend}: {last[:160]}")
    raise RenderingError("pixel observations need headless OpenGL, and none works here (" + "; ".join(failed) +
                       "): install EGL (Debian: libegl1, with Mesa) or OSMesa (libosmesa6), or set MUJOCO_GL")


def use_headless_gl() -> str:
    """Choose the backend (headless_gl) and set MUJOCO_GL/PYOPENGL_PLATFORM for this process and
    the workers it starts. Call it before dm_control or mujoco is imported: they read the variable
    once, at import."""
    backend = headless_gl()
    os.environ["MUJOCO_GL"] = backend
    os.environ["PYOPENGL_PLATFORM"] = backend
    return backend


class PixelObservation(_Wrapper):
    """reset() / step(a) with the observation replaced by the last `frames` renders, uint8
    [3 x frames, size, size] (oldest first). Rendered once per call of step, so wrap the action
    repeat (the frame after the last repeated step)."""

    def __init__(self, env, size: int = 64, camera: int = 0, frames: int = 3):
        super().__init__(env)
        self.size, self.camera, self.frames = int(size), int(camera), int(frames)
        self.obs_shape = (3 * self.frames, self.size, self.size)
        self._stack: deque = deque(maxlen=self.frames)

    def render(self) -> np.ndarray:
        """One frame [3, size, size] uint8 of the current state."""
        rgb = self.env.physics.render(height=self.size, width=self.size, camera_id=self.camera)
        return np.ascontiguousarray(rgb.transpose(2, 0, 1))

    def _obs(self) -> np.ndarray:
        return np.concatenate(list(self._stack), axis=0)

    def reset(self):
        self.env.reset()
        frame = self.render()
        self._stack.extend([frame] * self.frames)
        return self._obs()

    def step(self, action):
        _, reward, terminated, truncated, info = self.env.step(action)
        self._stack.append(self.render())
        return self._obs(), reward, terminated, truncated, info
