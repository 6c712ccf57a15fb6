"""The planner and the update on a CPU against the machine's own matrix-multiply rate.

    python benchmarks/cpu_roofline.py                    # every section; CSV and PNG under runs/benchmarks/
    python benchmarks/cpu_roofline.py --sections plan    # one section
    python benchmarks/cpu_roofline.py --quick            # tiny sizes, a few calls each (under two minutes)

Sections:
  matmul  torch's fp32 (and bf16) matrix multiply at each workload's hidden-layer shape
          ([rows, M] x [M, M]), operands in cache, on one thread and on every core: the rate the
          other sections are compared with
  plan    one planner call (E = 1): model size 1 at cpu_small's planner (N=64, K=6, H=3, P=4) and
          model size 5 at the paper's (N=512, K=20, H=3, P=24)
  update  one update (H=3): model size 1 and 5 at B = 64 and 256
  busy    the plan and the update of model size 1 while another process keeps one core busy
          (python -c "while True: pass"), beside the same calls with the machine idle: torch's
          threads on every core, on one, and as the thread tuner picks them (threads=0)
  xla     the same plan and update written in JAX and compiled whole by XLA
          (benchmarks/xla_reference.py, this project's port of the reference path), timed in a
          subprocess per thread count, beside the package's paths timed right after
  train   make train's command (walker-walk, profile=cpu_small) timed whole: the reference eager
          path on every core (what make train ran before the CPU fast paths) and the profile's
          defaults with Inductor's cache cold and warm, idle and with one core busy; about 40 minutes.
          Resumes: runs already in the CSV are kept (delete it to measure again)

Each call writes its sections' rows into the CSV and keeps the rows of the sections it did not
measure (run a section again alone to update it). Every code path of a workload is timed in the
same run, round-robin (a call of each in turn, the
median per path), so the ratios compare paths under the same conditions; `speedup` is against the
reference eager path (the package's plain PyTorch path, kernels=torch without any speed flag).
GFLOP is the path's own matrix work from mbdpo_fast/kernels/cost.py (plan_flops, update_flops:
forward and backward; equal to torch.utils.flop_counter's count of the eager paths), `pct_of_matmul`
its rate against the matmul rate measured here at the workload's shape on the same threads (the
bf16 rate for bf16 paths). Compiled paths report their first call (compilation, or a load from
Inductor's on-disk cache) beside, not in, the time. Each row's `path` is the agent's own account
of what ran.
"""
from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import quiet_libraries, ROOT, announce, benchmark_parser, check_device, error_note, outputs, stamp, write_csv  # noqa: E402

SECTIONS = ["matmul", "plan", "update", "busy", "xla", "train"]
OBS_DIM, ACTION_DIM = 24, 6  # walker-walk
PLANNERS = {  # workload -> (model preset, planner sizes)
    "plan m1": (1, dict(num_samples=64, diffusion_steps=6, num_elites=8, num_pi_trajs=4)),
    "plan m5": (5, dict(num_samples=512, diffusion_steps=20, num_elites=64, num_pi_trajs=24)),
}
UPDATES = {"update m1 B=64": (1, 64), "update m1 B=256": (1, 256), "update m5 B=64": (5, 64),
           "update m5 B=256": (5, 256)}
TINY = dict(mlp_dim=64, latent_dim=32, enc_dim=32)  # --quick
PLAN_PATHS = {
    "reference eager": {},
    "grouped eager": {"fused_rollout": True},
    "grouped compiled": {"fused_rollout": True, "compile": True},
    "grouped compiled bf16": {"fused_rollout": True, "compile": True, "bf16_plan": True},
}
UPDATE_PATHS = {
    "reference eager": {},
    "fused eager": {"fused_update": True},
    "fused compiled": {"fused_update": True, "compile": True},
    "fused compiled bf16": {"fused_update": True, "compile": True, "bf16_update": True},
}
FIELDS = ["section", "workload", "path_name", "path", "threads", "load", "ms", "first_call_s", "gflop",
          "gflops", "matmul_gflops", "pct_of_matmul", "speedup", "vs_xla", "wall_s", "steps_per_s", "final_return",
          "note"]


def all_cores() -> int:
    import os

    return len(os.sched_getaffinity(0))


