"""dm_control's dog-stand/-walk/-trot/-run on MJX's Warp implementation (envs/mjx/dog.py, MuJoCo Warp
on Warp's CPU backend here): dm_control's reset and first observation, one trajectory from the same
start and actions, the implementation chosen and refused, the batched env's contract and a short
fast-mode training run."""
import numpy as np
import pytest

pytest.importorskip("mujoco_playground")
pytest.importorskip("warp")

import jax  # noqa: E402
import jax.numpy as jp  # noqa: E402
from mujoco import mjx  # noqa: E402

from mbdpo_fast.envs.mjx.tasks import build_task  # noqa: E402

from mjx_parity import assert_batched_env_contract, trajectory_errors  # noqa: E402

# From dm_control's initial state with the same random actions (docs/mjx_physics.md, measured with
# seed 0): over the first 10 agent steps the observations agree within 1.2e-3 (accelerometer and
# foot forces; 2.0e-3 with fetch's ball); at agent step 12 the right hind toe strikes the floor, and from there the
# trajectories part: MuJoCo Warp sets the tangent axes of a plane contact from the normal alone, C
# MuJoCo from the geom's frame, so under dm_control's pyramidal friction cone the friction pyramid
# is turned and the impact's friction differs. The dog under random actions is chaotic besides
# (dm_control against itself with qvel perturbed by 1e-6 differs by more than 1 within 45 agent
# steps), so over 100 agent steps the tests hold the observations to the first 10 and the rewards
# (max difference 0.018 stand, 0.007 walk, 0.005 trot, 0.004 run, 0.005 fetch) to all 100, at about
# twice the measured values.
EARLY_STEPS, EARLY_OBS_TOL, REWARD_TOL = 10, 4e-3, 0.04


@pytest.fixture(scope="module")
def stand():
    return build_task("dog-stand")


def test_warp_is_chosen_and_jax_refused(stand):
    from mbdpo_fast.envs.mjx import make_mjx_env
    from mbdpo_fast.errors import ConfigError

    assert stand.mjx_model.impl.value == "warp" and stand.mj_model.opt.noslip_iterations == 4
    assert (stand.sim_dt, stand.n_substeps) == (0.005, 3)
    with pytest.raises(ConfigError, match="dog-run runs on MJX's Warp implementation only .*set impl=warp"):
        make_mjx_env("dog-run", 2, impl="jax")


def test_reset_is_dm_controls_and_so_is_its_first_observation(stand):
    """qpos0 turned about the vertical by a random azimuth, root x/y/yaw velocities only, activations
    inside their control ranges; dm_control's reset state put through the task's reset forward pass
    (actuation off) observes what dm_control's first observation says."""
    from mbdpo_fast.envs.cpu.dmcontrol import DMControlEnv

    m = stand.mj_model
    reset = jax.jit(stand.reset)
    for seed in range(3):
        s = reset(jax.random.PRNGKey(seed))
        q, v, act = (np.asarray(x) for x in (s.data.qpos, s.data.qvel, s.data.act))
        assert np.allclose(q[:3], m.qpos0[:3]) and np.allclose(q[7:], m.qpos0[7:], atol=1e-6)
        assert abs(np.linalg.norm(q[3:7]) - 1) < 1e-5 and q[4] == 0 and q[5] == 0
        assert np.flatnonzero(v).tolist() == [0, 1, 5]
        lo, hi = m.actuator_ctrlrange.T
        assert ((act >= lo) & (act <= hi)).all() and s.obs.shape == (223,)

    dm = DMControlEnv("dog-stand", 3)
    first = dm.reset()
    ph = dm.physics
    data = stand._forward_without_actuation(stand._make_data(jp.asarray(ph.data.qpos), jp.asarray(ph.data.qvel),
                                                             jp.asarray(ph.data.act)))
    obs = np.asarray(stand._get_obs(data, {}))
    assert np.abs(obs - first).max() < 1e-3, np.abs(obs - first).max()


@pytest.mark.parametrize("task", ["dog-stand", "dog-walk", "dog-trot", "dog-run", "dog-fetch"])
def test_trajectory_against_dm_control_over_100_agent_steps(task):
    err = trajectory_errors(task, steps=100)
    assert max(err["obs"][:EARLY_STEPS]) < EARLY_OBS_TOL, (task, err["obs"][:EARLY_STEPS])
    assert max(err["reward"]) < REWARD_TOL, (task, max(err["reward"]))


def test_fetch_throws_the_ball_at_the_centre_and_observes_it_in_the_head_frame():
    """dog-fetch's reset: the dog as Stand's, the ball 7.5 m from the centre at 5 cm height thrown
    towards the centre; its observation (232) ends with dm_control's ball and target terms, which a
    matched state reproduces (mj_objectVelocity's linear velocities from MJX's cvel)."""
    from mbdpo_fast.envs.cpu.dmcontrol import DMControlEnv

    env = build_task("dog-fetch")
    s = jax.jit(env.reset)(jax.random.PRNGKey(0))
    q, v = np.asarray(s.data.qpos), np.asarray(s.data.qvel)
    b, d = env._ball_qpos, env._ball_dof
    assert abs(np.linalg.norm(q[b:b + 2]) - 7.5) < 1e-4 and abs(q[b + 2] - 0.05) < 1e-6 and s.obs.shape == (232,)
    assert np.dot(v[d:d + 2], -q[b:b + 2]) >= 0 and v[d + 2] >= 0  # towards the centre, upwards

    dm = DMControlEnv("dog-fetch", 1)
    dm.reset()
    rng = np.random.default_rng(1)
    for _ in range(15):
        dm.step(rng.uniform(-1, 1, 38))
    ph = dm.physics
    ph.forward()
    data = jax.jit(lambda d: mjx.forward(env.mjx_model, d))(
        env._make_data(jp.asarray(ph.data.qpos), jp.asarray(ph.data.qvel), jp.asarray(ph.data.act)))
    ours = np.asarray(env._get_obs(data, {}))[-9:]
    theirs = np.concatenate([ph.ball_in_head_frame(), ph.target_in_head_frame()])
    assert np.abs(ours - theirs).max() < 1e-4, (ours, theirs)


def test_batched_env_contract_and_fast_mode_training_run(tmp_path):
    """E = 2 dog-run through the DLPack bridge (auto-reset, one compile each), then a tiny fast-mode
    run of the trainer on it (impl=auto) with a dm_control evaluation."""
    from mbdpo_fast.envs.mjx import make_mjx_env
    from mbdpo_fast.train import run

    from helpers import compose_cfg, tiny_with

    env = make_mjx_env("dog-run", 2, seed=0, episode_length=3)
    assert env.env.mjx_model.impl.value == "warp"
    assert_batched_env_contract(env, steps=3, obs_dim=223, action_dim=38)

    args = tiny_with("task=dog-run", "env_backend=mjx", "num_envs=2", "episode_length=10", "seed_steps=20",
                     "updates_per_step=1", "eval_episodes=1", "eval_freq=40", "steps=40", "log_every=5")
    summary = run(compose_cfg(args, tmp_path))
    assert summary["step"] == 40
    import csv

    evals = list(csv.DictReader(open(tmp_path / "eval.csv")))
    assert [r["step"] for r in evals] == ["0", "40"] and all(np.isfinite(float(r["reward"])) for r in evals)
