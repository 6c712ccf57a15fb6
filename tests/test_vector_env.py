"""CPU suites in worker processes behind the batched interface (dm_control here)."""
import numpy as np
import pytest
import torch

from mbdpo_fast.envs.cpu.suites import make_suite_env
from mbdpo_fast.envs.cpu.vector import AsyncVecEnv


@pytest.fixture(scope="module")
def vec():
    env = AsyncVecEnv("cheetah-run", 2, seed=5, episode_length=30)
    yield env
    env.close()


def test_matches_single_envs_and_auto_resets(vec):
    singles = [make_suite_env("cheetah-run", 5 + i, episode_length=30) for i in range(2)]
    obs = vec.reset()
    ref = np.stack([s.reset() for s in singles])
    assert obs.shape == (2, 17) and obs.dtype == torch.float32
    np.testing.assert_allclose(obs.numpy(), ref, rtol=1e-6)
    g = torch.Generator().manual_seed(0)
    total = torch.zeros(2)
    for t in range(1, 31):
        a = torch.rand(2, 6, generator=g) * 2 - 1
        obs, r, term, trunc, info = vec.step(a)
        steps = [s.step(a[i].numpy()) for i, s in enumerate(singles)]
        total += r
        np.testing.assert_allclose(r.numpy(), [s[1] for s in steps], rtol=1e-6)
        np.testing.assert_allclose(info["terminal_obs"].numpy(), np.stack([s[0] for s in steps]), rtol=1e-5, atol=1e-6)
        assert bool(trunc.all()) == (t == 30) and not term.any()
    assert info["done"].all() and info["episode_length"].tolist() == [30, 30]
    torch.testing.assert_close(info["episode_return"], total)
    # obs after the end is the next episode's first observation, not the terminal one
    assert not torch.allclose(obs, info["terminal_obs"])
    _, _, _, _, info = vec.step(torch.zeros(2, 6))
    assert info["episode_length"].tolist() == [1, 1]


def test_shape_errors_and_fork_refused(vec):
    with pytest.raises(ValueError, match=r"actions must be \[2, 6\]"):
        vec.step(torch.zeros(3, 6))
    with pytest.raises(ValueError, match="fork"):
        AsyncVecEnv("cheetah-run", 1, context="fork")


def test_in_process_copies_equal_the_workers_and_reseed(vec):
    sync = AsyncVecEnv("cheetah-run", 2, seed=5, episode_length=30, asynchronous=False)
    assert len(sync.random_states) == 2 and vec.random_states is None
    a = torch.rand(2, 6, generator=torch.Generator().manual_seed(1)) * 2 - 1
    for seed in (11, 11, 12):
        o1, o2 = sync.reset(seed=seed), vec.reset(seed=seed)
        torch.testing.assert_close(o1, o2)
        torch.testing.assert_close(sync.step(a)[0], vec.step(a)[0])
    assert not torch.allclose(sync.reset(seed=11), sync.reset(seed=12))
    sync.close()
