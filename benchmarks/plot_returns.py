"""Plot a run's returns against agent steps and wall clock (eval.csv + train.csv -> PNG).

    python benchmarks/plot_returns.py RUN_EVAL_CSV RUN_TRAIN_CSV OUT_PNG [--title T]
"""
from __future__ import annotations

import argparse
import csv


def read(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("eval_csv")
    ap.add_argument("train_csv")
    ap.add_argument("out_png")
    ap.add_argument("--title", default="")
    args = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ev, tr = read(args.eval_csv), read(args.train_csv)
    tr_step = [int(r["step"]) for r in tr]
    tr_ret = [float(r["episode_reward"]) for r in tr]
    tr_wall = [float(r["elapsed_s"]) for r in tr]
    ev_step = [int(r["step"]) for r in ev]
    ev_ret = [float(r["reward"]) for r in ev]
    # wall clock of an evaluation: interpolate the training log's elapsed time at that step
    ev_wall = [min((w for s, w in zip(tr_step, tr_wall) if s >= st), default=tr_wall[-1]) if st else 0.0 for st in ev_step]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, xs_tr, xs_ev, label in ((axes[0], tr_step, ev_step, "agent steps"), (axes[1], tr_wall, ev_wall, "wall clock (s)")):
        ax.plot(xs_tr, tr_ret, "o-", alpha=0.5, label="training episodes (action noise 0.05)")
        ax.plot(xs_ev, ev_ret, "s-", lw=2, label="evaluation (no noise)")
        ax.set_xlabel(label)
        ax.set_ylabel("episode return")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(args.title)
    fig.tight_layout()
    fig.savefig(args.out_png, dpi=110)


if __name__ == "__main__":
    main()
