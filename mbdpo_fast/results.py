"""Gather the evaluations of many runs into one table, per-task curves against published ones, a
per-task table at chosen steps and suite-level aggregates with stratified-bootstrap intervals.

    python -m mbdpo_fast.results RUNS_DIR [--out DIR] [--published DIR] [--at 100000 500000 1000000]

RUNS_DIR holds run directories at any depth (a sweep's `<task>/s<seed>`, or `runs/`): each one with
an eval.csv and the config.yaml the trainer writes (task and seed are read from it). Writes to
--out (default RUNS_DIR/results):
- results.csv: task, suite, seed, step, return, success, score (the paper's normalised score:
  DMControl return / 10, success x 100 elsewhere) - one row per evaluation;
- curves_<suite>.png: per task, the mean over seeds and its 95% interval (Student t over seeds)
  against the step, with each published algorithm's curve (same statistics) where given;
- tasks.csv / tasks.md: per task and chosen step (--at; each run's last evaluation at or before it),
  the mean and 95% interval over seeds, and each published algorithm's mean at that step;
- aggregates.csv / aggregates.md / aggregates.png: per suite (and all tasks) at each chosen step, the
  mean and the interquartile mean (IQM) of the normalised scores with 95% stratified-bootstrap
  intervals (seeds resampled within each task, as the rliable package computes them).

Published curves: --published DIR with one folder per algorithm holding `<task>.csv` files in the
published format step,reward,seed (the format of TD-MPC2's released results; reward is the episode
return, or the success rate x 100 for suites with success).
"""
from __future__ import annotations

import argparse
import csv
import math
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from .errors import ConfigError
from .task_registry import get, normalized_score

FIELDS = ["task", "suite", "seed", "step", "return", "success", "score"]


# ------------------------------------------------------------------------------------- gathering
def _read_yaml_keys(path: Path, keys: tuple[str, ...]) -> dict:
    """Top-level scalar keys of a config.yaml (read as text: the file is flat `key: value` lines)."""
    out = {}
    for line in path.read_text().splitlines():
        if ":" in line and not line.startswith((" ", "-", "#")):
            k, v = line.split(":", 1)
            if k in keys:
                out[k] = v.strip().strip("'\"")
    return out


def gather(runs_dir: Path) -> list[dict]:
    """One row per evaluation of every single-task run below runs_dir (FIELDS), in a stable order."""
    rows = []
    for eval_csv in sorted(runs_dir.rglob("eval.csv")):
        run = eval_csv.parent
        if not (run / "config.yaml").exists():
            continue
        meta = _read_yaml_keys(run / "config.yaml", ("task", "seed", "multitask"))
        if meta.get("multitask", "false").lower() == "true":
            continue  # multi-task runs log a mean score; their per-task rows are not single-task runs
        task, seed = meta["task"], int(meta["seed"])
        suite = get(task).suite
        with open(eval_csv) as f:
            for r in csv.DictReader(f):
                success = float(r["success"]) if r.get("success", "") not in ("", None) else None
                ret = float(r["reward"])
                rows.append({"task": task, "suite": suite, "seed": seed, "step": int(r["step"]), "return": ret,
                             "success": "" if success is None else success,
                             "score": normalized_score(task, ret, success)})
    rows.sort(key=lambda r: (r["suite"], r["task"], r["seed"], r["step"]))
    return rows


def read_published(directory: Path | None) -> dict[str, dict[str, list[tuple[int, float, int]]]]:
    """algorithm -> task -> [(step, reward, seed)] from DIR/<algorithm>/<task>.csv."""
    out: dict = {}
    if directory is None:
        return out
    if not directory.is_dir():
        raise ConfigError(f"--published {directory} is not a directory (one folder per algorithm of <task>.csv)")
    for algo in sorted(p for p in directory.iterdir() if p.is_dir()):
        for f in sorted(algo.glob("*.csv")):
            with open(f) as fh:
                reader = csv.DictReader(fh)
                if not {"step", "reward", "seed"} <= set(reader.fieldnames or []):
                    raise ConfigError(f"{f}: published curves need the columns step,reward,seed")
                out.setdefault(algo.name, {})[f.stem] = [(int(float(r["step"])), float(r["reward"]), int(float(r["seed"])))
                                                         for r in reader]
    return out


# ------------------------------------------------------------------------------------- statistics
def mean_interval(values) -> tuple[float, float, float]:
    """(mean, low, high): the 95% Student-t interval of the mean over seeds (low = high = mean for one)."""
    x = np.asarray(values, dtype=float)
    m = float(x.mean())
    if len(x) < 2:
        return m, m, m
    from scipy import stats

    half = float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return m, m - half, m + half


