"""Throughput of the trainer's pieces and of whole training loops, each with the speed flags off and on.

    python benchmarks/step_rate.py                 # GPU: paper sizes; without a GPU: small sizes, said so
    python benchmarks/step_rate.py --quick         # every section at its smallest (under a minute on a CPU)
    python benchmarks/step_rate.py --sections plan update --csv /tmp/step_rate.csv

Sections (one table, one CSV row per measurement, a PNG beside the CSV):
  env      MJX cheetah-run env-steps/s (torch actions in, DLPack both ways), random actions
  plan     planner call latency and planner env-steps/s (E / latency) for E in --envs (E=1: plan latency)
  update   one update (section 5) in ms at each batch size in --batches
  e2e      end-to-end training env-steps/s: faithful mode (dm_control, E=1, 1 update per step) and
           fast mode (MJX, profile=fast's E, updates per step and batch), from the trainer's own
           windowed rate in train.csv after compilation/capture windows

Variants (the flags asked for): off = eager fp32; cudagraphs; cudagraphs+bf16 (bf16_plan and
bf16_update); all = compile+cudagraphs+bf16; triton = all with the planner on the Triton kernels
(kernels=triton); compile and triton-fp32: the same without bf16; triton-fused: cudagraphs+bf16
planning with a denoising step's rollout in a kernel per head group (fused_rollout); grouped: all
with the head-group rollout in PyTorch ops and the fused update. Without CUDA: off, grouped
(compile + fused_rollout + fused_update, fp32: the CPU's fast path) and grouped+bf16. Each row's
`path` column says what ran (the agent's own account: a flag that cannot
act on this device is not counted as on). "env-steps" are
agent steps (one action per environment, action repeat inside). Latencies: median over repeats
after warm-up, with a device synchronisation around each call. Paper sizes: model size 5, N=512,
K=20, H=3. A row that could not be measured has no value and a note that says why.
"""
from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch._dynamo

sys.path.insert(0, str(Path(__file__).parent))
from common import (announce, benchmark_parser, check_device, error_note, fail, nested_run, outputs,  # noqa: E402
                    quiet_libraries, shown, stamp, write_csv)

VARIANTS_CUDA = {
    "off": {},
    "cudagraphs": {"cudagraphs": True},
    "cudagraphs+bf16": {"cudagraphs": True, "bf16_plan": True, "bf16_update": True},
    "all": {"cudagraphs": True, "compile": True, "bf16_plan": True, "bf16_update": True},
    "triton": {"cudagraphs": True, "compile": True, "bf16_plan": True, "bf16_update": True, "kernels": "triton"},
    "compile": {"cudagraphs": True, "compile": True},  # fp32 counterparts of "all" and "triton"
    "triton-fp32": {"cudagraphs": True, "kernels": "triton"},
    # a denoising step's rollout in a kernel per head group (fused_rollout), bf16, CUDA graphs
    "triton-fused": {"cudagraphs": True, "bf16_plan": True, "kernels": "triton", "fused_rollout": True},
    # the head-group rollout in PyTorch ops (fused_rollout with kernels=torch) and the fused update, compiled
    "grouped": {"cudagraphs": True, "compile": True, "bf16_plan": True, "bf16_update": True, "fused_rollout": True,
                "fused_update": True},
}
VARIANTS_CPU = {"off": {}, "grouped": {"compile": True, "fused_rollout": True, "fused_update": True},
                "grouped+bf16": {"compile": True, "fused_rollout": True, "fused_update": True, "bf16_plan": True,
                                 "bf16_update": True}}
FLAG_KEYS = ("cudagraphs", "compile", "bf16_plan", "bf16_update", "fused_update")
SMALL = {"model_size": 1, "num_samples": 64, "diffusion_steps": 6, "num_elites": 8, "num_pi_trajs": 4}
OBS_DIM, ACTION_DIM = 17, 6  # cheetah-run
SECTIONS = ["env", "plan", "update", "e2e"]
FIELDS = ["section", "what", "size", "variant", "path", "value", "unit", "note"]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(fn, device, warmup: int, max_repeats: int, budget_s: float) -> float:
    """Median wall time of fn() in ms; stops after max_repeats or once budget_s is spent (3 calls at least)."""
    for _ in range(warmup):
        fn()
    times, start = [], time.perf_counter()
    while len(times) < max_repeats and (len(times) < 3 or time.perf_counter() - start < budget_s):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(1000 * (time.perf_counter() - t0))
    return statistics.median(times)


