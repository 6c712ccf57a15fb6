"""The planner and the update on a CPU against the machine's own matrix-multiply rate.

    python benchmarks/cpu_roofline.py                    # every section; CSV and PNG under runs/benchmarks/
    python benchmarks/cpu_roofline.py --sections plan    # one section
    python benchmarks/cpu_roofline.py --quick            # tiny sizes, a few calls each (under two minutes)

Sections:
  matmul  torch's fp32 (and bf16) matrix multiply at each workload's hidden-layer shape
          ([rows, M] x [M, M]), operands in cache, on one thread and on every core: the rate the
          other sections are compared with
  plan    one planner call (E = 1): model size 1 at cpu_small's planner (N=64, K=6, H=3, P=4) and
          model size 5 at the paper's (N=512, K=20, H=3, P=24)
  update  one update (H=3): model size 1 and 5 at B = 64 and 256
  busy    the plan and the update of model size 1 while another process keeps one core busy
          (python -c "while True: pass"), beside the same calls with the machine idle: torch's
          threads on every core, on one, and as the thread tuner picks them (threads=0)

Every code path of a workload is timed in the same run, round-robin (a call of each in turn, the
median per path), so the ratios compare paths under the same conditions; `speedup` is against the
reference eager path (the package's plain PyTorch path, kernels=torch without any speed flag).
GFLOP is the path's own matrix work from mbdpo_fast/kernels/cost.py (plan_flops, update_flops:
forward and backward; equal to torch.utils.flop_counter's count of the eager paths), `pct_of_matmul`
its rate against the matmul rate measured here at the workload's shape on the same threads (the
bf16 rate for bf16 paths). Compiled paths report their first call (compilation, or a load from
Inductor's on-disk cache) beside, not in, the time. Each row's `path` is the agent's own account
of what ran.
"""
from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import announce, benchmark_parser, check_device, error_note, outputs, stamp, write_csv  # noqa: E402

SECTIONS = ["matmul", "plan", "update", "busy"]
OBS_DIM, ACTION_DIM = 24, 6  # walker-walk
PLANNERS = {  # workload -> (model preset, planner sizes)
    "plan m1": (1, dict(num_samples=64, diffusion_steps=6, num_elites=8, num_pi_trajs=4)),
    "plan m5": (5, dict(num_samples=512, diffusion_steps=20, num_elites=64, num_pi_trajs=24)),
}
UPDATES = {"update m1 B=64": (1, 64), "update m1 B=256": (1, 256), "update m5 B=64": (5, 64),
           "update m5 B=256": (5, 256)}
TINY = dict(mlp_dim=64, latent_dim=32, enc_dim=32)  # --quick
PLAN_PATHS = {
    "reference eager": {},
    "grouped eager": {"fused_rollout": True},
    "grouped compiled": {"fused_rollout": True, "compile": True},
    "grouped compiled bf16": {"fused_rollout": True, "compile": True, "bf16_plan": True},
}
UPDATE_PATHS = {
    "reference eager": {},
    "fused eager": {"fused_update": True},
    "fused compiled": {"fused_update": True, "compile": True},
    "fused compiled bf16": {"fused_update": True, "compile": True, "bf16_update": True},
}
FIELDS = ["section", "workload", "path_name", "path", "threads", "load", "ms", "first_call_s", "gflop",
          "gflops", "matmul_gflops", "pct_of_matmul", "speedup", "note"]


def all_cores() -> int:
    import os

    return len(os.sched_getaffinity(0))


# ------------------------------------------------------------------------------------------------
def matmul_rate(rows: int, k: int, n: int, threads: int, dtype=torch.float32, budget_s: float = 0.5) -> float:
    """GFLOP/s of torch.mm [rows, k] x [k, n] on `threads` threads, operands in cache (median of
    repeated calls after a warm-up)."""
    torch.set_num_threads(threads)
    a, b = torch.randn(rows, k).to(dtype), torch.randn(k, n).to(dtype)
    out = torch.empty(rows, n, dtype=dtype)
    for _ in range(3):
        torch.mm(a, b, out=out)
    times, start = [], time.perf_counter()
    while len(times) < 5 or (time.perf_counter() - start < budget_s and len(times) < 2000):
        t0 = time.perf_counter()
        torch.mm(a, b, out=out)
        times.append(time.perf_counter() - t0)
    return 2 * rows * k * n / statistics.median(times) / 1e9


