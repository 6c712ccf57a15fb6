"""Triton kernels against their PyTorch references (TRITON_INTERPRET=1 on CPU, fp32; the cuda-marked
tests cover bf16 and full sizes on a GPU). Fresh random inputs each run; outputs are allocated
poisoned (NaN) and checked fully written. Tolerances: fp32 1e-5 relative, bf16 2e-2."""
import types

import pytest
import torch

triton = pytest.importorskip("triton")

from mbdpo_fast.kernels import elite_score as es_mod, fused_linear as fl_mod, resolve_backend, \
    rollout_values as rv_mod, two_hot_head as th_mod
from mbdpo_fast.kernels.elite_score import elite_score, elite_score_reference
from mbdpo_fast.kernels.fused_linear import fused_linear, fused_linear_reference
from mbdpo_fast.kernels.two_hot_head import two_hot_value, two_hot_value_reference
from mbdpo_fast.planner import DiffusionPlanner
from mbdpo_fast.world_model import WorldModel

from conftest import nontrivial, tiny_config

DEV = "cuda" if torch.cuda.is_available() else "cpu"


def rel_err(a, b):
    a, b = a.double().cpu(), b.double().cpu()
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


@pytest.fixture(autouse=True)
def poisoned_outputs(monkeypatch):
    """Every output buffer a launcher allocates starts as NaN: a kernel that skips an element fails."""
    def proxy():
        p = types.SimpleNamespace(**{k: getattr(torch, k) for k in dir(torch) if not k.startswith("__")})
        p.empty = lambda *a, **k: torch.full(a[0] if len(a) == 1 and not isinstance(a[0], int) else a,
                                             float("nan"), **k)
        p.empty_like = lambda t, **k: torch.full_like(t, float("nan"), **k)
        return p
    for mod in (fl_mod, th_mod, es_mod, rv_mod):
        monkeypatch.setattr(mod, "torch", proxy())


@pytest.mark.parametrize("M", [1, 37, 130])
@pytest.mark.parametrize("K1,K2", [(19, None), (64, 1), (128, 6), (32, 21)])
@pytest.mark.parametrize("N,act", [(24, "mish"), (64, "simnorm"), (512, "simnorm"), (128, "none"), (100, "mish")])
def test_fused_linear_matches_reference(M, K1, K2, N, act):
    g = torch.Generator(device=DEV).manual_seed(torch.seed() % 2**31)
    x1 = torch.randn(M, K1, device=DEV, generator=g)
    x2 = torch.randn(M, K2, device=DEV, generator=g) if K2 else None
    K = K1 + (K2 or 0)
    w = torch.randn(N, K, device=DEV, generator=g) / K ** 0.5
    b = torch.randn(N, device=DEV, generator=g)
    ln = act != "none"
    gw, gb = (torch.rand(N, device=DEV, generator=g) + 0.5, torch.randn(N, device=DEV, generator=g)) if ln else (None, None)
    out = fused_linear(x1, w, b, gw, gb, act=act, x2=x2)
    ref = fused_linear_reference(x1, w, b, gw, gb, act=act, x2=x2)
    assert not out.isnan().any() and out.shape == ref.shape
    assert rel_err(out, ref) < 1e-5


@pytest.mark.parametrize("N,act,out_dtype", [(200, "simnorm", torch.float32), (392, "mish", torch.bfloat16),
                                             (264, "none", torch.bfloat16)])
def test_fused_linear_over_several_output_tiles(N, act, out_dtype):
    """Rows wider than one 128-column tile: the LayerNorm statistics merged across tiles (a partial
    last tile, a bias of 300 that a naive E[y^2] - mean^2 would cancel on), pre-norm values staged in
    fp32 (in `out`, or in a scratch buffer for a bf16 output)."""
    from mbdpo_fast.kernels.fused_linear import launch_config

    M, K = 70, 48
    assert N > launch_config(M, N)["BLOCK_N"]
    g = torch.Generator(device=DEV).manual_seed(torch.seed() % 2**31)
    x = torch.randn(M, K, device=DEV, generator=g)
    w = torch.randn(N, K, device=DEV, generator=g) / K ** 0.5
    b = torch.randn(N, device=DEV, generator=g) + 300.0
    ln = act != "none"
    gw, gb = (torch.rand(N, device=DEV, generator=g) + 0.5, torch.randn(N, device=DEV, generator=g)) if ln else (None, None)
    out = fused_linear(x, w, b, gw, gb, act=act, out_dtype=out_dtype)
    ref = fused_linear_reference(x, w, b, gw, gb, act=act, out_dtype=torch.float32)
    assert out.dtype == out_dtype and not out.isnan().any()
    assert rel_err(out.float(), ref) < (1e-5 if out_dtype == torch.float32 else 1e-2)