# ------------------------------------------------------------------------------------------------
def matmul_rate(rows: int, k: int, n: int, threads: int, dtype=torch.float32, budget_s: float = 0.5) -> float:
    """GFLOP/s of torch.mm [rows, k] x [k, n] on `threads` threads, operands in cache (median of
    repeated calls after a warm-up)."""
    torch.set_num_threads(threads)
    a, b = torch.randn(rows, k).to(dtype), torch.randn(k, n).to(dtype)
    out = torch.empty(rows, n, dtype=dtype)
    for _ in range(3):
        torch.mm(a, b, out=out)
    times, start = [], time.perf_counter()
    while len(times) < 5 or (time.perf_counter() - start < budget_s and len(times) < 2000):
        t0 = time.perf_counter()
        torch.mm(a, b, out=out)
        times.append(time.perf_counter() - t0)
    return 2 * rows * k * n / statistics.median(times) / 1e9


def workload_shape(args, workload: str) -> tuple[int, int]:
    """(rows, M) of a workload's hidden layers: the plan's candidates per step, the update's H x B."""
    if workload.startswith("plan"):
        preset, planner = PLANNERS[workload]
        rows = planner["num_samples"] if not args.quick else 16
    else:
        preset, batch = UPDATES[workload]
        rows = 3 * (batch if not args.quick else 16)
    m = TINY["mlp_dim"] if args.quick else {1: 384, 5: 512}[preset]
    return rows, m


def spec(args, preset: int, flags: dict, **over):
    from mbdpo_fast.config import default_config, resolve

    sizes = {"model_size": preset, **(TINY if args.quick else {})}
    return resolve(default_config(device="cpu", work_dir="unused", **sizes, **flags, **over),
                   OBS_DIM, ACTION_DIM)


# ------------------------------------------------------------------------------------------------
class Call:
    """One workload on one code path: `run()` is one timed call (on its thread count: `threads`
    fixed, or 0 for the agent's thread tuner); `first_s` the first call's time."""

    def __init__(self, args, workload: str, flags: dict, threads: int | None = None):
        self.threads = torch.get_num_threads() if threads is None else threads
        flags = {**flags, "threads": self.threads}
        from mbdpo_fast.agent import MBDPO, seed_everything
        from mbdpo_fast.batch import Batch
        from mbdpo_fast.kernels.cost import plan_flops, update_flops

        if workload.startswith("plan"):
            preset, planner = PLANNERS[workload]
            if args.quick:
                planner = dict(planner, num_samples=16, diffusion_steps=3, num_elites=4, num_pi_trajs=2)
            cfg = spec(args, preset, flags, **planner)
            seed_everything(0)
            self.agent = MBDPO(cfg)
            obs, plan = torch.randn(1, OBS_DIM), self.agent.planner.initial_plan(1)
            self.call = lambda: self.agent.act(obs, plan)
            self.flops = plan_flops(cfg, 1, grouped=bool(flags.get("fused_rollout")))
            self.path = self.agent.code_paths()["planner"]
        else:
            preset, batch = UPDATES[workload]
            batch = 16 if args.quick else batch
            cfg = spec(args, preset, flags, batch_size=batch)
            seed_everything(0)
            self.agent = MBDPO(cfg)
            g = torch.Generator().manual_seed(0)
            H = cfg.horizon
            tensors = (torch.randn(H + 1, batch, OBS_DIM, generator=g),
                       torch.rand(H, batch, ACTION_DIM, generator=g) * 2 - 1,
                       torch.rand(H, batch, 1, generator=g), torch.zeros(H, batch, 1))
            data = Batch(*tensors)
            self.call = lambda: self.agent.update(data)
            self.flops = sum(update_flops(cfg, batch, fused=bool(flags.get("fused_update"))))
            self.path = self.agent.code_paths()["update"]
        self.bf16 = bool(flags.get("bf16_plan") or flags.get("bf16_update"))
        t0 = time.perf_counter()
        self.run()
        self.first_s = time.perf_counter() - t0

    @staticmethod
    def flops_of(args, workload: str, flags: dict) -> float:
        """The matrix FLOPs of a workload on a path (kernels/cost.py), without building it."""
        from mbdpo_fast.kernels.cost import plan_flops, update_flops

        if workload.startswith("plan"):
            preset, planner = PLANNERS[workload]
            if args.quick:
                planner = dict(planner, num_samples=16, diffusion_steps=3, num_elites=4, num_pi_trajs=2)
            return plan_flops(spec(args, preset, flags, **planner), 1, grouped=bool(flags.get("fused_rollout")))
        preset, batch = UPDATES[workload]
        batch = 16 if args.quick else batch
        return sum(update_flops(spec(args, preset, flags, batch_size=batch), batch, fused=bool(flags.get("fused_update"))))

    def run(self) -> None:
        """One call, on this path's thread count (the tuner's current one, which it keeps between
        its probes, when tuned)."""
        torch.set_num_threads(self.threads or self.agent.threads.current)
        self.call()


