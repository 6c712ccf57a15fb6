"""How soon does a configuration reach a return, in env steps and in wall clock, over seeds.

    python benchmarks/time_to_return.py                                   # walker-walk: paper vs cpu_fast, 3 seeds
    python benchmarks/time_to_return.py --task cheetah-run --threshold 500
    python benchmarks/time_to_return.py --configs cpu_fast --variant e8="profile=cpu_fast num_envs=8" --seeds 1
    python benchmarks/time_to_return.py --minutes 8                       # a wall-clock budget per run instead
    python benchmarks/time_to_return.py --quick                           # tiny sizes (CI): the pipeline only

Each run is one `python -m mbdpo_fast.train` command, alone on the machine (one at a time: the
timings are the point), in `--runs-dir/<task>/<config>/s<seed>`. The trainer writes every
evaluation to eval.csv with `wall_s`, the seconds since its command started (interpreter start-up,
imports, compilation and evaluations included), and `eval_s`, the part of them spent evaluating.
A finished run is kept; an interrupted one resumes from its checkpoint when the command is
repeated (its wall clock then sums the commands' times up to the checkpoint it resumed from).

Named configurations (more with --variant NAME="overrides"):
- paper: the paper's mode, one environment and one update of one batch per env step
  (`profile=cpu_small` on a CPU: model size 1 and a reduced planner; `profile=paper` on a GPU);
- cpu_fast: `profile=cpu_fast`, the CPU's fast mode (mbdpo_fast/cfgs/profile/cpu_fast.yaml);
- fast: `profile=fast`, the GPU's fast mode (MJX environments on the device).

Writes to --out: evals.csv (every evaluation of every run: config, seed, step, wall_s, eval_s,
return), summary.csv (per configuration: seeds that reached --threshold, the time and env steps
to reach it, mean and 95% interval over seeds; the mean return at each --at step) and
time_to_return.png (return against env steps and against wall clock: mean over seeds and its 95%
interval), each stamped with the machine, date and commit.
"""
from __future__ import annotations

import csv
import datetime as dt
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import quiet_libraries, Parser, announce, check_writable, commit, fail, write_csv  # noqa: E402

from mbdpo_fast import results  # noqa: E402

CONFIGS = {
    "cpu": {"paper": ["profile=cpu_small"], "cpu_fast": ["profile=cpu_fast"], "fast": ["profile=fast"]},
    "cuda": {"paper": ["profile=paper"], "cpu_fast": ["profile=cpu_fast"], "fast": ["profile=fast"]},
}
QUICK = ["model_size=1", "enc_dim=32", "mlp_dim=32", "latent_dim=16", "num_samples=16", "num_elites=4",
         "num_pi_trajs=2", "diffusion_steps=3", "batch_size=8", "episode_length=25", "seed_steps=50", "compile=false"]
DONE = "time_to_return.done"  # written in a run directory when its command finished its budget


