"""MetaWorld and MyoSuite through worker processes under their own interpreters (tested where the
suite's environment is installed: `make suites`), and clear errors where it is not."""

import pytest
import torch

from mbdpo_fast.envs import cpu as envs_mod
from mbdpo_fast.errors import ConfigError, WorkerError
from mbdpo_fast.envs.cpu import suite_python
from mbdpo_fast.envs.cpu.subprocess_vector import SubprocessVectorEnv
from mbdpo_fast.envs.cpu.vector import AsyncVecEnv


def installed(suite):
    try:
        return suite_python(suite)
    except ConfigError:
        return None


needs_metaworld = pytest.mark.skipif(installed("metaworld") is None, reason="MetaWorld environment not installed (make venv-metaworld)")
needs_myosuite = pytest.mark.skipif(installed("myosuite") is None, reason="MyoSuite environment not installed (make venv-myosuite)")


def run_episode(vec, steps):
    vec.reset()
    for t in range(1, steps + 1):
        obs, r, term, trunc, info = vec.step(torch.rand(vec.num_envs, vec.action_dim) * 2 - 1)
        assert torch.isfinite(obs).all() and torch.isfinite(r).all()
        assert set(info["success"].unique().tolist()) <= {0.0, 1.0}
        assert bool(trunc.all()) == (t == steps) and not term.any()
    return obs, info


@needs_metaworld
def test_metaworld_vector_env():
    vec = AsyncVecEnv("mw-reach", 2, seed=1)
    try:
        assert (vec.obs_dim, vec.action_dim) == (39, 4) and vec.has_success
        obs, info = run_episode(vec, 100)  # TD-MPC2: 100 agent steps of 2 repeats
        assert info["done"].all() and info["episode_length"].tolist() == [100, 100]
        assert not torch.allclose(obs, info["terminal_obs"])
        # goals are re-drawn every reset (the last 3 entries of the observation)
        first_goal = obs[:, -3:].clone()
        obs, _ = run_episode(vec, 100)
        assert not torch.allclose(obs[:, -3:], first_goal)
    finally:
        vec.close()


@needs_metaworld
def test_metaworld_one_worker_for_the_papers_mode():
    env = AsyncVecEnv("mw-pick-place", 1, seed=3)
    try:
        assert env.action_repeat == 2 and env.episode_length == 100 and env.random_states is None
        obs, info = run_episode(env, 100)
        assert info["done"].all() and obs.shape == (1, 39) and info["terminal_obs"].shape == (1, 39)
    finally:
        env.close()


@needs_myosuite
def test_myosuite_vector_env():
    vec = AsyncVecEnv("myo-pen-twirl", 2, seed=0)  # the suite's own limit (50) is lifted to 100
    try:
        assert vec.obs_dim == 83 and vec.action_dim == 39 and vec.has_success
        _, info = run_episode(vec, 100)
        assert info["episode_length"].tolist() == [100, 100]
    finally:
        vec.close()


def test_missing_suite_names_the_fix(monkeypatch):
    monkeypatch.setattr(envs_mod, "SUITE_VENV", {"metaworld": ("MBDPO_TEST_NO_SUCH_VAR", ".venv-nonexistent", "make venv-metaworld")})
    monkeypatch.delenv("MBDPO_TEST_NO_SUCH_VAR", raising=False)
    with pytest.raises(ConfigError, match="run `make venv-metaworld`"):
        AsyncVecEnv("mw-reach", 1)
    monkeypatch.setenv("MBDPO_TEST_NO_SUCH_VAR", "/no/such/python")
    with pytest.raises(ConfigError, match="does not exist"):
        suite_python("metaworld")
    with pytest.raises(ConfigError, match="unknown task 'mw-rech'. Did you mean mw-reach"):
        AsyncVecEnv("mw-rech", 1)


def test_worker_errors_carry_the_traceback(tmp_path):
    """A worker (here under this interpreter) that cannot build its task reports why: a failure of
    the suite (MetaWorld missing here) with its traceback; the user's own mistake (an unknown task)
    as that error, for the entry point's one line."""
    import sys

    from mbdpo_fast.errors import ConfigError

    with pytest.raises(WorkerError, match="(?s)Traceback.*No module named 'metaworld'"):
        SubprocessVectorEnv("mw-reach", 1, 0, sys.executable, start_timeout=60)
    with pytest.raises(ConfigError, match="unknown task 'mw-not-a-task'"):
        SubprocessVectorEnv("mw-not-a-task", 1, 0, sys.executable, start_timeout=60)


@pytest.mark.parametrize("task", [pytest.param("mw-reach", marks=needs_metaworld),
                                  pytest.param("myo-reach", marks=needs_myosuite)])
def test_suite_workers_render_frames_for_videos(task):
    """save_video's frames from a suite worker: the copies asked for, uint8 [size, size, 3], a
    scene (not a blank image) that changes as the robot moves. In a fresh process: headless
    OpenGL must be chosen before MuJoCo is imported."""
    import os
    import subprocess
    import sys

    from mbdpo_fast.envs.cpu import pixels
    from mbdpo_fast.errors import RenderingError

    try:
        pixels.headless_gl({**os.environ, "MUJOCO_GL": ""})
    except RenderingError:
        pytest.skip("no headless OpenGL (EGL/OSMesa) on this machine")
    script = f"""
import numpy as np, torch
from mbdpo_fast.envs.cpu.pixels import use_headless_gl
use_headless_gl()
from mbdpo_fast.envs.cpu.vector import AsyncVecEnv
env = AsyncVecEnv({task!r}, 2, seed=0)
env.reset(seed=0)
a, = env.render_rgb([1], 64)
for _ in range(10):
    env.step(torch.ones(2, env.action_dim))
b, c = env.render_rgb([1, 0], 64)
env.close()
print("FRAMES", a.shape, a.dtype, float(a.std()), float(np.abs(a.astype(int) - b.astype(int)).mean()))
"""
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600,
                       env={**os.environ, "MUJOCO_GL": "", "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stderr[-3000:]
    shape, dtype, std, moved = p.stdout.split("FRAMES")[1].rsplit(maxsplit=3)
    assert shape.strip() == "(64, 64, 3)" and dtype == "uint8" and float(std) > 5 and float(moved) > 0.1, p.stdout
