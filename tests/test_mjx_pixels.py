"""obs=rgb on MJX: every env's frame rendered at once by MuJoCo Warp (envs/mjx/pixels.py), through
MJXVecEnv and the vectorised trainer. Runs wherever warp-lang is installed, on Warp's CPU backend
without a GPU (it compiles MuJoCo Warp's kernels for the CPU the first time: a minute or two)."""
import numpy as np
import pytest
import torch

from mbdpo_fast.envs.mjx.pixels import warp_available

WHY_NOT = warp_available()
pytestmark = pytest.mark.skipif(WHY_NOT is not None, reason=f"MuJoCo Warp rendering unavailable: {WHY_NOT}")


@pytest.fixture(scope="module")
def env():
    from mbdpo_fast.envs.mjx import make_mjx_env

    return make_mjx_env("cheetah-run", 2, seed=0, episode_length=3, impl="warp", pixels=True)


def test_frames_stack_shift_reset_and_terminal_obs(env):
    """uint8 [E, 9, 64, 64]; reset repeats the first frame; each step drops the oldest frame and
    appends the new one; the step that ends an episode returns the stack it ended on as terminal_obs
    and the next episode's first stack as obs; the same seed gives the same frames."""
    assert env.obs_shape == (9, 64, 64) and env.obs_dim == 9 * 64 * 64
    obs = env.reset(seed=3)
    assert obs.shape == (2, 9, 64, 64) and obs.dtype == torch.uint8
    assert torch.equal(obs[:, :3], obs[:, 3:6]) and torch.equal(obs[:, 3:6], obs[:, 6:])
    # a real picture: many colours, the body's orange and the floor's blue both present
    assert len(torch.unique(obs[0, :3].reshape(3, -1), dim=1).T) > 50
    assert (obs[0, 0].float() - obs[0, 2].float()).max() > 100 and (obs[0, 2].float() - obs[0, 0].float()).max() > 40
    torch.manual_seed(0)
    actions = [torch.rand(2, env.action_dim) * 2 - 1 for _ in range(3)]
    stacks = [obs.clone()]
    for t, a in enumerate(actions):
        nxt, reward, term, trunc, info = env.step(a)
        prev = stacks[-1]
        if t < 2:
            assert not info["done"].any()
            assert torch.equal(nxt[:, :6], prev[:, 3:])
            assert not torch.equal(nxt[:, 6:], prev[:, 6:])  # the body moved
        else:  # the third step ends both 3-step episodes
            assert info["done"].all() and trunc.all() and not term.any()
            ended = info["terminal_obs"]
            assert ended.dtype == torch.uint8 and torch.equal(ended[:, :6], prev[:, 3:])
            assert torch.equal(nxt[:, :3], nxt[:, 6:]) and not torch.equal(nxt, ended)
        stacks.append(nxt.clone())
    assert torch.equal(env.reset(seed=3), stacks[0])
    again = [env.step(a)[0].clone() for a in actions[:2]]
    assert all(torch.equal(x, y) for x, y in zip(again, stacks[1:3]))


def test_frames_reach_torch_without_a_copy(env):
    """The observation torch gets is a view of the JAX buffer the jitted step wrote."""
    obs = env.reset(seed=1)
    assert obs.data_ptr() == env._carry["stack"].unsafe_buffer_pointer()
    obs, *_ = env.step(torch.zeros(2, env.action_dim))
    assert obs.data_ptr() == env._carry["stack"].unsafe_buffer_pointer()
    assert env.compiled_counts() == {"reset": 1, "step": 1}


def test_warp_frames_match_the_model_camera(env):
    """The renderer's picture of a state changes with the state's pose and not with nothing: two envs
    in different poses give different frames, one pose rendered twice gives identical frames."""
    import jax

    state = env._carry["state"]
    a = np.asarray(env._frames(state.data))
    b = np.asarray(env._frames(state.data))
    assert np.array_equal(a, b)
    assert not np.array_equal(a[0], a[1])
    assert jax.device_get(state.data.qpos).shape[0] == 2


def test_vectorised_training_from_mjx_pixels(tmp_path):
    """obs=rgb env_backend=mjx impl=warp through the vectorised trainer: 2 envs, 10-step episodes,
    40 agent steps with updates from step 20; the replay holds one uint8 frame per slot."""
    import csv

    from helpers import compose_cfg

    from mbdpo_fast.train import run

    args = ["device=cpu", "task=cheetah-run", "obs=rgb", "env_backend=mjx", "impl=warp", "num_envs=2",
            "model_size=1", "mlp_dim=32", "latent_dim=512", "num_q=2", "num_samples=16", "num_elites=4",
            "num_pi_trajs=2", "diffusion_steps=3", "batch_size=4", "buffer_size=2000", "episode_length=10",
            "seed_steps=20", "steps=40", "eval_episodes=0", "log_every=5", "checkpoint_freq=40",
            "progress_bar=false"]
    summary = run(compose_cfg(args, tmp_path))
    assert summary["step"] == 40
    rows = list(csv.DictReader(open(tmp_path / "train.csv")))
    assert int(rows[-1]["episode"]) == 40 // 10
    assert all(r["total_loss"] not in ("", "nan") for r in rows if int(r["step"]) > 20)
    from mbdpo_fast.data.checkpoint import load_checkpoint, safe_load

    ck = load_checkpoint(tmp_path / "checkpoint.pt")
    obs = safe_load(tmp_path / ck["replay_file"])["obs"]
    assert obs.dtype == torch.uint8 and tuple(obs.shape[2:]) == (3, 64, 64)
