"""Environment throughput: the bridged MJX env (JAX step + DLPack both ways, torch actions in and
observations out) against pure-JAX baselines of the same jitted step, and the CPU suites in
worker processes.

    python benchmarks/env_rate.py --tasks cheetah-run walker-run humanoid-run --envs 256 1024 4096 16384
    python benchmarks/env_rate.py --cpu-suites --workers 1 2 8        # AsyncVecEnv (dm_control)
    python benchmarks/env_rate.py --pixels --workers 1 2 8             # the same, rendering 64x64 RGB (obs=rgb)
    python benchmarks/env_rate.py --pixels --impl warp --envs 256 1024 # MJX (Warp) + MuJoCo Warp's batch renderer
    python benchmarks/env_rate.py --tasks quadruped-run dog-run --envs 1024 4096  # JAX, MuJoCo Warp (--impl auto)
    python benchmarks/env_rate.py --quick                             # one small size (under a minute on a CPU)

Baselines (both reported; the bridge is compared with the faster one): a Python loop calling the
same jitted batched step with actions drawn in JAX, and one `lax.scan` over the same steps.
Every rate is env-steps/s = agent steps x E / seconds, after a warm-up that includes compilation
(compile seconds are reported separately). Rows go to --csv (default runs/benchmarks/env_rate.csv)
with the device's name, date and commit. On a machine without a GPU it runs small sizes on the CPU
and says so in every row; --quick on a CPU times the CPU suite workers (MJX compiles for about a
minute per shape there). A PNG of the rates (against E for MJX, against the worker count for the
CPU suites) goes beside the CSV. --pixels times the CPU workers rendering every agent step (obs=rgb: one
64x64 RGB frame per step through headless OpenGL, 3 stacked); its rate is frames/s, and it also
writes a PNG of the rates against the worker count (as --cpu-suites does). --pixels --impl warp times MJX environments that
render every env's frame at once with MuJoCo Warp (bridged and JAX-loop rates, no scan), frames/s
against E.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import quiet_libraries, announce, benchmark_parser, check_device, error_note, fail, outputs, stamp, write_csv  # noqa: E402


def bench_mjx(task: str, E: int, steps: int, device: torch.device, impl: str, pixels: bool = False) -> dict:
    import jax

    from mbdpo_fast.envs.mjx import make_mjx_env

    t0 = time.perf_counter()
    env = make_mjx_env(task, E, seed=0, device=device, impl=impl, pixels=pixels)
    impl = env.env.mjx_model.impl.value  # what auto chose
    obs = env.reset()
    compile_s = time.perf_counter() - t0
    A = env.action_dim

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    # 1. bridged: torch actions -> DLPack -> jitted step -> DLPack -> torch observations
    for _ in range(3):
        obs, *_ = env.step(torch.rand(E, A, device=device) * 2 - 1)
    sync()
    t = time.perf_counter()
    for _ in range(steps):
        obs, r, *_ = env.step(torch.rand(E, A, device=device) * 2 - 1)
        obs.sum()  # the observation is used on the torch side, as a trainer would
    sync()
    bridged = steps * E / (time.perf_counter() - t)
    assert env.compiled_counts()["step"] == 1, "the step re-traced during timing"

    # 2. pure-JAX Python loop over the same jitted step, actions drawn in JAX
    step_fn, carry = env._step_fn, env._carry
    draw = jax.jit(lambda k: (jax.random.split(k)[0], jax.random.uniform(jax.random.split(k)[1], (E, A), minval=-1, maxval=1)),
                   device=env.jax_device)
    key = jax.device_put(jax.random.PRNGKey(1), env.jax_device)
    for _ in range(3):
        key, a = draw(key)
        carry, out = step_fn(carry, a)
    jax.block_until_ready(out)
    t = time.perf_counter()
    for _ in range(steps):
        key, a = draw(key)
        carry, out = step_fn(carry, a)
    jax.block_until_ready(out)
    loop = steps * E / (time.perf_counter() - t)
    if pixels:  # one rendered frame per env per agent step
        return {"task": task, "E": E, "steps": steps, "bridged_steps_per_s": round(bridged),
                "jax_loop_steps_per_s": round(loop), "frames_per_s": round(bridged),
                "bridged_over_best_baseline": round(bridged / loop, 3), "compile_s": round(compile_s, 1), "impl": impl}

    # 3. one lax.scan over the same steps
    def scanned(carry, key):
        def body(c, k):
            a = jax.random.uniform(k, (E, A), minval=-1, maxval=1)
            c, out = env._step_batch(c, a)
            return c, out["reward"].mean()
        return jax.lax.scan(body, carry, jax.random.split(key, steps))

    scan_fn = jax.jit(scanned, device=env.jax_device)
    t = time.perf_counter()
    jax.block_until_ready(scan_fn(carry, key))
    scan_compile_s = time.perf_counter() - t
    t = time.perf_counter()
    jax.block_until_ready(scan_fn(carry, key))
    scan = steps * E / (time.perf_counter() - t)
    best = max(loop, scan)
    return {"task": task, "E": E, "steps": steps, "bridged_steps_per_s": round(bridged),
            "jax_loop_steps_per_s": round(loop), "jax_scan_steps_per_s": round(scan),
            "bridged_over_best_baseline": round(bridged / best, 3), "compile_s": round(compile_s, 1),
            "scan_compile_s": round(scan_compile_s, 1), "impl": impl}


def bench_cpu_suite(task: str, workers: int, steps: int, pixels: bool = False) -> dict:
    from mbdpo_fast.envs.cpu.vector import AsyncVecEnv

    env = AsyncVecEnv(task, workers, seed=0, pixels=pixels)
    env.reset()
    for _ in range(5):
        env.step(torch.rand(workers, env.action_dim) * 2 - 1)
    t = time.perf_counter()
    for _ in range(steps):
        env.step(torch.rand(workers, env.action_dim) * 2 - 1)
    rate = steps * workers / (time.perf_counter() - t)
    env.close()
    row = {"task": task, "workers": workers, "steps": steps, "agent_steps_per_s": round(rate, 1), "cpus": os.cpu_count()}
    if pixels:  # one rendered frame per agent step
        row.update(frames_per_s=round(rate, 1), gl=os.environ.get("MUJOCO_GL", ""))
    return row


def plot_rates(rows: list[dict], png: Path, x: str = "workers", y: str = "frames_per_s") -> None:
    """Frames/s (or agent steps/s) against workers (CPU) or E (MJX), one line per task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    pixels = y == "frames_per_s"
    for task in dict.fromkeys(r["task"] for r in rows):
        pts = [(float(r[x]), float(r[y])) for r in rows if r["task"] == task and r.get(y, "") not in ("", None)]
        impl = next((r["impl"] for r in rows if r["task"] == task and r.get("impl")), "")
        if pts:
            ax.plot(*zip(*pts), marker="o", label=f"{task} ({impl})" if impl and x != "workers" else task)
    ax.set_xlabel("worker processes" if x == "workers" else
                  "environments E (one render context)" if pixels else "environments E")
    ax.set_ylabel("rendered agent steps / s (64x64 RGB)" if pixels else
                  "agent steps / s" if x == "workers" else "agent steps / s (bridged to torch)")
    meta = rows[0] if rows else {}
    where = (f"MUJOCO_GL={meta.get('gl', '?')}" if x == "workers" and pixels else "worker processes" if x == "workers"
             else "MJX, MuJoCo Warp's renderer" if pixels else "MJX")
    ax.set_title(f"{meta.get('device', '')}, {meta.get('cpus') or os.cpu_count()} CPUs, {where}", fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=120)


