"""Offline pretraining, offline-to-online fine-tuning and evaluation: in-process units and the CLI
pipeline (online run -> its replay as a dataset -> multi-task pretraining (+resume, +torchrun) ->
fine-tuning on an unseen task -> evaluation)."""
import csv
import os
import subprocess
import sys

import pytest
import torch

from mbdpo_fast.agent import MBDPO
from mbdpo_fast.data.checkpoint import load_checkpoint
from mbdpo_fast.config import default_config, resolve_tasks
from mbdpo_fast.data.chunks import OfflineDataset
from mbdpo_fast.finetune import finetune_config, load_pretrained

from helpers import TINY, run_cli, write_synthetic_chunks

TASKS = ["cheetah-run", "pendulum-swingup"]  # (17, 6) and (3, 1): padded to (17, 6)
SMALL = dict(model_size=1, enc_dim=32, mlp_dim=32, latent_dim=16, num_q=2, num_samples=32, num_elites=4,
             num_pi_trajs=4, diffusion_steps=4, batch_size=32, device="cpu", work_dir="unused")


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_offline_updates_reduce_the_loss(tmp_path):
    write_synthetic_chunks(tmp_path, [(17, 6), (3, 1)], episodes_per_task=6, episode_length=41, chunks=2,
                           task_names=TASKS)
    ds = OfflineDataset.load(tmp_path, tasks=TASKS)
    torch.manual_seed(0)
    cfg = resolve_tasks(default_config(tasks=TASKS, **SMALL), ds.obs_dim, ds.action_dim)
    agent = MBDPO(cfg)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(150):
        b = ds.sample(cfg.batch_size, cfg.horizon, generator=g)
        out = agent.update(b)
        losses.append({k: float(out[k]) for k in ("consistency_loss", "reward_loss", "value_loss")})
    first, last = losses[:10], losses[-10:]
    for k in ("reward_loss", "value_loss"):  # soft cross-entropies start at log(101) ~ 4.6
        before, after = sum(x[k] for x in first) / 10, sum(x[k] for x in last) / 10
        assert after < 0.6 * before, (k, before, after)


def pretrained_agent(tasks=TASKS):
    torch.manual_seed(0)
    cfg = resolve_tasks(default_config(tasks=tasks, **SMALL))
    agent = MBDPO(cfg)
    for p in agent.model.parameters():  # anything but the initialisation
        p.data.add_(0.01 * torch.randn_like(p))
    return cfg, agent


@pytest.mark.parametrize("task", ["pendulum-swingup", "hopper-stand"])
def test_finetune_keeps_the_pretrained_model(task):
    """A seen task keeps every tensor; an unseen one (hopper-stand: (15, 4) fits (17, 6)) gets a
    new, freshly initialised embedding row, its own action mask and discount."""
    pcfg, pretrained = pretrained_agent()
    payload_cfg = pcfg.to_dict()
    cfg = default_config(task=task, device="cpu", work_dir="unused", model_size=5)  # model fields get replaced
    cfg, seen = finetune_config(cfg, payload_cfg)
    assert seen == 2 and cfg.mlp_dim == 32 and (cfg.obs_dim, cfg.action_dim) == (17, 6)
    torch.manual_seed(1)
    agent = MBDPO(cfg)
    load_pretrained(agent.model, pretrained.model.state_dict(), seen, "ckpt")
    new, old = agent.model.state_dict(), pretrained.model.state_dict()
    for k in old:
        if k == "task_emb.weight":
            assert torch.equal(new[k][:2], old[k])
        elif k != "action_masks":
            assert torch.equal(new[k], old[k]), k
    if task == "hopper-stand":
        assert list(cfg.tasks) == TASKS + ["hopper-stand"] and new["task_emb.weight"].shape[0] == 3
        assert not torch.equal(new["task_emb.weight"][2], torch.zeros(96))
        assert agent.model.action_masks[2].tolist() == [1, 1, 1, 1, 0, 0]
    else:
        assert list(cfg.tasks) == TASKS and torch.equal(new["action_masks"], old["action_masks"])


def test_finetune_refuses_what_cannot_fit():
    pcfg, _ = pretrained_agent()
    payload_cfg = pcfg.to_dict()
    from mbdpo_fast.errors import ConfigError
    with pytest.raises(ConfigError, match="smaller than the largest"):  # walker-run's obs are 24-d
        finetune_config(default_config(task="walker-run", device="cpu", work_dir="x"), payload_cfg)
    single = {**payload_cfg, "multitask": False, "tasks": [], "task": "cheetah-run"}
    with pytest.raises(ConfigError, match="single-task model"):
        finetune_config(default_config(task="walker-run", device="cpu", work_dir="x"), single)