class MatmulCall:
    """torch.mm at a workload's hidden-layer shape, `reps` products per call: timed in the same
    round-robin as the paths, so that their share of the matmul rate compares like with like."""

    def __init__(self, rows: int, m: int, dtype: torch.dtype, threads: int, reps: int):
        self.a, self.b = torch.randn(rows, m).to(dtype), torch.randn(m, m).to(dtype)
        self.threads, self.reps = threads, reps
        self.flops = 2.0 * rows * m * m * reps
        self.bf16, self.first_s, self.path = dtype == torch.bfloat16, 0.0, f"[{rows},{m}]x[{m},{m}]"

    def run(self) -> None:
        torch.set_num_threads(self.threads)
        for _ in range(self.reps):
            torch.mm(self.a, self.b)


def time_round_robin(calls: dict, rounds: int, budget_s: float) -> dict[str, float]:
    """Median ms per call of each path, timed a call of each in turn (one warm-up round first);
    stops after `rounds` rounds or once `budget_s` is spent (3 rounds at least)."""
    for c in calls.values():
        c.run()
    times = {name: [] for name in calls}
    start = time.perf_counter()
    for r in range(rounds):
        for name, c in calls.items():
            t0 = time.perf_counter()
            c.run()
            times[name].append(1000 * (time.perf_counter() - t0))
        if r >= 2 and time.perf_counter() - start > budget_s:
            break
    return {name: statistics.median(t) for name, t in times.items()}


def matmul_reps(rows: int, m: int) -> int:
    """Products per MatmulCall: about 20 ms of work at 100 GFLOP/s."""
    return max(1, round(2e9 / (2.0 * rows * m * m)))


def measure(args, rows: list, workload: str, variants: dict, load: str, calls: dict | None = None) -> dict:
    """Time every variant of a workload round-robin, beside torch.mm at the workload's shape on each
    thread count they use (fp32, and bf16 where a bf16 path runs); one CSV row per variant.
    variants: path_name -> (flags, threads: a fixed count, or 0 for the agent's thread tuner).
    `calls` (from an earlier call with the same variants) are timed again as they are."""
    import torch._dynamo

    if calls is None:
        # compiled functions are cached per code object and every agent adds entries: a fresh cache per
        # workload keeps each compiled path compiled (past torch._dynamo's recompile limit it would run eagerly)
        torch._dynamo.reset()
        calls = {}
        for name, (flags, threads) in variants.items():
            if threads == 0:
                torch.set_num_threads(all_cores())  # the tuner chooses between every core and one
            try:
                calls[name] = Call(args, workload, flags, threads)
            except Exception as e:  # noqa: BLE001  (reported per row; the other paths still run)
                emit(rows, dict(section=section_of(workload), workload=workload, path_name=name, path="-",
                                threads=threads, load=load, note=error_note(e)))
        r, m = workload_shape(args, workload)
        counts = sorted({t for _, t in variants.values() if t} | ({1, all_cores()} if any(
            t == 0 for _, t in variants.values()) else set()))
        dtypes = [torch.float32] + ([torch.bfloat16] if any(c.bf16 for c in calls.values()) else [])
        for t in counts:
            for dt in dtypes:
                calls[("matmul", t, dt)] = MatmulCall(r, m, dt, t, matmul_reps(r, m))
    tuned = [c for c in calls.values() if isinstance(c, Call) and c.threads == 0]
    if tuned:  # let the tuners see this load for a full interval (and choose) before anything is timed
        for c in tuned:
            c.agent.threads.last = c.agent.threads._sample()
        settle = time.perf_counter() + 1.5 * max(c.agent.threads.interval_s for c in tuned)
        while time.perf_counter() < settle:
            for c in calls.values():
                c.run()
    ms = time_round_robin(calls, args.rounds, args.budget)
    ref = ms.get("reference eager")
    for name, c in calls.items():
        if isinstance(c, MatmulCall):
            continue
        count = c.threads or c.agent.threads.current
        mm = calls.get(("matmul", count, torch.bfloat16 if c.bf16 else torch.float32))
        rate = mm.flops / (ms[("matmul", count, mm.a.dtype)] * 1e-3) / 1e9 if mm else None
        gflops = c.flops / (ms[name] * 1e-3) / 1e9
        emit(rows, dict(section=section_of(workload), workload=workload, path_name=name, path=c.path,
                        threads=c.threads or f"tuned ({count})", load=load, ms=round(ms[name], 3),
                        first_call_s=round(c.first_s, 2), gflop=round(c.flops / 1e9, 3), gflops=round(gflops, 1),
                        matmul_gflops=round(rate, 1) if rate else "",
                        pct_of_matmul=round(100 * gflops / rate, 1) if rate else "",
                        speedup=round(ref / ms[name], 2) if ref else "", note=""))
    return calls