def test_fused_linear_reads_strided_weights_and_propagates_nan():
    w = torch.randn(3, 40, 24, device=DEV)[1].t()  # an ensemble head's [in, out] slice, viewed [out, in]
    x = torch.randn(5, 40, device=DEV)
    b, gw, gb = torch.zeros(24, device=DEV), torch.ones(24, device=DEV), torch.zeros(24, device=DEV)
    assert rel_err(fused_linear(x, w, b, gw, gb), fused_linear_reference(x, w, b, gw, gb)) < 1e-5
    x[2, 7] = float("nan")
    with torch.no_grad():
        out = fused_linear_reference(x, w, b, gw, gb)
    got = fused_linear(x, w, b, gw, gb)
    assert got[2].isnan().all() and not got[[0, 1, 3, 4]].isnan().any() and out[2].isnan().all()
    with pytest.raises(ValueError, match="does not match"):
        fused_linear(x, w[:, :30], b)


@pytest.mark.parametrize("M,K", [(1, 32), (37, 96), (100, 512)])
def test_two_hot_value_matches_reference(M, K):
    h = torch.randn(M, K, device=DEV)
    w = torch.randn(101, K, device=DEV) * 0.3 / K ** 0.5
    b = torch.randn(101, device=DEV)
    bins = torch.linspace(-10, 10, 101, device=DEV)
    out, ref = two_hot_value(h, w, b, bins), two_hot_value_reference(h, w, b, bins)
    assert out.shape == (M, 1) and rel_err(out, ref) < 1e-5


@pytest.mark.parametrize("E", [1, 3])
@pytest.mark.parametrize("N,k", [(48, 8), (100, 1), (130, 64)])
@pytest.mark.parametrize("H,A", [(1, 1), (3, 6), (5, 21)])
def test_elite_score_matches_reference(E, N, k, H, A):
    values = torch.randn(E, N, device=DEV) * 5
    values[0, 3] = float("nan")  # counts as 0, as in the reference
    cand = torch.rand(E, N, H, A, device=DEV) * 2 - 1
    x, eps = torch.randn(E, H, A, device=DEV), torch.randn(E, N, H, A, device=DEV)
    out = elite_score(values, cand, x, 0.6, 0.95, k, 0.5, next_abar=0.7, eps=eps)
    ref = elite_score_reference(values, cand, x, 0.6, 0.95, k, 0.5, next_abar=0.7, eps=eps)
    # fp32: 1e-5 relative, or 1e-6 absolute where the score update nearly cancels terms of order 1
    # (a single small output element then carries the inputs' rounding, not its own)
    close = lambda o, r: rel_err(o, r) < 1e-5 or (o.double() - r.double()).abs().max().item() < 1e-6
    for o, r in zip(out, ref):
        assert not o.isnan().any() and close(o, r)
    last = elite_score(values, cand, x, 0.6, 0.95, k, 0.5)  # the last step: no next candidates
    assert last[2] is None and close(last[0], ref[0])


def test_elite_ties_take_the_lowest_indices():
    """All values equal (an untrained model): the elites are the first k candidates."""
    E, N, H, A, k = 2, 40, 3, 2, 8
    cand = torch.rand(E, N, H, A, device=DEV) * 2 - 1
    _, target, _ = elite_score(torch.zeros(E, N, device=DEV), cand, torch.zeros(E, H, A, device=DEV), 0.5, 0.9, k, 0.5)
    torch.testing.assert_close(target, cand[:, :k].mean(1), rtol=1e-5, atol=1e-6)


def test_philox_candidates_are_standard_normal_and_seeded():
    E, N, H, A = 4, 256, 3, 6
    values, cand = torch.randn(E, N, device=DEV), torch.rand(E, N, H, A, device=DEV) * 2 - 1
    x, seed = torch.zeros(E, H, A, device=DEV), torch.tensor([7], device=DEV)
    nabar = 0.999  # small noise scale: nothing clips, so the noise can be read back exactly
    x_new, _, nxt = elite_score(values, cand, x, 0.5, 0.9, 16, 0.5, next_abar=nabar, seed=seed)
    eps = (nxt - x_new.unsqueeze(1) / nabar ** 0.5) / ((1 - nabar) / nabar) ** 0.5
    n = eps.numel()
    assert abs(eps.mean().item()) < 4 / n ** 0.5 and abs(eps.std().item() - 1) < 0.03
    again = elite_score(values, cand, x, 0.5, 0.9, 16, 0.5, next_abar=nabar, seed=seed)[2]
    other = elite_score(values, cand, x, 0.5, 0.9, 16, 0.5, next_abar=nabar, seed=seed + 1)[2]
    assert torch.equal(again, nxt) and not torch.equal(other, nxt)


