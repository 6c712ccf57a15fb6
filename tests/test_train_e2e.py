"""End to end on dm_control cheetah-run (CPU): training, CSV, checkpoints, exact resume, CLIs."""
import csv

import pytest

from mbdpo_fast.train import run

from helpers import TINY, compose_cfg, run_cli


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


CLOCK = ("wall_s", "eval_s")


def without_clock(rows):
    """Evaluation rows without their wall-clock columns (which no two runs share)."""
    return [{k: v for k, v in r.items() if k not in CLOCK} for r in rows]


def check_clock(rows):
    """wall_s and eval_s only grow, across resumed commands too, and evaluation is a part of the wall clock."""
    walls, evals = [float(r["wall_s"]) for r in rows], [float(r["eval_s"]) for r in rows]
    assert walls == sorted(walls) and evals == sorted(evals) and all(0 < e < w for e, w in zip(evals, walls)), rows


COMMON = TINY + ["eval_freq=100", "checkpoint_freq=100"]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """The uninterrupted 200-step run both resume tests compare with."""
    d = tmp_path_factory.mktemp("full")
    run(compose_cfg(COMMON + ["steps=200"], d))
    return d


def test_resume_repeats_the_uninterrupted_run_exactly(tmp_path, full_run):
    common = COMMON
    run(compose_cfg(common + ["steps=100"], tmp_path / "split"))
    run(compose_cfg(common + ["steps=200", "resume=true"], tmp_path / "split"))
    full_eval, split_eval = read_csv(full_run / "eval.csv"), read_csv(tmp_path / "split/eval.csv")
    assert [r["step"] for r in full_eval] == ["0", "100", "200"]
    assert without_clock(full_eval) == without_clock(split_eval)
    check_clock(split_eval)
    key = lambda rows: [(r["step"], r["episode_reward"], r["total_loss"]) for r in rows]
    assert key(read_csv(full_run / "train.csv")) == key(read_csv(tmp_path / "split/train.csv"))


def test_existing_run_dir_needs_resume(tmp_path):
    from mbdpo_fast.errors import ConfigError
    cfg = TINY + ["eval_freq=1000", "steps=50"]
    run(compose_cfg(cfg, tmp_path))
    with pytest.raises(ConfigError, match="resume=true"):
        run(compose_cfg(cfg, tmp_path))


@pytest.mark.slow
def test_smoke_cheetah_run_cli_with_resume_and_evaluate(tmp_path):
    """A smoke run through the CLI: 200 steps of 100-step episodes, interrupted at 100 and resumed,
    then evaluated (model size 1 at reduced widths and a reduced planner: the loop, not the model,
    is under test)."""
    args = ["profile=cpu_small", "device=cpu", "enc_dim=64", "mlp_dim=64", "latent_dim=32", "episode_length=100",
            "seed_steps=50", "batch_size=32", "num_samples=32",
            "diffusion_steps=4", "num_elites=8", "num_pi_trajs=4", "eval_freq=100", "eval_episodes=1",
            "checkpoint_freq=100", "progress_bar=false", f"hydra.run.dir={tmp_path}"]
    p1 = run_cli("mbdpo_fast.train", args + ["steps=100"], cwd=tmp_path)
    assert p1.returncode == 0, p1.stderr[-2000:]
    assert (tmp_path / "checkpoint.pt").exists() and (tmp_path / "config.yaml").exists()
    p2 = run_cli("mbdpo_fast.train", args + ["steps=200", "resume=true"], cwd=tmp_path)
    assert p2.returncode == 0, p2.stderr[-2000:]
    assert "resumed" in p2.stdout and "at step 100" in p2.stdout
    rows = read_csv(tmp_path / "eval.csv")
    assert [r["step"] for r in rows] == ["0", "100", "200"] and all(r["seed"] == "1" for r in rows)
    assert all(0 <= float(r["reward"]) <= 200 for r in rows)
    train = read_csv(tmp_path / "train.csv")
    assert [int(r["step"]) for r in train] == [100, 200]
    assert all(float(r["total_loss"]) == float(r["total_loss"]) for r in train[1:])  # finite, not NaN
    # evaluate the final checkpoint through the CLI
    p3 = run_cli("mbdpo_fast.evaluate", [f"checkpoint={tmp_path}/checkpoint.pt", "episodes=1",
                                         f"output={tmp_path}/final.csv"], cwd=tmp_path)
    assert p3.returncode == 0, p3.stderr[-2000:]
    assert "step 200: mean normalised score" in p3.stdout and "cheetah-run" in p3.stdout
    assert len(read_csv(tmp_path / "final.csv")) == 1


