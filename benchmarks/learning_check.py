"""Learning check on CPU: the paper's mode of the online loop (one environment, one update per
agent step) at a CPU-sized profile on two dense-reward dm_control tasks over several seeds, with the reference code's
energy pairing (`energy_pairing=reference`, the behaviour behind the published curves).

    python benchmarks/learning_check.py                       # 2 tasks x 3 seeds, 2 runs at a time
    python benchmarks/learning_check.py --tasks walker-walk --seeds 1 --steps 3000
    python benchmarks/learning_check.py --quick     # one tiny run (under a minute): checks the pipeline only

Each run is `python -m mbdpo_fast.train` with `profile=cpu_small` and the overrides below, in
`--runs-dir/<task>/s<seed>`; a finished run is kept, an interrupted one resumes from its checkpoint
(rerunning the command continues where it stopped). The random policy's return (uniform actions,
`--random-episodes` episodes per task) is measured with the same environment. Writes to `--out`:
`eval_returns.csv` (task, seed, step, return; seed "random" for the random policy), `summary.csv`
(per task: random, untrained, final mean and std over seeds, wall clock), `learning_check.png`.
"""
from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import quiet_libraries, Parser, announce, commit, fail  # noqa: E402


def run_overrides(task: str, seed: int, args, run_dir: Path) -> list[str]:
    return [f"task={task}", f"seed={seed}", "profile=cpu_small", "device=cpu", f"steps={args.steps}",
            f"eval_freq={args.eval_freq}", f"eval_episodes={args.eval_episodes}", f"checkpoint_freq={args.eval_freq}",
            "energy_pairing=reference", "progress_bar=false", *args.extra, f"hydra.run.dir={run_dir}"]


def finished(run_dir: Path, steps: int) -> bool:
    ev = run_dir / "eval.csv"
    if not ev.is_file():
        return False
    rows = list(csv.DictReader(open(ev)))
    return bool(rows) and int(rows[-1]["step"]) >= steps


def train_one(task: str, seed: int, args) -> tuple[str, int, float, int]:
    run_dir = Path(args.runs_dir) / task / f"s{seed}"
    if finished(run_dir, args.steps):
        return task, seed, 0.0, 0
    cmd = [sys.executable, "-m", "mbdpo_fast.train",
           *run_overrides(task, seed, args, run_dir)]
    if (run_dir / "checkpoint.pt").is_file():
        cmd.append("resume=true")
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads),
               WANDB_MODE="disabled", MUJOCO_GL=os.environ.get("MUJOCO_GL", "disable"))
    run_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    with open(run_dir.parent / f"s{seed}.log", "a") as log:
        rc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    print(f"  {task} seed {seed}: exit {rc} after {time.time() - t0:.0f} s", flush=True)
    return task, seed, time.time() - t0, rc


def random_returns(task: str, episodes: int, run_dir: Path, seed: int = 12345) -> list[float]:
    """Returns of uniform random actions in [-1, 1] in the environment of the run in run_dir (its
    action repeat and episode length)."""
    from omegaconf import OmegaConf

    from mbdpo_fast.envs.cpu.suites import make_suite_env

    cfg = OmegaConf.load(run_dir / "config.yaml")
    env = make_suite_env(task, seed, int(cfg.action_repeat), int(cfg.episode_length))
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(episodes):
        env.reset()
        total, done = 0.0, False
        while not done:
            _, r, term, trunc, _ = env.step(rng.uniform(-1, 1, env.action_dim))
            total += float(r)
            done = term or trunc
        out.append(total)
    return out


def read_eval(run_dir: Path) -> list[tuple[int, float]]:
    ev = run_dir / "eval.csv"
    if not ev.is_file():
        return []
    rows = {int(r["step"]): float(r["reward"]) for r in csv.DictReader(open(ev))}  # one per step
    return sorted(rows.items())


def run_wall_s(run_dir: Path) -> float:
    """A run's wall clock at its last logged episode end (train.csv elapsed_s; kept across resumes)."""
    tr = run_dir / "train.csv"
    rows = list(csv.DictReader(open(tr))) if tr.is_file() else []
    return float(rows[-1]["elapsed_s"]) if rows else float("nan")


def plot(curves, rand, out_png: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(curves)
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for seed, pts in sorted(curves[task].items()):
            if pts:
                ax.plot([s for s, _ in pts], [r for _, r in pts], "o-", alpha=0.35, lw=1, label=f"seed {seed}")
        steps = sorted({s for pts in curves[task].values() for s, _ in pts})
        mean = [np.mean([r for pts in curves[task].values() for s2, r in pts if s2 == s]) for s in steps]
        ax.plot(steps, mean, "s-", color="black", lw=2, label="mean over seeds")
        ax.axhline(np.mean(rand[task]), color="red", ls="--", label=f"random policy ({np.mean(rand[task]):.0f})")
        ax.set_title(task)
        ax.set_xlabel("agent steps")
        ax.set_ylabel("evaluation return")
        ax.set_ylim(0, 1000)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)