def planner_pair(E: int, episodic: bool, multitask: bool, fused_rollout: bool, **extra):
    """A reference and a Triton planner on one model with non-zero heads, z0 and a previous plan for E envs."""
    over = {**dict(num_samples=24, num_elites=6, num_pi_trajs=4, diffusion_steps=3, mlp_dim=64, latent_dim=32,
                   episodic=episodic, device=DEV), **extra}
    kw = {}
    if multitask:  # two tasks, the second with 2 of 5 action dims, different discounts
        over.update(obs_dim=9, action_dim=5, tasks=["a", "b"])
        kw = dict(discounts=[0.99, 0.9])
    cfg = tiny_config(**over)
    model = nontrivial(WorldModel(cfg, action_dims=[5, 2]) if multitask else WorldModel(cfg)).to(DEV).eval()
    task = torch.tensor([0, 1, 1][:E], device=DEV) if multitask else None
    z0 = model.encode(torch.randn(E, cfg.obs_dim, device=DEV), task)
    prev = torch.rand(E, cfg.horizon, cfg.action_dim, device=DEV) * 2 - 1
    fused = DiffusionPlanner(tiny_config(kernels="triton", fused_rollout=fused_rollout, **over), model, **kw)
    return DiffusionPlanner(cfg, model, **kw), fused, z0, prev, task


@pytest.mark.parametrize("E,episodic,multitask,fused_rollout", [(1, False, False, False), (2, True, False, False),
                                                                (1, False, False, True), (3, True, True, True)])
def test_triton_planner_equals_reference_planner_for_the_same_noise(E, episodic, multitask, fused_rollout):
    """The whole plan (every step's elite average, the plan, the action) on the Triton kernels (one
    launch per layer, or the fused rollout) against the PyTorch planner with the same random
    numbers; multi-task: per-task discounts, action masks and the task embedding's part of the first
    layers."""
    torch.manual_seed(0)
    ref, fused, z0, prev, task = planner_pair(E, episodic, multitask, fused_rollout)
    assert fused.kernels == "triton"
    A = prev.shape[-1]
    bank = {tau: ref.draw_noise(E, DEV) for tau in range(1, 3)}
    bank[0] = {"action": torch.randn(E, A, device=DEV)}
    a1, p1, i1 = ref.plan(z0, prev, task=task, noise_fn=lambda tau, n: bank[tau], return_info=True)
    a2, p2, i2 = fused.plan(z0, prev, task=task, noise_fn=lambda tau, n: bank[tau], return_info=True)
    assert rel_err(i2["targets"], i1["targets"]) < 1e-5
    assert rel_err(p2, p1) < 1e-5 and rel_err(a2, a1) < 1e-5
    a3, p3 = fused.plan(z0, prev, task=task)  # fresh noise: Philox candidates inside the kernel
    assert torch.isfinite(p3).all() and p3.abs().max() <= 1


@pytest.mark.parametrize("programs", [1, 2, 64])
def test_rollout_values_kernel_against_reference_step(monkeypatch, programs):
    """One denoising step's values and candidates (policy rows written, masks applied) from the
    rollout kernel against TorchRollouts.step_values, with persistent programs walking several row
    blocks each and a last block past the end (programs=1, 2), scratch and outputs poisoned."""
    monkeypatch.setattr(rv_mod, "DEFAULT_MAX_PROGRAMS", programs)
    torch.manual_seed(1)
    ref, fused, z0, prev, task = planner_pair(3, True, True, True, num_samples=30)  # 90 rows: 3 blocks of 32
    E, N, H, A = 3, 30, ref.horizon, ref.action_dim
    noise = ref.draw_noise(E, DEV)
    cand = torch.rand(E, N, H, A, device=DEV) * 2 - 1
    mask = ref.model.action_mask(task)
    ctx_ref = ref.rollouts.prepare(z0, task, ref.gamma_rows(task, E), mask)
    ctx = fused.rollouts.prepare(z0, task, fused.gamma_rows(task, E), mask)
    v_ref, c_ref = ref.rollouts.step_values(cand.clone(), ctx_ref, noise)
    empty = torch.empty  # the kernels' buffers (scratch, latents, G, survival, Q) start as NaN

    def poisoned(*shape, **kw):
        out = empty(*shape, **kw)
        return out.fill_(float("nan")) if out.is_floating_point() else out
    monkeypatch.setattr(rv_mod.torch, "empty", poisoned)
    v, c = fused.rollouts.step_values(cand.clone(), ctx, noise)
    monkeypatch.setattr(rv_mod.torch, "empty", empty)
    assert not v.isnan().any() and v.shape == (E, N)
    assert rel_err(v, v_ref) < 1e-5 and rel_err(c, c_ref) < 1e-6
    assert (c[1:, :, :, 2:] == 0).all()  # the second task's padded action dims


