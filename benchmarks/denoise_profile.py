"""Cost of the planner against the sample count N, per backend. On a GPU: torch eager, torch
compiled (one denoising step compiled + CUDA graphs + bf16), the grouped rollout in PyTorch compiled
(+ CUDA graphs + bf16), Triton (one kernel per layer + CUDA graphs + bf16) and Triton with the fused
rollout (a denoising step's rollout in a kernel per head group + CUDA graphs + bf16). On a CPU:
torch eager (the reference), the grouped rollout eager and compiled (the CPU's fast path), at
model sizes 1 and 5 (the Triton backends only under TRITON_INTERPRET=1, at tiny widths).

    python benchmarks/denoise_profile.py                  # N sweep; CSV and PNG under runs/benchmarks/
    python benchmarks/denoise_profile.py --sweep K H      # also vary the step count and the horizon at N=512
    python benchmarks/denoise_profile.py --quick          # one tiny size per backend (under a minute on a CPU)
    python benchmarks/denoise_profile.py --presets 1      # a CPU: model size 1 only

For each (backend, E, N[, K, H]): the latency of a whole plan (K-1 denoising steps, median after
warm-up, synchronised), the cost of one denoising step (plan / (K-1)), planner env-steps/s, the
analytic matrix FLOPs of a plan (2 x in x out of every layer the rollouts run) and, on a GPU, the
achieved TFLOP/s as a share of the bf16 matrix peak measured there by a large bf16 matmul, and
the kernel launches per denoising step (on a GPU from the CUDA profiler, elsewhere recorded on the
meta device), and the FLOP/byte model of the plan (mbdpo_fast/kernels/cost.py: model_gflop,
model_mbytes; on a GPU also the roofline time it implies at the measured bf16 peak and copy
bandwidth, and that time's share of the measured one). `--model-only` prints the model for every
preset, E, N and K without timing anything. Each row's `path` says which planner ran (the agent's
own account). On a CPU the presets are model size 1 at cpu_small's planner (K=6, P=4, 8 elites)
and model size 5 at the paper's (K=20, P=24, 64 elites), one thread per core the process may use,
N from 64 to 1024, and the FLOP count of the path that ran (mbdpo_fast/kernels/cost.py plan_flops)
gives GFLOP/s; --quick there runs tiny widths (a smoke run, not a measurement). The PNG plots ms per
denoising step against N (and K, H), one line per code path, preset and E.
"""
from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import torch
import torch._dynamo

sys.path.insert(0, str(Path(__file__).parent))
from common import (quiet_libraries, announce, benchmark_parser, check_device, error_note, outputs, stamp,  # noqa: E402
                    write_csv)
from step_rate import median_ms, sync  # noqa: E402

BACKENDS_CUDA = {
    "eager": {},
    "compiled": {"compile": True, "cudagraphs": True, "bf16_plan": True},
    "grouped-compiled": {"fused_rollout": True, "compile": True, "cudagraphs": True, "bf16_plan": True},
    "triton": {"kernels": "triton", "cudagraphs": True, "bf16_plan": True},
    "triton-fused": {"kernels": "triton", "fused_rollout": True, "cudagraphs": True, "bf16_plan": True},
}
BACKENDS_CPU = {"eager": {}, "grouped": {"fused_rollout": True}, "grouped-compiled": {"fused_rollout": True, "compile": True}}
BACKENDS_INTERPRETED = {"triton": {"kernels": "triton"}, "triton-fused": {"kernels": "triton", "fused_rollout": True}}
CPU_PLANNERS = {1: dict(diffusion_steps=6, num_pi_trajs=4, num_elites=8),  # cpu_small's planner
                5: dict(diffusion_steps=20, num_pi_trajs=24, num_elites=64)}  # the paper's
OBS_DIM, ACTION_DIM = 17, 6
SMALL_MODEL = {"model_size": 1, "mlp_dim": 64, "latent_dim": 32, "enc_dim": 32}


def bf16_peak_tflops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    n = 8192
    a, b = torch.randn(n, n, device=device, dtype=torch.bfloat16), torch.randn(n, n, device=device, dtype=torch.bfloat16)
    ms = median_ms(lambda: a @ b, device, 3, 20, 2.0)
    return 2 * n ** 3 / (ms * 1e-3) / 1e12