def workload_shape(args, workload: str) -> tuple[int, int]:
    """(rows, M) of a workload's hidden layers: the plan's candidates per step, the update's H x B."""
    if workload.startswith("plan"):
        preset, planner = PLANNERS[workload]
        rows = planner["num_samples"] if not args.quick else 16
    else:
        preset, batch = UPDATES[workload]
        rows = 3 * (batch if not args.quick else 16)
    m = TINY["mlp_dim"] if args.quick else {1: 384, 5: 512}[preset]
    return rows, m


def spec(args, preset: int, flags: dict, **over):
    from mbdpo_fast.config import default_config, resolve

    sizes = {"model_size": preset, **(TINY if args.quick else {})}
    return resolve(default_config(device="cpu", work_dir="unused", threads=1, **sizes, **flags, **over),
                   OBS_DIM, ACTION_DIM)


# ------------------------------------------------------------------------------------------------
class Call:
    """One workload on one code path: `run()` is one timed call; `first_s` the first call's time."""

    def __init__(self, args, workload: str, flags: dict):
        from mbdpo_fast.agent import MBDPO, seed_everything
        from mbdpo_fast.kernels.cost import plan_flops, update_flops

        if workload.startswith("plan"):
            preset, planner = PLANNERS[workload]
            if args.quick:
                planner = dict(planner, num_samples=16, diffusion_steps=3, num_elites=4, num_pi_trajs=2)
            cfg = spec(args, preset, flags, **planner)
            seed_everything(0)
            self.agent = MBDPO(cfg)
            obs, plan = torch.randn(1, OBS_DIM), self.agent.planner.initial_plan(1)
            self.run = lambda: self.agent.act(obs, plan)
            self.flops = plan_flops(cfg, 1, grouped=bool(flags.get("fused_rollout")))
            self.path = self.agent.code_paths()["planner"]
        else:
            preset, batch = UPDATES[workload]
            batch = 16 if args.quick else batch
            cfg = spec(args, preset, flags, batch_size=batch)
            seed_everything(0)
            self.agent = MBDPO(cfg)
            g = torch.Generator().manual_seed(0)
            H = cfg.horizon
            tensors = (torch.randn(H + 1, batch, OBS_DIM, generator=g),
                       torch.rand(H, batch, ACTION_DIM, generator=g) * 2 - 1,
                       torch.rand(H, batch, 1, generator=g), torch.zeros(H, batch, 1))
            self.run = lambda: self.agent.update_step(*tensors)
            self.flops = sum(update_flops(cfg, batch, fused=bool(flags.get("fused_update"))))
            self.path = self.agent.code_paths()["update"]
        self.bf16 = bool(flags.get("bf16_plan") or flags.get("bf16_update"))
        t0 = time.perf_counter()
        self.run()
        self.first_s = time.perf_counter() - t0


def time_round_robin(calls: dict, rounds: int, budget_s: float) -> dict[str, float]:
    """Median ms per call of each path, timed a call of each in turn (one warm-up round first);
    stops after `rounds` rounds or once `budget_s` is spent (3 rounds at least)."""
    for c in calls.values():
        c.run()
    times = {name: [] for name in calls}
    start = time.perf_counter()
    for r in range(rounds):
        for name, c in calls.items():
            t0 = time.perf_counter()
            c.run()
            times[name].append(1000 * (time.perf_counter() - t0))
        if r >= 2 and time.perf_counter() - start > budget_s:
            break
    return {name: statistics.median(t) for name, t in times.items()}