def section_of(workload: str) -> str:
    return "plan" if workload.startswith("plan") else "update"


def emit(rows: list, r: dict) -> None:
    rows.append(r)
    print(" | ".join(f"{k}={v}" for k, v in r.items() if v not in ("", None)), flush=True)


class BusyCore:
    """Another process that keeps one core busy while the block runs: started through a shell that
    exits at once, so that it is no descendant of this process (the thread tuner counts its own
    descendants' CPU time as the run's own, as it should for environment workers)."""

    def __enter__(self):
        out = subprocess.run(["sh", "-c", f"'{sys.executable}' -c 'while True: pass' >/dev/null 2>&1 & echo $!"],
                             capture_output=True, text=True, check=True)
        self.pid = int(out.stdout.strip())
        time.sleep(0.5)
        return self

    def __exit__(self, *exc):
        import os
        import signal

        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# ------------------------------------------------------------------------------------------------
def run_matmul(args, rows: list, workloads: list[str]) -> None:
    for threads in args.threads:
        for workload in workloads:
            r, m = workload_shape(args, workload)
            for dtype, name in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
                rate = matmul_rate(r, m, m, threads, dtype, budget_s=0.2 if args.quick else 0.5)
                emit(rows, dict(section="matmul", workload=workload, path_name=f"torch.mm {name}",
                                path=f"[{r},{m}]x[{m},{m}]", threads=threads, load="idle",
                                gflops=round(rate, 1), matmul_gflops=round(rate, 1), pct_of_matmul=100.0,
                                note="operands in cache"))


def run_busy(args, rows: list) -> None:
    """Model size 1's plan and update on the reference path and on the compiled fast path, with
    torch's threads fixed at every core, fixed at one, and tuned (threads=0), the machine idle and
    then with one core busy."""
    n = all_cores()
    for workload, paths in (("plan m1", PLAN_PATHS), ("update m1 B=64", UPDATE_PATHS)):
        fast = "grouped compiled" if workload.startswith("plan") else "fused compiled"
        variants = {f"{name}, {label}": (paths[name], t) for name in ("reference eager", fast)
                    for label, t in ((f"{n} threads", n), ("1 thread", 1), ("tuned", 0))}
        before = len(rows)
        calls = measure(args, rows, workload, variants, "idle")
        with BusyCore():
            measure(args, rows, workload, variants, "one core busy", calls)
        for row in rows[before:]:
            row["section"] = "busy"