def main() -> None:
    ap = Parser(prog="learning_check.py", description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", nargs="+", default=["walker-stand", "walker-walk"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    ap.add_argument("--steps", type=int, default=5000, help="agent steps per run")
    ap.add_argument("--eval-freq", type=int, default=1000)
    ap.add_argument("--eval-episodes", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=2, help="runs at a time (one per core)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per run")
    ap.add_argument("--random-episodes", type=int, default=10)
    ap.add_argument("--extra", nargs="*", default=[], help="more overrides for every run, e.g. model_size=5")
    ap.add_argument("--runs-dir", default=str(ROOT / "runs" / "learning_check"))
    ap.add_argument("--out", default=None, help="results folder (default: benchmarks/results/learning_check; "
                                                "with --quick runs/benchmarks/learning_check_quick)")
    ap.add_argument("--quick", action="store_true", help="one tiny run of 120 agent steps: checks the pipeline, "
                                                         "not learning (under a minute)")
    ap.add_argument("--dry-run", action="store_true", help="print the plan and stop")
    args = ap.parse_args()
    quiet_libraries()
    from mbdpo_fast.task_registry import names, suggest

    for t in args.tasks:
        if t not in names():
            fail(f"unknown task {t!r}.{suggest(t, names())}", "the names are in mbdpo_fast/task_registry.py")
    if args.quick:  # 25-step episodes so that an evaluation takes seconds
        args.tasks, args.seeds, args.steps, args.eval_freq = args.tasks[-1:], args.seeds[:1], 120, 60
        args.random_episodes, args.jobs = 2, 1
        args.extra = ["episode_length=25", "seed_steps=40", *args.extra]
        args.runs_dir = str(ROOT / "runs" / "learning_check_quick") if args.runs_dir == ap.get_default("runs_dir") \
            else args.runs_dir
    out = Path(args.out or (ROOT / "runs" / "benchmarks" / "learning_check_quick" if args.quick
                            else ROOT / "benchmarks" / "results" / "learning_check"))
    jobs = [(t, s) for s in args.seeds for t in args.tasks]
    # ~4.4 agent steps/s per run at one thread on this project's 2-core CPU, plus the evaluations.
    per_run = args.steps / 4.4 + (args.steps // args.eval_freq + 1) * args.eval_episodes * 60
    if args.quick:
        per_run = 40
    waves = -(-len(jobs) // max(args.jobs, 1))
    announce(f"learning check, commit {commit()}",
             [f"{len(jobs)} runs ({', '.join(args.tasks)} x seeds {args.seeds}) of {args.steps} agent steps, "
              f"{args.jobs} at a time, {args.threads} thread(s) each; runs in {args.runs_dir}",
              "finished runs are kept; interrupted ones resume"], waves * per_run, out / "summary.csv",
             out / "learning_check.png")
    if args.dry_run:
        return
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(lambda ts: train_one(ts[0], ts[1], args), jobs))
    wall = time.time() - t0
    failed = [(t, s) for t, s, _, rc in results if rc != 0]

    if failed:
        fail(f"runs failed: {failed}", f"logs in {args.runs_dir}/<task>/s<seed>.log; rerun to resume them")
    rand = {t: random_returns(t, args.random_episodes, Path(args.runs_dir) / t / f"s{args.seeds[0]}")
            for t in args.tasks}
    curves = {t: {s: read_eval(Path(args.runs_dir) / t / f"s{s}") for s in args.seeds} for t in args.tasks}
    with open(out / "eval_returns.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["task", "seed", "step", "return"])
        for t in args.tasks:
            for i, r in enumerate(rand[t]):
                w.writerow([t, "random", 0, f"{r:.2f}"])
            for s in args.seeds:
                for step, r in curves[t][s]:
                    w.writerow([t, s, step, f"{r:.2f}"])
    rows = []
    for t in args.tasks:
        first = [pts[0][1] for pts in curves[t].values() if pts]
        last = [pts[-1][1] for pts in curves[t].values() if pts and pts[-1][0] >= args.steps]
        rows.append({"task": t, "random_mean": np.mean(rand[t]), "random_std": np.std(rand[t]),
                     "untrained_mean": np.mean(first) if first else float("nan"),
                     "final_step": args.steps, "final_mean": np.mean(last) if last else float("nan"),
                     "final_std": np.std(last) if last else float("nan"),
                     "final_min": np.min(last) if last else float("nan"), "seeds_finished": len(last),
                     "run_wall_s_mean": float(np.mean([run_wall_s(Path(args.runs_dir) / t / f"s{s}")
                                                       for s in args.seeds]))})
    with open(out / "summary.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=[*rows[0].keys(), "wall_s_this_call", "commit"])
        w.writeheader()
        for r in rows:
            # a statistic with no data (a seed that did not finish) is left empty, never nan
            w.writerow({**{k: ("" if isinstance(v, float) and v != v else f"{v:.2f}" if isinstance(v, float) else v)
                           for k, v in r.items()},
                        "wall_s_this_call": f"{wall:.0f}", "commit": commit()})
    title = (f"MBDPO, paper mode (E=1, 1 update/step), profile=cpu_small, energy_pairing=reference; "
             f"{len(args.seeds)} seeds; {args.eval_episodes} evaluation episode(s) per point; commit {commit()}")
    plot(curves, rand, out / "learning_check.png", title)
    for r in rows:
        print(f"{r['task']:20s} random {r['random_mean']:6.1f}  untrained {r['untrained_mean']:6.1f}  "
              f"step {args.steps}: {r['final_mean']:6.1f} +- {r['final_std']:5.1f} (min {r['final_min']:6.1f}, "
              f"{r['seeds_finished']} seeds)")
    print(f"wall clock of this call: {wall:.0f} s; results in {out}")


if __name__ == "__main__":
    main()
