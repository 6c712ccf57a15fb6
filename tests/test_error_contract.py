"""The error contract of every entry point: a user's mistake gives one line `error: ...` on stderr,
exit code 2, and leaves the file tree as it was (no run directory, no .hydra/ written)."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import run_cli


def tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


CASES = {
    "misspelt key": ("mbdpo_fast.train", ["stpes=10"], "unknown config key 'stpes'. Did you mean steps?"),
    "added unknown key": ("mbdpo_fast.train", ["+stpes=10"], "unknown config key 'stpes'. Did you mean steps?"),
    "wrong type": ("mbdpo_fast.train", ["steps=abc"], "steps=abc"),
    "unknown profile": ("mbdpo_fast.train", ["profile=nope"], "no such profile (available: cpu_fast, cpu_small, fast, paper)"),
    "unknown task": ("mbdpo_fast.train", ["task=cheetah-rnu"], "unknown task 'cheetah-rnu'. Did you mean cheetah-run"),
    "bad model size": ("mbdpo_fast.train", ["model_size=7"], "model_size=7 is not a preset"),
    "resume without checkpoint": ("mbdpo_fast.train", ["resume=true"], "holds no checkpoint"),
    "several tasks, too few envs": ("mbdpo_fast.train", ["task=mt30"], "must be a multiple of the 30 tasks"),
    "unwritable run dir": ("mbdpo_fast.train", ["hydra.run.dir=/proc/mbdpo_run"], "cannot write the run directory"),
    "evaluate without checkpoint": ("mbdpo_fast.evaluate", [], "checkpoint is not set"),
    "evaluate, no such file": ("mbdpo_fast.evaluate", ["checkpoint=nowhere.pt"], "no checkpoint at nowhere.pt"),
    "pretrain without data": ("mbdpo_fast.pretrain", ["task=mt30"], "data_dir is not set"),
    "finetune without checkpoint": ("mbdpo_fast.finetune", ["task=walker-run"], "checkpoint is not set"),
    "finetune, wrong type": ("mbdpo_fast.finetune", ["seed=x"], "seed=x"),
    "a task without MJX on MJX": ("mbdpo_fast.train", ["task=cmuhumanoid-run", "env_backend=mjx"],
                                  "env_backend=mjx: cmuhumanoid-run has no MJX version (the MJX tasks: python -c"),
    "the dog on MJX's JAX implementation": ("mbdpo_fast.train", ["task=dog-run", "env_backend=mjx", "impl=jax"],
                                            "dog-run runs on MJX's Warp implementation only (MJX's JAX implementation "
                                            "has no collisions between the dog's ellipsoids"),
    "quadruped-escape on MJX": ("mbdpo_fast.train", ["task=quadruped-escape", "env_backend=mjx"],
                                "quadruped-escape has no MJX version (its bowl-shaped heightfield terrain, redrawn every episode"),
    "quadruped on MuJoCo Warp": ("mbdpo_fast.train", ["task=quadruped-run", "env_backend=mjx", "impl=warp"],
                                 "quadruped-run runs on MJX's JAX implementation only"),
    "quadruped pixels on MJX": ("mbdpo_fast.train", ["task=quadruped-walk", "obs=rgb", "env_backend=mjx", "impl=warp"],
                                "rendered by the CPU workers only"),
    "MetaWorld on MJX": ("mbdpo_fast.train", ["task=mw-reach", "env_backend=mjx"], "mw-reach has no MJX version"),
    "ManiSkill on MJX": ("mbdpo_fast.train", ["task=ms-pick-cube", "env_backend=mjx"], "ms-pick-cube has no MJX version"),
    "DMControl on the ManiSkill backend": ("mbdpo_fast.train", ["task=cheetah-run", "env_backend=maniskill"],
                                           "env_backend=maniskill simulates ManiSkill tasks"),
    "pixels of a task without a camera on MJX": ("mbdpo_fast.train", ["task=humanoid-walk", "obs=rgb", "env_backend=mjx",
                                                                      "impl=warp"], "obs=rgb is for one of the pixel tasks"),
    "video on the ManiSkill backend": ("mbdpo_fast.train", ["task=ms-pick-cube", "env_backend=maniskill", "save_video=true"],
                                       "has no renderer here"),
}
BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
# The benchmark scripts: a wrong option, a device that is not there, an output that cannot be written.
CASES.update({
    "step_rate, unknown option": ("step_rate.py", ["--bogus"], "unrecognized arguments: --bogus"),
    "step_rate, unknown variant": ("step_rate.py", ["--variants", "nope"], "unknown variant(s) nope"),
    "step_rate, unwritable CSV": ("step_rate.py", ["--csv", "/proc/mbdpo_run/x.csv"], "cannot write CSV"),
    "step_rate, directory as CSV": ("step_rate.py", ["--csv", "."], "is a directory"),
    "denoise_profile, bad backend": ("denoise_profile.py", ["--backends", "cuda-magic"], "invalid choice"),
    "cpu_roofline, a GPU device": ("cpu_roofline.py", ["--device", "cuda", "--dry-run"], "cpu_roofline measures the CPU"),
    "cpu_roofline, replot without a CSV": ("cpu_roofline.py", ["--replot", "--csv", "/nonexistent/x.csv"],
                                           "no CSV at /nonexistent/x.csv"),
    "denoise_profile, unwritable PNG": ("denoise_profile.py", ["--png", "/proc/mbdpo_run/x.png"], "cannot write PNG"),
    "env_rate, unknown task": ("env_rate.py", ["--tasks", "chetah-run"], "Did you mean cheetah-run"),
    "offline_update, bad size": ("offline_update.py", ["--sizes", "7"], "invalid choice: 7"),
    "learning_check, unknown task": ("learning_check.py", ["--tasks", "walker-wlak"], "Did you mean walker-walk"),
})
if not torch.cuda.is_available():
    CASES["step_rate, cuda without a GPU"] = ("step_rate.py", ["--device", "cuda"], "torch sees no CUDA GPU")
if importlib.util.find_spec("wandb") is None:
    CASES["wandb without wandb"] = ("mbdpo_fast.train", ["wandb.mode=offline"], "needs wandb, which is not installed")
if not torch.cuda.is_available():
    CASES["cuda without a GPU"] = ("mbdpo_fast.train", ["device=cuda"], "torch sees no GPU")


@pytest.mark.parametrize("case", sorted(CASES))
def test_one_line_exit_2_nothing_written(tmp_path, case):
    module, args, message = CASES[case]
    (tmp_path / "keep.txt").write_text("x")
    before = tree(tmp_path)
    if module.endswith(".py"):  # a benchmark script; its default outputs are redirected into tmp_path
        outs = [] if {"--csv", "--png"} & set(args) or module == "learning_check.py" else ["--csv", str(tmp_path / "o.csv")]
        p = subprocess.run([sys.executable, str(BENCH / module), *args, *outs], cwd=tmp_path, capture_output=True,
                           text=True, timeout=120, env=dict(os.environ, WANDB_MODE="disabled", MUJOCO_GL="disable"))
    else:
        p = run_cli(module, args, cwd=tmp_path, timeout=120)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == 2, (p.returncode, p.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], p.stderr[-2000:]
    assert tree(tmp_path) == before
    assert not os.path.exists("/proc/mbdpo_run")
