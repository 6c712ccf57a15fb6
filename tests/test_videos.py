"""Watching a run: evaluation videos (save_video=true) from training and from mbdpo_fast.evaluate,
rendered headless on CPU (EGL or OSMesa), and TensorBoard event files (tensorboard=true)."""
import csv
import os
import subprocess
import sys

import numpy as np
import pytest

from helpers import TINY, run_cli

imageio = pytest.importorskip("imageio.v2")
pytest.importorskip("imageio_ffmpeg")


def _renders() -> bool:
    from mbdpo_fast.envs.cpu import pixels
    from mbdpo_fast.errors import RenderingError

    try:
        pixels.headless_gl({**os.environ, "MUJOCO_GL": ""})
        return True
    except RenderingError:
        return False


needs_gl = pytest.mark.skipif(not _renders(), reason="no headless OpenGL (EGL/OSMesa) on this machine")
ARGS = TINY + ["eval_freq=50", "checkpoint_freq=1000", "threads=1"]


def frames_of(path):
    return np.stack(imageio.mimread(path, memtest=False))


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@needs_gl
@pytest.mark.parametrize("num_envs", [1, 2])
def test_save_video_writes_the_first_evaluation_episode_at_every_evaluation(tmp_path, num_envs):
    """num_envs=1: the evaluation env in this process; 2: evaluation copies in worker processes
    (eval_episodes=2), copy 0 recorded. One frame per agent step, 256 x 256 RGB, the agent moving."""
    run_dir = tmp_path / "run"
    extra = [f"num_envs={num_envs}"] + (["eval_episodes=2", "updates_per_step=1"] if num_envs > 1 else [])
    p = run_cli("mbdpo_fast.train", ARGS + extra + ["steps=100", "save_video=true", f"hydra.run.dir={run_dir}"],
                cwd=tmp_path, env={"OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stderr[-3000:]
    steps = [int(r["step"]) for r in rows(run_dir / "eval.csv")]
    assert steps == [0, 50, 100]
    assert sorted(v.name for v in (run_dir / "videos").iterdir()) == sorted(f"eval_{s}.mp4" for s in steps)
    frames = frames_of(run_dir / "videos" / "eval_100.mp4")
    assert frames.shape == (50, 256, 256, 3) and frames.dtype == np.uint8
    assert frames.std() > 5 and np.abs(frames[-1].astype(int) - frames[0].astype(int)).mean() > 0.5
    assert f"  videos:   {run_dir / 'videos'}" in p.stdout


@needs_gl
def test_evaluate_writes_one_video_per_episode(tmp_path):
    run_dir = tmp_path / "run"
    p = run_cli("mbdpo_fast.train", ARGS + ["steps=60", "eval_episodes=0", f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    p = run_cli("mbdpo_fast.evaluate", [f"checkpoint={run_dir / 'checkpoint.pt'}", "episodes=2", "save_video=true",
                                        "device=cpu"], cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    videos = sorted((run_dir / "videos").iterdir())
    assert [v.name for v in videos] == ["cheetah-run_60_ep0.mp4", "cheetah-run_60_ep1.mp4"]
    a, b = frames_of(videos[0]), frames_of(videos[1])
    assert a.shape == b.shape == (50, 256, 256, 3) and not np.array_equal(a, b)  # two different episodes


def test_save_video_without_a_renderer_is_refused_before_anything_is_created(tmp_path, monkeypatch, capsys):
    """Where neither EGL nor OSMesa renders: one error line when the command starts, no run directory."""
    from mbdpo_fast import train
    from mbdpo_fast.envs.cpu import pixels
    from mbdpo_fast.errors import RenderingError

    def nothing_renders(environ=None):
        raise RenderingError("pixel observations need headless OpenGL, and none works here (egl: no device)")

    monkeypatch.setattr(pixels, "headless_gl", nothing_renders)
    run_dir = tmp_path / "run"
    monkeypatch.setattr(sys, "argv", ["train", *ARGS, "steps=60", "save_video=true", f"hydra.run.dir={run_dir}"])
    with pytest.raises(SystemExit) as exc:
        train.main()
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("error:") == 1 and "headless OpenGL" in err, err
    assert not run_dir.exists()


@needs_gl
def test_mjx_frames_match_dm_control_rendering_the_same_state(tmp_path):
    """MJX copies a batch member's state into C MuJoCo and renders it: the frame of the state dm_control
    renders from the same positions (both from camera 0) is the same picture."""
    pytest.importorskip("mujoco_playground")
    script = r"""
import numpy as np
from mbdpo_fast.envs.cpu.pixels import use_headless_gl
use_headless_gl()
import torch
from mbdpo_fast.envs.mjx.vec_env import MJXVecEnv
from mbdpo_fast.envs.cpu.dmcontrol import DMControlEnv
env = MJXVecEnv("cartpole-swingup", num_envs=2, seed=0, device="cpu")
env.reset(seed=0)
for _ in range(20):
    env.step(torch.rand(2, env.action_dim) * 2 - 1)
mjx = env.render_rgb([1], 96)[0]
qpos = np.asarray(env._carry["state"].data.qpos[1]); qvel = np.asarray(env._carry["state"].data.qvel[1])
dmc = DMControlEnv("cartpole-swingup", 0)
dmc.reset()
with dmc.physics.reset_context():
    dmc.physics.data.qpos[:] = qpos
    dmc.physics.data.qvel[:] = qvel
ref = dmc.render_rgb(96)
print("DIFF", np.abs(mjx.astype(int) - ref.astype(int)).mean(), mjx.std(), mjx.shape)
"""
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600,
                       env={**os.environ, "MUJOCO_GL": "", "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stderr[-3000:]
    diff, std, shape = p.stdout.split("DIFF")[1].split(maxsplit=2)
    assert shape.strip() == "(96, 96, 3)" and float(std) > 5
    assert float(diff) < 8.0, p.stdout  # mean absolute difference, of 255 (the two models' materials differ)


def test_tensorboard_gets_every_train_row_and_evaluation(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = tmp_path / "run"
    p = run_cli("mbdpo_fast.train", ARGS + ["steps=120", "log_every=20", "tensorboard=true", f"hydra.run.dir={run_dir}"],
                cwd=tmp_path, env={"OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stderr[-3000:]
    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    evals = rows(run_dir / "eval.csv")
    got = [(e.step, round(e.value, 3)) for e in acc.Scalars("eval/reward")]
    assert got == [(int(r["step"]), round(float(r["reward"]), 3)) for r in evals]
    train = rows(run_dir / "train.csv")
    got = [(e.step, e.value) for e in acc.Scalars("train/total_loss")]
    want = [(int(r["step"]), float(r["total_loss"])) for r in train if r["total_loss"] not in ("", "nan")]
    assert [s for s, _ in got] == [s for s, _ in want] and np.allclose([v for _, v in got], [v for _, v in want], rtol=1e-5)
    assert {"train/env_steps_per_s", "train/plan_ms"} <= set(tags)
    assert f"  watch:    tensorboard --logdir {run_dir}" in p.stdout