def bandwidth_gbs(device: torch.device) -> float | None:
    """Device memory bandwidth measured by a 1 GiB copy (read + write), GB/s; None without a GPU."""
    if device.type != "cuda":
        return None
    src = torch.empty(2**28, device=device, dtype=torch.float32)
    dst = torch.empty_like(src)
    ms = median_ms(lambda: dst.copy_(src), device, 3, 20, 2.0)
    return 2 * src.numel() * 4 / (ms * 1e-3) / 1e9


def planner_sizes(args, preset: int, N: int, K: int, H: int) -> dict:
    """The run spec's model and planner fields of one measurement: the preset (tiny widths with
    --quick on a CPU) at N samples, K levels, horizon H; on a CPU the preset's own planner (elites,
    policy trajectories: cpu_small's at model size 1, the paper's at 5), elsewhere the paper's."""
    model = SMALL_MODEL if args.small else {"model_size": preset}
    planner = CPU_PLANNERS.get(preset, CPU_PLANNERS[5]) if args.cpu else CPU_PLANNERS[5]
    return {**model, "num_samples": N, "diffusion_steps": K, "horizon": H,
            "num_elites": min(planner["num_elites"], N), "num_pi_trajs": min(planner["num_pi_trajs"], N)}


def model_of(args, E: int, N: int, K: int, H: int, bf16: bool, preset: int | None = None, fused: bool = False):
    """The FLOP/byte model of one plan call (mbdpo_fast/kernels/cost.py) from the Triton launches
    recorded on the meta device at these sizes: one launch per layer (the reference planner's
    matrix work, also what the torch backends compute) or, with `fused`, the fused rollout's."""
    from mbdpo_fast.config import default_config, resolve
    from mbdpo_fast.kernels.cost import plan_cost
    from mbdpo_fast.planner import record_plan_launches

    sizes = planner_sizes(args, preset or 5, N, K, H)
    cfg = resolve(default_config(device="cpu", work_dir="unused", kernels="triton", bf16_plan=bf16,
                                 fused_rollout=fused, **sizes), OBS_DIM, ACTION_DIM)
    rec = record_plan_launches(cfg, E)
    return plan_cost(rec.triton), len(rec.triton)


def model_columns(cost, measured_ms: float | None, peak: float | None, bw: float | None) -> dict:
    out = {"model_gflop": round(cost.flops / 1e9, 3), "model_mbytes": round(cost.bytes / 1e6, 1)}
    if peak and bw:
        implied = cost.implied_ms(peak, bw)
        out.update(model_implied_ms=round(implied, 4),
                   pct_of_roofline=round(100 * implied / measured_ms, 2) if measured_ms else "")
    return out


