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


def test_compiled_update_equals_eager():
    # on a CPU the compiled graphs draw their random numbers from torch's generators
    # (planner.compile_options: fallback_random), so eager and compiled see the same numbers
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


# ------------------------------------------------------------------------------------------------
# The grouped rollout (fused_rollout=true with kernels=torch), the fused update (fused_update=true)
# and compile=true: each against the reference path on fresh random inputs, fp32 at 1e-5.

def grouped_pair(E: int, episodic: bool, multitask: bool, **extra):
    """The reference planner and the grouped one on one model with non-zero heads, for E envs."""
    over = {**dict(num_samples=24, num_elites=6, num_pi_trajs=4, diffusion_steps=3, mlp_dim=48, latent_dim=32,
                   episodic=episodic), **extra}
    kw = {}
    if multitask:  # two tasks, the second with 2 of 5 action dims, different discounts
        over.update(obs_dim=9, action_dim=5, tasks=["a", "b"])
        kw = dict(discounts=[0.99, 0.9])
    cfg = tiny_config(**over)
    model = nontrivial(WorldModel(cfg, action_dims=[5, 2]) if multitask else WorldModel(cfg)).eval()
    with torch.no_grad():  # non-trivial energy statistics and LayerNorm affines
        model.energy_mu.fill_(0.3)
        model.energy_sigma.fill_(1.7)
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    task = torch.tensor([0, 1, 1][:E]) if multitask else None
    z0 = model.encode(torch.randn(E, cfg.obs_dim), task).detach()
    prev = torch.rand(E, cfg.horizon, cfg.action_dim) * 2 - 1
    grouped = DiffusionPlanner(tiny_config(fused_rollout=True, **over), model, **kw)
    return DiffusionPlanner(cfg, model, **kw), grouped, z0, prev, task


@pytest.mark.parametrize("E,episodic,multitask", [(1, False, False), (2, True, False), (3, True, True),
                                                  (2, False, True)])
def test_grouped_rollout_step_equals_reference(E, episodic, multitask):
    """One denoising step's values and candidates (policy rows written, masks applied) from the
    grouped rollout against TorchRollouts.step_values; the input candidates are left as they were."""
    torch.manual_seed(E)
    ref, grouped, z0, prev, task = grouped_pair(E, episodic, multitask)
    N, H, A = ref.num_samples, ref.horizon, ref.action_dim
    noise = ref.draw_noise(E, "cpu")
    cand = torch.rand(E, N, H, A) * 2 - 1
    mask = ref.model.action_mask(task)
    with torch.no_grad():
        v_ref, c_ref = ref.rollouts.step_values(cand.clone(), ref.rollouts.prepare(z0, task, ref.gamma_rows(task, E), mask),
                                                noise)
        before = cand.clone()
        v, c = grouped.rollouts.step_values(cand, grouped.rollouts.prepare(z0, task, grouped.gamma_rows(task, E), mask),
                                            noise)
    assert torch.equal(cand, before)
    assert v.shape == (E, N) and v.dtype == torch.float32
    assert rel_err(v, v_ref) < 1e-5 and rel_err(c, c_ref) < 1e-6
    assert not torch.equal(c[:, :4], cand[:, :4])  # the policy prior's rows were written


@pytest.mark.parametrize("E,episodic,multitask", [(1, False, False), (3, True, True)])
def test_grouped_planner_equals_reference_planner_for_the_same_noise(E, episodic, multitask):
    torch.manual_seed(10 + E)
    ref, grouped, z0, prev, task = grouped_pair(E, episodic, multitask)
    bank = {tau: ref.draw_noise(E, "cpu") for tau in range(1, 3)}
    bank[0] = {"action": torch.randn(E, ref.action_dim)}
    a1, p1, i1 = ref.plan(z0, prev, task=task, noise_fn=lambda tau, n: bank[tau], return_info=True)
    a2, p2, i2 = grouped.plan(z0, prev, task=task, noise_fn=lambda tau, n: bank[tau], return_info=True)
    assert rel_err(i2["targets"], i1["targets"]) < 1e-5
    assert rel_err(p2, p1) < 1e-5 and rel_err(a2, a1) < 1e-5


