"""The benchmark scripts on CPU: small sizes said so, every row labelled by the code path that ran,
a CSV (and PNG) always written, no `nan` printed for a row that was not measured (its note says why)."""
import csv
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def bench(script, args, timeout=600, **env):
    return subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "WANDB_MODE": "disabled", "MUJOCO_GL": "disable",
                                                "OMP_NUM_THREADS": "1", **env})


def check_rows(rows, value_key):
    """Measured rows are finite and positive; unmeasured ones are empty with a reason."""
    for r in rows:
        if r[value_key] == "":
            assert r["note"].startswith("not measured: "), r
        else:
            assert math.isfinite(float(r[value_key])) and float(r[value_key]) > 0, r
        assert r["commit"] and r["date"] and r["device"], r


def test_step_rate_quick_on_cpu(tmp_path):
    """--quick: plan, update and the faithful loop measured; MJX rows present but not measured, with why."""
    out = tmp_path / "rates.csv"
    proc = bench("step_rate.py", ["--quick", "--device", "cpu", "--csv", str(out)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "SMALL sizes" in proc.stdout and "roughly" in proc.stdout and str(out) in proc.stdout
    assert "nan" not in proc.stdout.lower()
    # its plan, table and paths only: no library warnings, no nested training run's banner or summary
    both = proc.stdout + proc.stderr
    for noise in ("settotalmass", "recompile", "WARNING", "Warning", "| model_size ", "finished: ", "run directory:"):
        assert noise not in both, (noise, both[-3000:])
    rows = list(csv.DictReader(open(out)))
    check_rows(rows, "value")
    by = {(r["section"], r["what"].split(" (")[0]): r for r in rows}
    assert by[("plan", "planner call")]["path"] == "torch eager fp32" and by[("plan", "planner call")]["value"]
    assert by[("update", "one update")]["path"] == "eager fp32" and by[("update", "one update")]["value"]
    assert by[("e2e", "faithful")]["value"] and "planner torch eager fp32" in by[("e2e", "faithful")]["path"]
    for skipped in [("env", "MJX cheetah-run step"), ("e2e", "fast")]:
        assert by[skipped]["value"] == "" and "--quick" in by[skipped]["note"], by[skipped]
    assert out.with_suffix(".png").stat().st_size > 10_000


def test_step_rate_dry_run_writes_nothing(tmp_path):
    proc = bench("step_rate.py", ["--dry-run", "--csv", str(tmp_path / "x" / "r.csv")], timeout=120)
    assert proc.returncode == 0 and "roughly" in proc.stdout and "variants: off, grouped, grouped+bf16" in proc.stdout
    assert list(tmp_path.iterdir()) == []


@pytest.mark.extended
def test_step_rate_smoke_on_cpu(tmp_path):
    """Every section at small sizes, eager variant (MJX compiles here: a few minutes; the compiled
    variant's first calls take minutes more on a CPU and are covered by tests/test_speed_flags.py).
    Not in CI: the --quick test above covers the script, tests/test_mjx_env.py and
    tests/test_vector_trainer.py the MJX parts."""
    pytest.importorskip("mujoco_playground")
    out = tmp_path / "rates.csv"
    proc = bench("step_rate.py", ["--device", "cpu", "--variants", "off", "--strict", "--repeats", "3", "--budget", "1",
                                  "--e2e-seconds", "15", "--csv", str(out)], timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "nan" not in proc.stdout.lower()
    rows = list(csv.DictReader(open(out)))
    got = {(r["section"], r["what"].split(" (")[0], r["size"], r["variant"]) for r in rows}
    for want in [("plan", "planner call", "E=1"), ("plan", "planner throughput", "E=4"),
                 ("update", "one update", "B=32"), ("update", "one update", "B=64"), ("e2e", "faithful", "E=1"),
                 ("e2e", "fast", "E=4"), ("env", "MJX cheetah-run step", "E=4")]:
        assert (*want, "-" if want[0] == "env" else "off") in got, (want, sorted(got))
    for r in rows:  # everything measured, except an e2e rate on a machine too busy for a steady window
        assert r["sizes"] == "small (CPU smoke)" and (r["value"] != "" or r["section"] == "e2e"), r
    assert {r["path"] for r in rows if r["section"] == "plan"} == {"torch eager fp32"}
    check_rows(rows, "value")


@pytest.mark.parametrize("interpret", ["1", "0"])
def test_denoise_profile_smoke_on_cpu(tmp_path, interpret):
    """Eager always; the Triton kernels only where they can run (interpreted), else a row that says why
    instead of a torch measurement labelled triton. CSV and PNG written."""
    out = tmp_path / "d.csv"
    proc = bench("denoise_profile.py", ["--device", "cpu", "--quick", "--backends", "eager", "triton", "triton-fused",
                                        "--csv", str(out)], TRITON_INTERPRET=interpret)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "TINY widths on CPU" in proc.stdout and "nan" not in proc.stdout.lower()
    assert out.with_suffix(".png").stat().st_size > 10_000
    rows = list(csv.DictReader(open(out)))
    assert [r["backend"] for r in rows] == ["eager", "triton", "triton-fused"]
    eager, triton, fused = rows
    assert eager["path"] == "torch eager fp32" and float(eager["plan_ms"]) > 0 and float(eager["gflop_per_plan"]) > 0
    assert eager["pct_bf16_peak"] == "" and eager["commit"] and eager["date"]
    if interpret == "1":
        assert triton["path"] == "triton kernels (interpreted) fp32" and float(triton["plan_ms"]) > 0
        assert fused["path"] == "triton fused rollout (interpreted) fp32" and float(fused["plan_ms"]) > 0
        # the fused rollout: fewer launches per step and less matrix work than one launch per layer
        assert float(fused["launches_per_step"]) < float(triton["launches_per_step"]) / 5
        assert float(fused["model_gflop"]) < float(triton["model_gflop"])
    else:
        for r in (triton, fused):
            assert r["plan_ms"] == "" and "TRITON_INTERPRET=1" in r["note"], r


def test_offline_update_benchmark_smoke_on_cpu(tmp_path):
    """benchmarks/offline_update.py: every variant runs one size on CPU, rows are complete and finite."""
    out = tmp_path / "o.csv"
    proc = bench("offline_update.py", ["--device", "cpu", "--quick", "--repeats", "1", "--csv", str(out)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "roughly" in proc.stdout
    rows = list(csv.DictReader(open(out)))
    assert [r["variant"] for r in rows] == ["fp32", "bf16", "bf16+ckpt"]
    for r in rows:
        assert r["status"] == "ok" and float(r["ms_per_update"]) > 0 and math.isfinite(float(r["total_loss"]))
        assert r["model_size"] == "1" and r["params_M"] == "1.67" and r["commit"] and r["date"]


def test_env_rate_quick_on_cpu(tmp_path):
    """--quick on a CPU times dm_control in worker processes (MJX would compile for a minute)."""
    out = tmp_path / "e.csv"
    proc = bench("env_rate.py", ["--quick", "--steps", "20", "--csv", str(out)], timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = list(csv.DictReader(open(out)))
    assert [(r["task"], r["workers"]) for r in rows] == [("cheetah-run", "1"), ("cheetah-run", "2")]
    assert all(float(r["agent_steps_per_s"]) > 0 for r in rows)


def test_env_rate_pixels_on_cpu(tmp_path):
    """--pixels: CPU workers rendering 64x64 RGB frames (obs=rgb) through headless OpenGL; rows
    carry frames/s and the GL backend, and the PNG is written; a task without pixels is refused."""
    out = tmp_path / "p.csv"
    proc = bench("env_rate.py", ["--pixels", "--tasks", "cheetah-run", "--workers", "1", "--steps", "5",
                                 "--csv", str(out)], timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = list(csv.DictReader(open(out)))
    assert [(r["task"], r["workers"]) for r in rows] == [("cheetah-run", "1")] and rows[0]["note"] == ""
    assert float(rows[0]["frames_per_s"]) > 0 and rows[0]["gl"] in ("egl", "osmesa")
    assert out.with_suffix(".png").stat().st_size > 1000
    proc = bench("env_rate.py", ["--pixels", "--tasks", "hopper-hop", "--csv", str(out)], timeout=120)
    assert proc.returncode == 2 and "hopper-hop has no pixel observations" in proc.stderr


def test_cpu_roofline_quick_on_cpu(tmp_path):
    """--quick: the matmul rates and the eager paths of the plan and the update at tiny widths,
    each row with its path, GFLOP and share of the matmul rate; the sections that compile or need
    minutes are rows that say why; --replot redraws the PNG from the CSV."""
    out = tmp_path / "roofline.csv"
    proc = bench("cpu_roofline.py", ["--quick", "--sections", "matmul", "plan", "update", "busy", "--csv", str(out)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "TINY widths" in proc.stdout and "roughly" in proc.stdout
    rows = list(csv.DictReader(open(out)))
    by = {(r["section"], r["workload"], r["path_name"]): r for r in rows}
    for workload, names in (("plan m1", ("reference eager", "grouped eager")), ("update m1 B=64", ("reference eager", "fused eager"))):
        for name in names:
            r = by[(workload.split()[0], workload, name)]
            assert float(r["ms"]) > 0 and float(r["gflop"]) > 0 and 0 < float(r["pct_of_matmul"]) <= 100, r
    assert by[("plan", "plan m1", "grouped eager")]["path"] == "torch grouped eager fp32"
    assert by[("update", "update m1 B=64", "fused eager")]["path"] == "fused eager fp32"
    busy = [r for r in rows if r["section"] == "busy"]
    assert busy and busy[0]["note"].startswith("not measured: ")
    png = out.with_suffix(".png")
    assert png.stat().st_size > 10_000
    png.unlink()
    proc = bench("cpu_roofline.py", ["--replot", "--csv", str(out)], timeout=120)
    assert proc.returncode == 0 and png.exists(), proc.stderr[-2000:]


def test_xla_port_computes_the_package_numbers():
    """benchmarks/xla_reference.py --check: the JAX port's imagined values and update losses against
    the package's, so that the XLA timings compare the same computation."""
    proc = bench("xla_reference.py", ["--check"], timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "the XLA port computes the package's numbers" in proc.stdout
