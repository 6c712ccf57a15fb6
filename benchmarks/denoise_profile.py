"""Cost of the planner against the sample count N, per backend: torch eager, torch compiled (one
denoising step compiled + CUDA graphs + bf16) and Triton (fused kernels + CUDA graphs + bf16).

    python benchmarks/denoise_profile.py --csv /tmp/denoise.csv --png /tmp/denoise.png   # recorded results: under benchmarks/results/
    python benchmarks/denoise_profile.py --sweep K H          # also vary the step count and the horizon at N=512

For each (backend, E, N[, K, H]): the latency of a whole plan (K-1 denoising steps, median after
warm-up, synchronised), the cost of one denoising step (plan / (K-1)), planner env-steps/s, the
analytic matrix FLOPs of a plan (2 x in x out of every layer the rollouts run) and the achieved
TFLOP/s as a share of the bf16 matrix peak measured here by a large bf16 matmul. Without CUDA it
runs tiny sizes (eager and the interpreted Triton kernels) and says so: a smoke run only.
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
from step_rate import median_ms, sync  # noqa: E402

BACKENDS_CUDA = {
    "eager": {},
    "compiled": {"compile": True, "cudagraphs": True, "bf16_plan": True},
    "triton": {"kernels": "triton", "cudagraphs": True, "bf16_plan": True},
}
BACKENDS_CPU = {"eager": {}, "triton": {"kernels": "triton"}}
OBS_DIM, ACTION_DIM = 17, 6


def mlp_flops(dims: list[int]) -> int:
    return sum(2 * a * b for a, b in zip(dims[:-1], dims[1:]))


def plan_flops(cfg, E: int) -> int:
    """Matrix FLOPs of one planner call for E envs (encoder excluded: once per call)."""
    L, A, M, bins, H = cfg.latent_dim, cfg.action_dim, cfg.mlp_dim, cfg.num_bins, cfg.horizon
    la = L + A
    per_cand = H * (mlp_flops([la, M, M, L]) + mlp_flops([la, M, M, bins]) + mlp_flops([la, M, M, 1]))
    per_cand += mlp_flops([L, M, M, 2 * A]) + 2 * mlp_flops([la, M, M, bins])  # final pi + 2 Q heads
    per_pi = H * mlp_flops([L, M, M, 2 * A]) + (H - 1) * mlp_flops([la, M, M, L])
    return (cfg.diffusion_steps - 1) * E * (cfg.num_samples * per_cand + cfg.num_pi_trajs * per_pi)


def bf16_peak_tflops(device: torch.device) -> float:
    if device.type != "cuda":
        return float("nan")
    n = 8192
    a, b = torch.randn(n, n, device=device, dtype=torch.bfloat16), torch.randn(n, n, device=device, dtype=torch.bfloat16)
    ms = median_ms(lambda: a @ b, device, 3, 20, 2.0)
    return 2 * n ** 3 / (ms * 1e-3) / 1e12


def measure(args, backend: str, flags: dict, E: int, N: int, K: int, H: int, peak: float) -> dict:
    from mbdpo_fast.agent import MBDPO, seed_everything
    from mbdpo_fast.config import default_config, resolve

    dev = torch.device(args.device)
    sizes = {"model_size": 1, "mlp_dim": 64, "latent_dim": 32, "enc_dim": 32} if args.small else {"model_size": 5}
    cfg = resolve(default_config(device=args.device, work_dir="unused", num_samples=N, num_elites=min(64, N),
                                  num_pi_trajs=min(24, N), diffusion_steps=K, horizon=H, **sizes, **flags),
                   OBS_DIM, ACTION_DIM)
    seed_everything(0)
    agent = MBDPO(cfg)
    obs, plan = torch.randn(E, OBS_DIM, device=dev), agent.planner.initial_plan(E)
    t0 = time.perf_counter()
    agent.act(obs, plan)
    sync(dev)
    setup = time.perf_counter() - t0
    ms = median_ms(lambda: agent.act(obs, plan), dev, 1 if args.small else 2, args.repeats, args.budget)
    flops = plan_flops(cfg, E)
    tflops = flops / (ms * 1e-3) / 1e12
    return {"backend": backend, "E": E, "N": N, "K": K, "H": H, "plan_ms": round(ms, 4),
            "step_ms": round(ms / (K - 1), 4), "env_steps_per_s": round(1000 * E / ms, 1),
            "gflop_per_plan": round(flops / 1e9, 3), "tflops": round(tflops, 3),
            "pct_bf16_peak": round(100 * tflops / peak, 2) if peak == peak else float("nan"),
            "first_call_s": round(setup, 1)}


def plot(rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    Es = sorted({r["E"] for r in rows})
    fig, axes = plt.subplots(1, len(Es), figsize=(5 * len(Es), 4), squeeze=False)
    for ax, E in zip(axes[0], Es):
        for b in sorted({r["backend"] for r in rows}):
            pts = sorted((r["N"], r["step_ms"]) for r in rows if r["E"] == E and r["backend"] == b and r["sweep"] == "N")
            if pts:
                ax.plot(*zip(*pts), marker="o", label=b)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("samples N")
        ax.set_ylabel("ms per denoising step")
        ax.set_title(f"E={E}")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--backends", nargs="+", default=None)
    ap.add_argument("--samples", type=int, nargs="+", default=None)
    ap.add_argument("--envs", type=int, nargs="+", default=None)
    ap.add_argument("--sweep", nargs="*", default=[], choices=["K", "H"], help="also vary K and/or H at N=512")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--budget", type=float, default=2.0)
    ap.add_argument("--csv", default=None)
    ap.add_argument("--png", default=None)
    args = ap.parse_args()
    dev = torch.device(args.device)
    args.small = dev.type != "cuda"
    backends = BACKENDS_CUDA if dev.type == "cuda" else BACKENDS_CPU
    if args.backends:
        backends = {k: v for k, v in backends.items() if k in args.backends}
    samples = args.samples or ([16, 40] if args.small else [64, 128, 256, 512, 1024, 2048, 4096])
    envs = args.envs or ([1, 2] if args.small else [1, 64, 256])
    K0, H0 = (4, 3) if args.small else (20, 3)
    peak = bf16_peak_tflops(dev)
    name = device_name(dev)
    print(f"denoise_profile on {name}, torch {torch.__version__}, commit {commit()}, bf16 peak {peak:.0f} TFLOP/s"
          + ("\nSMALL sizes on CPU (Triton interpreted): a smoke run, not a measurement of the kernels" if args.small else ""))
    grid = [("N", E, N, K0, H0) for E in envs for N in samples]
    mid = 40 if args.small else 512
    if "K" in args.sweep:
        grid += [("K", E, mid, K, H0) for E in envs for K in ([2, 6] if args.small else [2, 5, 10, 20, 40])]
    if "H" in args.sweep:
        grid += [("H", E, mid, K0, H) for E in envs for H in ([1, 5] if args.small else [1, 3, 5, 8])]
    rows = []
    meta = {"date": dt.date.today().isoformat(), "commit": commit(), "device": name, "torch": torch.__version__,
            "sizes": "small (CPU smoke)" if args.small else "model size 5", "bf16_peak_tflops": round(peak, 1)}
    for backend, flags in backends.items():
        for sweep, E, N, K, H in grid:
            try:
                r = measure(args, backend, flags, E, N, K, H, peak)
            except Exception as e:  # noqa: BLE001  (e.g. out of memory at the largest N x E)
                r = {"backend": backend, "E": E, "N": N, "K": K, "H": H, "plan_ms": float("nan"),
                     "error": f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"}
                if dev.type == "cuda":
                    torch.cuda.empty_cache()
            r = {**meta, "sweep": sweep, **r}
            rows.append(r)
            print(" | ".join(f"{k}={v}" for k, v in r.items() if k not in meta), flush=True)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    if args.csv:
        Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
        with open(args.csv, "w", newline="") as f:
            w = csv.DictWriter(f, keys)
            w.writeheader()
            w.writerows(rows)
    if args.png:
        plot([r for r in rows if r.get("plan_ms") == r.get("plan_ms") and "step_ms" in r], args.png)
    best = {}
    for r in rows:
        if r["sweep"] == "N" and r["N"] == (40 if args.small else 512) and "env_steps_per_s" in r:
            best.setdefault(r["backend"], {})[r["E"]] = r["env_steps_per_s"]
    print("planner env-steps/s at the paper's N:", best)


if __name__ == "__main__":
    main()
