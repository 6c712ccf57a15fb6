"""Checkpoints: round trip gives identical actions; corrupt or mismatched files fail clearly."""
import dataclasses

import pytest
import torch

from mbdpo_fast.data import checkpoint as ckpt_mod
from mbdpo_fast.agent import seed_everything
from mbdpo_fast.data.checkpoint import atomic_save, load_checkpoint
from mbdpo_fast.errors import CheckpointError
from mbdpo_fast.config import resolve_task
from mbdpo_fast.train import build_envs
from mbdpo_fast.trainers.online import OnlineTrainer

from helpers import TINY, compose_cfg


def make_trainer(tmp_path, extra=()):
    spec = resolve_task(compose_cfg(TINY + ["steps=80", "eval_freq=1000", "checkpoint_freq=50", *extra], tmp_path))
    env, eval_envs = build_envs(spec)
    seed_everything(spec.seed)
    return OnlineTrainer(spec, env, tmp_path, eval_envs)


def actions_of(agent, seed):
    torch.manual_seed(seed)
    obs = torch.randn(1, agent.cfg.obs_dim)
    plan = agent.planner.initial_plan(1)
    out = []
    for _ in range(3):
        a, plan = agent.act(obs, plan)
        out.append(a)
    return torch.cat(out)


def test_round_trip_gives_identical_actions(tmp_path):
    t1 = make_trainer(tmp_path / "a")
    t1.train()
    t2 = make_trainer(tmp_path / "b")
    t2.load(t1.checkpoint_path)
    assert t2.step == t1.step == 80
    torch.testing.assert_close(actions_of(t2.agent, 7), actions_of(t1.agent, 7), rtol=0, atol=0)
    assert torch.equal(t2.buffer.obs, t1.buffer.obs) and torch.equal(t2.buffer.valid, t1.buffer.valid)
    for k, v in t1.agent.model.state_dict().items():
        assert torch.equal(v, t2.agent.model.state_dict()[k]), k


def test_corrupt_checkpoint_gives_a_clear_error(tmp_path):
    t = make_trainer(tmp_path / "a")
    t.train()
    data = t.checkpoint_path.read_bytes()
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(bad)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all" * 10)
    with pytest.raises(CheckpointError, match="corrupt"):
        make_trainer(tmp_path / "b").load(garbage)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(CheckpointError, match="not an mbdpo_fast checkpoint"):
        load_checkpoint(other)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")


def test_mismatched_config_is_refused_by_name(tmp_path):
    t = make_trainer(tmp_path / "a")
    t.train()
    other = make_trainer(tmp_path / "b", extra=["latent_dim=24"])
    with pytest.raises(CheckpointError, match="latent_dim: checkpoint 16 vs config 24"):
        other.load(t.checkpoint_path)


def test_missing_replay_file_is_reported(tmp_path):
    t = make_trainer(tmp_path / "a")
    t.train()
    for f in (tmp_path / "a").glob("replay_*.pt"):
        f.unlink()
    with pytest.raises(CheckpointError, match="no replay file"):
        make_trainer(tmp_path / "b").load(t.checkpoint_path)


def test_atomic_save_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "c.pt"
    atomic_save({"x": torch.ones(3)}, path)

    def failing_save(obj, f):
        f.write(b"partial")
        raise OSError("disk full")
    monkeypatch.setattr(ckpt_mod.torch, "save", failing_save)
    with pytest.raises(OSError):
        atomic_save({"x": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert torch.equal(torch.load(path)["x"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_divergence_stops_without_touching_the_last_checkpoint(tmp_path, monkeypatch):
    from mbdpo_fast.errors import TrainingDivergedError

    t = make_trainer(tmp_path / "a")
    t.train()  # 80 steps, checkpoint at step 80
    saved = t.checkpoint_path.read_bytes()
    t2 = make_trainer(tmp_path / "a", extra=["steps=200"])
    t2.load(t.checkpoint_path)
    real_update = t2.agent.update

    def nan_update(batch):
        out = real_update(batch)
        out["value_loss"] = torch.tensor(float("nan"))
        return out
    monkeypatch.setattr(t2.agent, "update", nan_update)
    with pytest.raises(TrainingDivergedError, match=r"non-finite value_loss at step \d+: .*untouched"):
        t2.train()
    assert t.checkpoint_path.read_bytes() == saved


def test_saved_spec_fills_new_fields_and_drops_retired_ones():
    """A config saved by another version: fields it lacks take the schema's defaults, fields this
    version no longer has are dropped, saved values win."""
    from omegaconf import OmegaConf

    from mbdpo_fast.config import default_config, saved_spec

    saved = OmegaConf.to_container(default_config(task="walker-run", seed=7))
    del saved["energy_pairing"]
    saved["score_only_inference"] = False  # a retired field
    cfg = saved_spec(saved, device="cpu")
    assert cfg.task == "walker-run" and cfg.seed == 7 and cfg.energy_pairing == "aligned" and cfg.device == "cpu"
    assert not hasattr(cfg, "score_only_inference")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.seed = 8


def test_single_task_checkpoints_ignore_the_unused_task_dim():
    from mbdpo_fast.data.checkpoint import check_compatible
    from mbdpo_fast.config import default_config

    from omegaconf import OmegaConf

    cfg = default_config(obs_dim=5, action_dim=2, task_dim=0, work_dir="unused")
    check_compatible({**OmegaConf.to_container(cfg), "task_dim": 96}, cfg)  # single task: no embedding
    mt = default_config(obs_dim=5, action_dim=2, task_dim=64, multitask=True, work_dir="unused")
    with pytest.raises(CheckpointError, match="task_dim"):
        check_compatible({**OmegaConf.to_container(mt), "task_dim": 96}, mt)
