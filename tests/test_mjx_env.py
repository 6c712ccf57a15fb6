"""The batched MJX environment: contract, auto-reset, terminal observations, DLPack, no re-trace."""
import pytest
import torch

jax = pytest.importorskip("jax")
pytest.importorskip("mujoco_playground")

from mbdpo_fast.errors import ConfigError  # noqa: E402
from mbdpo_fast.envs.mjx import make_mjx_env  # noqa: E402
from mbdpo_fast.envs.mjx.bridge import to_jax, to_torch  # noqa: E402
from mbdpo_fast.envs.mjx.tasks import mjx_task_names  # noqa: E402

E = 4


@pytest.fixture(scope="module")
def pendulum():
    return make_mjx_env("pendulum-swingup", E, seed=3)


@pytest.fixture(scope="module")
def pendulum_no_reset():
    """The same env (same seed, so the same initial states) with episodes too long to end."""
    return make_mjx_env("pendulum-swingup", E, seed=3, episode_length=10_000)


def test_dlpack_is_zero_copy_both_ways():
    x = jax.numpy.arange(12.0).reshape(3, 4)
    t = to_torch(x)
    assert t.data_ptr() == x.unsafe_buffer_pointer() and t.shape == (3, 4)
    u = torch.arange(8.0)
    j = to_jax(u)
    assert j.unsafe_buffer_pointer() == u.data_ptr()


def test_episode_contract_auto_reset_and_terminal_obs(pendulum, pendulum_no_reset):
    obs, obs_twin = pendulum.reset(), pendulum_no_reset.reset()
    assert obs.shape == (E, 3) and obs.dtype == torch.float32 and isinstance(obs, torch.Tensor)
    torch.testing.assert_close(obs, obs_twin)  # same seed, same initial states
    g = torch.Generator().manual_seed(0)
    total = torch.zeros(E)
    for t in range(1, 501):
        a = torch.rand(E, 1, generator=g) * 2 - 1
        obs, r, term, trunc, info = pendulum.step(a)
        obs_twin, r_twin, *_ = pendulum_no_reset.step(a)
        assert torch.isfinite(obs).all() and torch.isfinite(r).all()
        assert r.shape == (E,) and term.dtype == torch.bool and not term.any()
        total += r
        if t < 500:
            assert not trunc.any() and not info["done"].any()
            torch.testing.assert_close(info["terminal_obs"], obs)
            torch.testing.assert_close(obs, obs_twin, rtol=1e-5, atol=1e-5)
    # truncation at 500 agent steps, all envs together
    assert trunc.all() and info["done"].all()
    assert info["episode_length"].tolist() == [500] * E
    torch.testing.assert_close(info["episode_return"], total, rtol=1e-4, atol=1e-3)
    # the terminal observation is the state the episode ended in (the twin's), obs is a fresh reset
    torch.testing.assert_close(info["terminal_obs"], obs_twin, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(obs, obs_twin)
    # the next episode counts from zero again
    _, _, _, trunc, info = pendulum.step(torch.zeros(E, 1))
    assert not trunc.any() and info["episode_length"].tolist() == [1] * E
    # nothing re-traced or re-compiled across 500 steps, an auto-reset and a reset()
    pendulum.reset()
    pendulum.step(torch.zeros(E, 1))
    assert pendulum.compiled_counts() == {"reset": 1, "step": 1}


def test_bad_actions_and_unknown_tasks(pendulum):
    pendulum.reset()
    with pytest.raises(ValueError, match=r"actions must be \[4, 1\]"):
        pendulum.step(torch.zeros(E, 2))
    with pytest.raises(ConfigError, match="unknown MJX task 'cheetah-rnu'. Did you mean cheetah-run"):
        make_mjx_env("cheetah-rnu", 2)
    with pytest.raises(ConfigError, match="impl"):
        make_mjx_env("cheetah-run", 2, impl="cuda")


@pytest.mark.mjx_all  # cheetah-run's MJX contract is also covered in CI by its parity test and the pixel tests
def test_cheetah_run_steps_on_cpu():
    env = make_mjx_env("cheetah-run", 8, seed=0)
    obs = env.reset()
    assert obs.shape == (8, 17)
    for _ in range(20):
        obs, r, term, trunc, info = env.step(torch.rand(8, 6) * 2 - 1)
    assert torch.isfinite(obs).all() and (r >= 0).all() and (r <= 2).all()  # two repeats of a [0, 1] reward
    assert env.compiled_counts()["step"] == 1


@pytest.mark.mjx_all
@pytest.mark.parametrize("task", mjx_task_names())
def test_every_task_constructs_resets_and_steps(task):
    env = make_mjx_env(task, 2, seed=1, episode_length=5)
    obs = env.reset()
    for _ in range(6):  # crosses one truncation and auto-reset
        obs, r, term, trunc, info = env.step(torch.rand(2, env.action_dim) * 2 - 1)
    assert obs.shape == (2, env.obs_dim) and torch.isfinite(obs).all() and torch.isfinite(r).all()
    assert info["episode_length"].tolist() == [1, 1] and env.compiled_counts()["step"] == 1