def print_model_table(args) -> None:
    """--model-only: the model for every preset, E, N and K, one launch per layer and the fused
    rollout (no timing, any machine)."""
    print("| preset | E | N | K | dtype | rollout | GFLOP/plan | MB/plan | Triton launches "
          "| implied ms at 800 TFLOP/s, 3.35 TB/s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    args.cpu = False
    for preset in (1, 5, 19, 48, 317):
        for E in (1, 256, 1024):
            for N, K in ((512, 20), (256, 10)):
                for bf16 in (False, True):
                    for fused in (False, True):
                        cost, n = model_of(args, E, N, K, 3, bf16, preset, fused=fused)
                        print(f"| {preset} | {E} | {N} | {K} | {'bf16' if bf16 else 'fp32'} | "
                              f"{'fused' if fused else 'per layer'} | {cost.flops / 1e9:.1f} | {cost.bytes / 1e6:.1f} | "
                              f"{n} | {cost.implied_ms(800, 3350):.3f} |", flush=True)
    print("(implied times use an H100's nominal dense bf16 peak and HBM3 bandwidth: a model, no GPU measured)")


def FIELDS_OF(meta: dict) -> list[str]:  # noqa: N802
    return list(meta) + ["sweep", "backend", "path", "preset", "E", "N", "K", "H", "plan_ms", "step_ms",
                         "env_steps_per_s", "launches_per_step", "launches_counted_by", "model_gflop", "model_mbytes",
                         "model_implied_ms", "pct_of_roofline", "gflop_per_plan", "tflops", "pct_bf16_peak",
                         "first_call_s", "note"]


def make_agent(args, flags: dict, preset: int, N: int, K: int, H: int):
    from mbdpo_fast.agent import MBDPO, seed_everything
    from mbdpo_fast.config import default_config, resolve

    cfg = resolve(default_config(device=args.device, work_dir="unused", threads=torch.get_num_threads(),
                                 **planner_sizes(args, preset, N, K, H), **flags), OBS_DIM, ACTION_DIM)
    seed_everything(0)
    with warnings.catch_warnings():  # a backend that cannot run here is reported per row, below
        warnings.simplefilter("ignore")
        return MBDPO(cfg)


def launches_per_step(args, agent, flags: dict, obs, plan) -> tuple[float | str, str]:
    """Kernel launches per denoising step and how they were counted: on a GPU, the CUDA profiler's
    device events of one call; elsewhere the planner's launches recorded on the meta device
    (mbdpo_fast/kernels/recording.py; not for the compiled backend, whose fusion only a GPU shows)."""
    K = agent.cfg.diffusion_steps
    if torch.device(args.device).type == "cuda":
        from torch.autograd import DeviceType
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            agent.act(obs, plan)
            sync(torch.device(args.device))
        n = sum(1 for e in prof.events() if e.device_type == DeviceType.CUDA)
        return round(n / (K - 1), 1), "CUDA profiler"
    if flags.get("compile"):
        return "", ""
    from mbdpo_fast.planner import record_plan_launches

    rec = record_plan_launches(agent.cfg, obs.shape[0])
    return round(rec.launches / (K - 1), 1), "recorded"


def measure(args, backend: str, flags: dict, preset: int, E: int, N: int, K: int, H: int, peak: float | None) -> dict:
    from mbdpo_fast.kernels.cost import plan_flops
    from mbdpo_fast.planner import GroupedRollouts

    dev = torch.device(args.device)
    agent = make_agent(args, flags, preset, N, K, H)
    path = agent.code_paths()["planner"]
    out = {"backend": backend, "path": path, "preset": "tiny" if args.small else preset, "E": E, "N": N, "K": K, "H": H}
    if flags.get("kernels") == "triton" and not path.startswith("triton"):
        return {**out, "path": "-", "note": "not measured: kernels=triton needs a CUDA GPU or TRITON_INTERPRET=1 "
                                            f"(the planner would have run as {path})"}
    obs, plan = torch.randn(E, OBS_DIM, device=dev), agent.planner.initial_plan(E)
    t0 = time.perf_counter()
    agent.act(obs, plan)
    sync(dev)
    setup = time.perf_counter() - t0
    ms = median_ms(lambda: agent.act(obs, plan), dev, 1 if args.small else 2, args.repeats, args.budget)
    flops = plan_flops(agent.cfg, E, grouped=isinstance(agent.planner.rollouts, GroupedRollouts))  # what ran
    tflops = flops / (ms * 1e-3) / 1e12
    launches, counted = launches_per_step(args, agent, flags, obs, plan)
    cost, _ = model_of(args, E, N, K, H, bool(flags.get("bf16_plan")), preset, fused=bool(flags.get("fused_rollout")))
    model = model_columns(cost, ms, peak, args.bandwidth)
    return {**out, "plan_ms": round(ms, 4), "step_ms": round(ms / (K - 1), 4),
            "env_steps_per_s": round(1000 * E / ms, 1), "launches_per_step": launches, "launches_counted_by": counted,
            **model,
            "gflop_per_plan": round(flops / 1e9, 3),
            "tflops": round(tflops, 3), "pct_bf16_peak": round(100 * tflops / peak, 2) if peak else "",
            "first_call_s": round(setup, 1), "note": ""}


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = [r for r in rows if r.get("step_ms", "") != ""]
    sweeps = [s for s in ("N", "K", "H") if any(r["sweep"] == s for r in rows)]
    labels = {"N": "samples N", "K": "denoising levels K", "H": "horizon H"}
    fig, axes = plt.subplots(1, len(sweeps), figsize=(5.5 * len(sweeps), 4.2), squeeze=False)
    for ax, sweep in zip(axes[0], sweeps):
        lines = dict.fromkeys((r["path"], r.get("preset", ""), r["E"]) for r in measured if r["sweep"] == sweep)
        for code_path, preset, E in lines:
            pts = sorted((r[sweep], r["step_ms"]) for r in measured if r["sweep"] == sweep and r["path"] == code_path
                         and r.get("preset", "") == preset and r["E"] == E)
            ax.plot(*zip(*pts), marker="o", label=f"{code_path}, model {preset}, E={E}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel(labels[sweep])
        ax.set_ylabel("ms per denoising step")
        if lines:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "not measured", ha="center", transform=ax.transAxes)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}", flush=True)


