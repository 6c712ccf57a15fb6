"""Many runs: a Hydra multirun sweep through the joblib launcher (one directory per task and seed,
re-runs skip finished runs and resume unfinished ones) and the results command on what it wrote."""
import csv
import math
import os

import numpy as np
import pytest

from helpers import run_cli

TINY = ["device=cpu", "model_size=1", "enc_dim=32", "mlp_dim=32", "latent_dim=16", "num_q=2", "num_samples=16",
        "num_elites=4", "num_pi_trajs=2", "diffusion_steps=3", "batch_size=16", "buffer_size=2000",
        "episode_length=20", "seed_steps=20", "eval_freq=20", "eval_episodes=1", "checkpoint_freq=20",
        "progress_bar=false"]
TASKS, SEEDS = ["pendulum-swingup", "cartpole-balance"], [1, 2]


def read(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_expand_task_sweep():
    from mbdpo_fast.cli import expand_task_sweep
    from mbdpo_fast.task_registry import MT30, names

    assert expand_task_sweep(["x", "task=mt30"]) == ["x", "task=mt30"]  # not a multirun: unchanged
    out = expand_task_sweep(["x", "-m", "task=mt30,mw-reach", "seed=1,2"])
    assert out[2] == "task=" + ",".join(list(MT30) + ["mw-reach"]) and out[3] == "seed=1,2"
    assert expand_task_sweep(["-m", "task=myosuite"])[1] == "task=" + ",".join(names(suite="myosuite"))
    paper = expand_task_sweep(["-m", "task=dmcontrol-paper"])[1][len("task="):].split(",")
    assert paper == names(suite="dmcontrol", paper=True) and len(paper) == 39


def test_task_sweep_on_mjx_runs_every_paper_task_on_its_own_implementation(capsys):
    """task=dmcontrol-paper env_backend=mjx: all 39 tasks (the dog on MuJoCo Warp, the quadruped on
    MJX's JAX implementation, impl=auto), each job's settings accepted by the config; task=dmcontrol:
    the tasks with an MJX version, and a note naming those left out."""
    from mbdpo_fast.cli import expand_task_sweep
    from mbdpo_fast.config import compose_config, resolve_task
    from mbdpo_fast.task_registry import mjx_impl, names

    argv = expand_task_sweep(["-m", "task=dmcontrol-paper", "env_backend=mjx"])
    paper = argv[1][len("task="):].split(",")
    assert paper == names(suite="dmcontrol", paper=True) and len(paper) == 39 and capsys.readouterr().err == ""
    impls = {t: mjx_impl(t) for t in paper}
    assert {t for t, i in impls.items() if i == "warp"} == {"dog-run", "dog-stand", "dog-trot", "dog-walk"}
    for t in ("dog-run", "quadruped-walk", "cheetah-run", "cup-spin"):
        resolve_task(compose_config([f"task={t}", "env_backend=mjx", "device=cpu"], None))
    every = expand_task_sweep(["-m", "task=dmcontrol", "env_backend=mjx"])[1][len("task="):].split(",")
    assert every == names(suite="dmcontrol", mjx=True)
    note = capsys.readouterr().err
    assert note.startswith(f"note: env_backend=mjx: task=dmcontrol runs its {len(every)} tasks") and "quadruped-escape" in note
    assert expand_task_sweep(["-m", "task=dmcontrol"])[1] == "task=" + ",".join(names(suite="dmcontrol"))


@pytest.mark.slow
def test_two_by_two_sweep_resumes_skips_and_gathers(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    sweep = tmp_path / "sweep"
    base = ["-m", f"task={','.join(TASKS)}", "seed=1,2", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
            f"hydra.sweep.dir={sweep}"] + TINY
    p = run_cli("mbdpo_fast.train", base + ["steps=20"], cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    runs = {(t, s): sweep / t / f"s{s}" for t in TASKS for s in SEEDS}
    for d in runs.values():
        assert [r["step"] for r in read(d / "eval.csv")] == ["0", "20"], d
    before = {k: (d / "eval.csv").read_text() for k, d in runs.items()}

    # the same sweep again: every run is finished, nothing is trained or rewritten
    p = run_cli("mbdpo_fast.train", base + ["steps=20"], cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    assert {k: (d / "eval.csv").read_text() for k, d in runs.items()} == before
    assert "resumed" not in p.stdout

    # a longer budget: each run resumes from its checkpoint at 20 and adds the evaluation at 40
    p = run_cli("mbdpo_fast.train", base + ["steps=40"], cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    for k, d in runs.items():
        assert (d / "eval.csv").read_text().startswith(before[k])
        assert [r["step"] for r in read(d / "eval.csv")] == ["0", "20", "40"]

    # published curves in the published format, for one of the tasks
    pub = tmp_path / "published" / "tdmpc2"
    pub.mkdir(parents=True)
    (pub / "pendulum-swingup.csv").write_text("step,reward,seed\n0,1.0,1\n40,11.0,1\n0,3.0,2\n40,13.0,2\n")
    out = tmp_path / "out"
    p = run_cli("mbdpo_fast.results", [str(sweep), "--out", str(out), "--published", str(tmp_path / "published"),
                                       "--at", "20", "40", "--reps", "200"], cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "4 runs, 2 tasks" in p.stdout

    # results.csv: every evaluation of every run, recomputed here from the runs' own eval.csv
    rows = read(out / "results.csv")
    want = sorted((t, s, int(r["step"]), float(r["reward"])) for (t, s), d in runs.items() for r in read(d / "eval.csv"))
    got = sorted((r["task"], int(r["seed"]), int(r["step"]), float(r["return"])) for r in rows)
    assert got == want
    assert all(float(r["score"]) == pytest.approx(float(r["return"]) / 10) for r in rows)

    # tasks.csv: mean over seeds and its t interval at step 40; the published mean there
    tasks = {(r["task"], int(r["step"])): r for r in read(out / "tasks.csv")}
    for t in TASKS:
        vals = [float(read(runs[(t, s)] / "eval.csv")[-1]["reward"]) for s in SEEDS]
        row = tasks[(t, 40)]
        half = 12.706 * np.std(vals, ddof=1) / math.sqrt(2)
        assert float(row["mean"]) == pytest.approx(np.mean(vals), abs=0.01)
        assert float(row["high"]) == pytest.approx(np.mean(vals) + half, abs=0.02)
    assert float(tasks[("pendulum-swingup", 40)]["tdmpc2"]) == 12.0

    # aggregates: the point estimates are the mean and the IQM of the four runs' scores at 40
    agg = {r["step"]: r for r in read(out / "aggregates.csv") if r["suite"] == "dmcontrol"}
    scores = [float(read(d / "eval.csv")[-1]["reward"]) / 10 for d in runs.values()]
    assert float(agg["40"]["mean"]) == pytest.approx(np.mean(scores), abs=0.01)
    assert float(agg["40"]["iqm"]) == pytest.approx(np.mean(sorted(scores)[1:3]), abs=0.01)
    assert float(agg["40"]["iqm_low"]) <= float(agg["40"]["iqm"]) <= float(agg["40"]["iqm_high"])
    for f in ("tasks.md", "aggregates.md", "aggregates.png", "curves_dmcontrol.png"):
        assert (out / f).stat().st_size > 0, f


def test_stratified_bootstrap_resamples_within_tasks():
    """Task A's runs are all 0 and task B's all 10: any resample within tasks keeps both halves, so
    the mean's interval is exactly [5, 5]; pooling across tasks would not."""
    from mbdpo_fast.results import iqm, stratified_bootstrap

    point, low, high = stratified_bootstrap([np.zeros(3), np.full(3, 10.0)], np.mean, reps=300)
    assert point == low == high == 5.0
    assert iqm(np.array([0, 1, 2, 3, 4, 5, 6, 100.0])) == pytest.approx(3.5)


def test_results_errors_are_one_line(tmp_path):
    p = run_cli("mbdpo_fast.results", [str(tmp_path / "missing")], cwd=tmp_path)
    assert p.returncode == 2 and p.stderr.strip().startswith("error:") and len(p.stderr.strip().splitlines()) == 1
    p = run_cli("mbdpo_fast.results", [str(tmp_path)], cwd=tmp_path)
    assert p.returncode == 2 and "no run below" in p.stderr
    p = run_cli("mbdpo_fast.results", [str(tmp_path), "--reps", "x"], cwd=tmp_path)
    assert p.returncode == 2 and p.stderr.startswith("error:") and "Traceback" not in p.stderr


@pytest.mark.slow
def test_submitit_local_launcher_runs_the_sweep(tmp_path):
    """The submitit launcher (what SLURM sweeps use) in its local mode: each job in its own
    process through submitit, written to the same per-task, per-seed directories."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    sweep = tmp_path / "sweep"
    p = run_cli("mbdpo_fast.train", ["-m", "task=pendulum-swingup", "seed=1,2", "hydra/launcher=submitit_local",
                                     "hydra.launcher.timeout_min=20", f"hydra.sweep.dir={sweep}", "steps=20",
                                     "threads=1"] + TINY,  # its jobs run all at once: one core each
                cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    for seed in SEEDS:
        assert [r["step"] for r in read(sweep / "pendulum-swingup" / f"s{seed}" / "eval.csv")] == ["0", "20"]


def test_suite_budgets_replace_steps(tmp_path):
    from helpers import compose_cfg

    from mbdpo_fast.config import resolve_task
    from mbdpo_fast.errors import ConfigError

    budgets = "suite_steps=[myosuite:500,dmcontrol:300]"
    assert resolve_task(compose_cfg(["task=cheetah-run", "steps=100", budgets], tmp_path)).steps == 300
    assert resolve_task(compose_cfg(["task=mw-reach", "steps=100", budgets], tmp_path)).steps == 100
    with pytest.raises(ConfigError, match="suite_steps names \\['dmc'\\]"):
        resolve_task(compose_cfg(["task=cheetah-run", "suite_steps=[dmc:5]"], tmp_path))
    with pytest.raises(ConfigError, match="write suite:steps"):
        resolve_task(compose_cfg(["task=cheetah-run", "suite_steps=[dmcontrol]"], tmp_path))


class _Job:
    def __init__(self, num, launcher):
        from hydra.types import RunMode

        self.mode, self.job = RunMode.MULTIRUN, type("J", (), {"num": num})()
        self.launcher = {"_target_": f"hydra_plugins.x.{launcher}", "n_jobs": 2}


@pytest.mark.parametrize("launcher,devices", [("JoblibLauncher", ["cuda:0", "cuda:1", "cuda:2", "cuda:0"]),
                                              ("SlurmLauncher", ["auto"] * 4)])
def test_local_sweep_jobs_take_the_gpus_in_turn(tmp_path, monkeypatch, launcher, devices):
    """Job k of a local launcher gets cuda:(k mod GPUs) on a 3-GPU machine (as the launchers do not);
    SLURM's jobs keep device=auto (SLURM gives each its GPU); joblib's jobs split the CPU cores."""
    import torch
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from mbdpo_fast.cli import sweep_job

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    got = []
    for k in range(4):
        monkeypatch.setattr(HydraConfig, "get", staticmethod(lambda k=k: _Job(k, launcher)))
        cfg = OmegaConf.create({"device": "auto", "work_dir": str(tmp_path / f"j{k}"), "steps": 10, "resume": False,
                                "threads": 0})
        assert sweep_job(cfg) and cfg.resume is False
        got.append(cfg.device)
        cores = len(os.sched_getaffinity(0))  # joblib's 2 jobs at a time split the cores
        assert cfg.threads == (max(1, cores // min(2, cores)) if launcher == "JoblibLauncher" else 0)
    assert got == devices
