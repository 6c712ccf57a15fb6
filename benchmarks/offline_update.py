"""Time and memory of one offline multi-task update per model size (mt80 shapes: 80 tasks, obs 39,
actions 6), for the precision/memory variants of the update.

    python benchmarks/offline_update.py [--sizes 1 5 19 48 317] [--batch 256]
        [--variants fp32 bf16 bf16+ckpt] [--csv FILE]     # CSV default: runs/benchmarks/offline_update.csv
    python benchmarks/offline_update.py --quick          # model size 1 only (under a minute on a CPU)

Each row: parameters, median ms per update (CUDA-synchronised, after warm-up), updates/s, peak
GPU memory of the update (torch.cuda.max_memory_allocated after a reset, model and optimiser
state included), the losses of the last update (finite: checked). Variants: fp32 (reference),
bf16 (bf16_update: autocast in the forward passes), bf16+ckpt (plus grad_checkpoint). A size that
does not fit is reported as out of memory, not skipped silently. On CPU (no GPU) it runs model
size 1 at batch 32 as a smoke test of the script.
"""
from __future__ import annotations

import math
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import quiet_libraries, announce, benchmark_parser, check_device, outputs, stamp, write_csv  # noqa: E402

from mbdpo_fast.agent import MBDPO, seed_everything  # noqa: E402
from mbdpo_fast.batch import Batch  # noqa: E402
from mbdpo_fast.config import default_config, resolve_tasks  # noqa: E402

VARIANTS = {"fp32": {}, "bf16": {"bf16_update": True}, "bf16+ckpt": {"bf16_update": True, "grad_checkpoint": True}}


def random_batch(cfg, B: int, device) -> Batch:
    """Data in the dataset's ranges: padded obs, actions in [-1, 1] masked per task, rewards in [0, 1]."""
    H, T = cfg.horizon, len(cfg.tasks)
    task = torch.randint(T, (B,), device=device)
    masks = torch.zeros(T, cfg.action_dim, device=device)
    for i, a in enumerate(cfg.action_dims):
        masks[i, :a] = 1
    action = (torch.rand(H, B, cfg.action_dim, device=device) * 2 - 1) * masks[task]
    return Batch(torch.randn(H + 1, B, cfg.obs_dim, device=device), action, torch.rand(H, B, 1, device=device),
                 torch.zeros(H, B, 1, device=device), task)


def measure(size: int, variant: str, batch: int, device: str, repeats: int, warmup: int) -> dict:
    cfg = resolve_tasks(default_config(task="mt80", model_size=size, batch_size=batch, device=device,
                                        work_dir="unused", **VARIANTS[variant]))
    dev = torch.device(device)
    row = {"model_size": size, "variant": variant, "batch": batch}
    try:
        if dev.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(dev)
        seed_everything(0)
        agent = MBDPO(cfg)
        row["params_M"] = round(agent.model.num_parameters() / 1e6, 2)
        b = random_batch(cfg, batch, dev)
        for _ in range(warmup):
            out = agent.update(b)
        times = []
        for _ in range(repeats):
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            t0 = time.perf_counter()
            out = agent.update(b)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            times.append(1000 * (time.perf_counter() - t0))
        losses = {k: float(out[k]) for k in ("total_loss", "value_loss", "energy_loss", "pi_loss")}
        if not all(math.isfinite(v) for v in losses.values()):
            raise FloatingPointError(f"non-finite losses {losses}")
        ms = statistics.median(times)
        row.update(ms_per_update=round(ms, 2), updates_per_s=round(1000 / ms, 1), status="ok",
                   total_loss=round(losses["total_loss"], 4))
        if dev.type == "cuda":
            row["peak_mem_GiB"] = round(torch.cuda.max_memory_allocated(dev) / 2**30, 2)
        del agent, b, out
    except torch.OutOfMemoryError:
        row["status"] = "out of memory"
    return row


def main() -> None:
    ap = benchmark_parser("offline_update", __doc__)
    ap.add_argument("--sizes", type=int, nargs="+", default=None, choices=[1, 5, 19, 48, 317])
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()
    quiet_libraries()
    dev = check_device(args.device, args.dry_run)
    csv_path, _ = outputs(args)
    cpu = dev.type == "cpu"
    sizes = args.sizes or ([1] if cpu or args.quick else [1, 5, 19, 48, 317])
    batch = args.batch or (32 if cpu else 256)
    if cpu or args.quick:
        args.repeats, args.warmup = min(args.repeats, 3), 1
    meta = {**stamp(dev), "command": " ".join(["python", *sys.argv])}
    # Rough: on a CPU a size-1 update at batch 32 takes ~0.5 s; on an H100 sizes 1-48 take
    # milliseconds to a second, size 317 seconds (model build and warm-up dominate).
    per = {1: 3, 5: 4, 19: 8, 48: 15, 317: 60} if not cpu else {1: 6, 5: 20, 19: 80, 48: 200, 317: 1200}
    announce(f"offline_update on {meta['device']}, commit {meta['commit']}",
             [f"one mt80 update at model sizes {sizes}, batch {batch}, variants {', '.join(args.variants)}, "
              f"{args.warmup} warm-up + {args.repeats} timed updates each"],
             sum(per[s] for s in sizes) * len(args.variants), csv_path)
    if args.dry_run:
        return
    rows = []
    print("| size | params (M) | variant | batch | ms/update | updates/s | peak GiB | status |")
    print("|---|---|---|---|---|---|---|---|")
    for size in sizes:
        for variant in args.variants:
            r = measure(size, variant, batch, args.device, args.repeats, args.warmup)
            rows.append({**r, **meta})
            print(f"| {size} | {r.get('params_M', '-')} | {variant} | {batch} | {r.get('ms_per_update', '-')} | "
                  f"{r.get('updates_per_s', '-')} | {r.get('peak_mem_GiB', '-')} | {r['status']} |", flush=True)
    fields = ["model_size", "params_M", "variant", "batch", "ms_per_update", "updates_per_s", "peak_mem_GiB",
              "total_loss", "status", "device", "date", "commit", "torch", "command"]
    write_csv(csv_path, rows, fields)


if __name__ == "__main__":
    main()
