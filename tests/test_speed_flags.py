"""Each speed flag against the path without it (CPU here; the CUDA-graph flag in test_cuda.py).
Tolerances: fp32 paths 1e-5 relative (compiled kernels reassociate sums), bf16 paths 2e-2."""

import pytest
import torch

from mbdpo_fast.agent import MBDPO, percentiles
from mbdpo_fast.batch import Batch
from mbdpo_fast.planner import DiffusionPlanner, imagined_value
from mbdpo_fast.world_model import WorldModel

from conftest import nontrivial, tiny_config


def rel_err(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()


def batch_for(cfg, B=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    H = cfg.horizon
    return Batch(obs=torch.randn(H + 1, B, cfg.obs_dim, generator=g), action=torch.rand(H, B, cfg.action_dim, generator=g) * 2 - 1,
                 reward=torch.rand(H, B, 1, generator=g), terminated=torch.zeros(H, B, 1))


@pytest.mark.parametrize("n", [1, 2, 7, 64, 301])
def test_percentiles_match_torch_quantile(n):
    x = torch.randn(n) * 10
    got = percentiles(x, (0.05, 0.5, 0.95))
    want = torch.quantile(x, torch.tensor([0.05, 0.5, 0.95]))
    torch.testing.assert_close(torch.stack(got), want, rtol=1e-6, atol=1e-6)


def test_compiled_denoising_step_equals_eager():
    torch.manual_seed(0)
    cfg = tiny_config(num_samples=32, num_elites=4, num_pi_trajs=4, diffusion_steps=5)
    model = nontrivial(WorldModel(cfg)).eval()
    eager = DiffusionPlanner(cfg, model)
    compiled = DiffusionPlanner(tiny_config(num_samples=32, num_elites=4, num_pi_trajs=4, diffusion_steps=5,
                                            compile=True), model)
    E = 3
    z0 = model.encode(torch.randn(E, 7))
    prev = torch.rand(E, cfg.horizon, 3) * 2 - 1
    bank = {tau: eager.draw_noise(E, "cpu") for tau in range(1, 5)}
    bank[0] = {"action": torch.randn(E, 3)}
    a1, p1 = eager.plan(z0, prev, noise_fn=lambda tau, n: bank[tau])
    a2, p2 = compiled.plan(z0, prev, noise_fn=lambda tau, n: bank[tau])
    assert rel_err(p2, p1) < 1e-5 and rel_err(a2, a1) < 1e-5


def test_compiled_update_equals_eager(monkeypatch):
    import torch._inductor.config as inductor_config
    monkeypatch.setattr(inductor_config, "fallback_random", True)  # same random numbers as eager
    torch.manual_seed(0)
    cfg = tiny_config()
    eager = MBDPO(cfg)
    compiled = MBDPO(tiny_config(compile=True))
    compiled.model.load_state_dict(eager.model.state_dict())
    batch = batch_for(cfg)
    for step in range(2):
        torch.manual_seed(100 + step)
        out_e = eager.update(batch)
        torch.manual_seed(100 + step)
        out_c = compiled.update(batch)
        for k in ("total_loss", "consistency_loss", "reward_loss", "value_loss", "energy_loss", "pi_loss"):
            assert rel_err(out_c[k], out_e[k]) < 1e-5, (step, k, float(out_c[k]), float(out_e[k]))
    # Adam divides by sqrt(v): an element whose gradient is ~0 moves by up to lr either way, so a 1e-7 difference in
    # its gradient can move it by ~1e-7 absolute (measured 4e-7 on one of 608 weights, 1e-5 of a fresh bias's norm).
    # Parameters are therefore compared at 1e-4 of their norm; the losses above hold at 1e-5.
    for (name, p_e), p_c in zip(eager.model.named_parameters(), compiled.model.parameters()):
        assert rel_err(p_c, p_e) < 1e-4, name


def test_bf16_update_is_close_to_fp32():
    torch.manual_seed(0)
    cfg = tiny_config(mlp_dim=64, latent_dim=32)
    fp32 = MBDPO(cfg)
    nontrivial(fp32.model)
    bf16 = MBDPO(tiny_config(mlp_dim=64, latent_dim=32, bf16_update=True))
    bf16.model.load_state_dict(fp32.model.state_dict())
    batch = batch_for(cfg, B=64)
    torch.manual_seed(7)
    out32 = fp32.update(batch)
    torch.manual_seed(7)
    out16 = bf16.update(batch)
    for k in ("total_loss", "consistency_loss", "reward_loss", "value_loss", "energy_loss"):
        assert rel_err(out16[k], out32[k]) < 2e-2, (k, float(out16[k]), float(out32[k]))
    assert all(torch.isfinite(v).all() for v in out16.values())


def test_bf16_plan_values_are_close_to_fp32():
    torch.manual_seed(0)
    cfg = tiny_config(mlp_dim=64, latent_dim=32)
    model = nontrivial(WorldModel(cfg)).eval()
    z = model.encode(torch.randn(256, 7))
    actions = torch.rand(cfg.horizon, 256, 3) * 2 - 1
    eps, heads = torch.randn(256, 3), torch.tensor([0, 2])
    gamma = torch.full((256, 1), 0.99)
    v32 = imagined_value(model, z, actions, None, gamma, 0.01, False, pi_eps=eps, heads=heads)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        v16 = imagined_value(model, z, actions, None, gamma, 0.01, False, pi_eps=eps, heads=heads)
    assert v16.dtype == torch.float32 and rel_err(v16, v32) < 2e-2
    planner = DiffusionPlanner(tiny_config(mlp_dim=64, latent_dim=32, bf16_plan=True), model)
    action, plan = planner.plan(z[:4], planner.initial_plan(4))
    assert plan.dtype == torch.float32 and torch.isfinite(plan).all()


def test_gpu_only_flag_on_cpu_says_so_and_threads_follow_the_affinity(monkeypatch):
    import os
    import warnings

    from mbdpo_fast.config import apply_threads

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        MBDPO(tiny_config(cudagraphs=True))
    assert any("cudagraphs=true has no effect on device cpu" in str(w.message) for w in caught)
    before = torch.get_num_threads()
    try:
        assert apply_threads(tiny_config(threads=1)) == 1
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        assert apply_threads(tiny_config()) == len(os.sched_getaffinity(0))
        monkeypatch.setenv("OMP_NUM_THREADS", "1")  # what a shared machine's job is given
        assert apply_threads(tiny_config()) == 1
    finally:
        torch.set_num_threads(before)