def run_xla(args, rows: list, workloads: list[str]) -> None:
    """XLA's whole-function compilation of the same plan and update (benchmarks/xla_reference.py,
    this project's JAX port: the reference path's work, jitted whole) timed in a subprocess per
    thread count, then the package's reference and fast paths of each workload timed here right
    after; `vs_xla` = XLA's time / the path's (above 1: the path is faster)."""
    import json
    import os

    for threads in args.threads:
        cmd = [sys.executable, str(Path(__file__).parent / "xla_reference.py"), "--threads", str(threads if threads == 1 else 0),
               "--rounds", str(min(args.rounds, 10)), "--workloads", *workloads] + (["--quick"] if args.quick else [])
        env = dict(os.environ)
        env.pop("XLA_FLAGS", None)
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        xla = {}
        for line in proc.stdout.splitlines():
            if line.startswith("{"):
                r = json.loads(line)
                xla[r["workload"]] = r
        if proc.returncode != 0:
            emit(rows, dict(section="xla", workload="-", path_name="XLA port (jax.jit)", threads=threads,
                            note=error_note(RuntimeError((proc.stderr or "failed").strip().splitlines()[-1]))))
        for workload in workloads:
            r = xla.get(workload)
            if r is None:
                continue
            section = section_of(workload)
            flops = Call.flops_of(args, workload, {})
            emit(rows, dict(section="xla", workload=workload, path_name="XLA port (jax.jit)",
                            path=f"jax {r['jax']}, benchmarks/xla_reference.py", threads=threads, load="idle",
                            ms=round(r["ms"], 3), first_call_s=round(r["first_call_s"], 1), gflop=round(flops / 1e9, 3),
                            gflops=round(flops / (r["ms"] * 1e-3) / 1e9, 1), vs_xla=1.0,
                            note="compiled whole by XLA (first call: compilation); the reference path's work"))
            paths = PLAN_PATHS if section == "plan" else UPDATE_PATHS
            chosen = {k: (v, threads) for k, v in paths.items() if "eager" not in k or k == "reference eager"}
            before = len(rows)
            measure(args, rows, workload, chosen, "idle")
            for row in rows[before:]:
                row["section"], row["vs_xla"] = "xla", round(r["ms"] / row["ms"], 2) if row.get("ms") else ""


TRAIN_REFERENCE = ["fused_rollout=false", "fused_update=false", "compile=false"]


def train_runs(n: int) -> list[tuple[str, list[str], str, str]]:
    """(name, overrides, load, Inductor cache) of the train section's runs, in order: the cold
    run fills the cache that the warm runs read."""
    reference = TRAIN_REFERENCE + [f"threads={n}"]  # the path and thread count make train had before these flags
    return [("reference eager, every core", reference, "idle", "-"),
            ("cpu_small, compile cache cold", [], "idle", "cold"),
            ("cpu_small, compile cache warm", [], "idle", "warm"),
            ("reference eager, every core", reference, "one core busy", "-"),
            ("cpu_small, compile cache warm", [], "one core busy", "warm")]