MODEL = ["device=cpu", "model_size=1", "enc_dim=32", "mlp_dim=32", "latent_dim=16", "num_q=2", "num_samples=32",
         "num_elites=4", "num_pi_trajs=4", "diffusion_steps=4", "progress_bar=false"]


@pytest.mark.slow
def test_pipeline_online_dataset_pretrain_finetune_evaluate(tmp_path):
    # 1. an online run whose replay is saved as a dataset (50-step episodes: 51 slots)
    online = tmp_path / "online"
    p = run_cli("mbdpo_fast.train", TINY + ["steps=200", "eval_freq=100000", "save_dataset=true",
                                            f"hydra.run.dir={online}"], cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    data = tmp_path / "data"
    (online / "dataset" / "chunk_0.pt").rename(data.mkdir() or data / "chunk_0.pt")
    raw = torch.load(data / "chunk_0.pt")
    assert raw["tasks"] == ["cheetah-run"] and raw["obs"].shape == (4, 51, 17)
    # plus pendulum-swingup episodes (synthetic, same layout) in a second chunk
    write_synthetic_chunks(tmp_path / "syn", [(3, 1)], episodes_per_task=4, episode_length=51, chunks=1,
                           task_names=["pendulum-swingup"])
    (tmp_path / "syn" / "chunk_0.pt").rename(data / "chunk_1.pt")

    # 2. multi-task pretraining, then resume
    pre = tmp_path / "pre"
    args = MODEL + [f"tasks=[{','.join(TASKS)}]", "task=two", f"data_dir={data}", "batch_size=16", "eval_freq=20",
                    "eval_episodes=1", "episode_length=20", "checkpoint_freq=20", "log_every=10",
                    f"hydra.run.dir={pre}"]
    p = run_cli("mbdpo_fast.pretrain", args + ["steps=40"], cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "2 tasks, 8 episodes" in p.stdout
    p = run_cli("mbdpo_fast.pretrain", args + ["steps=60", "resume=true"], cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "resumed" in p.stdout and "at update 40" in p.stdout
    ev = read_csv(pre / "eval.csv")
    assert [int(r["step"]) for r in ev] == [0, 20, 40, 60] and all(r["score"] for r in ev)
    per_task = read_csv(pre / "eval_tasks.csv")
    assert [(r["step"], r["task"]) for r in per_task[-2:]] == [("60", "cheetah-run"), ("60", "pendulum-swingup")]
    assert abs(float(ev[-1]["score"]) - sum(float(r["score"]) for r in per_task[-2:]) / 2) < 1e-3
    assert [int(r["step"]) for r in read_csv(pre / "train.csv")] == [10, 20, 30, 40, 50, 60]
    assert load_checkpoint(pre / "checkpoint.pt")["trainer"]["step"] == 60

    # 3. fine-tune on an unseen task
    fin = tmp_path / "fin"
    p = run_cli("mbdpo_fast.finetune", MODEL + [f"checkpoint={pre / 'checkpoint.pt'}", "task=hopper-stand",
                                                "steps=100", "seed_steps=60", "episode_length=20", "batch_size=16",
                                                "eval_freq=100", "eval_episodes=1", f"hydra.run.dir={fin}"], cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "hopper-stand (unseen task)" in p.stdout
    ck = load_checkpoint(fin / "checkpoint.pt")
    assert ck["config"]["tasks"] == TASKS + ["hopper-stand"] and ck["trainer"]["step"] == 100
    assert [int(r["step"]) for r in read_csv(fin / "eval.csv")] == [0, 100]
    # ... and with 2 environments (worker processes) in the same online loop
    fin2 = tmp_path / "fin2"
    p = run_cli("mbdpo_fast.finetune", MODEL + [f"checkpoint={pre / 'checkpoint.pt'}", "task=pendulum-swingup",
                                                "num_envs=2", "steps=80", "seed_steps=40", "episode_length=20",
                                                "batch_size=16", "eval_freq=80", "eval_episodes=2", "log_every=10",
                                                f"hydra.run.dir={fin2}"], cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "pendulum-swingup (seen task)" in p.stdout
    assert [int(r["step"]) for r in read_csv(fin2 / "eval.csv")] == [0, 80]
    assert [int(r["step"]) for r in read_csv(fin2 / "train.csv")] == [20, 40, 60, 80]

    # 4. evaluate: the fine-tuned checkpoint on two of its tasks; the pretrained one refuses an unseen task
    out = tmp_path / "ev.csv"
    p = run_cli("mbdpo_fast.evaluate", [f"checkpoint={fin / 'checkpoint.pt'}", "tasks=[hopper-stand,cheetah-run]",
                                        "episodes=2", f"output={out}", "device=cpu"], cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    rows, summary = read_csv(out), read_csv(tmp_path / "ev_summary.csv")
    assert [r["task"] for r in rows] == ["hopper-stand"] * 2 + ["cheetah-run"] * 2
    assert [r["task"] for r in summary] == ["hopper-stand", "cheetah-run"]
    for s in summary:
        assert float(s["score"]) == pytest.approx(float(s["mean_return"]) / 10, abs=1e-3)
    assert "mean normalised score" in p.stdout
    p = run_cli("mbdpo_fast.evaluate", [f"checkpoint={pre / 'checkpoint.pt'}", "tasks=[hopper-stand]"], cwd=tmp_path)
    assert p.returncode == 2 and "not trained on ['hopper-stand']" in p.stderr and "Traceback" not in p.stderr

    # 5. the same pretraining data-parallel: torchrun, 2 CPU processes (gloo), tasks split for evaluation
    ddp = tmp_path / "ddp"
    env = dict(os.environ, WANDB_MODE="disabled", MUJOCO_GL="disable", OMP_NUM_THREADS="1")
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        "-m", "mbdpo_fast.pretrain"] + [a for a in args if not a.startswith("hydra.run.dir")]
                       + ["steps=20", f"hydra.run.dir={ddp}"], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "processes 2" in p.stdout
    assert sorted(r["task"] for r in read_csv(ddp / "eval_tasks.csv") if r["step"] == "20") == sorted(TASKS)
    assert load_checkpoint(ddp / "checkpoint.pt")["trainer"]["step"] == 20


def test_pretrain_errors_are_one_clear_line(tmp_path):
    p = run_cli("mbdpo_fast.pretrain", MODEL + ["task=mt30", f"hydra.run.dir={tmp_path / 'r'}"], cwd=tmp_path)
    assert p.returncode == 2 and "data_dir is not set" in p.stderr and "Traceback" not in p.stderr
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "chunk_0.pt").write_bytes(b"garbage")
    p = run_cli("mbdpo_fast.pretrain", MODEL + ["task=mt30", f"data_dir={tmp_path / 'd'}",
                                                f"hydra.run.dir={tmp_path / 'r'}"], cwd=tmp_path)
    assert p.returncode == 2 and "chunk_0.pt" in p.stderr and "Traceback" not in p.stderr
    p = run_cli("mbdpo_fast.finetune", MODEL + ["task=cheetah-run", f"hydra.run.dir={tmp_path / 'f'}"], cwd=tmp_path)
    assert p.returncode == 2 and "checkpoint is not set" in p.stderr
    p = run_cli("mbdpo_fast.train", MODEL + ["task=mt30", f"hydra.run.dir={tmp_path / 't'}"], cwd=tmp_path)
    assert p.returncode == 2 and "num_envs=1 must be a multiple of the 30 tasks" in p.stderr and "Traceback" not in p.stderr


def test_offline_resume_is_exact(tmp_path):
    """20 updates, checkpoint, resume to 40 == 40 updates straight (model, optimisers' effect,
    statistics): the sampler and torch RNG states travel in the checkpoint."""
    from mbdpo_fast.trainers.offline import OfflineTrainer

    write_synthetic_chunks(tmp_path / "d", [(17, 6), (3, 1)], episodes_per_task=3, episode_length=21,
                           task_names=TASKS)
    ds = OfflineDataset.load(tmp_path / "d", tasks=TASKS)

    def trainer(work, steps):
        cfg = resolve_tasks(default_config(tasks=TASKS, steps=steps, eval_episodes=0, checkpoint_freq=20,
                                            log_every=10, progress_bar=False, **{**SMALL, "work_dir": str(work)}),
                             ds.obs_dim, ds.action_dim)
        torch.manual_seed(cfg.seed)
        return OfflineTrainer(cfg, ds, work)

    straight = trainer(tmp_path / "a", 40)
    straight.train()
    first = trainer(tmp_path / "b", 20)
    first.train()
    resumed = trainer(tmp_path / "b", 40)
    torch.manual_seed(12345)  # whatever the process did before: the checkpoint's RNG state wins
    resumed.load(tmp_path / "b" / "checkpoint.pt")
    assert resumed.step == 20
    resumed.train()
    a, b = straight.agent.model.state_dict(), resumed.agent.model.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    rows = read_csv(tmp_path / "b" / "train.csv")
    assert [int(r["step"]) for r in rows] == [10, 20, 30, 40]
