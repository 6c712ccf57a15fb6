"""Ahead-of-time compile report of the planner's Triton kernels, without a GPU.

    python tools/kernel_report.py                                  # every preset, fp32+bf16, A=6/38, sm_90+sm_80
    python tools/kernel_report.py --presets 1 5 19 --archs 90 --check   # what CI checks (exit 1 on a violation)

For each model preset, dtype (kernels' dot dtype: bf16_plan on/off) and action dimension, a planner
with kernels=triton plans once on the meta device (nothing is computed) while every Triton launch
is recorded with the exact compile-time parameters its launcher chose (mbdpo_fast/kernels/recording.py).
Each distinct launch is compiled with `triton.compile` for `GPUTarget("cuda", arch, 32)`; the PTX
is assembled by Triton's bundled ptxas (`-v`) for registers, spills and stack, the shared memory
comes from the compiled metadata, and the tensor-core instruction kind from the PTX (wgmma:
Hopper's warpgroup MMA; mma.sync: the Ampere-style MMA; none: FMA only). Blocks per SM follow the
SM's limits (registers in 256-per-warp units, shared memory plus the 1 KB the driver reserves per
block, 2048 threads, 32 blocks).

Writes a CSV (default benchmarks/results/kernel_fit/kernel_fit.csv) with one row per (arch,
preset, dtype, action dim, distinct launch). --check fails (exit 1) if any launch exceeds the SM's
shared memory at any preset, or spills registers at presets 1-19.
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import commit  # noqa: E402  (the benchmarks' stamp: GIT_COMMIT or git's short HEAD)
DEFAULT_CSV = ROOT / "benchmarks" / "results" / "kernel_fit" / "kernel_fit.csv"
PRESETS = (1, 5, 19, 48, 317)
ACTION_DIMS = (6, 38)  # cheetah-run .. humanoid/dog (the paper's smallest and largest dm_control)
# Per SM: shared memory (bytes) a block may use at most / the SM holds, registers, threads, blocks.
SM = {90: dict(smem_block=227 * 1024, smem_sm=228 * 1024, regs=65536, threads=2048, blocks=32),
      80: dict(smem_block=163 * 1024, smem_sm=164 * 1024, regs=65536, threads=2048, blocks=32)}
NO_SPILL_PRESETS = (1, 5, 19)
ENVS = (1, 256)  # the launchers' block sizes depend on the rows M = E x samples: both regimes
FIELDS = ["arch", "kernel", "preset", "dtype", "action_dim", "envs", "layer", "launches_per_plan", "block", "num_warps",
          "num_stages", "maxnreg", "registers", "spill_stores", "spill_loads", "stack_bytes", "shared_bytes",
          "shared_limit", "blocks_per_sm", "tensor_core", "fits", "spills", "source_hash", "commit", "date", "triton"]


def record(preset: int, bf16: bool, action_dim: int, envs: int = 1, samples: int = 512, steps: int = 20,
           horizon: int = 3, fused_rollout: bool = False):
    """The Triton launches of one plan call for `envs` environments at this preset (a Recording, see
    kernels/recording.py)."""
    from mbdpo_fast.config import default_config, resolve
    from mbdpo_fast.planner import record_plan_launches

    cfg = resolve(default_config(model_size=preset, device="cpu", work_dir="unused", kernels="triton",
                                 bf16_plan=bf16, num_samples=samples, diffusion_steps=steps, horizon=horizon,
                                 fused_rollout=fused_rollout),
                  24, action_dim)
    return record_plan_launches(cfg, envs)


def describe(launch) -> tuple[str, str]:
    """(layer, block) strings of a launch for the CSV."""
    c = dict(launch.constexprs)
    if launch.kernel in ("_policy_kernel", "_heads_kernel"):
        blocks = "x".join(str(c[k]) for k in ("BLOCK_M", "BLOCK_H", "BLOCK_K"))
        if launch.kernel == "_policy_kernel":
            part = f"policy rows={c['R']}/{c['N']}"
        else:
            part = "+".join(k.lower() for k in ("GATHER", "REWARD", "ENERGY", "DYNAMICS") if c[k])
            part += f"q head {c['Q']}" if c["Q"] else ""
            part += "+termination" if c["DYNAMICS"] and c["EPISODIC"] else ""
        return f"{part} L={c['L']} mlp={c['M1']} A={c['A']} task_dim={c['TD']}", blocks
    blocks = "x".join(str(c[k]) for k in ("BLOCK_M", "BLOCK_N", "BLOCK_K", "BLOCK_C", "BLOCK_D") if k in c)
    if launch.kernel == "_fused_linear_kernel":
        act = {0: "none", 1: "mish", 2: "simnorm"}[c["ACT"]]
        k = f"{c['K1']}+{c['K2']}" if c["K2"] else str(c["K1"])
        return f"K={k} N={c['N']} LN={int(bool(c['LN']))} act={act}", blocks
    if launch.kernel == "_two_hot_value_kernel":
        return f"K={c['K']} bins={c['NB']}", blocks
    return f"N={c['N']} D={c['D']} elites={c['NUM_ELITES']} next={int(bool(c['HAS_NEXT']))} " \
           f"eps_given={int(bool(c['EPS_GIVEN']))}", blocks


def _jit(name: str):
    from mbdpo_fast.kernels import recording

    for module, attr in recording.kernel_functions():
        if attr == name:
            return recording._jit_of(getattr(module, attr))
    raise KeyError(name)


def source_hash(kernel: str) -> str:
    """Triton's hash of a kernel's source and the functions it calls: a CSV row is stale when it differs."""
    return _jit(kernel).cache_key[:16]


def _ptxas() -> str:
    import triton.backends.nvidia as nv

    return os.path.join(os.path.dirname(nv.__file__), "bin", "ptxas")


def compile_one(launch, arch: int, cache: dict) -> dict:
    """Compile one recorded launch for sm_<arch>; registers/spills/stack from ptxas -v, shared
    memory from Triton's metadata, tensor-core kind from the PTX. Cached by the launch's key."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    jit = _jit(launch.kernel)  # its cache_key hashes the kernel's source and the functions it calls
    key = hashlib.sha1(repr((launch.key(), arch, triton.__version__, jit.cache_key)).encode()).hexdigest()
    if key in cache:
        return cache[key]
    sig = {n: t for n, t in launch.signature}
    index = {n: i for i, (n, _) in enumerate(launch.signature)}
    attrs = {(index[n],): [["tt.divisibility", 16]] for n in launch.divisible}
    src = ASTSource(jit, sig, constexprs=dict(launch.constexprs), attrs=attrs)
    options = {"num_warps": launch.num_warps, "num_stages": launch.num_stages}
    if launch.maxnreg is not None:
        options["maxnreg"] = launch.maxnreg
    compiled = triton.compile(src, target=GPUTarget("cuda", arch, 32), options=options)
    ptx = compiled.asm["ptx"]
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "k.ptx").write_text(ptx)
        sm = f"sm_{arch}a" if arch == 90 else f"sm_{arch}"
        out = subprocess.run([_ptxas(), f"-arch={sm}", "-v", str(Path(tmp) / "k.ptx"), "-o", str(Path(tmp) / "k.o")],
                             capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"ptxas failed for {launch.kernel}: {out.stderr[-500:]}")
    info = out.stderr
    regs = int(re.search(r"Used (\d+) registers", info).group(1))
    stack, st, ld = (int(x) for x in re.search(
        r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", info).groups())
    tc = "wgmma" if "wgmma.mma_async" in ptx else "mma.sync" if "mma.sync" in ptx else "none"
    res = dict(registers=regs, stack_bytes=stack, spill_stores=st, spill_loads=ld, shared_bytes=int(compiled.metadata.shared),
               tensor_core=tc)
    cache[key] = res
    return res


def blocks_per_sm(arch: int, regs: int, shared: int, num_warps: int) -> int:
    lim = SM[arch]
    if shared > lim["smem_block"]:
        return 0
    regs_per_warp = -(-regs * 32 // 256) * 256
    by_regs = (lim["regs"] // regs_per_warp) // num_warps
    by_smem = lim["smem_sm"] // (shared + 1024) if shared else lim["blocks"]
    by_threads = lim["threads"] // (32 * num_warps)
    return int(min(by_regs, by_smem, by_threads, lim["blocks"]))


def report(presets, archs, dtypes, action_dims, cache_path: Path | None = None, log=print, envs=ENVS,
           fused_rollout: bool = False) -> list[dict]:
    import triton

    cache = json.loads(cache_path.read_text()) if cache_path and cache_path.is_file() else {}
    rows, meta = [], dict(commit=commit(), date=dt.date.today().isoformat(), triton=triton.__version__)
    for preset in presets:
        for dtype in dtypes:
            for adim, n_envs in [(a, e) for a in action_dims for e in envs]:
                rec = record(preset, dtype == "bf16", adim, n_envs, fused_rollout=fused_rollout)
                counts = Counter(launch.key() for launch in rec.triton)
                first = {}
                for launch in rec.triton:
                    first.setdefault(launch.key(), launch)
                for arch in archs:
                    for k, launch in first.items():
                        res = compile_one(launch, arch, cache)
                        layer, block = describe(launch)
                        bps = blocks_per_sm(arch, res["registers"], res["shared_bytes"], launch.num_warps)
                        spills = res["spill_stores"] + res["spill_loads"] > 0
                        rows.append(dict(arch=f"sm_{arch}", kernel=launch.kernel.strip("_"), preset=preset, dtype=dtype,
                                         action_dim=adim, envs=n_envs, layer=layer, launches_per_plan=counts[k], block=block,
                                         num_warps=launch.num_warps, num_stages=launch.num_stages,
                                         maxnreg=launch.maxnreg or "", **res,
                                         shared_limit=SM[arch]["smem_block"], blocks_per_sm=bps, fits=bps > 0,
                                         spills=spills, source_hash=source_hash(launch.kernel), **meta))
                log(f"preset {preset:>3} {dtype} A={adim} E={n_envs}: {len(first)} distinct launches, "
                    f"{len(rec.triton)} per plan; compiled for {', '.join(f'sm_{a}' for a in archs)}")
                if cache_path:  # after each plan: a run cut short keeps what it compiled
                    cache_path.parent.mkdir(parents=True, exist_ok=True)
                    cache_path.write_text(json.dumps(cache))
    return rows


def violations(rows: list[dict]) -> list[str]:
    """Launches that cannot run (shared memory over the SM's limit) or spill at presets 1-19."""
    out = []
    for r in rows:
        where = (f"{r['arch']} {r['kernel']} preset {r['preset']} {r['dtype']} A={r['action_dim']} E={r['envs']} "
                 f"{r['layer']} block {r['block']}")
        if not r["fits"]:
            out.append(f"{where}: shared memory {r['shared_bytes']} B > {r['shared_limit']} B")
        if r["spills"] and int(r["preset"]) in NO_SPILL_PRESETS:
            out.append(f"{where}: spills {r['spill_stores']} B stores / {r['spill_loads']} B loads "
                       f"({r['registers']} registers)")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--presets", type=int, nargs="+", default=list(PRESETS), choices=PRESETS)
    ap.add_argument("--archs", type=int, nargs="+", default=[90, 80], choices=sorted(SM))
    ap.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    ap.add_argument("--action-dims", type=int, nargs="+", default=list(ACTION_DIMS))
    ap.add_argument("--envs", type=int, nargs="+", default=list(ENVS))
    ap.add_argument("--fused-rollout", action="store_true",
                    help="the planner with fused_rollout=true (default CSV: kernel_fit_fused_rollout.csv)")
    ap.add_argument("--csv", default=None, help=f"default {DEFAULT_CSV.relative_to(ROOT)}")
    ap.add_argument("--cache", default=str(ROOT / "runs" / "kernel_report_cache.json"),
                    help="compile results by launch key (reruns skip what did not change)")
    ap.add_argument("--check", action="store_true", help="exit 1 if a launch does not fit or spills at presets 1-19")
    args = ap.parse_args(argv)
    t0 = time.time()
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        print("error: TRITON_INTERPRET=1 makes Triton interpret kernels instead of compiling them "
              "(unset it for this tool)", file=sys.stderr)
        return 2
    rows = report(args.presets, args.archs, args.dtypes, args.action_dims, Path(args.cache) if args.cache else None,
                  envs=args.envs, fused_rollout=args.fused_rollout)
    path = Path(args.csv) if args.csv else \
        DEFAULT_CSV.with_name("kernel_fit_fused_rollout.csv") if args.fused_rollout else DEFAULT_CSV
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, FIELDS)
        w.writeheader()
        w.writerows(rows)
    bad = violations(rows)
    print(f"{len(rows)} rows in {path} ({time.time() - t0:.0f} s); {len(bad)} violations")
    for b in bad:
        print("  " + b)
    return 1 if (args.check and bad) else 0


if __name__ == "__main__":
    sys.exit(main())