def test_compiled_grouped_plan_equals_eager_and_does_not_recompile():
    """compile=true with the grouped rollout: the same plan as the eager grouped path, and 20 calls
    (training and evaluation mode, fresh noise) after the first compile nothing more."""
    import torch._dynamo

    torch.manual_seed(3)
    ref, grouped, z0, prev, task = grouped_pair(2, False, False, num_samples=16)
    compiled = DiffusionPlanner(tiny_config(fused_rollout=True, compile=True, num_samples=16, num_elites=6,
                                            num_pi_trajs=4, diffusion_steps=3, mlp_dim=48, latent_dim=32),
                                grouped.model)
    bank = {tau: grouped.draw_noise(2, "cpu") for tau in range(1, 3)}
    bank[0] = {"action": torch.randn(2, grouped.action_dim)}
    a1, p1 = grouped.plan(z0, prev, noise_fn=lambda tau, n: bank[tau])
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    a2, p2 = compiled.plan(z0, prev, noise_fn=lambda tau, n: bank[tau])
    assert rel_err(p2, p1) < 1e-5 and rel_err(a2, a1) < 1e-5
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    for i in range(20):
        compiled.plan(z0, torch.rand_like(prev) * 2 - 1, eval_mode=i % 2 == 0)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == graphs
    assert not torch._dynamo.utils.counters["recompiles"]


def update_pair(**flags):
    """The reference agent and one with `flags` on one set of weights (non-zero heads)."""
    torch.manual_seed(0)
    cfg = tiny_config(mlp_dim=48, latent_dim=32)
    ref = MBDPO(cfg)
    nontrivial(ref.model)
    other = MBDPO(tiny_config(mlp_dim=48, latent_dim=32, **flags))
    other.model.load_state_dict(ref.model.state_dict())
    return ref, other


@pytest.mark.parametrize("flags", [dict(fused_update=True), dict(fused_update=True, compile=True)])
def test_fused_update_equals_reference(flags):
    """The update with fused_update (and compiled) against the reference update: every loss at
    1e-5 over three updates with the same random numbers, the energy statistics, and parameters
    at 1e-4 of their norm (Adam's sign-like first steps, see test_compiled_update_equals_eager)."""
    ref, other = update_pair(**flags)
    for step in range(3):
        batch = batch_for(ref.cfg, seed=step)
        torch.manual_seed(100 + step)
        out_r = ref.update(batch)
        torch.manual_seed(100 + step)
        out_o = other.update(batch)
        for k in ("total_loss", "consistency_loss", "reward_loss", "value_loss", "energy_loss", "pi_loss",
                  "energy_mu", "energy_sigma", "grad_norm"):
            assert rel_err(out_o[k], out_r[k]) < 1e-5, (flags, step, k, float(out_o[k]), float(out_r[k]))
    for (name, p_r), p_o in zip(ref.model.named_parameters(), other.model.parameters()):
        assert rel_err(p_o, p_r) < 1e-4, name


def test_energy_from_its_latent_part_equals_the_energy_head():
    cfg = tiny_config(obs_dim=9, action_dim=5, tasks=["a", "b"], mlp_dim=48, latent_dim=32)
    model = nontrivial(WorldModel(cfg, action_dims=[5, 2]))
    z, task = torch.randn(3, 4, 32), torch.tensor([0, 1, 1, 0])
    a = torch.rand(2, 3, 4, 5) * 2 - 1
    want = torch.stack([model.energy(z, a[i], task) for i in range(2)])
    got = model.energy_from_latent_part(model.energy_latent_part(z, task), a)
    assert rel_err(got, want) < 1e-6


def test_compiled_update_does_not_recompile():
    """compile=true compiles the update's two losses once: 20 more updates on new batches add no
    graph and no recompilation (the previous whole-step compile recompiled on every call)."""
    import torch._dynamo

    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    agent = MBDPO(tiny_config(compile=True, fused_update=True))
    agent.update(batch_for(agent.cfg, seed=0))
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    assert graphs >= 2
    for i in range(20):
        agent.update(batch_for(agent.cfg, seed=1 + i))
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == graphs
    assert not torch._dynamo.utils.counters["recompiles"]