def test_cli_errors_are_one_clear_line(tmp_path):
    p = run_cli("mbdpo_fast.train", ["task=cheetah-rnu", f"hydra.run.dir={tmp_path}"], cwd=tmp_path)
    assert p.returncode == 2
    assert p.stderr.startswith("error: unknown task 'cheetah-rnu'. Did you mean cheetah-run")
    assert "Traceback" not in p.stderr
    p = run_cli("mbdpo_fast.train", ["stpes=10", f"hydra.run.dir={tmp_path}"], cwd=tmp_path)
    assert p.returncode != 0 and "stpes" in p.stderr
    p = run_cli("mbdpo_fast.train", ["steps=abc", f"hydra.run.dir={tmp_path}"], cwd=tmp_path)
    assert p.returncode != 0 and "steps" in p.stderr
    p = run_cli("mbdpo_fast.train", ["model_size=7", f"hydra.run.dir={tmp_path}"], cwd=tmp_path)
    assert p.returncode == 2 and "model_size=7 is not a preset" in p.stderr
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00" * 100)
    p = run_cli("mbdpo_fast.evaluate", [f"checkpoint={bad}"], cwd=tmp_path)
    assert p.returncode == 2 and "corrupt" in p.stderr and "Traceback" not in p.stderr


def test_resume_after_a_crash_past_a_checkpoint_keeps_each_eval_row_once(tmp_path, monkeypatch, full_run):
    """Killed after the checkpoint at step 100 and the evaluation at step 100 (which runs after that
    checkpoint), then resumed: the step-100 row is not duplicated and the CSVs equal the
    uninterrupted run's."""
    from mbdpo_fast.trainers.online import OnlineTrainer

    common = COMMON + ["steps=200"]
    real = OnlineTrainer._update

    def crash(self, n, acc):
        if self.step == 130:
            raise KeyboardInterrupt  # stands for SIGKILL: nothing after this point is written
        return real(self, n, acc)
    monkeypatch.setattr(OnlineTrainer, "_update", crash)
    with pytest.raises(KeyboardInterrupt):
        run(compose_cfg(common, tmp_path / "split"))
    assert [r["step"] for r in read_csv(tmp_path / "split/eval.csv")] == ["0", "100"]
    monkeypatch.setattr(OnlineTrainer, "_update", real)
    run(compose_cfg(common + ["resume=true"], tmp_path / "split"))
    full_eval, split_eval = read_csv(full_run / "eval.csv"), read_csv(tmp_path / "split/eval.csv")
    assert [r["step"] for r in split_eval] == ["0", "100", "200"]
    assert without_clock(full_eval) == without_clock(split_eval)
    check_clock(split_eval)
    key = lambda rows: [(r["step"], r["episode_reward"], r["total_loss"]) for r in rows]
    assert key(read_csv(full_run / "train.csv")) == key(read_csv(tmp_path / "split/train.csv"))