def flags_of(variant: dict) -> dict:
    """The speed settings of a variant: the four boolean flags, the planner's kernels and fused_rollout."""
    return {**{k: bool(variant.get(k, False)) for k in FLAG_KEYS}, "kernels": variant.get("kernels", "torch"),
            "fused_rollout": bool(variant.get("fused_rollout", False))}


def make_agent(args, variant: dict, **over):
    from mbdpo_fast.agent import MBDPO, seed_everything
    from mbdpo_fast.config import default_config, resolve

    sizes = dict(SMALL) if args.small else {"model_size": 5}
    torch._dynamo.reset()  # a fresh compile cache per agent: past the recompile limit it would run eagerly
    cfg = resolve(default_config(device=args.device, work_dir="unused", threads=torch.get_num_threads(), **sizes,
                                 **flags_of(variant), **over), OBS_DIM, ACTION_DIM)
    seed_everything(0)
    return MBDPO(cfg)


def row(section, what, size, variant, path, value, unit, note="") -> dict:
    return dict(section=section, what=what, size=size, variant=variant, path=path, value=value, unit=unit, note=note)


# ------------------------------------------------------------------------------------------------
def bench_env(args, rows, _variant_name=None, _variant=None):
    from mbdpo_fast.envs.mjx import make_mjx_env

    dev = torch.device(args.device)
    for E in args.env_envs:
        t0 = time.perf_counter()
        env = make_mjx_env("cheetah-run", E, seed=0, device=dev)
        env.reset()
        for _ in range(3):  # the first DLPack input may compile the step once more
            env.step(torch.rand(E, env.action_dim, device=dev) * 2 - 1)
        sync(dev)
        compile_s = time.perf_counter() - t0
        n = args.env_steps
        t = time.perf_counter()
        for _ in range(n):
            env.step(torch.rand(E, env.action_dim, device=dev) * 2 - 1)
        sync(dev)
        rate = n * E / (time.perf_counter() - t)
        emit(rows, row("env", "MJX cheetah-run step (bridged)", f"E={E}", "-", f"MJX ({env.jax_device.platform})",
                       round(rate, 1), "env-steps/s", f"compile+warm-up {compile_s:.0f} s"))


def bench_plan(args, rows, name, variant):
    dev = torch.device(args.device)
    agent = make_agent(args, variant)
    path = agent.code_paths()["planner"]
    for E in args.envs:
        obs = torch.randn(E, OBS_DIM, device=dev)
        plan = agent.planner.initial_plan(E)
        first = torch.zeros(E, dtype=torch.bool, device=dev)
        t0 = time.perf_counter()
        agent.act(obs, plan, first=first)  # compile / capture
        sync(dev)
        setup_s = time.perf_counter() - t0
        ms = median_ms(lambda: agent.act(obs, plan, first=first), dev, 2, args.repeats, args.budget)
        emit(rows, row("plan", "planner call", f"E={E}", name, path, round(ms, 3), "ms", f"first call {setup_s:.1f} s"))
        emit(rows, row("plan", "planner throughput", f"E={E}", name, path, round(1000 * E / ms, 1), "env-steps/s"))
    agent = None  # free it before the next variant's agent
    if dev.type == "cuda":
        torch.cuda.empty_cache()


def bench_update(args, rows, name, variant):
    from mbdpo_fast.batch import Batch

    dev = torch.device(args.device)
    for B in args.batches:
        agent = make_agent(args, variant, batch_size=B)
        H = agent.cfg.horizon
        g = torch.Generator(device=dev).manual_seed(0)
        batch = Batch(obs=torch.randn(H + 1, B, OBS_DIM, device=dev, generator=g),
                      action=torch.rand(H, B, ACTION_DIM, device=dev, generator=g) * 2 - 1,
                      reward=torch.rand(H, B, 1, device=dev, generator=g),
                      terminated=torch.zeros(H, B, 1, device=dev))
        t0 = time.perf_counter()
        agent.update(batch)
        sync(dev)
        setup_s = time.perf_counter() - t0
        ms = median_ms(lambda: agent.update(batch), dev, 3, args.repeats, args.budget)
        emit(rows, row("update", "one update", f"B={B}", name, agent.code_paths()["update"], round(ms, 3), "ms",
                       f"first call {setup_s:.1f} s"))
        agent = None
        if dev.type == "cuda":
            torch.cuda.empty_cache()


