"""A run under the operating system's control: signals (preemption), one process per run directory,
a disk that fills up, and the lines a run ends with. Real CLI runs in subprocesses."""
import csv
import os
import signal
import subprocess
import sys
import time

import pytest

from mbdpo_fast.data.checkpoint import load_checkpoint
from mbdpo_fast.trainers.common import EXIT_STOPPED

from helpers import TINY, run_cli

ENV = dict(os.environ, WANDB_MODE="disabled", MUJOCO_GL="disable", HYDRA_FULL_ERROR="0", OMP_NUM_THREADS="1")
# 50-step episodes, a train row every 10 steps, an evaluation every 100, checkpoints only by steps
ARGS = TINY + ["log_every=10", "eval_freq=100", "checkpoint_freq=100", "checkpoint_minutes=0", "threads=1"]


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def steps_of(path):
    return [int(float(r["step"])) for r in rows(path)] if path.exists() else []


def start(args, run_dir, tmp_path):
    out, err = open(tmp_path / f"{run_dir.name}.out", "w"), open(tmp_path / f"{run_dir.name}.err", "w")
    proc = subprocess.Popen([sys.executable, "-m", "mbdpo_fast.train", *args, f"hydra.run.dir={run_dir}"],
                            cwd=tmp_path, env=ENV, stdout=out, stderr=err)
    return proc, tmp_path / f"{run_dir.name}.out", tmp_path / f"{run_dir.name}.err"


def wait_for(cond, proc, timeout=300):
    deadline = time.time() + timeout
    while not cond():
        assert proc.poll() is None, "the run ended before the awaited point"
        assert time.time() < deadline, "timed out"
        time.sleep(0.02)


@pytest.mark.slow
def test_sigterm_mid_episode_checkpoints_and_resume_loses_no_row(tmp_path):
    """SIGTERM mid-episode: the run finishes its step, checkpoints there, prints how to resume and
    exits with EXIT_STOPPED; resume=true continues from that step, and every train row (one per 10
    steps) and evaluation row (one per 100) is there exactly once."""
    run_dir = tmp_path / "run"
    args = ARGS + ["steps=400"]
    proc, out, err = start(args, run_dir, tmp_path)
    # past seeding (60 steps) and an evaluation, in the middle of an episode
    wait_for(lambda: any(s >= 120 and s % 50 not in (0, 40) for s in steps_of(run_dir / "train.csv")), proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == EXIT_STOPPED, err.read_text()[-2000:]
    stopped = load_checkpoint(run_dir / "checkpoint.pt")["trainer"]["step"]
    assert 120 <= stopped < 400 and stopped % 50, stopped  # mid-episode, not at a scheduled checkpoint
    text = out.read_text()
    assert f"SIGTERM: checkpoint written at step {stopped}; resume with python -m mbdpo_fast.train" in text, text
    assert "resume=true" in text.splitlines()[-1] and "Traceback" not in err.read_text()
    assert max(steps_of(run_dir / "train.csv")) == stopped

    p = run_cli("mbdpo_fast.train", args + ["resume=true", f"hydra.run.dir={run_dir}"], cwd=tmp_path,
                env={"OMP_NUM_THREADS": "1"})
    assert p.returncode == 0 and f"resumed {run_dir / 'checkpoint.pt'} at step {stopped}" in p.stdout, p.stderr[-2000:]
    train = steps_of(run_dir / "train.csv")
    assert train == sorted(set(train)), train  # nothing twice
    assert set(range(10, 401, 10)) <= set(train) and set(train) <= set(range(10, 401, 10)) | {stopped}, train
    assert steps_of(run_dir / "eval.csv") == [0, 100, 200, 300, 400]
    assert load_checkpoint(run_dir / "checkpoint.pt")["trainer"]["step"] == 400


def test_a_second_signal_ends_the_process_at_once(tmp_path):
    """The first signal is a request the loop polls; the second is the signal's default action."""
    script = (
        "import os, signal, time\n"
        "from mbdpo_fast.trainers.common import StopSignals\n"
        "with StopSignals() as stop:\n"
        "    os.kill(os.getpid(), signal.SIGUSR1)\n"
        "    time.sleep(0.2)\n"
        "    assert stop.requested and stop.name == 'SIGUSR1'\n"
        "    print('requested', flush=True)\n"
        "    os.kill(os.getpid(), signal.SIGUSR1)\n"
        "    time.sleep(5)\n"
        "print('not reached')\n")
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=ENV)
    assert p.returncode == -signal.SIGUSR1 and p.stdout.strip() == "requested", (p.returncode, p.stdout, p.stderr)