def run_train(args, rows: list, done: list[dict]) -> None:
    """make train's command (walker-walk, profile=cpu_small, 3000 steps with its evaluations) as a
    subprocess, timed whole, for each of `train_runs`, each in its own directory under
    --runs-dir; runs already in `done` (an earlier call's CSV rows) are kept, not repeated. Per run:
    wall clock, the trainer's rate in the rows after seeding whose window holds no evaluation, the
    last evaluation return."""
    import csv
    import os
    import shutil
    import tempfile

    n = all_cores()
    Path(args.runs_dir).mkdir(parents=True, exist_ok=True)
    cache = Path(tempfile.gettempdir()) / "mbdpo_cpu_roofline_inductor"
    key = lambda r: (r["path_name"], r["load"])
    have = {key(r): r for r in done if r.get("section") == "train" and r.get("wall_s") not in ("", None)}
    runs = train_runs(n)
    if args.quick:  # the reference run, shortened: compiling takes minutes on 2 cores
        runs = runs[:1]
    for name, over, load, state in runs:
        if (name, load) in have:
            rows.append(have[(name, load)])
            print(f"kept from the earlier run: train | {name} | {load}", flush=True)
            continue
        if state == "cold":
            shutil.rmtree(cache, ignore_errors=True)
        steps = ["steps=600", "seed_steps=200", "eval_freq=300", "episode_length=100"] if args.quick else []
        run_dir = Path(args.runs_dir) / f"{name}, {load}".replace(" ", "_").replace(",", "")
        shutil.rmtree(run_dir, ignore_errors=True)
        cmd = [sys.executable, "-m", "mbdpo_fast.train", "task=walker-walk", "profile=cpu_small",
               f"hydra.run.dir={run_dir}", "progress_bar=false", *steps, *over]
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(cache)}
        print(f"train | {name} | {load}: {' '.join(cmd[1:])}", flush=True)
        t0 = time.perf_counter()
        if load == "idle":
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        else:
            with BusyCore():
                proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            emit(rows, dict(section="train", workload="make train", path_name=name, load=load,
                            note=error_note(RuntimeError((proc.stderr or proc.stdout).strip().splitlines()[-1]))))
            continue
        with open(Path(run_dir) / "config.yaml") as f:
            cfgtext = f.read()
        seed_steps = int(_yaml_field(cfgtext, "seed_steps"))
        eval_freq = int(_yaml_field(cfgtext, "eval_freq"))
        with open(Path(run_dir) / "train.csv") as f:
            train = list(csv.DictReader(f))
        with open(Path(run_dir) / "eval.csv") as f:
            evals = list(csv.DictReader(f))
        pure, prev = [], 0
        for r in train:  # windows after seeding that hold no evaluation (one runs at each multiple of eval_freq)
            step = int(r["step"])
            if prev >= seed_steps and prev % eval_freq and not any(m % eval_freq == 0 for m in range(prev, step)):
                pure.append(float(r["env_steps_per_s"]))
            prev = step
        banner = next((line for line in proc.stdout.splitlines() if "threads" in line), "")
        from common import commit

        emit(rows, dict(commit=commit(), section="train", workload="make train", path_name=name, path=_banner_paths(banner),
                        threads=_banner_threads(banner), load=load, wall_s=round(wall, 1),
                        steps_per_s=round(statistics.mean(pure), 2) if pure else "",
                        final_return=round(float(evals[-1]["reward"]), 1) if evals else "",
                        note=f"wall clock of the whole command; steps/s: mean of {len(pure)} training windows "
                             f"without evaluation after seeding; Inductor cache {state}"))
        args.save()


def _yaml_field(text: str, key: str) -> str:
    for line in text.splitlines():
        if line.startswith(f"{key}:"):
            return line.split(":", 1)[1].strip()
    raise KeyError(key)


def _banner_paths(banner: str) -> str:
    return banner.split("planner ", 1)[1].split(" | ")[0] if "planner " in banner else "-"


def _banner_threads(banner: str) -> str:
    return banner.split("(", 2)[2].split(")")[0] if banner.count("(") >= 2 else "-"