def steady_rate(train_csv: Path, seed_steps: int, skip: int) -> tuple[float | None, int]:
    """Mean env_steps_per_s of the train.csv rows (windows) after seeding, leaving out the first
    `skip` of them (seed-update burst, compilation, capture). None when none is left."""
    import csv

    with open(train_csv) as f:
        rates = [float(r["env_steps_per_s"]) for r in csv.DictReader(f) if int(r["step"]) > seed_steps]
    steady = rates[skip:]
    return (statistics.mean(steady) if steady else None), len(steady)


def e2e_modes(args) -> dict:
    small = args.small
    return {
        # faithful: the paper's trainer (E=1, one update per env step). 100-step episodes so that the
        # trainer writes a rate row every 100 steps; seeding and the seed burst fill the first rows.
        "faithful (dm_control, E=1, 1 update/step)": (
            ["task=cheetah-run", "env_backend=dmc", "num_envs=1", "episode_length=100", "seed_steps=200"]
            + (["episode_length=25", "seed_steps=50", "batch_size=32"] if small else []), 1),
        f"fast (MJX, profile=fast{', E=' + str(args.fast_envs) if args.fast_envs else ''})": (
            ["profile=fast", "task=cheetah-run", "dmc_eval=false", "log_every=10"]
            + ([f"num_envs={args.fast_envs}"] if args.fast_envs else [])
            + (["batch_size=32", "seed_steps=40", "updates_per_step=2", "log_every=2"] if small else []), 2),
    }


def bench_e2e(args, rows, name, variant):
    from mbdpo_fast.config import compose_config
    from mbdpo_fast.train import run

    common = ["eval_episodes=0", "progress_bar=false", "checkpoint_freq=100000000",
              f"device={args.device}", "buffer_size=200000"]
    small = [f"{k}={v}" for k, v in SMALL.items()] if args.small else []
    flags = [f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in flags_of(variant).items()]
    for mode, (over, skip) in e2e_modes(args).items():
        if "fast" in mode and not args.mjx:
            emit(rows, row("e2e", mode, "-", name, "-", "", "env-steps/s",
                           "not measured: skipped by --quick (MJX compiles for about a minute on a CPU)"))
            continue
        with tempfile.TemporaryDirectory() as tmp:
            base = common + small + over + flags
            limit = [f"time_limit={args.e2e_seconds}", "steps=100000000"]
            if args.small:
                # Small sizes stop after the seeding and skip + 2 rate windows instead of at a time limit,
                # so that a slow or busy CPU still yields a rate (a few hundred steps: no cap needed).
                cfg = compose_config(base, tmp)
                E = cfg.num_envs
                window = cfg.log_every * E if cfg.log_every > 0 else cfg.episode_length
                limit = ["time_limit=0", f"steps={cfg.seed_steps + (skip + 2) * window}"]
            cfg = compose_config(base + limit, tmp)
            with nested_run():
                summary = run(cfg)
            rate, n = steady_rate(Path(tmp) / "train.csv", cfg.seed_steps, skip)
        path = f"planner {summary['code_paths']['planner']}; update {summary['code_paths']['update']}"
        detail = (f"E={cfg.num_envs} U={cfg.updates_per_step} B={cfg.batch_size}: mean of {n} windows after "
                  f"seeding and {skip} more; {summary['step']} steps"
                  + ("" if args.small else f" in {args.e2e_seconds:.0f} s"))
        if rate is None:
            detail = (f"not measured: no rate window after seeding and the {skip} warm-up window(s) within "
                      f"{args.e2e_seconds:.0f} s ({summary['step']} steps); raise --e2e-seconds")
        emit(rows, row("e2e", mode, f"E={cfg.num_envs}", name, path, "" if rate is None else round(rate, 1),
                       "env-steps/s", detail))


BENCHES = {"env": bench_env, "plan": bench_plan, "update": bench_update, "e2e": bench_e2e}


