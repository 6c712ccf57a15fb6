"""benchmarks/step_rate.py runs on CPU with small sizes (a smoke run) and says so."""
import csv
import math
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "step_rate.py"


@pytest.mark.slow
def test_step_rate_smoke_on_cpu(tmp_path):
    pytest.importorskip("mujoco_playground")
    out = tmp_path / "rates.csv"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--variants", "off", "--strict",
                           "--repeats", "3", "--budget", "1", "--e2e-seconds", "15", "--csv", str(out)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "SMALL sizes on CPU" in proc.stdout
    rows = list(csv.DictReader(open(out)))
    got = {(r["section"], r["what"].split(" (")[0], r["size"]) for r in rows}
    for want in [("env", "MJX cheetah-run step", "E=4"), ("plan", "planner call", "E=1"),
                 ("plan", "planner throughput", "E=4"), ("update", "one update", "B=32"),
                 ("update", "one update", "B=64"), ("e2e", "faithful", "E=1"), ("e2e", "fast", "E=4")]:
        assert want in got, (want, sorted(got))
    for r in rows:
        assert r["sizes"] == "small (CPU smoke)" and r["device"] and r["commit"] and r["date"]
        assert math.isfinite(float(r["value"])) and float(r["value"]) > 0, r


def test_denoise_profile_smoke_on_cpu(tmp_path):
    """Eager and the interpreted Triton kernels at one tiny size; CSV and PNG written."""
    script = SCRIPT.parent / "denoise_profile.py"
    out, png = tmp_path / "d.csv", tmp_path / "d.png"
    proc = subprocess.run([sys.executable, str(script), "--device", "cpu", "--samples", "16", "--envs", "1",
                           "--repeats", "1", "--budget", "0", "--csv", str(out), "--png", str(png)],
                          capture_output=True, text=True, timeout=600,
                          env={**__import__("os").environ, "TRITON_INTERPRET": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "SMALL sizes on CPU" in proc.stdout and png.stat().st_size > 1000
    rows = list(csv.DictReader(open(out)))
    assert {r["backend"] for r in rows} == {"eager", "triton"}
    for r in rows:
        assert float(r["plan_ms"]) > 0 and float(r["gflop_per_plan"]) > 0 and r["commit"] and r["date"]


def test_offline_update_benchmark_smoke_on_cpu(tmp_path):
    """benchmarks/offline_update.py: every variant runs one size on CPU, rows are complete and finite."""
    out = tmp_path / "o.csv"
    proc = subprocess.run([sys.executable, str(SCRIPT.parent / "offline_update.py"), "--device", "cpu",
                           "--repeats", "1", "--csv", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = list(csv.DictReader(open(out)))
    assert [r["variant"] for r in rows] == ["fp32", "bf16", "bf16+ckpt"]
    for r in rows:
        assert r["status"] == "ok" and float(r["ms_per_update"]) > 0 and math.isfinite(float(r["total_loss"]))
        assert r["model_size"] == "1" and r["params_M"] == "1.67" and r["commit"] and r["date"]