def iqm(scores: np.ndarray) -> float:
    """Interquartile mean: the mean of the middle 50% of the scores (25% trimmed from each end)."""
    from scipy import stats

    return float(stats.trim_mean(np.asarray(scores, dtype=float).ravel(), 0.25))


def stratified_bootstrap(per_task: list[np.ndarray], statistic, reps: int = 2000, seed: int = 0):
    """(point, low, high): `statistic` of all tasks' scores together, and its 95% percentile interval
    over `reps` resamples that draw each task's runs with replacement within that task."""
    rng = np.random.default_rng(seed)
    point = statistic(np.concatenate(per_task))
    draws = np.empty(reps)
    for i in range(reps):
        draws[i] = statistic(np.concatenate([s[rng.integers(0, len(s), len(s))] for s in per_task]))
    low, high = np.percentile(draws, [2.5, 97.5])
    return float(point), float(low), float(high)


def value_at(points: list[tuple[int, float]], step: int) -> float | None:
    """The value of the last point at or before `step` (None if the run had not reached it)."""
    before = [(s, v) for s, v in points if s <= step]
    return max(before)[1] if before else None


# ------------------------------------------------------------------------------------- tables
def task_table(rows: list[dict], published: dict, steps: list[int]) -> list[dict]:
    """Per task and step: our mean and interval over seeds (each seed's last evaluation at or before
    the step; seeds that had not reached it left out) and each published algorithm's mean."""
    runs = defaultdict(list)
    for r in rows:
        runs[(r["task"], r["seed"])].append((r["step"], r["score"], r["return"]))
    out = []
    for task in dict.fromkeys(r["task"] for r in rows):
        seeds = sorted(s for t, s in runs if t == task)
        for step in steps:
            vals = [value_at([(s, ret) for s, _, ret in runs[(task, seed)]], step) for seed in seeds]
            vals = [v for v in vals if v is not None]
            row = {"task": task, "step": step, "seeds": len(vals)}
            if vals:
                m, lo, hi = mean_interval(vals)
                row.update(mean=round(m, 2), low=round(lo, 2), high=round(hi, 2))
            for algo, curves in published.items():
                if task in curves:
                    by_seed = defaultdict(list)
                    for s, v, seed in curves[task]:
                        by_seed[seed].append((s, v))
                    pv = [value_at(p, step) for p in by_seed.values()]
                    pv = [v for v in pv if v is not None]
                    row[algo] = round(float(np.mean(pv)), 2) if pv else ""
            out.append(row)
    return out


def aggregates(rows: list[dict], steps: list[int], reps: int, seed: int) -> list[dict]:
    """Per suite (and "all") and step: mean and IQM of normalised scores with stratified-bootstrap intervals."""
    runs = defaultdict(list)
    for r in rows:
        runs[(r["suite"], r["task"], r["seed"])].append((r["step"], r["score"]))
    out = []
    suites = list(dict.fromkeys(r["suite"] for r in rows))
    for group in suites + (["all"] if len(suites) > 1 else []):
        for step in steps:
            per_task = defaultdict(list)
            for (suite, task, _), pts in runs.items():
                if group in ("all", suite):
                    v = value_at(pts, step)
                    if v is not None:
                        per_task[task].append(v)
            if not per_task:
                continue
            scores = [np.asarray(v, dtype=float) for v in per_task.values()]
            m = stratified_bootstrap(scores, lambda x: float(np.mean(x)), reps, seed)
            q = stratified_bootstrap(scores, iqm, reps, seed)
            out.append({"suite": group, "step": step, "tasks": len(scores), "runs": sum(len(s) for s in scores),
                        "mean": round(m[0], 2), "mean_low": round(m[1], 2), "mean_high": round(m[2], 2),
                        "iqm": round(q[0], 2), "iqm_low": round(q[1], 2), "iqm_high": round(q[2], 2)})
    return out


def write_csv(path: Path, rows: list[dict]) -> None:
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fields)
        w.writeheader()
        w.writerows(rows)


def write_markdown(path: Path, rows: list[dict], title: str) -> None:
    fields = list(dict.fromkeys(k for r in rows for k in r))
    lines = [f"# {title}", "", "| " + " | ".join(fields) + " |", "|" + "---|" * len(fields)]
    lines += ["| " + " | ".join(str(r.get(k, "")) for k in fields) + " |" for r in rows]
    path.write_text("\n".join(lines) + "\n")