# ------------------------------------------------------------------------------------------------
def emit(rows: list, r: dict) -> None:
    rows.append(r)
    print(f"| {r['section']:<6} | {r['what']:<44} | {r['size']:<7} | {r['variant']:<15} | {shown(r['value'], r['unit']):>23} "
          f"| {r['path']} | {r['note']}", flush=True)


def estimate_s(args, variants: dict) -> float:
    """A rough duration: each timed measurement spends at most --budget s after its warm-up calls,
    plus first-call costs seen on this project's machines (compilation on CPU: ~60 s per compiled
    agent; MJX: ~60 s per environment count on CPU, ~30 s on a GPU)."""
    compiled = sum(1 for v in variants.values() if v.get("compile"))
    first = 60 if args.small else 30  # a compiled denoising step: ~30 s on an H100
    mjx = 60 if args.small else 30
    s = 0.0
    if "env" in args.sections and args.mjx:
        s += len(args.env_envs) * (mjx + 5)
    if "plan" in args.sections:
        s += len(args.envs) * len(variants) * (args.budget + 2) + compiled * first
    if "update" in args.sections:
        s += len(args.batches) * len(variants) * (args.budget + 2) + compiled * first * len(args.batches)
    if "e2e" in args.sections:
        s += len(variants) * (args.e2e_seconds + 15 + (args.e2e_seconds + 15 + mjx if args.mjx else 0))
    return s


