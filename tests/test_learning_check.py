"""benchmarks/learning_check.py end to end at tiny sizes: runs, CSVs, PNG, and a rerun that keeps
finished runs."""
import csv
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "learning_check.py"
TINY = ["episode_length=30", "seed_steps=30", "model_size=1", "enc_dim=32", "mlp_dim=32", "latent_dim=16",
        "num_samples=16", "num_elites=4", "num_pi_trajs=2", "diffusion_steps=3", "batch_size=8"]


def run(tmp_path):
    cmd = [sys.executable, str(SCRIPT), "--tasks", "cartpole-balance", "--seeds", "1", "--steps", "60",
           "--eval-freq", "30", "--jobs", "1", "--random-episodes", "2", "--runs-dir", str(tmp_path / "runs"),
           "--out", str(tmp_path / "out"), "--extra", *TINY]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, WANDB_MODE="disabled", MUJOCO_GL="disable"))


def test_learning_check_writes_curves_summary_and_plot(tmp_path):
    proc = run(tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "cartpole-balance seed 1: exit 0" in proc.stdout
    rows = list(csv.DictReader(open(tmp_path / "out" / "eval_returns.csv")))
    assert [r["step"] for r in rows if r["seed"] == "1"] == ["0", "30", "60"]
    assert len([r for r in rows if r["seed"] == "random"]) == 2
    (summary,) = list(csv.DictReader(open(tmp_path / "out" / "summary.csv")))
    assert summary["task"] == "cartpole-balance" and summary["seeds_finished"] == "1"
    # random episodes ran at the run's episode length: at most 2 reward per agent step (repeat 2)
    assert 0 <= float(summary["random_mean"]) <= 60
    assert (tmp_path / "out" / "learning_check.png").stat().st_size > 10_000
    cfg = (tmp_path / "runs" / "cartpole-balance" / "s1" / "config.yaml").read_text()
    assert "energy_pairing: reference" in cfg and "profile: cpu_small" in cfg

    again = run(tmp_path)  # a finished run is kept, not retrained
    assert again.returncode == 0 and "seed 1: exit" not in again.stdout