def machine(device: str = "cpu") -> str:
    """The CPU's model name and core count; on a GPU run the GPU's name first."""
    gpu = ""
    if device.startswith("cuda"):
        import torch

        gpu = (torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CUDA (not present: dry run)") + "; "
    name = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{gpu}{name}, {len(os.sched_getaffinity(0))} cores"


def parse_variants(items: list[str]) -> dict[str, list[str]]:
    out = {}
    for item in items:
        name, sep, overrides = item.partition("=")
        if not sep or not name or not overrides.strip():
            fail(f"--variant {item!r} is not NAME=\"key=value ...\"", 'e.g. --variant e8="profile=cpu_fast num_envs=8"')
        out[name] = shlex.split(overrides)
    return out


def budget_key(args) -> str:
    return f"minutes={args.minutes}" if args.minutes else f"steps={args.steps}"


def run_one(name: str, overrides: list[str], seed: int, args) -> tuple[int, float]:
    """Train one configuration and seed to the budget (or resume it); (exit code, seconds)."""
    run_dir = Path(args.runs_dir) / args.task / name / f"s{seed}"
    done = run_dir / DONE
    if done.is_file() and done.read_text().strip() == budget_key(args):
        return 0, 0.0
    budget = [f"time_limit={60 * args.minutes:g}", "steps=100000000"] if args.minutes else [f"steps={args.steps}"]
    cmd = [sys.executable, "-m", "mbdpo_fast.train", f"task={args.task}", f"seed={seed}", f"device={args.device}",
           *overrides, *budget, f"eval_freq={args.eval_freq}", f"eval_episodes={args.eval_episodes}",
           "progress_bar=false", *args.extra, f"hydra.run.dir={run_dir}"]
    if (run_dir / "checkpoint.pt").is_file():
        cmd.append("resume=true")
    env = dict(os.environ, WANDB_MODE="disabled", MUJOCO_GL=os.environ.get("MUJOCO_GL", "disable"))
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    with open(run_dir.parent / f"s{seed}.log", "a") as log:
        log.write(f"$ {shlex.join(cmd)}\n")
        log.flush()
        rc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    if rc == 0:
        done.write_text(budget_key(args) + "\n")
    return rc, time.time() - t0


def read_evals(run_dir: Path) -> list[dict]:
    """(step, wall_s, eval_s, return) of each evaluation of a run, in step order."""
    path = run_dir / "eval.csv"
    if not path.is_file():
        return []
    rows = []
    for r in csv.DictReader(open(path)):
        if r.get("wall_s") in (None, ""):
            fail(f"{path} has no wall_s column", "it was written by an older version: delete the run and rerun")
        rows.append({"step": int(r["step"]), "wall_s": float(r["wall_s"]), "eval_s": float(r["eval_s"]),
                     "return": float(r["reward"])})
    return rows


def loop_times(run_dir: Path) -> dict:
    """Medians over a run's train rows after seeding: ms per vector step in the planner, the updates
    and the environments, and env steps/s (train.csv; evaluation excluded)."""
    path = run_dir / "train.csv"
    rows = [r for r in csv.DictReader(open(path)) if r.get("plan_ms") not in (None, "", "nan")] if path.is_file() else []
    out = {}
    for key in ("plan_ms", "update_ms", "env_ms", "env_steps_per_s"):
        vals = [float(r[key]) for r in rows[1:] if r.get(key) not in (None, "", "nan")]  # the first row compiles
        out[key] = float(np.median(vals)) if vals else None
    return out


def first_reaching(evals: list[dict], threshold: float) -> dict | None:
    return next((e for e in evals if e["return"] >= threshold), None)


def value_at(evals: list[dict], step: int) -> float | None:
    """The return of the last evaluation at or before `step` (None before the first)."""
    return results.value_at([(e["step"], e["return"]) for e in evals], step)


interval = results.mean_interval  # (mean, low, high): 95% Student-t over seeds


def summarise(curves: dict[str, dict[int, list[dict]]], args) -> list[dict]:
    rows = []
    for name, seeds in curves.items():
        row = {"config": name, "seeds": len(seeds), "threshold": args.threshold}
        hits = [first_reaching(ev, args.threshold) for ev in seeds.values()]
        reached = [h for h in hits if h is not None]
        row["seeds_reaching"] = len(reached)
        for key in ("wall_s", "step"):
            m, lo, hi = interval([h[key] for h in reached]) if reached else (None, None, None)
            row.update({f"to_threshold_{key}": m, f"to_threshold_{key}_lo": lo, f"to_threshold_{key}_hi": hi})
        # the mean curve over seeds: the first evaluation step at which it reaches the threshold
        steps = sorted({e["step"] for ev in seeds.values() for e in ev})
        mean_at = {s: np.mean([v for v in (value_at(ev, s) for ev in seeds.values()) if v is not None]) for s in steps}
        crossing = next((s for s in steps if mean_at[s] >= args.threshold), None)
        row["mean_curve_reaches_at_step"] = crossing
        if crossing is not None:  # when the last seed's evaluation at that step ended
            row["mean_curve_reaches_at_wall_s"] = max(next(e["wall_s"] for e in ev if e["step"] >= crossing)
                                                      for ev in seeds.values() if ev and ev[-1]["step"] >= crossing)
        last = [ev[-1] for ev in seeds.values() if ev]
        row["final_step_mean"] = np.mean([e["step"] for e in last]) if last else None
        row["final_return_mean"] = np.mean([e["return"] for e in last]) if last else None
        row["wall_s_mean"] = np.mean([e["wall_s"] for e in last]) if last else None
        row["eval_pct"] = 100 * np.mean([e["eval_s"] / max(e["wall_s"], 1e-9) for e in last]) if last else None
        times = [loop_times(Path(args.runs_dir) / args.task / name / f"s{s}") for s in seeds]
        for key in ("plan_ms", "update_ms", "env_ms", "env_steps_per_s"):
            vals = [t[key] for t in times if t[key] is not None]
            row[key] = float(np.mean(vals)) if vals else None
        for s in args.at:
            vals = [value_at(ev, s) for ev in seeds.values() if ev and ev[-1]["step"] >= s]
            m, lo, hi = interval([v for v in vals if v is not None]) if vals else (None, None, None)
            row.update({f"return_at_{s}": m, f"return_at_{s}_lo": lo, f"return_at_{s}_hi": hi})
        rows.append(row)
    return rows


def band(xs_per_seed: list[np.ndarray], ys_per_seed: list[np.ndarray], grid: np.ndarray):
    """Mean and 95% interval over seeds on a common x grid (each seed's curve held at its last
    evaluation; points past a seed's last evaluation use only the seeds that got there)."""
    means, los, his, xs = [], [], [], []
    for x in grid:
        vals = [ys[np.searchsorted(xs_, x, side="right") - 1] for xs_, ys in zip(xs_per_seed, ys_per_seed)
                if len(xs_) and xs_[0] <= x <= xs_[-1]]
        if vals:
            m, lo, hi = interval(vals)
            xs.append(x), means.append(m), los.append(lo), his.append(hi)
    return np.array(xs), np.array(means), np.array(los), np.array(his)


def plot(curves, args, png: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4))
    for (name, seeds), color in zip(curves.items(), plt.rcParams["axes.prop_cycle"].by_key()["color"]):
        runs = [ev for ev in seeds.values() if ev]
        if not runs:
            continue
        for ax, key, unit in ((axes[0], "step", 1.0), (axes[1], "wall_s", 60.0)):
            xs = [np.array([e[key] / unit for e in ev]) for ev in runs]
            ys = [np.array([e["return"] for e in ev]) for ev in runs]
            grid = np.unique(np.concatenate(xs)) if key == "step" else np.linspace(0, max(x[-1] for x in xs), 400)
            gx, m, lo, hi = band(xs, ys, grid)
            drawstyle = "default" if key == "step" else "steps-post"
            ax.plot(gx, m, color=color, lw=2, drawstyle=drawstyle, marker="o" if key == "step" else None, ms=3,
                    label=f"{name} ({len(runs)} seed{'s' if len(runs) > 1 else ''})")
            ax.fill_between(gx, lo, hi, color=color, alpha=0.2, step=None if key == "step" else "post")
    for ax, label in ((axes[0], "env steps"), (axes[1], "wall clock from the command's start (min)")):
        ax.axhline(args.threshold, color="grey", ls="--", lw=1)
        ax.set_xlabel(label)
        ax.set_ylabel(f"{args.task} evaluation return")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(png, dpi=110)


