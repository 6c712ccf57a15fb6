"""Throughput of the trainer's pieces and of whole training loops, each with the speed flags off and on.

    python benchmarks/step_rate.py                      # GPU: paper sizes; without a GPU: small sizes, said so
    python benchmarks/step_rate.py --sections plan update --csv /tmp/step_rate.csv   # recorded results: under benchmarks/results/

Sections (one table, one CSV row per measurement):
  env      MJX cheetah-run env-steps/s (torch actions in, DLPack both ways), random actions
  plan     planner call latency and planner env-steps/s (E / latency) for E in --envs (E=1: plan latency)
  update   one update (section 5) in ms at batch 256 and at the fast-mode batch
  e2e      end-to-end training env-steps/s: faithful mode (dm_control, E=1, 1 update per step) and
           fast mode (MJX, profile=fast's E, updates per step and batch), from the trainer's own
           windowed rate in train.csv after compilation/capture windows

Variants: off = eager fp32; cudagraphs; cudagraphs+bf16 (bf16_plan and bf16_update); all =
compile+cudagraphs+bf16; triton = all with the planner on the Triton kernels (kernels=triton).
Without CUDA: off and compile+bf16. "env-steps" are agent steps (one action
per environment, action repeat inside). Latencies: median over repeats after warm-up, with a device
synchronisation around each call. Paper sizes: model size 5, N=512, K=20, H=3.
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import commit, device_name  # noqa: E402

VARIANTS_CUDA = {
    "off": {},
    "cudagraphs": {"cudagraphs": True},
    "cudagraphs+bf16": {"cudagraphs": True, "bf16_plan": True, "bf16_update": True},
    "all": {"cudagraphs": True, "compile": True, "bf16_plan": True, "bf16_update": True},
    "triton": {"cudagraphs": True, "compile": True, "bf16_plan": True, "bf16_update": True, "kernels": "triton"},
}
VARIANTS_CPU = {"off": {}, "compile+bf16": {"compile": True, "bf16_plan": True, "bf16_update": True}}
FLAG_KEYS = ("cudagraphs", "compile", "bf16_plan", "bf16_update")
SMALL = {"model_size": 1, "num_samples": 64, "diffusion_steps": 6, "num_elites": 8, "num_pi_trajs": 4}
OBS_DIM, ACTION_DIM = 17, 6  # cheetah-run


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(fn, device, warmup: int, max_repeats: int, budget_s: float) -> float:
    """Median wall time of fn() in ms; stops after max_repeats or once budget_s is spent."""
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
    """The speed settings of a variant: the four boolean flags and the planner's kernels."""
    return {**{k: bool(variant.get(k, False)) for k in FLAG_KEYS}, "kernels": variant.get("kernels", "torch")}


def make_agent(args, variant: dict, **over):
    from mbdpo_fast.agent import MBDPO, seed_everything
    from mbdpo_fast.config import default_config, resolve

    sizes = dict(SMALL) if args.small else {"model_size": 5}
    cfg = resolve(default_config(device=args.device, work_dir="unused", **sizes, **flags_of(variant), **over),
                   OBS_DIM, ACTION_DIM)
    seed_everything(0)
    return MBDPO(cfg)


# ------------------------------------------------------------------------------------------------
def bench_env(args, rows):
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
            obs, *_ = env.step(torch.rand(E, env.action_dim, device=dev) * 2 - 1)
        sync(dev)
        rate = n * E / (time.perf_counter() - t)
        rows.append(dict(section="env", what="MJX cheetah-run step (bridged)", size=f"E={E}", variant="-",
                         value=round(rate, 1), unit="env-steps/s", note=f"compile+warm-up {compile_s:.0f} s"))
        print_row(rows[-1])