def _killed_and_resumed(tmp_path, args, when, name):
    """Start the run, SIGKILL it as soon as when(run_dir) holds, then resume it to the end."""
    import signal
    import subprocess
    import sys
    import time

    run_dir = tmp_path / name
    cmd = [sys.executable, "-m", "mbdpo_fast.train", *args, f"hydra.run.dir={run_dir}"]
    env = dict(__import__("os").environ, WANDB_MODE="disabled", MUJOCO_GL="disable")
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not when(run_dir) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before the kill point"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    p = run_cli("mbdpo_fast.train", args + ["resume=true", f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert p.returncode == 0 and "resumed" in p.stdout, p.stderr[-2000:]
    return run_dir


@pytest.mark.slow
def test_sigkill_at_several_points_then_resume_equals_the_uninterrupted_run(tmp_path):
    """kill -9 right after the first checkpoint appears (while it may still be written): after
    resume=true the CSVs and the final step equal an uninterrupted run's (same command line)."""
    from mbdpo_fast.data.checkpoint import load_checkpoint

    args = COMMON + ["steps=200"]
    p = run_cli("mbdpo_fast.train", args + [f"hydra.run.dir={tmp_path / 'full'}"], cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    rows = lambda d, f: without_clock(read_csv(d / f)) if f == "eval.csv" else \
        [(r["step"], r["episode_reward"], r["total_loss"]) for r in read_csv(d / f)]
    # (a kill later in the run, past the checkpoint, is test_resume_after_a_crash_past_a_checkpoint's case)
    points = {"at_first_checkpoint": lambda d: (d / "checkpoint.pt").exists()}
    for name, when in points.items():
        d = _killed_and_resumed(tmp_path, args, when, name)
        assert rows(d, "eval.csv") == rows(tmp_path / "full", "eval.csv"), name
        assert rows(d, "train.csv") == rows(tmp_path / "full", "train.csv"), name
        assert load_checkpoint(d / "checkpoint.pt")["trainer"]["step"] == 200


def test_first_evaluation_can_wait_for_eval_freq(tmp_path):
    run(compose_cfg(TINY + ["eval_freq=50", "steps=100", "eval_first=false", "checkpoint_freq=1000"], tmp_path))
    assert [r["step"] for r in read_csv(tmp_path / "eval.csv")] == ["50", "100"]


def test_a_diverging_learning_rate_stops_with_one_error_line(tmp_path):
    p = run_cli("mbdpo_fast.train", TINY + ["lr=1e10", "steps=300", "eval_freq=1000", f"hydra.run.dir={tmp_path}"],
                cwd=tmp_path)
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
    assert p.returncode == 2 and len(errors) == 1 and "training diverged" in errors[0], p.stderr[-2000:]
    assert "Traceback" not in p.stderr and not (tmp_path / "checkpoint.pt").exists()


def test_progress_bar_names_each_stage_with_the_evaluation_rate(tmp_path, capsys):
    """The bar says what the run is doing: environments, seeding, evaluation with steps done of the
    expected total, a rate and the time left."""
    tiny = [o for o in TINY if not o.startswith("progress_bar=")]
    run(compose_cfg(tiny + ["progress_bar=true", "eval_freq=50", "steps=60", "checkpoint_freq=1000"], tmp_path))
    err = capsys.readouterr().err
    for stage in ("[starting the environments]", "[seeding: random actions]", "[evaluating at step 0: 1 episode]",
                  "[evaluating at step 50: ", "[evaluating at step 60: "):
        assert stage in err, stage
    assert "/50 steps" in err and " steps/s, ~" in err and " s left]" in err


def test_eval_progress_reports_done_of_total_with_rate():
    from mbdpo_fast.trainers.common import EvalProgress

    said = []
    p = EvalProgress(said.append, "evaluating at step 7", 4)
    for done in range(1, 5):
        p(done)
    assert said[0].startswith("evaluating at step 7: 1/4 steps, 0.0 steps/s")  # no rate from one step
    assert said[-1].startswith("evaluating at step 7: 4/4 steps, ") and said[-1].endswith("~0 s left")
    assert len(said) == 2  # at most once a second, and always at the end