def measure_workload(args, rows: list, workload: str, paths: dict, threads: int, load: str,
                     rates: dict, keep: dict | None = None) -> dict:
    """Time every path of a workload at `threads`; one CSV row per path."""
    import torch._dynamo

    torch.set_num_threads(threads)
    if not keep:
        # compiled functions are cached per code object, and every agent adds entries: a fresh cache per
        # workload keeps each compiled path compiled (past torch._dynamo's recompile limit it runs eagerly)
        torch._dynamo.reset()
    calls = {}
    for name, flags in paths.items():
        try:
            calls[name] = (keep or {}).get(name) or Call(args, workload, flags)
        except Exception as e:  # noqa: BLE001  (reported per row; the other paths still run)
            emit(rows, dict(section=section_of(workload), workload=workload, path_name=name, path="-",
                            threads=threads, load=load, note=error_note(e)))
    torch.set_num_threads(threads)
    ms = time_round_robin(calls, args.rounds, args.budget)
    ref = ms.get("reference eager")
    for name, c in calls.items():
        rate = rates.get((workload, threads, "bf16" if c.bf16 else "fp32"))
        gflops = c.flops / (ms[name] * 1e-3) / 1e9
        emit(rows, dict(section=section_of(workload), workload=workload, path_name=name, path=c.path,
                        threads=threads, load=load, ms=round(ms[name], 3), first_call_s=round(c.first_s, 2),
                        gflop=round(c.flops / 1e9, 3), gflops=round(gflops, 1),
                        matmul_gflops=round(rate, 1) if rate else "",
                        pct_of_matmul=round(100 * gflops / rate, 1) if rate else "",
                        speedup=round(ref / ms[name], 2) if ref else "", note=""))
    return calls


def section_of(workload: str) -> str:
    return "plan" if workload.startswith("plan") else "update"


def emit(rows: list, r: dict) -> None:
    rows.append(r)
    print(" | ".join(f"{k}={v}" for k, v in r.items() if v not in ("", None)), flush=True)


class BusyCore:
    """Another process that keeps one core busy while the block runs."""

    def __enter__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(0.5)
        return self

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait()


# ------------------------------------------------------------------------------------------------
def run_matmul(args, rows: list, rates: dict, workloads: list[str]) -> None:
    for threads in args.threads:
        for workload in workloads:
            r, m = workload_shape(args, workload)
            for dtype, name in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
                rate = matmul_rate(r, m, m, threads, dtype, budget_s=0.2 if args.quick else 0.5)
                rates[(workload, threads, name)] = rate
                emit(rows, dict(section="matmul", workload=workload, path_name=f"torch.mm {name}",
                                path=f"[{r},{m}]x[{m},{m}]", threads=threads, load="idle",
                                gflops=round(rate, 1), matmul_gflops=round(rate, 1), pct_of_matmul=100.0,
                                note="operands in cache"))


def run_busy(args, rows: list, rates: dict) -> None:
    """Model size 1's plan and update on the paths a CPU user runs (reference eager, and the
    grouped/fused compiled path) with torch's threads fixed at every core, fixed at one, and
    tuned (threads=0), idle and with one core busy."""
    n = all_cores()
    for workload, paths in (("plan m1", PLAN_PATHS), ("update m1 B=64", UPDATE_PATHS)):
        chosen = {k: paths[k] for k in ("reference eager", list(paths)[2])}
        kept: dict = {}
        for load in ("idle", "one core busy"):
            for threads in dict.fromkeys((n, 1)):
                if load == "idle":
                    kept = measure_workload(args, rows, workload, chosen, threads, load, rates, kept)
                else:
                    with BusyCore():
                        measure_workload(args, rows, workload, chosen, threads, load, rates, kept)