def bench_plan(args, rows, variants):
    dev = torch.device(args.device)
    for name, variant in variants.items():
        agent = make_agent(args, variant)
        for E in args.envs:
            obs = torch.randn(E, OBS_DIM, device=dev)
            plan = agent.planner.initial_plan(E)
            first = torch.zeros(E, dtype=torch.bool, device=dev)
            t0 = time.perf_counter()
            agent.act(obs, plan, first=first)  # compile / capture
            sync(dev)
            setup_s = time.perf_counter() - t0
            ms = median_ms(lambda: agent.act(obs, plan, first=first), dev, 2, args.repeats, args.budget)
            rows.append(dict(section="plan", what="planner call", size=f"E={E}", variant=name,
                             value=round(ms, 3), unit="ms", note=f"first call {setup_s:.1f} s"))
            print_row(rows[-1])
            rows.append(dict(section="plan", what="planner throughput", size=f"E={E}", variant=name,
                             value=round(1000 * E / ms, 1), unit="env-steps/s", note=""))
            print_row(rows[-1])
        del agent
        if dev.type == "cuda":
            torch.cuda.empty_cache()


def bench_update(args, rows, variants):
    from mbdpo_fast.batch import Batch

    dev = torch.device(args.device)
    for name, variant in variants.items():
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
            rows.append(dict(section="update", what="one update", size=f"B={B}", variant=name,
                             value=round(ms, 3), unit="ms", note=f"first call {setup_s:.1f} s"))
            print_row(rows[-1])
            del agent
            if dev.type == "cuda":
                torch.cuda.empty_cache()


def steady_rate(train_csv: Path, seed_steps: int, skip: int) -> tuple[float, int]:
    """Mean env_steps_per_s of the train.csv rows (windows) after seeding, leaving out the first
    `skip` of them (seed-update burst, compilation, capture). nan when none is left."""
    with open(train_csv) as f:
        rates = [float(r["env_steps_per_s"]) for r in csv.DictReader(f) if int(r["step"]) > seed_steps]
    steady = rates[skip:]
    return (statistics.mean(steady) if steady else float("nan")), len(steady)


def bench_e2e(args, rows, variants):
    from mbdpo_fast.config import compose_config
    from mbdpo_fast.train import run

    common = ["eval_episodes=0", "progress_bar=false", "checkpoint_freq=100000000", "steps=100000000",
              f"device={args.device}", "buffer_size=200000"]
    small = [f"{k}={v}" for k, v in SMALL.items()] if args.small else []
    modes = {
        # faithful: the paper's trainer (E=1, one update per env step). 100-step episodes so that the
        # trainer writes a rate row every 100 steps; seeding and the seed burst fill the first rows.
        "faithful (dm_control, E=1, 1 update/step)": (
            ["task=cheetah-run", "env_backend=dmc", "num_envs=1", "episode_length=100", "seed_steps=200"]
            + (["episode_length=25", "seed_steps=50", "batch_size=32"] if args.small else []), 1),
        f"fast (MJX, profile=fast{', E=' + str(args.fast_envs) if args.fast_envs else ''})": (
            ["profile=fast", "task=cheetah-run", "dmc_eval=false", "log_every=10"]
            + ([f"num_envs={args.fast_envs}"] if args.fast_envs else [])
            + (["batch_size=32", "seed_steps=40", "updates_per_step=2", "log_every=2"] if args.small else []), 2),
    }
    for mode, (over, skip) in modes.items():
        for name, variant in variants.items():
            flags = [f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in flags_of(variant).items()]
            with tempfile.TemporaryDirectory() as tmp:
                cfg = compose_config(common + small + over + flags + [f"time_limit={args.e2e_seconds}"], tmp)
                summary = run(cfg)
                rate, n = steady_rate(Path(tmp) / "train.csv", cfg.seed_steps, skip)
            detail = (f"E={cfg.num_envs} U={cfg.updates_per_step} B={cfg.batch_size}: mean of {n} windows after "
                      f"seeding and {skip} more; {summary['step']} steps in {args.e2e_seconds:.0f} s")
            if n == 0:
                detail += " (no steady window: raise --e2e-seconds)"
            rows.append(dict(section="e2e", what=mode, size=f"E={cfg.num_envs}", variant=name, value=round(rate, 1),
                             unit="env-steps/s", note=detail))
            print_row(rows[-1])


