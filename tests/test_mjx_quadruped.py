"""dm_control's quadruped-walk and quadruped-run on MJX (envs/mjx/quadruped.py): dm_control's reset,
its observation and reward on matched states, the same trajectory from the same start and actions,
the batched env's contract, and a short fast-mode training run."""
import numpy as np
import pytest

pytest.importorskip("mujoco_playground")

import jax  # noqa: E402

from mbdpo_fast.envs.mjx.tasks import build_task  # noqa: E402

from mjx_parity import assert_batched_env_contract, trajectory_errors  # noqa: E402

# Over 100 agent steps (200 control steps, 800 physics steps) from dm_control's own initial state with
# the same actions: measured max |obs difference| 0.070 (the first above 1e-3 at agent step 8; the
# largest terms are arcsinh of toe contact forces) and max |reward difference| 3.2e-4 (walk) /
# 3.2e-5 (run), float32 MJX against float64 C MuJoCo with the same model and solver settings
# (docs/mjx_physics.md). The tolerances are twice those.
TRAJECTORY_TOL = {"obs": 0.14, "reward": 6.4e-4}


@pytest.fixture(scope="module")
def walk():
    return build_task("quadruped-walk")


def test_reset_is_dm_controls_random_orientation_lifted_until_nothing_touches(walk):
    """A unit quaternion drawn from a normalised Gaussian, joints at their reference, the torso
    raised in 1 cm steps from z = 0 to the first height without contact; zero velocity."""
    reset = jax.jit(walk.reset)
    for seed in range(3):
        s = reset(jax.random.PRNGKey(seed))
        q = np.asarray(s.data.qpos)
        assert abs(np.linalg.norm(q[3:7]) - 1) < 1e-5 and np.allclose(q[7:], walk.mj_model.qpos0[7:])
        z = q[2]
        assert abs(z / 0.01 - round(z / 0.01)) < 1e-3 and 0 < z < 1.5, z
        assert int((np.asarray(s.data._impl.contact.dist) < 0).sum()) == 0
        assert not np.asarray(s.data.qvel).any() and s.obs.shape == (78,)
        # one centimetre lower touches
        import mujoco

        m, d = walk.mj_model, mujoco.MjData(walk.mj_model)
        d.qpos[:] = q
        d.qpos[2] = z - 0.01
        mujoco.mj_forward(m, d)
        assert d.ncon > 0


@pytest.mark.parametrize("task", ["quadruped-walk", "quadruped-run"])
def test_same_trajectory_as_dm_control_over_100_agent_steps(task):
    err = trajectory_errors(task, steps=100)
    assert max(err["obs"]) < TRAJECTORY_TOL["obs"], (task, max(err["obs"]), err["first_obs_above_1e-3"])
    assert max(err["reward"]) < TRAJECTORY_TOL["reward"], (task, max(err["reward"]))


def test_batched_env_contract_and_fast_mode_training_run(tmp_path):
    """E = 2 quadruped-walk through the DLPack bridge (500-step episodes, auto-reset), then a tiny
    fast-mode run of the trainer on it with a dm_control evaluation."""
    from mbdpo_fast.envs.mjx import make_mjx_env
    from mbdpo_fast.train import run

    from helpers import compose_cfg, tiny_with

    env = make_mjx_env("quadruped-walk", 2, seed=0, episode_length=5)
    assert_batched_env_contract(env, steps=5, obs_dim=78, action_dim=12)

    args = tiny_with("task=quadruped-walk", "env_backend=mjx", "num_envs=2", "episode_length=20", "seed_steps=40",
                     "updates_per_step=1", "eval_episodes=2", "eval_freq=80", "steps=80", "log_every=5")
    summary = run(compose_cfg(args, tmp_path))
    assert summary["step"] == 80
    import csv

    evals = list(csv.DictReader(open(tmp_path / "eval.csv")))
    assert [r["step"] for r in evals] == ["0", "80"] and all(np.isfinite(float(r["reward"])) for r in evals)