# ------------------------------------------------------------------------------------- figures
def plot_curves(rows: list[dict], published: dict, out: Path) -> list[Path]:
    """One PNG per suite: a panel per task, our mean and 95% interval over seeds and the published ones."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for suite in dict.fromkeys(r["suite"] for r in rows):
        tasks = list(dict.fromkeys(r["task"] for r in rows if r["suite"] == suite))
        cols = min(4, len(tasks))
        n_rows = math.ceil(len(tasks) / cols)
        fig, axes = plt.subplots(n_rows, cols, figsize=(3.2 * cols, 2.4 * n_rows), squeeze=False)
        for ax, task in zip(axes.ravel(), tasks):
            series = {"MBDPO (these runs)": [(r["step"], r["return"] if not get(task).has_success else r["score"], r["seed"])
                                             for r in rows if r["task"] == task]}
            for algo, curves in published.items():
                if task in curves:
                    series[algo] = curves[task]
            for name, pts in series.items():
                steps = sorted({s for s, _, _ in pts})
                stats_ = [mean_interval([v for s, v, _ in pts if s == step]) for step in steps]
                ax.plot(steps, [m for m, _, _ in stats_], label=name)
                ax.fill_between(steps, [lo for _, lo, _ in stats_], [hi for _, _, hi in stats_], alpha=0.2)
            ax.set_title(task, fontsize=8)
            ax.tick_params(labelsize=6)
        for ax in axes.ravel()[len(tasks):]:
            ax.axis("off")
        axes.ravel()[0].legend(fontsize=6)
        fig.supxlabel("environment steps", fontsize=8)
        fig.supylabel("success (%)" if get(tasks[0]).has_success else "episode return", fontsize=8)
        fig.tight_layout()
        path = out / f"curves_{suite}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def plot_aggregates(agg: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    for ax, stat in zip(axes, ("mean", "iqm")):
        for suite in dict.fromkeys(r["suite"] for r in agg):
            pts = [r for r in agg if r["suite"] == suite]
            steps = [r["step"] for r in pts]
            ax.plot(steps, [r[stat] for r in pts], marker="o", label=suite)
            ax.fill_between(steps, [r[f"{stat}_low"] for r in pts], [r[f"{stat}_high"] for r in pts], alpha=0.2)
        ax.set_title(f"{stat.upper() if stat == 'iqm' else 'mean'} normalised score (95% stratified bootstrap)",
                     fontsize=8)
        ax.set_xlabel("environment steps", fontsize=8)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------------------------- entry point
def main(argv: list[str] | None = None) -> None:
    from .cli import user_errors

    class Parser(argparse.ArgumentParser):
        def error(self, message):  # the package's contract: one `error:` line, exit code 2
            print(f"error: {message}", file=sys.stderr)
            raise SystemExit(2)

    ap = Parser(prog="python -m mbdpo_fast.results", description=__doc__.split("\n")[0])
    ap.add_argument("runs_dir", type=Path)
    ap.add_argument("--out", type=Path, default=None, help="default: RUNS_DIR/results")
    ap.add_argument("--published", type=Path, default=None, help="DIR/<algorithm>/<task>.csv (step,reward,seed)")
    ap.add_argument("--at", type=int, nargs="+", default=None, help="steps of the tables (default: the last step)")
    ap.add_argument("--reps", type=int, default=2000, help="bootstrap resamples")
    ap.add_argument("--seed", type=int, default=0, help="bootstrap generator seed")
    args = ap.parse_args(argv)
    with user_errors():
        if not args.runs_dir.is_dir():
            raise ConfigError(f"{args.runs_dir} is not a directory of runs")
        rows = gather(args.runs_dir)
        if not rows:
            raise ConfigError(f"no run below {args.runs_dir} has an eval.csv beside its config.yaml")
        published = read_published(args.published)
        steps = args.at or [max(r["step"] for r in rows)]
        out = args.out or args.runs_dir / "results"
        out.mkdir(parents=True, exist_ok=True)
        write_csv(out / "results.csv", rows)
        tasks = task_table(rows, published, steps)
        write_csv(out / "tasks.csv", tasks)
        write_markdown(out / "tasks.md", tasks, "Per task: mean over seeds (95% t interval) and published means")
        agg = aggregates(rows, steps, args.reps, args.seed)
        write_csv(out / "aggregates.csv", agg)
        write_markdown(out / "aggregates.md", agg, "Normalised scores: mean and IQM, 95% stratified-bootstrap intervals")
        pngs = plot_curves(rows, published, out)
        plot_aggregates(agg, out / "aggregates.png")
        runs = len({(r["task"], r["seed"]) for r in rows})
        print(f"{runs} runs, {len({r['task'] for r in rows})} tasks, {len(rows)} evaluations -> {out} "
              f"(results.csv, tasks.csv/.md, aggregates.csv/.md/.png, {', '.join(p.name for p in pngs)})")


if __name__ == "__main__":
    main(sys.argv[1:])