def fmt(v, digits: int = 0) -> str:
    return "-" if v is None or (isinstance(v, float) and v != v) else f"{v:.{digits}f}"


def main() -> None:
    ap = Parser(prog="time_to_return.py", description=__doc__.split("\n")[0])
    ap.add_argument("--task", default="walker-walk")
    ap.add_argument("--configs", nargs="*", default=None, help="named configurations (default: paper and the "
                                                               "device's fast mode: cpu_fast on a CPU, fast on a GPU)")
    ap.add_argument("--variant", nargs="+", default=[], metavar='NAME="k=v ..."', help="more configurations")
    ap.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    ap.add_argument("--steps", type=int, default=20000, help="env steps per run (summed over environments)")
    ap.add_argument("--minutes", type=float, default=0.0, help="a wall-clock budget per run instead of --steps")
    ap.add_argument("--eval-freq", type=int, default=2500, help="env steps between evaluations")
    ap.add_argument("--eval-episodes", type=int, default=2)
    ap.add_argument("--threshold", type=float, default=800.0)
    ap.add_argument("--at", nargs="+", type=int, default=[5000, 10000, 15000], help="env steps to compare returns at")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--extra", nargs="*", default=[], help="more overrides for every run")
    ap.add_argument("--runs-dir", default=str(ROOT / "runs" / "time_to_return"))
    ap.add_argument("--out", default=None, help="results folder (default: benchmarks/results/time_to_return/<task>; "
                                                "--quick: runs/benchmarks/time_to_return_quick)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, one seed, 150 steps: the pipeline, not learning")
    ap.add_argument("--dry-run", action="store_true", help="print the plan and stop")
    args = ap.parse_args()
    quiet_libraries()

    from mbdpo_fast.task_registry import names, suggest

    if args.task not in names():
        fail(f"unknown task {args.task!r}.{suggest(args.task, names())}", "the names are in mbdpo_fast/task_registry.py")
    kind = "cuda" if args.device.startswith("cuda") else "cpu"
    if args.device != "cpu" and kind != "cuda":
        fail(f"unknown device {args.device!r}", "use cpu or cuda")
    if kind == "cuda" and not args.dry_run:
        import torch

        if not torch.cuda.is_available():
            fail(f"--device {args.device} asked for but torch sees no CUDA GPU", "use --device cpu")
    named = ["paper", "cpu_fast" if kind == "cpu" else "fast"] if args.configs is None else args.configs
    for n in named:
        if n not in CONFIGS[kind]:
            fail(f"unknown configuration {n!r}", f"named ones: {', '.join(CONFIGS[kind])}; others with --variant NAME=\"k=v ...\"")
    configs = {n: CONFIGS[kind][n] for n in named}
    configs.update(parse_variants(args.variant))
    if not configs:
        fail("no configuration to run", "name one with --configs or add one with --variant NAME=\"k=v ...\"")
    if args.steps <= 0 or args.minutes < 0 or args.eval_freq <= 0 or args.eval_episodes <= 0:
        fail("--steps, --eval-freq and --eval-episodes must be positive, --minutes >= 0", "see --help")
    if args.quick:
        args.seeds, args.steps, args.eval_freq, args.eval_episodes, args.minutes = args.seeds[:1], 150, 50, 1, 0.0
        args.at, args.threshold = [100], min(args.threshold, 10.0)
        args.extra = [*QUICK, *args.extra]
        if args.runs_dir == ap.get_default("runs_dir"):
            args.runs_dir = str(ROOT / "runs" / "time_to_return_quick")
    out = Path(args.out or (ROOT / "runs" / "benchmarks" / "time_to_return_quick" if args.quick
                            else ROOT / "benchmarks" / "results" / "time_to_return" / args.task))
    png = check_writable(out / "time_to_return.png", "PNG")
    budget = f"{args.minutes:g} min of wall clock" if args.minutes else f"{args.steps} env steps"
    plan = [f"{name}: {' '.join(ov)}" for name, ov in configs.items()]
    plan.append(f"{args.task}, seeds {args.seeds}, {budget} per run, one run at a time, evaluation every "
                f"{args.eval_freq} env steps ({args.eval_episodes} episodes); runs in {args.runs_dir}/{args.task}")
    plan.append(f"time to a return of {args.threshold:g}; returns at env steps {args.at}; finished runs are kept, "
                f"interrupted ones resume")
    per_run = 40 if args.quick else (60 * args.minutes + 60 if args.minutes else args.steps / 15)
    announce(f"time_to_return on {machine(args.device)}, commit {commit()}", plan, per_run * len(configs) * len(args.seeds),
             out / "summary.csv", png)
    if args.dry_run:
        return

    t0, failed = time.time(), []
    for seed in args.seeds:  # seeds outermost: an interrupted sweep has every configuration's early seeds
        for name, overrides in configs.items():
            rc, secs = run_one(name, overrides, seed, args)
            if secs:
                print(f"  {name} seed {seed}: exit {rc} after {secs:.0f} s", flush=True)
            if rc != 0:
                failed.append((name, seed))
    if failed:
        fail(f"runs failed: {failed}", f"logs in {args.runs_dir}/{args.task}/<config>/s<seed>.log; rerun to resume them")

    curves = {name: {s: read_evals(Path(args.runs_dir) / args.task / name / f"s{s}") for s in args.seeds}
              for name in configs}
    stamp = {"task": args.task, "machine": machine(args.device), "date": dt.date.today().isoformat(), "commit": commit()}
    evals = [{"config": n, "seed": s, **e, **stamp} for n, seeds in curves.items() for s, ev in seeds.items() for e in ev]
    write_csv(out / "evals.csv", evals, quiet=True)
    summary = summarise(curves, args)
    write_csv(out / "summary.csv", [{**{k: (f"{v:.1f}" if isinstance(v, float) else v) for k, v in r.items()}, **stamp}
                                    for r in summary], quiet=True)
    title = (f"MBDPO time to return, {args.task}, seeds {', '.join(map(str, args.seeds))}: mean and 95% interval; evaluation every "
             f"{args.eval_freq} env steps ({args.eval_episodes} episodes), its time included\n"
             f"{stamp['machine']}, {stamp['date']}, commit {stamp['commit']}")
    plot(curves, args, png, title)

    print(f"\n{'config':14s} {'seeds>=thr':>10s} {'time to ' + format(args.threshold, 'g'):>16s} {'env steps':>10s}"
          + "".join(f" {'ret@' + str(s):>9s}" for s in args.at) + f" {'eval share':>10s}"
          + "  per vector step: plan / update / env ms, env steps/s")
    for r in summary:
        t = r["to_threshold_wall_s"]
        print(f"{r['config']:14s} {r['seeds_reaching']:>4d} of {r['seeds']:<3d} "
              f"{(fmt(t / 60, 1) + ' min') if t is not None else 'not reached':>16s} {fmt(r['to_threshold_step']):>10s}"
              + "".join(f" {fmt(r[f'return_at_{s}']):>9s}" for s in args.at)
              + f" {fmt(r['eval_pct']):>9s}%"
              + f"  {fmt(r['plan_ms'])} / {fmt(r['update_ms'])} / {fmt(r['env_ms'], 1)}, {fmt(r['env_steps_per_s'], 1)}")
    print(f"\n(time to threshold: mean over the seeds that reached it, from the command's start; the mean curve's "
          f"crossing is in summary.csv)\nwall clock of this call: {time.time() - t0:.0f} s; wrote {out / 'evals.csv'}, "
          f"{out / 'summary.csv'}, {png}")


if __name__ == "__main__":
    main()
