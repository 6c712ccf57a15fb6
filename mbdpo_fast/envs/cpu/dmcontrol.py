"""dm_control tasks under TD-MPC2's names and conventions.

Conventions (docs/algorithm.md section 6): actions in [-1, 1] rescaled to the task's bounds,
observations flattened in dm_control's order into float32. Action repeat (2, rewards summed) and
the 500-step time limit (truncation, not termination) are the wrappers of wrappers.py.
"""
from __future__ import annotations

import os

import numpy as np

# dm_control picks an OpenGL backend at import; we never render, so never require a display.
os.environ.setdefault("MUJOCO_GL", "disable")

# dm_control domains whose names TD-MPC2 shortens.
_DOMAIN_ALIASES = {"ball_in_cup": "cup", "point_mass": "pointmass", "humanoid_CMU": "cmuhumanoid"}


def suite_tasks() -> dict[str, tuple[str, str]]:
    """TD-MPC2 name -> (dm_control domain, task) for every task of dm_control's suite."""
    from dm_control import suite

    out = {}
    for domain, task in suite.ALL_TASKS:
        name = f"{_DOMAIN_ALIASES.get(domain, domain)}-{task.replace('_', '-')}"
        out[name] = (domain, task)
    return out


def load_dmc(task: str, seed: int):
    """The dm_control Environment of a TD-MPC2 task name (KeyError if unknown)."""
    from ..custom_tasks import CUSTOM_TASKS

    if task in CUSTOM_TASKS:
        from . import dmc_custom

        return dmc_custom.load(task, seed)
    domain, name = suite_tasks()[task]
    from dm_control import suite

    return suite.load(domain, name, task_kwargs={"random": seed}, visualize_reward=False)


class DMControlEnv:
    """One dm_control task, one control step per call. reset() -> obs [obs_dim]; step(a [A]) ->
    obs, reward, terminated, truncated, info (numpy float32 observations, float reward; terminated
    where dm_control's episode ends with discount 0, truncated where its own time limit ends it)."""

    suite_name = "dmcontrol"
    has_success = False

    def __init__(self, task: str, seed: int):
        self.task = task
        self._env = load_dmc(task, seed)
        spec = self._env.action_spec()
        self._lo, self._hi = spec.minimum.astype(np.float64), spec.maximum.astype(np.float64)
        self.action_dim = int(spec.shape[0])
        self.obs_dim = int(sum(int(np.prod(s.shape)) for s in self._env.observation_spec().values()))

    @property
    def physics(self):
        """dm_control Physics (parity tests set states through it)."""
        return self._env.physics

    @property
    def random_state(self) -> np.random.RandomState:
        """The task's RNG (initial states at reset): saved in checkpoints for exact resume."""
        return self._env.task.random

    def render_rgb(self, size: int) -> np.ndarray:
        """The current state seen from the task's first camera, uint8 [size, size, 3] (headless
        OpenGL: envs/cpu/pixels.use_headless_gl before MuJoCo is imported)."""
        return self.physics.render(height=size, width=size, camera_id=0)

    def _flatten(self, observation) -> np.ndarray:
        return np.concatenate([np.asarray(v, dtype=np.float32).reshape(-1) for v in observation.values()])

    def reset(self) -> np.ndarray:
        return self._flatten(self._env.reset().observation)

    def step(self, action: np.ndarray):
        a = np.clip(np.asarray(action, dtype=np.float64).reshape(self.action_dim), -1.0, 1.0)
        ts = self._env.step(self._lo + (a + 1.0) * 0.5 * (self._hi - self._lo))
        terminated = bool(ts.last() and ts.discount == 0.0)
        return self._flatten(ts.observation), float(ts.reward or 0.0), terminated, ts.last() and not terminated, {}
