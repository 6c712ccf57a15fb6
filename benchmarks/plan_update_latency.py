"""Latency of one planner call (E=1) and one update at the paper settings, reference PyTorch path.

    python benchmarks/plan_update_latency.py [--device cuda] [--model-size 5] [--csv FILE]

Times with CUDA events/synchronisation after warm-up; reports the median of repeated calls.
On CPU it runs small sizes (--small) so that it finishes in seconds.
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import commit, device_name  # noqa: E402

from mbdpo_fast.agent import MBDPO, seed_everything
from mbdpo_fast.batch import Batch
from mbdpo_fast.config import default_config, resolve


def timed(fn, device, repeats, warmup):
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        out.append(1000 * (time.perf_counter() - t0))
    return statistics.median(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--model-size", type=int, default=5)
    ap.add_argument("--small", action="store_true", help="CPU-sized planner and batch")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--csv", default=None)
    args = ap.parse_args()
    small = args.small or args.device == "cpu"
    over = dict(model_size=args.model_size, device=args.device, work_dir="unused")
    if small:
        over.update(model_size=1, num_samples=64, diffusion_steps=6, num_elites=8, num_pi_trajs=4, batch_size=32)
    cfg = resolve(default_config(**over), 17, 6)  # cheetah-run shapes
    seed_everything(0)
    agent = MBDPO(cfg)
    dev = agent.device
    obs = torch.randn(1, 17, device=dev)
    plan = agent.planner.initial_plan(1)
    plan_ms = timed(lambda: agent.act(obs, plan), dev, args.repeats, 3)
    graphed_ms = float("nan")
    if dev.type == "cuda":
        agent.use_graphs = True  # the cudagraphs=true path, same agent
        graphed_ms = timed(lambda: agent.act(obs, plan), dev, args.repeats, 3)
        agent.use_graphs = False
    H, B = cfg.horizon, cfg.batch_size
    batch = Batch(obs=torch.randn(H + 1, B, 17, device=dev), action=torch.rand(H, B, 6, device=dev) * 2 - 1,
                  reward=torch.rand(H, B, 1, device=dev), terminated=torch.zeros(H, B, 1, device=dev))
    update_ms = timed(lambda: agent.update(batch), dev, args.repeats, 5)
    gpu = device_name(dev)
    row = {"date": dt.date.today().isoformat(), "commit": commit(), "device": gpu, "torch": torch.__version__,
           "model_size": cfg.model_size, "params_M": round(agent.model.num_parameters() / 1e6, 3),
           "num_samples": cfg.num_samples, "diffusion_steps": cfg.diffusion_steps, "horizon": H,
           "batch_size": B, "plan_ms_E1": round(plan_ms, 3), "plan_ms_E1_cudagraphs": round(graphed_ms, 3),
           "update_ms": round(update_ms, 3),
           "path": "reference (eager fp32)", "sizes": "small (CPU)" if small else "paper"}
    print(" | ".join(f"{k}={v}" for k, v in row.items()))
    if args.csv:
        path = Path(args.csv)
        new = not path.exists()
        with open(path, "a", newline="") as f:
            w = csv.DictWriter(f, list(row))
            if new:
                w.writeheader()
            w.writerow(row)


if __name__ == "__main__":
    main()
