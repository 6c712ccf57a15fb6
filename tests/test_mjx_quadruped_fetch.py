"""dm_control's quadruped-fetch on MJX (envs/mjx/quadruped.py, MJX's JAX implementation): dm_control's
reset of the torso and the ball, and one trajectory from dm_control's start with the same actions.
(A file of its own: compiling the task's reset and step takes minutes on a CPU, and test files run
side by side.)"""
import numpy as np
import pytest

pytest.importorskip("mujoco_playground")

import jax  # noqa: E402

from mbdpo_fast.envs.mjx.tasks import build_task  # noqa: E402

from mjx_parity import trajectory_errors  # noqa: E402

# quadruped-fetch starts upright, its toes exactly on the floor (dm_control's 1 cm search stops at a
# height where float64 measures a distance of +0 and float32 -1e-7): MuJoCo counts no contact, MJX a
# resting one, so the first steps differ (max |obs difference| 0.53 over the first 10 agent steps,
# in the toe forces and IMU), and the standing quadruped under random actions is chaotic (dm_control
# against itself, qvel perturbed by 1e-6: more than 1 apart at agent step 50; walk, which mostly
# lies, stays within 0.006): MJX parts from dm_control by more than 1 at agent step 17. Its rewards
# stay within 0.0069 over 100 agent steps. Tolerances about twice those.
FETCH_TOL = {"early_obs": 1.0, "reward": 0.014}


def test_fetch_trajectory_against_dm_control_over_100_agent_steps():
    err = trajectory_errors("quadruped-fetch", steps=100)
    assert max(err["obs"][:10]) < FETCH_TOL["early_obs"], err["obs"][:10]
    assert max(err["reward"]) < FETCH_TOL["reward"], max(err["reward"])


def test_fetch_reset_places_torso_and_ball_as_dm_control():
    """quadruped-fetch: the torso turned about the vertical at a random spot within 90% of the
    floor's half-width, lifted until nothing touches; the ball 2 m up at a random spot, rolling
    horizontally; the observation (90) ends with the ball's state and the target in the torso frame."""
    env = build_task("quadruped-fetch")
    s = jax.jit(env.reset)(jax.random.PRNGKey(3))
    q, v = np.asarray(s.data.qpos), np.asarray(s.data.qvel)
    r, b, d = env._root_qpos, env._ball_qpos, env._ball_dof
    assert q[r + 4] == 0 and q[r + 5] == 0 and abs(np.linalg.norm(q[r + 3:r + 7]) - 1) < 1e-5
    assert (np.abs(q[r:r + 2]) <= env._spawn_radius).all() and (np.abs(q[b:b + 2]) <= env._spawn_radius).all()
    assert abs(q[b + 2] - 2.0) < 1e-6 and np.flatnonzero(v).tolist() == [d, d + 1] and s.obs.shape == (90,)
    assert int((np.asarray(s.data._impl.contact.dist) < 0).sum()) == 0
