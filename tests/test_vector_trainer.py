"""The vectorised trainer: MJX (CPU) and CPU-worker backends, evaluation on both, resume."""
import csv

import pytest

from mbdpo_fast.data.chunks import OfflineDataset
from mbdpo_fast.train import run

from helpers import compose_cfg

TINY_VEC = ["device=cpu", "model_size=1", "enc_dim=32", "mlp_dim=32", "latent_dim=16", "num_q=2",
            "num_samples=32", "num_elites=4", "num_pi_trajs=4", "diffusion_steps=4", "batch_size=32",
            "buffer_size=20000", "episode_length=20", "eval_episodes=2", "log_every=5", "progress_bar=false"]


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_mjx_fast_mode_smoke_with_dmc_eval_and_resume(tmp_path):
    pytest.importorskip("mujoco_playground")
    args = TINY_VEC + ["task=pendulum-swingup", "env_backend=mjx", "num_envs=4", "seed_steps=80",
                       "updates_per_step=2", "eval_freq=160", "checkpoint_freq=160"]
    s1 = run(compose_cfg(args + ["steps=160"], tmp_path))
    assert s1["step"] == 160 and (tmp_path / "checkpoint.pt").exists()
    s2 = run(compose_cfg(args + ["steps=320", "resume=true"], tmp_path))
    assert s2["step"] == 320
    ev = read_csv(tmp_path / "eval.csv")
    assert [r["step"] for r in ev] == ["0", "160", "320"]
    rows = read_csv(tmp_path / "train.csv")
    # 4 envs x 20-step episodes: 4 episodes end every 20 vector steps; a row every 5 vector steps
    assert [int(r["step"]) for r in rows] == list(range(20, 321, 20))
    assert int(rows[-1]["episode"]) == 320 // 20
    finished = [r for r in rows if r["episode_reward"] != "nan"]
    assert finished and all(0 <= float(r["episode_reward"]) <= 40 for r in finished)
    assert all(r["total_loss"] != "" for r in rows if int(r["step"]) > 80)


def test_cpu_worker_backend(tmp_path):
    args = TINY_VEC + ["task=cheetah-run", "env_backend=dmc", "num_envs=2", "seed_steps=40", "steps=120",
                       "eval_freq=1000", "checkpoint_freq=1000", "save_dataset=true"]
    s = run(compose_cfg(args, tmp_path))
    assert s["step"] == 120
    rows = read_csv(tmp_path / "train.csv")
    assert int(rows[-1]["episode"]) == 120 // 20
    # save_dataset: both streams' 6 complete 20-step episodes as 21-slot dataset episodes
    ds = OfflineDataset.load(tmp_path / "dataset")
    assert (ds.num_episodes, ds.episode_length, ds.obs_dim, ds.action_dim) == (6, 21, 17, 6)
    assert ds.task_names == ["cheetah-run"] and ds.task.tolist() == [0] * 6


def test_several_tasks_at_once_with_resume(tmp_path):
    """One multi-task model trained online on two CPU tasks, one environment each: per-task
    evaluation (eval_tasks.csv) and the mean normalised score (eval.csv), replay and actions
    carrying each environment's task, exact counters across a resume."""
    args = TINY_VEC + ["tasks=[cheetah-run,pendulum-swingup]", "env_backend=dmc", "num_envs=2", "seed_steps=40",
                       "eval_episodes=1", "eval_freq=80", "checkpoint_freq=80", "batch_size=16"]
    s1 = run(compose_cfg(args + ["steps=80"], tmp_path))
    assert s1["step"] == 80
    s2 = run(compose_cfg(args + ["steps=160", "resume=true"], tmp_path))
    assert s2["step"] == 160
    ev, per_task = read_csv(tmp_path / "eval.csv"), read_csv(tmp_path / "eval_tasks.csv")
    assert [r["step"] for r in ev] == ["0", "80", "160"] and all(r["score"] for r in ev)
    assert [(r["step"], r["task"]) for r in per_task[-2:]] == [("160", "cheetah-run"), ("160", "pendulum-swingup")]
    assert abs(float(ev[-1]["score"]) - sum(float(r["score"]) for r in per_task[-2:]) / 2) < 1e-3
    from mbdpo_fast.data.checkpoint import load_checkpoint

    ck = load_checkpoint(tmp_path / "checkpoint.pt")
    assert ck["config"]["tasks"] == ["cheetah-run", "pendulum-swingup"] and ck["config"]["task"] == "multitask"
    replay = __import__("torch").load(tmp_path / ck["replay_file"])
    assert replay["task"][0].unique().tolist() == [0] and replay["task"][1].unique().tolist() == [1]


def test_progress_bar_shows_the_last_finished_episodes_return_never_nan(tmp_path, capsys):
    """E = 2 with a row every vector step: most rows end no episode (train.csv says nan there); the
    bar keeps the last finished episodes' return ('-' before the first)."""
    args = [a for a in TINY_VEC if not a.startswith(("progress_bar=", "log_every="))]
    run(compose_cfg(args + ["task=cheetah-run", "env_backend=dmc", "num_envs=2", "seed_steps=40", "steps=100",
                            "log_every=1", "eval_freq=1000", "checkpoint_freq=1000", "progress_bar=true"], tmp_path))
    err = capsys.readouterr().err
    rows = read_csv(tmp_path / "train.csv")
    assert any(r["episode_reward"] == "nan" for r in rows)  # the case the bar must not show
    assert "ret=nan" not in err and "ret=-" in err
    last = float([r for r in rows if r["episode_reward"] != "nan"][-1]["episode_reward"])
    assert f"ret={last:.1f}" in err