def main() -> None:
    ap = benchmark_parser("env_rate", __doc__, png=True)
    ap.add_argument("--tasks", nargs="+", default=None, help="default: cheetah-run walker-run humanoid-run")
    ap.add_argument("--envs", nargs="+", type=int, default=None)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--impl", default="auto", choices=["auto", "jax", "warp"],
                    help="MJX implementation; auto: each task's own (MuJoCo Warp for the dog, else JAX)")
    ap.add_argument("--cpu-suites", action="store_true", help="time the CPU suites instead of MJX")
    ap.add_argument("--workers", nargs="+", type=int, default=None, help="default: 1 2 8")
    ap.add_argument("--pixels", action="store_true", help="render 64x64 RGB frames (obs=rgb): CPU workers, "
                    "or with --impl warp MJX environments and MuJoCo Warp's batch renderer")
    args = ap.parse_args()
    quiet_libraries()
    device = check_device(args.device, args.dry_run)
    csv_path, png_path = outputs(args)
    from mbdpo_fast.task_registry import names, suggest

    for t in args.tasks or []:
        if t not in names():
            fail(f"unknown task {t!r}.{suggest(t, names())}", "the names are in mbdpo_fast/task_registry.py")
    gpu = device.type == "cuda"
    mjx_pixels = args.pixels and args.impl == "warp"
    cpu_suites = args.cpu_suites or (args.pixels and not mjx_pixels) or (args.quick and not gpu)
    if args.pixels:
        from mbdpo_fast.task_registry import PIXEL_CAMERAS

        for t in args.tasks or []:
            if t not in PIXEL_CAMERAS:
                fail(f"{t} has no pixel observations", f"the pixel tasks: {', '.join(sorted(PIXEL_CAMERAS))}")
            if mjx_pixels and t not in names(mjx=True):
                fail(f"{t} has no MJX version", "time it on CPU workers: drop --impl warp")
    tasks = args.tasks or (["cheetah-run"] if args.quick else
                           ["cheetah-run", "walker-walk"] if args.pixels else ["cheetah-run", "walker-run", "humanoid-run"])
    meta = stamp(device)
    if cpu_suites:
        workers = args.workers or ([1, 2] if args.quick else [1, 2, 8])
        steps = args.steps or (100 if args.quick else 500)
        plan = [f"CPU suites in worker processes{' rendering 64x64 RGB' if args.pixels else ''}: "
                f"{', '.join(tasks)} at {workers} workers, {steps} steps each"]
        per_step = 0.08 if args.pixels else 0.008  # ~2-4 ms per dm_control step; 34-80 ms per rendered frame
        seconds = sum(5 + steps * per_step for _ in tasks for _ in workers)
    else:
        envs = args.envs or ([1024] if args.quick and gpu else [256, 1024, 4096, 16384] if gpu else [16, 64])
        steps = args.steps or (200 if gpu else 20)
        plan = [f"MJX ({args.impl}) {', '.join(tasks)} at E={envs}, {steps} steps: bridged, JAX loop"
                + (", rendering 64x64 RGB with MuJoCo Warp" if mjx_pixels else ", lax.scan")
                + ("" if gpu else " (small sizes on CPU: a smoke run, not a GPU measurement)")]
        seconds = sum((40 if gpu else 90) for _ in tasks for _ in envs)  # compile of step and scan dominates
    announce(f"env_rate on {meta['device']}, commit {meta['commit']}", plan, seconds, csv_path)
    if args.dry_run:
        return
    rows = []
    for task in tasks:
        for n in (workers if cpu_suites else envs):
            try:
                if cpu_suites:
                    row = {**meta, **bench_cpu_suite(task, n, steps, args.pixels), "note": ""}
                else:
                    row = {**meta, **bench_mjx(task, n, steps, device, args.impl, mjx_pixels),
                           "sizes": "full (GPU)" if gpu else "small (CPU smoke run, not a GPU measurement)", "note": ""}
            except Exception as e:  # noqa: BLE001  one failure is reported, the others still run
                row = {**meta, "task": task, ("workers" if cpu_suites else "E"): n, "note": error_note(e)}
            print(" | ".join(f"{k}={v}" for k, v in row.items() if v != ""), flush=True)
            rows.append(row)
    write_csv(csv_path, rows)
    if png_path is not None:
        plot_rates(rows, png_path, "workers" if cpu_suites else "E",
                   "frames_per_s" if args.pixels else "agent_steps_per_s" if cpu_suites else "bridged_steps_per_s")
        print(f"wrote {png_path}")


if __name__ == "__main__":
    main()