def plot(rows: list[dict], path: Path, title: str) -> None:
    """One panel per thread count: each workload's paths as bars of GFLOP/s, the matmul rate as a
    tick on each bar's row; the bar's label gives ms and the speedup over the reference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timed = [r for r in rows if r["section"] in ("plan", "update") and r.get("ms") not in ("", None)
             and r.get("load") == "idle"]
    threads = sorted({r["threads"] for r in timed}) or [1]
    fig, axes = plt.subplots(1, len(threads), figsize=(8 * len(threads), 0.32 * max(8, len(timed) // len(threads)) + 2),
                             squeeze=False)
    for ax, t in zip(axes[0], threads):
        sel = [r for r in timed if r["threads"] == t]
        if not sel:
            ax.text(0.5, 0.5, "not measured", ha="center", transform=ax.transAxes)
            continue
        ys = range(len(sel))
        bars = ax.barh(ys, [r["gflops"] for r in sel], color=["C0" if "reference" in r["path_name"] else "C1" for r in sel])
        for y, r in zip(ys, sel):
            if r.get("matmul_gflops") not in ("", None):
                ax.plot([r["matmul_gflops"]] * 2, [y - 0.4, y + 0.4], color="k", lw=2)
        ax.bar_label(bars, labels=[f"{r['ms']:.4g} ms" + (f", x{r['speedup']}" if r.get("speedup") not in ("", None) else "")
                                   for r in sel], fontsize=7)
        ax.set_yticks(list(ys), [f"{r['workload']}: {r['path_name']}" for r in sel], fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel("GFLOP/s (black tick: torch.mm's rate at the workload's shape, same threads)")
        ax.set_title(f"{t} thread{'s' if t > 1 else ''}")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}", flush=True)


def main() -> None:
    ap = benchmark_parser("cpu_roofline", __doc__, png=True)
    ap.add_argument("--sections", nargs="+", default=SECTIONS, choices=SECTIONS)
    ap.add_argument("--workloads", nargs="+", default=None, choices=list(PLANNERS) + list(UPDATES))
    ap.add_argument("--threads", type=int, nargs="+", default=None, help="thread counts (default: 1 and every core)")
    ap.add_argument("--rounds", type=int, default=15, help="timed calls per path at most")
    ap.add_argument("--budget", type=float, default=60.0, help="seconds of timed calls per workload at most")
    args = ap.parse_args()
    dev = check_device(args.device, args.dry_run)
    if dev.type != "cpu":
        from common import fail
        fail(f"cpu_roofline measures the CPU, not {dev}", "use --device cpu (benchmarks/denoise_profile.py and "
             "step_rate.py measure a GPU)")
    csv_path, png = outputs(args)
    n = all_cores()
    args.threads = args.threads or list(dict.fromkeys([1, n]))
    workloads = args.workloads or (list(PLANNERS) + list(UPDATES))
    if args.quick:
        args.rounds, args.budget = min(args.rounds, 4), min(args.budget, 5.0)
        workloads = args.workloads or ["plan m1", "update m1 B=64"]
        args.threads = args.threads[:1]
    meta = stamp(dev)
    meta["sizes"] = "tiny widths (smoke run)" if args.quick else "model sizes 1 and 5"
    plan = [f"{meta['device']}, {n} core(s) in this process's affinity; threads {args.threads}",
            ("TINY widths " + str(TINY) + " (--quick: a smoke run, not a measurement)") if args.quick
            else "model size 1 (cpu_small planner, N=64 K=6) and 5 (paper planner, N=512 K=20); updates B=64, 256",
            f"sections: {', '.join(args.sections)}; workloads: {', '.join(workloads)}",
            f"plan paths: {', '.join(PLAN_PATHS)}; update paths: {', '.join(UPDATE_PATHS)}",
            "compiled paths compile on their first call (about 20-60 s each on 2 cores when Inductor's cache is cold)"]
    timed = sum(1 for s in ("plan", "update") if s in args.sections)
    seconds = (len(workloads) * len(args.threads) * (args.budget + 60) * timed / 2
               + (120 if "busy" in args.sections else 0) + (10 if "matmul" in args.sections else 0))
    announce(f"cpu_roofline, torch {torch.__version__}, commit {meta['commit']}", plan, seconds, csv_path, png)
    if args.dry_run:
        return
    rows: list[dict] = []
    rates: dict = {}
    save = lambda quiet=True: write_csv(csv_path, [{**meta, **r} for r in rows], list(meta) + FIELDS, quiet=quiet)
    if "matmul" in args.sections or any(s in args.sections for s in ("plan", "update", "busy")):
        run_matmul(args, rows if "matmul" in args.sections else [], rates, workloads)
        save()
    for section, paths in (("plan", PLAN_PATHS), ("update", UPDATE_PATHS)):
        if section not in args.sections:
            continue
        for workload in [w for w in workloads if section_of(w) == section]:
            for threads in args.threads:
                measure_workload(args, rows, workload, paths, threads, "idle", rates)
                save()
    if "busy" in args.sections:
        if not args.quick:
            run_busy(args, rows, rates)
        else:
            emit(rows, dict(section="busy", note="not measured: skipped by --quick (a busy core for minutes)"))
        save()
    save(quiet=False)
    plot(rows, png, f"cpu_roofline, {meta['device']}, {meta['date']}, commit {meta['commit']}, torch {meta['torch']}")


if __name__ == "__main__":
    main()