def main() -> None:
    ap = benchmark_parser("denoise_profile", __doc__, png=True)
    ap.add_argument("--backends", nargs="+", default=None,
                    choices=list(dict.fromkeys([*BACKENDS_CUDA, *BACKENDS_CPU, *BACKENDS_INTERPRETED])))
    ap.add_argument("--samples", type=int, nargs="+", default=None)
    ap.add_argument("--envs", type=int, nargs="+", default=None)
    ap.add_argument("--presets", type=int, nargs="+", default=None,
                    help="model sizes (default: 1 and 5 on a CPU, 5 on a GPU)")
    ap.add_argument("--sweep", nargs="*", default=[], choices=["K", "H"], help="also vary K and/or H at N=512")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--budget", type=float, default=2.0, help="seconds of timed calls per measurement at most")
    ap.add_argument("--model-only", action="store_true",
                    help="print the FLOP/byte model for every preset, E, N and K and stop (no timing)")
    args = ap.parse_args()
    quiet_libraries()
    if args.model_only:
        args.small = False
        print_model_table(args)
        return
    dev = check_device(args.device, args.dry_run)
    csv_path, png = outputs(args)
    from mbdpo_fast.kernels import interpreting

    args.cpu = dev.type != "cuda"
    # A CPU profiles the real presets; tiny widths only for --quick or Triton's interpreter (a smoke run)
    args.small = args.cpu and (args.quick or interpreting())
    if dev.type == "cuda":
        backends = BACKENDS_CUDA
    else:
        backends = {**({"eager": {}} if args.small else BACKENDS_CPU), **(BACKENDS_INTERPRETED if interpreting() else {})}
    if args.backends:  # asked for by name: run as asked, rows labelled by what ran
        every = BACKENDS_CUDA if dev.type == "cuda" else {**BACKENDS_CUDA, **BACKENDS_CPU, **BACKENDS_INTERPRETED}
        backends = {k: every[k] for k in args.backends}
    if args.quick:
        args.repeats, args.budget = min(args.repeats, 3), min(args.budget, 0.5)
    presets = args.presets or ([1] if args.small else [1, 5] if args.cpu else [5])
    samples = args.samples or ([16] if args.quick and args.small else [16, 40] if args.small
                               else [512] if args.quick else [64, 128, 256, 512, 1024] if args.cpu
                               else [64, 128, 256, 512, 1024, 2048, 4096])
    envs = args.envs or ([1] if args.quick or args.cpu else [1, 2] if args.small else [1, 64, 256])
    H0 = 3
    K_of = lambda preset: 4 if args.small else CPU_PLANNERS.get(preset, CPU_PLANNERS[5])["diffusion_steps"] \
        if args.cpu else 20
    mid = 40 if args.small else 512
    grid = [("N", p, E, N, K_of(p), H0) for p in presets for E in envs for N in samples]
    if "K" in args.sweep:
        grid += [("K", p, E, mid, K, H0) for p in presets for E in envs
                 for K in ([2, 6] if args.small else [2, 5, 10, 20, 40])]
    if "H" in args.sweep:
        grid += [("H", p, E, mid, K_of(p), H) for p in presets for E in envs for H in ([1, 5] if args.small else [1, 3, 5, 8])]
    meta = {**stamp(dev), "sizes": "tiny widths (smoke run)" if args.small else f"model size {'/'.join(map(str, presets))}",
            "threads": torch.get_num_threads() if args.cpu else ""}
    # Rough, per measurement: --budget s of timed calls after its first call and warm-up calls; the
    # first call compiles where a backend compiles (~30 s per shape on a GPU, 20-30 s on this project's
    # 2-core CPU), the fused rollout's kernels ~60 s per tile height; eager plans on a CPU take up to
    # ~5 s each at model size 5, N=1024, K=20 (three of them: first call and two warm-ups).
    triton_first = 20 if interpreting() else -args.budget
    first = {"eager": 2, "compiled": 30, "grouped": 2, "grouped-compiled": 30,
             "triton": 5 if not args.small else triton_first, "triton-fused": 60 if not args.small else triton_first}

    def eager_call_s(preset: int, E: int, N: int, K: int) -> float:
        """An eager plan's seconds on one CPU core, scaled from model size 1 at N=64, K=6 (0.05 s)
        and model size 5 at N=512, K=20 (2.6 s): the time budget's largest part on a CPU."""
        if not args.cpu or args.small:
            return 0.0
        base_s, base_n, base_k = (2.6, 512, 20) if preset == 5 else (0.05, 64, 6)
        return base_s * E * N / base_n * (K - 1) / (base_k - 1)

    seconds = sum(args.budget + 1 + first.get(b, 30) + 3 * eager_call_s(p, E, N, K)
                  for b in backends for _, p, E, N, K, _ in grid) + (5 if dev.type == "cuda" else 0)
    sizes = (("TINY widths on CPU (a smoke run, not a measurement of the kernels): " + str(SMALL_MODEL))
             if args.small else f"model size {', '.join(map(str, presets))}"
             + (", each with its planner (1: cpu_small's, K=6; 5: the paper's, K=20)" if args.cpu
                else ", paper planner (N=512, K=20, H=3 unless swept)"))
    announce(f"denoise_profile on {meta['device']}, torch {torch.__version__}, commit {meta['commit']}"
             + (f", {torch.get_num_threads()} threads" if args.cpu else ""),
             [sizes, f"backends: {', '.join(backends)}", f"{len(grid)} shapes per backend: E={envs}, N={samples}"
              + (f", sweeps {' '.join(args.sweep)} at N={mid}" if args.sweep else "")],
             seconds, csv_path, png)
    if args.dry_run:
        return
    peak = bf16_peak_tflops(dev)
    args.bandwidth = bandwidth_gbs(dev)
    meta["bf16_peak_tflops"] = round(peak, 1) if peak else ""
    meta["bandwidth_gbs"] = round(args.bandwidth, 1) if args.bandwidth else ""
    if not peak:
        print("model columns only (model_gflop, model_mbytes): no GPU measured here, so no implied time or roofline share")
    rows = []
    for backend, flags in backends.items():
        for sweep, preset, E, N, K, H in grid:
            torch._dynamo.reset()  # every agent adds compiled-cache entries; past the recompile limit it runs eagerly
            try:
                r = measure(args, backend, flags, preset, E, N, K, H, peak)
            except Exception as e:  # noqa: BLE001  (e.g. out of memory at the largest N x E)
                r = {"backend": backend, "path": "-", "preset": preset, "E": E, "N": N, "K": K, "H": H,
                     "note": error_note(e)}
                if dev.type == "cuda":
                    torch.cuda.empty_cache()
            rows.append({**meta, "sweep": sweep, **r})
            print(" | ".join(f"{k}={v}" for k, v in r.items() if v != ""), flush=True)
            write_csv(csv_path, rows, FIELDS_OF(meta), quiet=True)  # a run cut short keeps what it measured
    write_csv(csv_path, rows, FIELDS_OF(meta))
    plot(rows, png, f"denoise_profile, {meta['device']}, {meta['date']}, commit {meta['commit']}, {meta['sizes']}")
    best = {}
    for r in rows:
        if r["sweep"] == "N" and r["N"] == mid and r.get("env_steps_per_s", "") != "":
            best.setdefault(f"{r['path']}, model {r['preset']}", {})[r["E"]] = r["env_steps_per_s"]
    if best:
        print(f"planner env-steps/s at N={mid}:", best)


if __name__ == "__main__":
    main()