def test_a_signal_during_an_evaluation_abandons_it_and_it_runs_again_on_resume(tmp_path):
    """SIGUSR1 (SLURM's warning) while evaluating: no evaluation row for the step, a checkpoint, exit
    EXIT_STOPPED; the resumed run evaluates that step."""
    run_dir = tmp_path / "run"
    args = ARGS + ["steps=100", "eval_episodes=4"]  # the step-0 evaluation: 4 episodes of 50 steps
    proc, out, err = start(args, run_dir, tmp_path)
    wait_for(lambda: (run_dir / "eval.csv").exists(), proc)
    time.sleep(0.5)
    proc.send_signal(signal.SIGUSR1)
    assert proc.wait(timeout=120) == EXIT_STOPPED, err.read_text()[-2000:]
    assert steps_of(run_dir / "eval.csv") == [] and load_checkpoint(run_dir / "checkpoint.pt")["trainer"]["step"] == 0
    p = run_cli("mbdpo_fast.train", args + ["resume=true", f"hydra.run.dir={run_dir}"], cwd=tmp_path,
                env={"OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stderr[-2000:]
    assert steps_of(run_dir / "eval.csv") == [0, 100]


def test_a_second_process_on_a_run_directory_is_refused_and_a_killed_holder_blocks_nothing(tmp_path):
    run_dir = tmp_path / "run"
    args = ARGS + ["steps=100000", "eval_freq=100000"]
    proc, _, err = start(args, run_dir, tmp_path)
    try:
        wait_for(lambda: (run_dir / "checkpoint.pt").exists(), proc)
        hydra_files = sorted(p.stat().st_mtime_ns for p in (run_dir / ".hydra").iterdir())
        p = run_cli("mbdpo_fast.train", args + ["resume=true", f"hydra.run.dir={run_dir}"], cwd=tmp_path)
        errors = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
        assert p.returncode == 2 and len(errors) == 1, p.stderr[-2000:]
        assert f"is in use by pid {proc.pid} on " in errors[0] and "mbdpo_fast.train" in errors[0], errors[0]
        assert sorted(p.stat().st_mtime_ns for p in (run_dir / ".hydra").iterdir()) == hydra_files  # untouched
    finally:
        proc.kill()
        proc.wait()
    # killed: the operating system released the lock with the process
    p = run_cli("mbdpo_fast.train", ARGS + ["steps=150", "resume=true", f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert p.returncode == 0 and "resumed" in p.stdout, p.stderr[-2000:]


@pytest.mark.parametrize("failing", ["checkpoint", "replay file"])
def test_a_full_disk_ends_the_run_with_one_line_and_the_previous_checkpoint_resumes(tmp_path, failing):
    """The second checkpoint's (or its replay file's) temporary file is a link to /dev/full, whose
    writes fail with ENOSPC as a full disk's do: one error line naming the file and the cause, the
    checkpoint of step 100 and its replay file intact, and the run resumes from them."""
    run_dir = tmp_path / "run"
    args = ARGS + ["steps=300", "eval_freq=1000"]
    proc, _, err = start(args, run_dir, tmp_path)
    name = "checkpoint.pt" if failing == "checkpoint" else "replay_000000200.pt"
    wait_for(lambda: (run_dir / "checkpoint.pt").exists(), proc)
    (run_dir / f".{name}.tmp{proc.pid}").symlink_to("/dev/full")
    assert proc.wait(timeout=300) == 2
    text = err.read_text()
    errors = [ln for ln in text.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in text, text[-3000:]
    assert f"cannot write the {failing} {run_dir / name}: No space left on device (ENOSPC)" in errors[0], errors[0]
    assert "the run stopped at step 200" in errors[0] and "unchanged" in errors[0], errors[0]
    ckpt = load_checkpoint(run_dir / "checkpoint.pt")
    assert ckpt["trainer"]["step"] == 100 and (run_dir / ckpt["replay_file"]).exists()
    assert sorted(p.name for p in run_dir.glob("replay_*.pt")) == ["replay_000000100.pt"]
    assert not (run_dir / f".{name}.tmp{proc.pid}").exists()
    p = run_cli("mbdpo_fast.train", args + ["resume=true", f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert p.returncode == 0 and "at step 100" in p.stdout, p.stderr[-2000:]
    assert load_checkpoint(run_dir / "checkpoint.pt")["trainer"]["step"] == 300


def test_a_run_ends_with_a_summary_a_person_reads(tmp_path):
    run_dir = tmp_path / "run"
    p = run_cli("mbdpo_fast.train", ARGS + ["steps=100", f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    last = p.stdout.strip().splitlines()[-6:]
    reward = float(rows(run_dir / "eval.csv")[-1]["reward"])
    assert last[0].startswith("finished: 100 env steps in 0 min ") and "env steps/s" in last[0], last
    assert last[1] == f"last evaluation: return {reward:.1f} at step 100 ({run_dir / 'eval.csv'})", last
    assert last[2] == f"run directory: {run_dir}"
    assert last[3] == f"  evaluate: python -m mbdpo_fast.evaluate checkpoint={run_dir / 'checkpoint.pt'}"
    assert last[4].startswith("  resume:   python -m mbdpo_fast.train ") and "resume=true" in last[4]
    assert f"hydra.run.dir={run_dir}" in last[4] and last[4].endswith("steps=<more>")
    assert last[5].startswith("  plot:     python benchmarks/plot_returns.py ")
    assert "done: {" not in p.stdout


@pytest.mark.slow
def test_submitit_requeues_a_preempted_sweep_job_which_resumes_from_its_checkpoint(tmp_path):
    """Hydra's submitit launcher (local executor): submitit's preemption signal (USR2) to the job
    process makes the run checkpoint, then submitit requeues the job, and it resumes from there."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    sweep = tmp_path / "sweep"
    args = ["-m", *ARGS, "steps=400", "hydra/launcher=submitit_local", f"hydra.sweep.dir={sweep}",
                   "hydra.launcher.timeout_min=30"]
    proc = subprocess.Popen([sys.executable, "-m", "mbdpo_fast.train", *args], cwd=tmp_path, env=ENV,
                            stdout=open(tmp_path / "out", "w"), stderr=open(tmp_path / "err", "w"))
    run_dir = sweep / "cheetah-run" / "s1"
    try:
        wait_for(lambda: any(s >= 120 for s in steps_of(run_dir / "train.csv")), proc)
        jobs = [int(p) for p in os.listdir("/proc") if p.isdigit() and _cmdline(p).find("submitit.core._submit") >= 0]
        assert len(jobs) == 1, jobs
        os.kill(jobs[0], signal.SIGUSR2)
        assert proc.wait(timeout=600) == 0, (tmp_path / "err").read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    logs = "".join(p.read_text() for p in sweep.rglob("*_log.out"))
    assert "SIGUSR2: checkpoint written at step" in logs and "resumed" in logs, logs[-3000:]
    assert load_checkpoint(run_dir / "checkpoint.pt")["trainer"]["step"] == 400
    train = steps_of(run_dir / "train.csv")
    assert train == sorted(set(train)) and set(range(10, 401, 10)) <= set(train), train
    assert steps_of(run_dir / "eval.csv") == [0, 100, 200, 300, 400]


def _cmdline(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