def test_backend_resolution():
    assert resolve_backend("torch", torch.device("cpu")) == "torch"
    with pytest.raises(ValueError, match="kernels="):
        resolve_backend("cutlass", torch.device("cpu"))
    # fused_rollout picks the head-group rollout of either backend: Triton's kernels or PyTorch's ops
    from mbdpo_fast.planner import GroupedRollouts

    cfg = tiny_config(fused_rollout=True)
    assert isinstance(DiffusionPlanner(cfg, WorldModel(cfg)).rollouts, GroupedRollouts)


def test_triton_on_cpu_without_interpreter_falls_back(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.warns(UserWarning, match="TRITON_INTERPRET"):
        assert resolve_backend("triton", torch.device("cpu")) == "torch"


@pytest.mark.cuda
@pytest.mark.parametrize("M,K,N", [(4096, 518, 512), (3000, 512, 512)])
def test_bf16_fused_layers_on_cuda(M, K, N):
    x = torch.randn(M, K, device="cuda")
    w, b = torch.randn(N, K, device="cuda") / K ** 0.5, torch.randn(N, device="cuda")
    gw, gb = torch.rand(N, device="cuda") + 0.5, torch.randn(N, device="cuda")
    for act in ("mish", "simnorm"):
        out = fused_linear(x, w, b, gw, gb, act=act, dot_dtype=torch.bfloat16, out_dtype=torch.bfloat16)
        ref = fused_linear_reference(x, w, b, gw, gb, act=act, dot_dtype=torch.bfloat16, out_dtype=torch.float32)
        assert rel_err(out.float(), ref) < 2e-2
    bins = torch.linspace(-10, 10, 101, device="cuda")
    wq = torch.randn(101, K, device="cuda") * 0.3 / K ** 0.5
    v = two_hot_value(x.bfloat16(), wq, b[:101], bins, dot_dtype=torch.bfloat16)
    assert rel_err(v, two_hot_value_reference(x, wq, b[:101], bins)) < 2e-2


@pytest.mark.cuda
@pytest.mark.parametrize("bf16", [False, True])
def test_rollout_values_on_cuda_at_paper_size(bf16):
    """The rollout kernel at model size 5, 512 samples, E = 4 against the fp32 PyTorch step (the
    interpreter's bf16 dot is not faithful, so bf16 is checked here): fp32 (TF32 off) 1e-4, bf16 2e-2."""
    torch.backends.cuda.matmul.allow_tf32 = False
    from mbdpo_fast.config import default_config, resolve

    cfg = resolve(default_config(model_size=5, device="cuda", work_dir="unused"), 24, 6)
    model = nontrivial(WorldModel(cfg)).cuda().eval()
    ref = DiffusionPlanner(cfg, model)
    fused = DiffusionPlanner(resolve(default_config(model_size=5, device="cuda", work_dir="unused", kernels="triton",
                                                    fused_rollout=True, bf16_plan=bf16), 24, 6), model)
    E = 4
    z0 = model.encode(torch.randn(E, 24, device="cuda"))
    noise = ref.draw_noise(E, "cuda")
    cand = torch.rand(E, cfg.num_samples, cfg.horizon, 6, device="cuda") * 2 - 1
    with torch.no_grad():
        v_ref, _ = ref.rollouts.step_values(cand.clone(), ref.rollouts.prepare(z0, None, ref.gamma_rows(None, E), None),
                                            noise)
        v, _ = fused.rollouts.step_values(cand.clone(), fused.rollouts.prepare(z0, None, fused.gamma_rows(None, E), None),
                                          noise)
    assert rel_err(v, v_ref) < (2e-2 if bf16 else 1e-4)
