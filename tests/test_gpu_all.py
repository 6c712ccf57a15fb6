"""benchmarks/gpu_all.sh --dry-run: every step of the one GPU command checked on a CPU machine
(files present, each benchmark's options and plan accepted, the CUDA tests collected), and the
steps' time limits within one 8-minute lease."""
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_all_dry_run(tmp_path):
    """Without PY the script runs the project's .venv interpreter where there is one (make install's)."""
    env = {**os.environ, "OUT": str(tmp_path), "OMP_NUM_THREADS": "1"}
    env.pop("TRITON_INTERPRET", None)
    env.pop("PY", None)
    venv = (ROOT / ".venv" / "bin" / "python").is_file()
    if not venv:
        env["PY"] = sys.executable
    p = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_all.sh"), "--dry-run"], capture_output=True, text=True,
                       timeout=600, env=env, cwd=ROOT)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "dry run: every step checked" in p.stdout
    steps = re.findall(r"^== (\S+) \(limit (\d+) s\)", p.stdout, re.M)
    if venv:
        assert re.search(r"^== cuda_tests \(limit \d+ s\): \.venv/bin/python -m pytest", p.stdout, re.M), p.stdout[:2000]
    assert {s for s, _ in steps} >= {"cuda_tests", "plan_eager_graphs_triton", "plan_fused_rollout", "plan_compiled", "update",
                                       "denoise_profile", "offline_update", "mjx_bridge", "mjx_quadruped", "mjx_dog", "mjx_pixels"}
    assert sum(int(t) for _, t in steps) <= 480
    for name, _ in steps[1:]:  # each benchmark printed its plan with the GPU-side variants
        assert "roughly" in (tmp_path / f"{name}.dry.log").read_text(), name
    assert "triton-fp32" in (tmp_path / "plan_eager_graphs_triton.dry.log").read_text()
    assert "triton-fused" in (tmp_path / "plan_fused_rollout.dry.log").read_text()
    assert not list(tmp_path.glob("*.csv"))  # a dry run measures nothing


def test_gpu_learning_dry_run(tmp_path):
    """benchmarks/gpu_learning.sh --dry-run: time_to_return.py on the GPU's configurations (the paper's
    mode against profile=fast on walker-walk) accepts its options and prints its plan; nothing trains."""
    env = {**os.environ, "OUT": str(tmp_path), "PY": sys.executable, "OMP_NUM_THREADS": "1"}
    p = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_learning.sh"), "--dry-run"], capture_output=True,
                       text=True, timeout=300, env=env, cwd=ROOT)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "paper: profile=paper" in p.stdout and "fast: profile=fast" in p.stdout and "roughly" in p.stdout
    assert "3.5 min of wall clock per run" in p.stdout
    assert not list(tmp_path.glob("*.csv"))
