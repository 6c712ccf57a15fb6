"""benchmarks/time_to_return.py end to end at tiny sizes: both modes train, every evaluation is
recorded with its wall clock and evaluation time, summary/PNG are written, a repeated command keeps
finished runs, and an interrupted one resumes."""
import csv
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "time_to_return.py"


def run(tmp_path, *extra, timeout=900):
    cmd = [sys.executable, str(SCRIPT), "--quick", "--task", "cartpole-balance", "--runs-dir", str(tmp_path / "runs"),
           "--out", str(tmp_path / "out"), "--configs", "paper", "--variant", "e2=num_envs=2 batch_size=16", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, WANDB_MODE="disabled", MUJOCO_GL="disable", OMP_NUM_THREADS="1"))


def test_time_to_return_records_every_evaluation_with_its_wall_clock(tmp_path):
    proc = run(tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "paper seed 1: exit 0" in proc.stdout and "e2 seed 1: exit 0" in proc.stdout
    rows = list(csv.DictReader(open(tmp_path / "out" / "evals.csv")))
    for name in ("paper", "e2"):
        ev = [r for r in rows if r["config"] == name]
        assert [int(r["step"]) for r in ev] == [0, 50, 100, 150], ev
        walls = [float(r["wall_s"]) for r in ev]
        evals = [float(r["eval_s"]) for r in ev]
        # wall clock from the command's start: the start-up is in the first one; both only grow
        assert walls[0] > 0.5 and walls == sorted(walls) and evals == sorted(evals) and 0 < evals[-1] < walls[-1]
        assert ev[0]["commit"] and ev[0]["machine"]
    summary = {r["config"]: r for r in csv.DictReader(open(tmp_path / "out" / "summary.csv"))}
    assert set(summary) == {"paper", "e2"} and summary["paper"]["seeds"] == "1"
    assert summary["paper"]["return_at_100"] != ""
    assert (tmp_path / "out" / "time_to_return.png").stat().st_size > 10_000
    cfg = (tmp_path / "runs" / "cartpole-balance" / "e2" / "s1" / "config.yaml").read_text()
    assert "num_envs: 2" in cfg

    # repeated: finished runs are kept (nothing trains), the tables are written again
    before = (tmp_path / "runs" / "cartpole-balance" / "paper" / "s1" / "eval.csv").read_text()
    again = run(tmp_path)
    assert again.returncode == 0 and "seed 1: exit" not in again.stdout, again.stderr[-2000:]
    assert (tmp_path / "runs" / "cartpole-balance" / "paper" / "s1" / "eval.csv").read_text() == before


def test_time_to_return_refuses_bad_input_before_running(tmp_path):
    for args, msg in ((["--configs", "papr"], "unknown configuration 'papr'"),
                      (["--variant", "novalue"], "is not NAME="),
                      (["--task", "walker-wlk"], "unknown task")):
        proc = run(tmp_path, *args, timeout=120)
        assert proc.returncode == 2 and msg in proc.stderr, proc.stderr
        assert not (tmp_path / "runs").exists()
