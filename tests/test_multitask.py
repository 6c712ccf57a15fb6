"""Multi-task configuration: the mt30/mt80 task sets and their facts, per-task masks/discounts,
padded environments, normalised scores, gradient checkpointing."""
from unittest import mock

import pytest
import torch

from mbdpo_fast.agent import MBDPO
from mbdpo_fast.batch import Batch
from mbdpo_fast.config import default_config, resolve_tasks
from mbdpo_fast.errors import ConfigError
from mbdpo_fast.envs.cpu.vector import AsyncVecEnv
from mbdpo_fast.envs.padded import PaddedEnv
from mbdpo_fast.task_registry import MT80, expand, normalized_score

from conftest import tiny_config

TINY = dict(model_size=1, enc_dim=32, mlp_dim=32, latent_dim=16, num_q=3, num_samples=32, num_elites=4,
            num_pi_trajs=4, diffusion_steps=4, batch_size=16, device="cpu", work_dir="unused")



def test_mt80_config_pads_and_sets_per_task_facts():
    cfg = resolve_tasks(default_config(task="mt80", **TINY))
    assert cfg.multitask and list(cfg.tasks) == list(MT80)
    assert (cfg.obs_dim, cfg.action_dim) == (39, 6)
    assert cfg.action_dims[0] == 6 and cfg.action_dims[4] == 2 and cfg.action_dims[30:] == (4,) * 50
    assert cfg.episode_lengths[:30] == (500,) * 30 and cfg.episode_lengths[30:] == (100,) * 50
    agent = MBDPO(cfg)
    # gamma = clip((L/5 - 1)/(L/5), 0.95, 0.995): 0.99 for 500 steps, 0.95 for 100
    assert torch.allclose(agent.discounts[:30], torch.tensor(0.99)) and torch.allclose(agent.discounts[30:], torch.tensor(0.95))
    masks = agent.model.action_masks
    assert masks.shape == (80, 6) and masks[4].tolist() == [1, 1, 0, 0, 0, 0] and masks[40].sum() == 4
    mt30 = resolve_tasks(default_config(task="mt30", **TINY))
    assert (mt30.obs_dim, mt30.action_dim, len(mt30.tasks)) == (24, 6, 30)


def test_task_list_errors():
    with pytest.raises(ConfigError, match="more than once"):
        expand(["mt30", "walker-run"])
    with pytest.raises(ConfigError, match="unknown task 'walker-rnu'"):
        resolve_tasks(default_config(tasks=["walker-rnu", "cheetah-run"], **TINY))
    with pytest.raises(ConfigError, match="at least 2 tasks"):
        resolve_tasks(default_config(tasks=["cheetah-run"], **TINY))
    with pytest.raises(ConfigError, match="smaller than the largest"):
        resolve_tasks(default_config(tasks=["cheetah-run", "walker-run"], **TINY), obs_dim=20)
    cfg = resolve_tasks(default_config(tasks=["cheetah-run", "pendulum-swingup"], episode_length=50, **TINY))
    assert cfg.episode_lengths == (50, 50) and cfg.obs_dims == (17, 3)


def test_multitask_update_and_masked_actions():
    cfg = resolve_tasks(default_config(tasks=["cheetah-run", "pendulum-swingup", "mw-reach"], **TINY))
    agent = MBDPO(cfg)
    H, B = cfg.horizon, 16
    g = torch.Generator().manual_seed(0)
    batch = Batch(torch.randn(H + 1, B, cfg.obs_dim, generator=g), torch.rand(H, B, cfg.action_dim, generator=g) * 2 - 1,
                  torch.rand(H, B, 1, generator=g), torch.zeros(H, B, 1), torch.arange(B) % 3)
    out = agent.update(batch)
    assert all(torch.isfinite(v).all() for v in out.values())
    a, _ = agent.act(torch.randn(3, cfg.obs_dim), agent.planner.initial_plan(3), task=torch.tensor([0, 1, 2]))
    assert (a[1, 1:] == 0).all() and (a[2, 4:] == 0).all() and (a[0] != 0).all()