def plot(rows: list[dict], path: Path, title: str) -> None:
    """Plan latency against E, update time against B, one line per variant (legend: the code path
    that ran); env and e2e rates as bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = [r for r in rows if r["value"] != ""]
    panels = [("plan", "planner call", "E", "ms per planner call"), ("update", "one update", "B", "ms per update")]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    for ax, (section, what, x, ylabel) in zip(axes, panels):
        for variant in dict.fromkeys(r["variant"] for r in measured if r["section"] == section):
            pts = sorted((int(r["size"].split("=")[1]), float(r["value"]), r["path"]) for r in measured
                         if r["section"] == section and r["what"] == what and r["variant"] == variant)
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=f"{variant}: {pts[0][2]}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel(f"{x} ({'environments' if x == 'E' else 'batch size'})")
        ax.set_ylabel(ylabel)
        ax.set_title(section)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "not measured", ha="center", transform=ax.transAxes)
    bars = [r for r in measured if r["section"] in ("env", "e2e")]
    ax = axes[2]
    if bars:
        labels = [f"{r['what'].split(' (')[0]} {r['size']}\n{r['variant']}" for r in bars]
        drawn = ax.barh(range(len(bars)), [float(r["value"]) for r in bars])
        ax.bar_label(drawn, fmt="%.4g", fontsize=7)
        ax.set_yticks(range(len(bars)), labels, fontsize=7)
        ax.set_xscale("log")
        ax.set_xlabel("env-steps/s")
    else:
        ax.text(0.5, 0.5, "not measured", ha="center", transform=ax.transAxes)
    ax.set_title("environment and end-to-end rates")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}", flush=True)


def main() -> None:
    ap = benchmark_parser("step_rate", __doc__, png=True)
    ap.add_argument("--small", action="store_true", help="small sizes (the default without CUDA)")
    ap.add_argument("--sections", nargs="+", default=SECTIONS, choices=SECTIONS)
    ap.add_argument("--variants", nargs="+", default=None, help="subset of the variant names")
    ap.add_argument("--envs", type=int, nargs="+", default=None, help="planner E values")
    ap.add_argument("--batches", type=int, nargs="+", default=None, help="update batch sizes")
    ap.add_argument("--env-envs", type=int, nargs="+", default=None, help="MJX env E values")
    ap.add_argument("--env-steps", type=int, default=None)
    ap.add_argument("--fast-envs", type=int, default=None, help="E of the fast-mode e2e run (default: the profile's)")
    ap.add_argument("--e2e-seconds", type=float, default=None)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--budget", type=float, default=3.0, help="seconds of timed calls per measurement at most")
    ap.add_argument("--strict", action="store_true", help="stop at the first failing measurement")
    args = ap.parse_args()
    quiet_libraries()
    dev = check_device(args.device, args.dry_run)
    csv_path, png = outputs(args)
    args.small = args.small or dev.type != "cuda"
    variants = VARIANTS_CUDA if dev.type == "cuda" else VARIANTS_CPU
    if args.variants:
        unknown = sorted(set(args.variants) - set(variants))
        if unknown:
            fail(f"unknown variant(s) {', '.join(unknown)} on {dev.type}", f"choose from {', '.join(variants)}")
        variants = {k: v for k, v in variants.items() if k in args.variants}
    # MJX compiles for about a minute per shape on a CPU: --quick on a CPU leaves MJX out (said per row).
    args.mjx = not (args.quick and dev.type != "cuda")
    if args.quick:
        variants = {k: v for k, v in variants.items() if k == "off"} if not args.variants else variants
        args.envs, args.batches = args.envs or [1], args.batches or [32 if args.small else 256]
        args.env_envs, args.env_steps = args.env_envs or [4 if args.small else 1024], args.env_steps or 10
        args.fast_envs = args.fast_envs or (4 if args.small else None)
        args.e2e_seconds = args.e2e_seconds or (12.0 if args.small else 30.0)
        args.repeats, args.budget = min(args.repeats, 5), min(args.budget, 1.0)
    elif args.small:
        args.envs = args.envs or [1, 4]
        args.batches = args.batches or [32, 64]
        args.env_envs = args.env_envs or [4]
        args.env_steps = args.env_steps or 20
        args.fast_envs = args.fast_envs or 4
        args.e2e_seconds = args.e2e_seconds or 20.0
    else:
        args.envs = args.envs or [1, 64, 256, 1024]
        args.batches = args.batches or [256, 512]
        args.env_envs = args.env_envs or [1024, 4096]
        args.env_steps = args.env_steps or 200
        args.e2e_seconds = args.e2e_seconds or 60.0
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(Path.home() / ".cache" / "mbdpo_fast_jax"))
    meta = {**stamp(dev), "sizes": "small (CPU smoke)" if args.small else "paper"}
    sizes = ("SMALL sizes (a smoke run, not the paper's settings): " + str(SMALL)) if args.small \
        else "paper sizes: model size 5, N=512, K=20, H=3"
    plan = [sizes, f"variants: {', '.join(variants)}"]
    for section in args.sections:
        plan.append({"env": f"env: MJX cheetah-run at E={args.env_envs}, {args.env_steps} steps"
                            + ("" if args.mjx else " (skipped by --quick on CPU)"),
                     "plan": f"plan: planner call at E={args.envs}",
                     "update": f"update: one update at B={args.batches}",
                     "e2e": f"e2e: faithful and fast training loops, {args.e2e_seconds:.0f} s each"
                            + ("" if args.mjx else " (fast mode skipped by --quick on CPU)")}[section])
    announce(f"step_rate on {meta['device']} ({dev.type}), torch {torch.__version__}, commit {meta['commit']}",
             plan, estimate_s(args, variants), csv_path, png)
    if args.dry_run:
        return
    print(f"| {'sect.':<6} | {'what':<44} | {'size':<7} | {'variant':<15} | {'value':>23} | path | note")
    rows: list[dict] = []
    for section in args.sections:
        if section == "env" and not args.mjx:
            emit(rows, row("env", "MJX cheetah-run step (bridged)", f"E={args.env_envs[0]}", "-", "-", "",
                           "env-steps/s", "not measured: skipped by --quick (MJX compiles for about a minute on a CPU)"))
            continue
        for name, variant in (variants.items() if section != "env" else [("-", {})]):
            try:  # one failing measurement is reported and the others still run
                BENCHES[section](args, rows, name, variant)
            except Exception as e:  # noqa: BLE001
                emit(rows, row(section, "FAILED", "-", name, "-", "", "-", error_note(e)))
                if args.strict:
                    raise
            # written after every measurement: a run cut short (a time limit) keeps what it measured
            write_csv(csv_path, [{**meta, **r} for r in rows], list(meta) + FIELDS, quiet=True)
    rows = [{**meta, **r} for r in rows]
    write_csv(csv_path, rows, list(meta) + FIELDS)
    plot(rows, png, f"step_rate, {meta['device']}, {meta['date']}, commit {meta['commit']}, {meta['sizes']}")


if __name__ == "__main__":
    main()
