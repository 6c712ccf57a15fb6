"""Compare two training runs of the same command (e.g. before and after a refactoring):

    python tools/compare_runs.py RUN_A RUN_B [--out report.csv] [--png eval.png]

Checks eval.csv row by row, the train rows' steps and episode returns, and every tensor of the
final checkpoints' agent state (model, target heads, optimisers, running statistics), reporting
whether they are bitwise equal and their largest absolute difference. Exit code 0 when eval.csv
and the agent state agree bitwise, 1 otherwise.
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import torch


def tensors(obj, prefix: str = "") -> dict[str, torch.Tensor]:
    out = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(tensors(v, f"{prefix}/{k}"))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            out.update(tensors(v, f"{prefix}/{i}"))
    elif torch.is_tensor(obj):
        out[prefix] = obj
    return out


def rows(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def compare(a: Path, b: Path) -> list[tuple[str, str, str]]:
    """[(what, result, detail)]."""
    report = []
    ea, eb = rows(a / "eval.csv"), rows(b / "eval.csv")
    report.append(("eval.csv", "equal" if ea == eb else "differs",
                   "; ".join(f"{x['step']}: {x['reward']} | {y['reward']}" for x, y in zip(ea, eb))))
    ta, tb = rows(a / "train.csv"), rows(b / "train.csv")
    key = lambda rs: [(r["step"], r["episode_reward"]) for r in rs]
    report.append(("train.csv steps and episode returns", "equal" if key(ta) == key(tb) else "differs",
                   f"{len(ta)} | {len(tb)} rows"))
    ca = torch.load(a / "checkpoint.pt", map_location="cpu", weights_only=True)
    cb = torch.load(b / "checkpoint.pt", map_location="cpu", weights_only=True)
    sa, sb = tensors(ca["agent"]), tensors(cb["agent"])
    if sa.keys() != sb.keys():
        report.append(("agent state", "differs", f"keys differ: {sorted(set(sa) ^ set(sb))[:5]}"))
    else:
        exact = all(torch.equal(sa[k], sb[k]) for k in sa)
        diff = max((float((sa[k].double() - sb[k].double()).abs().max()) for k in sa
                    if sa[k].is_floating_point() and sa[k].numel()), default=0.0)
        report.append(("agent state", "bitwise equal" if exact else "differs",
                       f"{len(sa)} tensors, max |difference| {diff:.3g}"))
    report.append(("step", "equal" if ca["trainer"]["step"] == cb["trainer"]["step"] else "differs",
                   f"{ca['trainer']['step']} | {cb['trainer']['step']}"))
    return report


def plot_eval(a: Path, b: Path, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    for run, style in ((a, "o-"), (b, "x--")):
        ev = rows(run / "eval.csv")
        ax.plot([int(r["step"]) for r in ev], [float(r["reward"]) for r in ev], style, label=str(run))
    ax.set_xlabel("environment steps")
    ax.set_ylabel("eval return")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_a", type=Path)
    ap.add_argument("run_b", type=Path)
    ap.add_argument("--out", type=Path, help="write the report as CSV")
    ap.add_argument("--png", type=Path, help="plot both runs' eval.csv (needs matplotlib)")
    args = ap.parse_args(argv)
    report = compare(args.run_a, args.run_b)
    for what, result, detail in report:
        print(f"{what:40s} {result:14s} {detail}")
    if args.out:
        with open(args.out, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["what", "result", "detail"])
            w.writerows(report)
    if args.png:
        plot_eval(args.run_a, args.run_b, args.png)
    ok = report[0][1] == "equal" and any(r[0] == "agent state" and r[1] == "bitwise equal" for r in report)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
