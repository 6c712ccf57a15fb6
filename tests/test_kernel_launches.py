"""Launches per planner call, counted without a GPU (mbdpo_fast/kernels/recording.py: the planner
runs on the meta device, Triton launches are recorded instead of run, PyTorch operations that
would launch a kernel are counted), and the launch parameters checked against the ahead-of-time
compile report (tools/kernel_report.py, benchmarks/results/kernel_fit/kernel_fit.csv)."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("triton")

from mbdpo_fast.config import default_config, resolve
from mbdpo_fast.planner import record_plan_launches

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import kernel_report  # noqa: E402

# Launches per planner call at the paper's planner (model size 5, N=512, K=20, H=3, E=1), as
# this recording counts them: budgets a change must not exceed. Per denoising step: 278.8 on the
# torch path, 138.1 on the Triton path with one launch per layer, 19.4 with fused_rollout (12
# rollout kernels: the policy prior and two head groups per horizon step, the final policy sample
# and the two Q heads; the elite/score kernel; the step's random numbers; the goal was at most 30).
BUDGET_PER_PLAN = {"torch": 5298, "triton": 2624, "fused": 368}
GOAL_PER_STEP = 30


def plan_on_meta(kernels: str, preset: int = 5, envs: int = 1, noise_fn=None, **over):
    """kernels: torch, triton (one launch per layer) or fused (triton with fused_rollout)."""
    if kernels == "fused":
        kernels, over = "triton", {**over, "fused_rollout": True}
    cfg = resolve(default_config(model_size=preset, device="cpu", work_dir="unused", kernels=kernels, **over), 24, 6)
    return record_plan_launches(cfg, envs, noise_fn), cfg


@pytest.mark.parametrize("kernels", ["torch", "triton", "fused"])
def test_launches_per_denoising_step_within_budget(kernels):
    rec, cfg = plan_on_meta(kernels)
    assert rec.launches <= BUDGET_PER_PLAN[kernels], (rec.launches, rec.torch_ops.most_common(10))
    if kernels == "torch":
        assert not rec.triton
    elif kernels == "triton":
        assert {launch.kernel for launch in rec.triton} == {"_fused_linear_kernel", "_two_hot_value_kernel",
                                                            "_elite_score_kernel"}
    else:
        steps = cfg.diffusion_steps - 1
        assert rec.launches / steps <= GOAL_PER_STEP
        kernels_per_step = {k: sum(l.kernel == k for l in rec.triton) / steps for k in
                            ("_policy_kernel", "_heads_kernel", "_elite_score_kernel")}
        H = cfg.horizon  # the policy prior per horizon step and the final sample; 2 head groups per
        # horizon step and the two Q heads
        assert kernels_per_step == {"_policy_kernel": H + 1, "_heads_kernel": 2 * H + 2, "_elite_score_kernel": 1}
        assert rec.torch_ops["index_select"] == 0  # the Q heads are read in place, not gathered


def test_planner_samples_without_log_probabilities():
    """The planner discards the policy's log-probability and entropy: none are computed (they were
    ~30 launches per denoising step)."""
    rec, _ = plan_on_meta("torch")
    assert rec.torch_ops["log"] == 0 and rec.torch_ops["pow"] == 0


def test_fresh_noise_uses_the_kernels_philox_stream():
    """plan() with its own noise lets the Triton elite/score kernel draw the next candidates
    (EPS_GIVEN=0: no [E, N, H, A] noise tensor per step); injected noise is read (EPS_GIVEN=1)."""
    rec, cfg = plan_on_meta("triton", diffusion_steps=5)
    elite = [dict(launch.constexprs) for launch in rec.triton if launch.kernel == "_elite_score_kernel"]
    assert len(elite) == cfg.diffusion_steps - 1
    assert [e["EPS_GIVEN"] for e in elite if e["HAS_NEXT"]] == [False] * (cfg.diffusion_steps - 2)
    # randn: the first step's policy noise (2) and candidates (1), later steps' policy noise only (2
    # each; their candidates' noise comes from Philox), the action noise (1)
    assert rec.torch_ops["randn"] == 3 + 2 * (cfg.diffusion_steps - 2) + 1

    planner_noise = {}

    def given(tau, E):
        if tau == 0:
            return {"action": torch.zeros(E, 6, device="meta")}
        planner_noise[tau] = True
        return {"pi_roll": torch.zeros(3, E, 24, 6, device="meta"), "pi_value": torch.zeros(E, 512, 6, device="meta"),
                "heads": torch.zeros(2, dtype=torch.long, device="meta"), "cand": torch.zeros(E, 512, 3, 6, device="meta")}
    rec, _ = plan_on_meta("triton", diffusion_steps=5, noise_fn=given)
    elite = [dict(launch.constexprs) for launch in rec.triton if launch.kernel == "_elite_score_kernel"]
    assert [e["EPS_GIVEN"] for e in elite if e["HAS_NEXT"]] == [True] * 3


def test_recorded_launch_parameters_follow_the_launchers():
    """Block sizes grow with the rows (M = E x N): 64-row tiles at E=256 (wgmma on sm_90), 16/32-row
    tiles at E=1. The fused rollout's head groups: persistent programs, at most 264 (two per H100
    SM), each walking its share of row blocks; its policy prior on the policy rows alone."""
    small, _ = plan_on_meta("triton", envs=1)
    large, _ = plan_on_meta("triton", envs=256)
    rows = lambda rec: {dict(l.constexprs)["BLOCK_M"] for l in rec.triton if l.kernel == "_fused_linear_kernel"}
    assert rows(small) == {16, 32} and rows(large) == {64}  # E=1: 24 policy rows, 512 candidates
    small, _ = plan_on_meta("fused", envs=1)
    large, _ = plan_on_meta("fused", envs=256)
    rollout = lambda rec: [l for l in rec.triton if l.kernel == "_heads_kernel"]
    c_small, c_large = dict(rollout(small)[0].constexprs), dict(rollout(large)[0].constexprs)
    prior = [l for l in small.triton if l.kernel == "_policy_kernel"][0]
    assert (dict(prior.scalars)["rows"], dict(prior.constexprs)["BLOCK_M"], prior.grid) == (24, 32, (1,))
    assert (c_small["BLOCK_M"], rollout(small)[0].grid) == (32, (16,))
    assert (c_large["BLOCK_M"], rollout(large)[0].grid) == (64, (264,))
    # compiled: a runtime trip count (0); interpreted: blocks per program as a constant
    from mbdpo_fast.kernels import interpreting
    expected = (1, 8) if interpreting() else (0, 0)
    assert (c_small["BLOCKS_PER_PROGRAM"], c_large["BLOCKS_PER_PROGRAM"]) == expected


# The committed compile reports: one launch per layer, and fused_rollout=true.
REPORTS = {False: "kernel_fit.csv", True: "kernel_fit_fused_rollout.csv"}


@pytest.fixture(scope="module", params=[False, True], ids=["layers", "fused_rollout"])
def committed_report(request):
    path = ROOT / "benchmarks" / "results" / "kernel_fit" / REPORTS[request.param]
    return request.param, list(csv.DictReader(open(path)))


def test_committed_report_is_current_and_fits(committed_report):
    """Each committed compile report covers every preset, both archs, dtypes, action dims and
    regimes, was made from today's kernel sources, and has no launch over the SM's shared memory
    and no spill at presets 1-19 (kernel_report.violations)."""
    _, rows = committed_report
    assert {r["preset"] for r in rows} == {str(p) for p in kernel_report.PRESETS}
    assert {r["arch"] for r in rows} == {"sm_90", "sm_80"}
    assert {(r["dtype"], r["action_dim"], r["envs"]) for r in rows} == {
        (d, str(a), str(e)) for d in ("fp32", "bf16") for a in kernel_report.ACTION_DIMS for e in kernel_report.ENVS}
    kernels = sorted({r["kernel"] for r in rows})
    code = ("import json, sys; sys.path.insert(0, 'tools'); import kernel_report; "
            f"print(json.dumps({{k: kernel_report.source_hash('_' + k) for k in {kernels!r}}}))")
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env=compiled_env())
    assert p.returncode == 0, p.stderr[-2000:]
    today = json.loads(p.stdout.strip().splitlines()[-1])
    for kernel in kernels:
        hashes = {r["source_hash"] for r in rows if r["kernel"] == kernel}
        assert hashes == {today[kernel]}, f"{kernel} changed since the report: rerun python tools/kernel_report.py"
    typed = [{**r, "fits": r["fits"] == "True", "spills": r["spills"] == "True", "preset": int(r["preset"])}
             for r in rows]
    assert kernel_report.violations(typed) == []


@pytest.mark.parametrize("preset", [1, 19])
def test_report_rows_match_todays_launches(committed_report, preset):
    """The launches the package chooses now (recorded) are the ones the committed report compiled."""
    fused, committed_report = committed_report
    rec = kernel_report.record(preset, True, 38, envs=1, fused_rollout=fused)
    now = {(l.kernel.strip("_"), *kernel_report.describe(l), l.num_warps) for l in rec.triton}
    committed = {(r["kernel"], r["layer"], r["block"], int(r["num_warps"])) for r in committed_report
                 if r["preset"] == str(preset) and r["dtype"] == "bf16" and r["action_dim"] == "38" and r["envs"] == "1"}
    assert now == committed


def compiled_env():
    """The environment of a process that compiles Triton kernels (the tests' interpreter mode off)."""
    return {**os.environ, "TRITON_INTERPRET": "0"}


@pytest.mark.slow
def test_aot_compile_report_end_to_end(tmp_path):
    """The tool itself: preset 19, bf16, A=38, both regimes compiled for sm_90 in a process without
    the interpreter; --check passes; 64-row tiles use Hopper's wgmma."""
    out = tmp_path / "fit.csv"
    p = subprocess.run([sys.executable, str(ROOT / "tools" / "kernel_report.py"), "--presets", "19", "--archs", "90",
                        "--dtypes", "bf16", "--action-dims", "38", "--csv", str(out), "--cache", "", "--check"],
                       capture_output=True, text=True, timeout=600, env=compiled_env())
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    rows = list(csv.DictReader(open(out)))
    assert rows and all(r["spills"] == "False" and r["fits"] == "True" for r in rows)
    assert {r["tensor_core"] for r in rows if r["block"].startswith("64x")} == {"wgmma"}


@pytest.mark.parametrize("preset,envs,bf16", [(1, 1, False), (5, 4, True)])
def test_cost_model_agrees_with_the_analytic_flop_count(preset, envs, bf16):
    """kernels/cost.py summed over recorded launches against its closed-form count of the reference
    planner's matrix FLOPs (plan_flops, less the encoder, which no rollout launch runs): two
    independent derivations of the same work (the launch model also counts the first step's policy
    rollout, hence within 0.1%); bytes at least the weights each launch reads, fewer in bf16."""
    from mbdpo_fast.kernels.cost import ModelDims, launch_cost, plan_cost, plan_flops

    rec, cfg = plan_on_meta("triton", preset=preset, envs=envs, bf16_plan=bf16)
    cost = plan_cost(rec.triton)
    rollouts = plan_flops(cfg, envs) - 2.0 * envs * ModelDims.of(cfg).encoder()
    assert abs(cost.flops - rollouts) <= 1e-3 * rollouts
    for launch in rec.triton:
        c = dict(launch.constexprs)
        if launch.kernel == "_fused_linear_kernel":
            assert launch_cost(launch).bytes >= c["N"] * (c["K1"] + c["K2"]) * (2 if bf16 else 4)
    if bf16:
        fp32, _ = plan_on_meta("triton", preset=preset, envs=envs)
        assert plan_cost(fp32.triton).bytes > cost.bytes


@pytest.mark.parametrize("preset,envs,bf16,episodic", [(1, 1, False, False), (5, 4, True, True)])
def test_fused_rollout_cost_model_agrees_with_the_analytic_flop_count(preset, envs, bf16, episodic):
    """The fused rollout's model against the reference planner's closed-form FLOPs less what the
    kernels do not recompute: the first step's latent columns of dynamics/reward/energy and the
    policy's first layer there (in per-environment biases), the policy rollouts' own dynamics (a
    policy row's latents are the value rollout's). Bytes at least the weights each launch reads
    (a hidden layer at least), fewer in bf16."""
    from mbdpo_fast.kernels.cost import ModelDims, plan_cost, plan_flops

    rec, cfg = plan_on_meta("fused", preset=preset, envs=envs, bf16_plan=bf16, episodic=episodic)
    L, A, M, N, P, H = cfg.latent_dim, cfg.action_dim, cfg.mlp_dim, cfg.num_samples, cfg.num_pi_trajs, cfg.horizon
    dyn = 2 * ModelDims.of(cfg).mlp(L + A, L)
    saved = envs * (N * 3 * 2 * L * M + P * (H - 1) * dyn + P * 2 * L * M)
    expected = plan_flops(cfg, envs) - 2.0 * envs * ModelDims.of(cfg).encoder() - (cfg.diffusion_steps - 1) * saved
    cost = plan_cost(rec.triton)
    assert abs(cost.flops - expected) <= 1e-3 * expected
    weights = M * M * (2 if bf16 else 4)
    assert all(plan_cost([l]).bytes >= weights for l in rec.triton if l.kernel in ("_policy_kernel", "_heads_kernel"))
    if bf16:
        fp32, _ = plan_on_meta("fused", preset=preset, envs=envs, episodic=episodic)
        assert plan_cost(fp32.triton).bytes > cost.bytes