def test_padded_env_pads_observations_and_cuts_actions():
    env = PaddedEnv(AsyncVecEnv("pendulum-swingup", 1, seed=0, episode_length=5, asynchronous=False),
                    obs_dim=24, action_dim=6)
    obs = env.reset(seed=0)
    assert obs.shape == (1, 24) and obs.dtype == torch.float32 and (obs[:, 3:] == 0).all() and obs[:, :3].abs().sum() > 0
    for _ in range(5):
        obs, r, term, trunc, info = env.step(torch.tensor([[0.5, 9, 9, 9, 9, 9]]))
    assert obs.shape == (1, 24) and info["terminal_obs"].shape == (1, 24) and bool(info["done"][0])
    assert (info["terminal_obs"][:, 3:] == 0).all() and env.episode_length == 5 and env.random_states is not None
    with pytest.raises(ConfigError, match="more than the model's padded"):
        PaddedEnv(AsyncVecEnv("walker-run", 1, seed=0, asynchronous=False), obs_dim=17, action_dim=6)


def test_normalised_score():
    assert normalized_score("cheetah-run", 850.0, None) == 85.0
    assert normalized_score("mw-reach", 12.3, 0.7) == pytest.approx(70.0)
    with pytest.raises(ValueError, match="success rate"):
        normalized_score("mw-reach", 1.0, None)


@pytest.mark.parametrize("multitask", [False, True])
def test_gradient_checkpointing_gives_the_same_update(multitask):
    """Recomputed activations (dropout masks replayed) give the same losses and parameters (fp32, 1e-6)."""
    def run(flag):
        torch.manual_seed(0)
        if multitask:
            cfg = resolve_tasks(default_config(tasks=["cheetah-run", "pendulum-swingup"], grad_checkpoint=flag, **TINY))
        else:
            cfg = tiny_config(grad_checkpoint=flag)
        agent = MBDPO(cfg)
        g = torch.Generator().manual_seed(1)
        H, B = cfg.horizon, 16
        batch = Batch(torch.randn(H + 1, B, cfg.obs_dim, generator=g), torch.rand(H, B, cfg.action_dim, generator=g) * 2 - 1,
                      torch.rand(H, B, 1, generator=g), torch.zeros(H, B, 1), torch.arange(B) % 2 if multitask else None)
        real = torch.utils.checkpoint.checkpoint
        with mock.patch("torch.utils.checkpoint.checkpoint", side_effect=real) as spy:
            outs = [agent.update(batch) for _ in range(3)]
        assert spy.call_count > 0 if flag else spy.call_count == 0
        return outs, agent.model.state_dict()

    (o1, s1), (o2, s2) = run(False), run(True)
    for a, b in zip(o1, o2):
        for k in a:
            assert torch.allclose(a[k], b[k], atol=1e-6, rtol=1e-6), k
    for k in s1:
        assert torch.allclose(s1[k], s2[k], atol=1e-6, rtol=1e-5), k


@pytest.mark.parametrize("size", [1, 5, 19])
def test_model_sizes_train_multitask(size):
    """The presets on mt80 shapes run a finite multi-task update (48 and 317 build in
    test_world_model's meta-device counts; their update is benchmarks/offline_update.py's, on a GPU)."""
    torch.manual_seed(0)
    cfg = resolve_tasks(default_config(task="mt80", model_size=size, batch_size=8, device="cpu", work_dir="x"))
    agent = MBDPO(cfg)
    H, B = cfg.horizon, 8
    batch = Batch(torch.randn(H + 1, B, 39), (torch.rand(H, B, 6) * 2 - 1) * agent.model.action_masks[torch.arange(B) * 10],
                  torch.rand(H, B, 1), torch.zeros(H, B, 1), torch.arange(B) * 10)
    out = agent.update(batch)
    assert all(torch.isfinite(v).all() for v in out.values())