def _num(x) -> float | None:
    """A CSV cell (or a measured value) as a float; None for an empty cell."""
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def plot(rows: list[dict], path: Path, title: str) -> None:
    """The sections present, one panel each: plan/update paths per thread count (bars of GFLOP/s,
    black ticks at torch.mm's rate at the workload's shape; labels: ms and the speedup over the
    reference), the busy section (ms idle and with a core busy), XLA against the package's paths,
    make train's wall clock."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timed = [r for r in rows if r.get("section") in ("plan", "update") and _num(r.get("ms")) is not None
             and r.get("load") == "idle"]
    counts = sorted({int(_num(r["threads"])) for r in timed if _num(r.get("threads")) is not None})
    panels = [("paths", t) for t in counts]
    panels += [(name, None) for name in ("busy", "xla", "train")
               if any(r.get("section") == name and (_num(r.get("ms")) or _num(r.get("wall_s"))) for r in rows)]
    if not panels:
        panels = [("none", None)]
    fig, axes = plt.subplots(1, len(panels), figsize=(7.5 * len(panels), 7), squeeze=False)
    for ax, (kind, t) in zip(axes[0], panels):
        if kind == "paths":
            sel = [r for r in timed if _num(r["threads"]) == t]
            values = [_num(r["gflops"]) for r in sel]
            labels = [f"{_num(r['ms']):.4g} ms" + (f", x{r['speedup']}" if _num(r.get("speedup")) else "") for r in sel]
            names = [f"{r['workload']}: {r['path_name']}" for r in sel]
            ticks = [_num(r.get("matmul_gflops")) for r in sel]
            ax.set_xlabel("GFLOP/s (black tick: torch.mm at the workload's shape, same threads and round-robin)")
            ax.set_title(f"plan and update, {t} thread{'s' if t > 1 else ''}, idle")
        elif kind == "busy":
            sel = [r for r in rows if r.get("section") == "busy" and str(r.get("load")) == "one core busy"]
            idle = {(r["workload"], r["path_name"]): _num(r["ms"]) for r in rows if r.get("section") == "busy"
                    and r.get("load") == "idle"}
            values = [_num(r["ms"]) for r in sel]
            labels = [f"{_num(r['ms']):.4g} ms busy ({idle.get((r['workload'], r['path_name'])) or 0:.4g} idle), "
                      f"threads {r['threads']}" for r in sel]
            names = [f"{r['workload']}: {r['path_name']}" for r in sel]
            ticks = [idle.get((r["workload"], r["path_name"])) for r in sel]
            ax.set_xlabel("ms per call with one core busy (black tick: the same call idle)")
            ax.set_title("another process on one core")
        elif kind == "xla":
            sel = [r for r in rows if r.get("section") == "xla" and _num(r.get("ms"))]
            values = [_num(r["ms"]) for r in sel]
            labels = [f"{_num(r['ms']):.4g} ms" + (f", XLA / this = {r['vs_xla']}" if _num(r.get("vs_xla")) else "")
                      for r in sel]
            names = [f"{r['workload']}, {r['threads']} thr.: {r['path_name']}" for r in sel]
            ticks = [None] * len(sel)
            ax.set_xscale("log")
            ax.set_xlabel("ms per call (log)")
            ax.set_title("XLA (jax.jit of the same computation) and the package's paths")
        elif kind == "train":
            sel = [r for r in rows if r.get("section") == "train" and _num(r.get("wall_s"))]
            values = [_num(r["wall_s"]) / 60 for r in sel]
            labels = [f"{_num(r['wall_s']) / 60:.1f} min, {r.get('steps_per_s') or '-'} steps/s, return "
                      f"{r.get('final_return') or '-'}" for r in sel]
            names = [f"{r['path_name']} ({r['load']})" for r in sel]
            ticks = [None] * len(sel)
            ax.set_xlabel("make train's wall clock, minutes")
            ax.set_title("make train (walker-walk, profile=cpu_small), whole command")
        else:
            ax.text(0.5, 0.5, "not measured", ha="center", transform=ax.transAxes)
            continue
        ys = range(len(sel))
        bars = ax.barh(ys, values, color=["C0" if "reference" in str(r.get("path_name")) else "C2" if "XLA" in
                                          str(r.get("path_name")) else "C1" for r in sel])
        for y, tick in zip(ys, ticks):
            if tick:
                ax.plot([tick] * 2, [y - 0.4, y + 0.4], color="k", lw=2)
        ax.bar_label(bars, labels=labels, fontsize=6)
        ax.set_yticks(list(ys), names, fontsize=6)
        ax.invert_yaxis()
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}", flush=True)


def main() -> None:
    ap = benchmark_parser("cpu_roofline", __doc__, png=True)
    ap.add_argument("--sections", nargs="+", default=SECTIONS, choices=SECTIONS)
    ap.add_argument("--workloads", nargs="+", default=None, choices=list(PLANNERS) + list(UPDATES))
    ap.add_argument("--threads", type=int, nargs="+", default=None, help="thread counts (default: 1 and every core)")
    ap.add_argument("--rounds", type=int, default=15, help="timed calls per path at most")
    ap.add_argument("--budget", type=float, default=60.0, help="seconds of timed calls per workload at most")
    ap.add_argument("--runs-dir", default=str(ROOT / "runs" / "cpu_roofline_train"),
                    help="where the train section's runs are kept (default: %(default)s)")
    ap.add_argument("--replot", action="store_true", help="redraw the PNG from the CSV and stop (no measurement)")
    args = ap.parse_args()
    quiet_libraries()
    if args.replot:
        import csv

        csv_path, png = outputs(args)
        if not csv_path.exists():
            from common import fail
            fail(f"no CSV at {csv_path} to redraw", "give --csv the file a measurement wrote")
        rows = list(csv.DictReader(open(csv_path)))
        first = rows[0] if rows else {}
        commits = ", ".join(dict.fromkeys(r.get("commit", "?") for r in rows))
        plot(rows, png, f"cpu_roofline, {first.get('device', '?')}, {first.get('date', '?')}, commit(s) "
                        f"{commits}, torch {first.get('torch', '?')}")
        return
    dev = check_device(args.device, args.dry_run)
    if dev.type != "cpu":
        from common import fail
        fail(f"cpu_roofline measures the CPU, not {dev}", "use --device cpu (benchmarks/denoise_profile.py and "
             "step_rate.py measure a GPU)")
    csv_path, png = outputs(args)
    n = all_cores()
    args.threads = args.threads or list(dict.fromkeys([1, n]))
    workloads = args.workloads or (list(PLANNERS) + list(UPDATES))
    if args.quick:
        args.rounds, args.budget = min(args.rounds, 4), min(args.budget, 5.0)
        workloads = args.workloads or ["plan m1", "update m1 B=64"]
        args.threads = args.threads[:1]
    meta = stamp(dev)
    meta["sizes"] = "tiny widths (smoke run)" if args.quick else "model sizes 1 and 5"
    plan = [f"{meta['device']}, {n} core(s) in this process's affinity; threads {args.threads}",
            ("TINY widths " + str(TINY) + " (--quick: a smoke run, not a measurement)") if args.quick
            else "model size 1 (cpu_small planner, N=64 K=6) and 5 (paper planner, N=512 K=20); updates B=64, 256",
            f"sections: {', '.join(args.sections)}; workloads: {', '.join(workloads)}",
            f"plan paths: {', '.join(PLAN_PATHS)}; update paths: {', '.join(UPDATE_PATHS)}",
            "compiled paths compile on their first call (about 20-60 s each on 2 cores when Inductor's cache is cold)"]
    timed = sum(1 for s in ("plan", "update") if s in args.sections)
    seconds = (len(workloads) * len(args.threads) * (args.budget + 60) * timed / 2
               + (180 if "busy" in args.sections else 0) + (10 if "matmul" in args.sections else 0)
               + ((60 if args.quick else 3000) if "train" in args.sections else 0)
               + (len(workloads) * len(args.threads) * (args.budget / 2 + 40) if "xla" in args.sections else 0))
    announce(f"cpu_roofline, torch {torch.__version__}, commit {meta['commit']}", plan, seconds, csv_path, png)
    if args.dry_run:
        return
    import csv as _csv

    # the CSV's rows of sections this call does not measure are kept (each section can be rerun alone)
    earlier = list(_csv.DictReader(open(csv_path))) if csv_path.exists() else []
    kept = [r for r in earlier if r.get("section") not in args.sections]
    rows: list[dict] = []
    save = lambda quiet=True: write_csv(csv_path, kept + [{**meta, **r} for r in rows], list(meta) + FIELDS,
                                        quiet=quiet)  # a row's own columns (a train run's commit) win
    if "matmul" in args.sections:
        run_matmul(args, rows, workloads)
        save()
    for section, paths in (("plan", PLAN_PATHS), ("update", UPDATE_PATHS)):
        if section not in args.sections:
            continue
        if args.quick:  # eager paths only: compiling takes 20-60 s per path on 2 cores
            paths = {k: v for k, v in paths.items() if not v.get("compile")}
        for workload in [w for w in workloads if section_of(w) == section]:
            for threads in args.threads:
                measure(args, rows, workload, {k: (v, threads) for k, v in paths.items()}, "idle")
                save()
    if "xla" in args.sections:
        run_xla(args, rows, workloads)
        save()
    if "train" in args.sections:
        args.save = save
        run_train(args, rows, earlier)
        save()
    if "busy" in args.sections:
        if not args.quick:
            run_busy(args, rows)
        else:
            emit(rows, dict(section="busy", note="not measured: skipped by --quick (compiles and a busy core for minutes)"))
        save()
    save(quiet=False)
    plot(kept + rows, png, f"cpu_roofline, {meta['device']}, {meta['date']}, commit {meta['commit']}, torch {meta['torch']}")


if __name__ == "__main__":
    main()