# ------------------------------------------------------------------------------------------------
def print_row(r: dict) -> None:
    print(f"| {r['section']:<6} | {r['what']:<44} | {r['size']:<7} | {r['variant']:<15} | {r['value']:>11} "
          f"{r['unit']:<11} | {r['note']}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--small", action="store_true", help="small sizes (the default without CUDA)")
    ap.add_argument("--sections", nargs="+", default=["env", "plan", "update", "e2e"],
                    choices=["env", "plan", "update", "e2e"])
    ap.add_argument("--variants", nargs="+", default=None, help="subset of the variant names")
    ap.add_argument("--envs", type=int, nargs="+", default=None, help="planner E values")
    ap.add_argument("--batches", type=int, nargs="+", default=None, help="update batch sizes")
    ap.add_argument("--env-envs", type=int, nargs="+", default=None, help="MJX env E values")
    ap.add_argument("--env-steps", type=int, default=None)
    ap.add_argument("--fast-envs", type=int, default=None, help="E of the fast-mode e2e run (default: the profile's)")
    ap.add_argument("--e2e-seconds", type=float, default=None)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--budget", type=float, default=3.0, help="seconds of timed calls per measurement at most")
    ap.add_argument("--csv", default=None)
    ap.add_argument("--strict", action="store_true", help="stop at the first failing measurement")
    args = ap.parse_args()
    dev = torch.device(args.device)
    args.small = args.small or dev.type != "cuda"
    if args.small:
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
    variants = VARIANTS_CUDA if dev.type == "cuda" else VARIANTS_CPU
    if args.variants:
        unknown = sorted(set(args.variants) - set(variants))
        if unknown:
            sys.exit(f"error: unknown variant(s) {unknown}; on {dev.type}: {list(variants)}")
        variants = {k: v for k, v in variants.items() if k in args.variants}
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(Path.home() / ".cache" / "mbdpo_fast_jax"))
    gpu = device_name(dev)
    sizes = ("SMALL sizes on CPU (a smoke run, not the paper's settings): " + str(SMALL)) if args.small \
        else "paper sizes: model size 5, N=512, K=20, H=3"
    print(f"step_rate on {gpu} ({dev.type}), torch {torch.__version__}, commit {commit()}\n{sizes}")
    print(f"| {'sect.':<6} | {'what':<44} | {'size':<7} | {'variant':<15} | {'value':>11} {'unit':<11} | note")
    rows: list[dict] = []
    benches = {"plan": bench_plan, "update": bench_update, "e2e": bench_e2e}
    for section in args.sections:
        for name, variant in (variants.items() if section != "env" else [("-", None)]):
            try:  # one failing measurement is reported and the others still run
                benches[section](args, rows, {name: variant}) if variant is not None else bench_env(args, rows)
            except Exception as e:  # noqa: BLE001
                rows.append(dict(section=section, what="FAILED", size="-", variant=name, value=float("nan"),
                                 unit="-", note=f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"))
                print_row(rows[-1])
                if args.strict:
                    raise
    meta = {"date": dt.date.today().isoformat(), "commit": commit(), "device": gpu, "torch": torch.__version__,
            "sizes": "small (CPU smoke)" if args.small else "paper"}
    if args.csv:
        path = Path(args.csv)
        path.parent.mkdir(parents=True, exist_ok=True)
        new = not path.exists()
        with open(path, "a", newline="") as f:
            w = csv.DictWriter(f, list(meta) + list(rows[0]))
            if new:
                w.writeheader()
            w.writerows([{**meta, **r} for r in rows])
        print(f"wrote {len(rows)} rows to {path}")


if __name__ == "__main__":
    main()
