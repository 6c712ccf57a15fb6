"""The task registry against the environments it describes: every row's dims and suite facts,
the mt30/mt80 sets in TD-MPC2's dataset order, the MJX rows against Playground's registry, the
suite lists against the suites' own (MetaWorld/MyoSuite rows in their worker interpreters)."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from mbdpo_fast import task_registry as reg
from mbdpo_fast.envs.cpu import suite_python
from mbdpo_fast.envs.cpu.suites import make_suite_env
from mbdpo_fast.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_sets_are_tdmpc2s_in_dataset_order():
    assert len(reg.MT30) == 30 and len(reg.MT80) == 80 and reg.MT80[:30] == reg.MT30 and len(set(reg.MT80)) == 80
    assert reg.MT80[30] == "mw-assembly" and reg.MT80[-1] == "mw-hand-insert"
    assert reg.get("walker-walk").sets == ("mt30", "mt80") and reg.get("mw-reach").sets == ("mt80",)
    assert reg.get("dog-run").sets == ()


def test_paper_benchmark_counts():
    assert len(reg.names(suite="dmcontrol", paper=True)) == 39
    assert len(reg.names(suite="metaworld", paper=True)) == 50
    assert len(reg.names(suite="myosuite", paper=True)) == 10
    assert sum(reg.get(t).custom for t in reg.TASKS) == 11


def test_suite_facts():
    assert (reg.get("cheetah-run").action_repeat, reg.get("cheetah-run").episode_length) == (2, 500)
    assert (reg.get("mw-reach").action_repeat, reg.get("mw-reach").episode_length) == (2, 100)
    assert (reg.get("myo-pose").action_repeat, reg.get("myo-pose").episode_length) == (1, 100)
    assert not reg.get("cheetah-run").has_success and reg.get("mw-reach").has_success


def test_unknown_names_and_expansion():
    with pytest.raises(ConfigError, match="unknown task 'walker-wlak'. Did you mean walker-walk"):
        reg.get("walker-wlak")
    with pytest.raises(ConfigError, match="more than once"):
        reg.expand(["mt30", "cheetah-run"])
    assert reg.expand(["mt30", "mw-reach"])[-1] == "mw-reach"
    assert reg.default_task_dim(reg.MT30) == 64 and reg.default_task_dim(reg.MT80) == 96
    assert reg.normalized_score("cheetah-run", 512.0, None) == 51.2
    assert reg.normalized_score("mw-reach", 0.0, 0.5) == 50.0


def test_registry_imports_only_the_standard_library():
    out = subprocess.run([sys.executable, "-c", "import sys; import mbdpo_fast.task_registry; "
                          "print(sorted(m for m in ('torch', 'numpy', 'omegaconf', 'hydra') if m in sys.modules))"],
                         capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


def test_dmcontrol_rows_are_dm_controls_tasks_with_their_dims():
    from mbdpo_fast.envs.custom_tasks import CUSTOM_TASKS
    from mbdpo_fast.envs.cpu.dmcontrol import suite_tasks

    assert set(reg.names(suite="dmcontrol")) == set(suite_tasks()) | set(CUSTOM_TASKS)
    assert {t for t in reg.TASKS if reg.get(t).custom} == set(CUSTOM_TASKS)
    for task in reg.names(suite="dmcontrol"):
        env = make_suite_env(task, 0)
        assert (reg.get(task).obs_dim, reg.get(task).action_dim) == (env.obs_dim, env.action_dim), task
        assert (env.action_repeat, env.episode_length) == (2, 500)


@pytest.mark.skipif(importlib.util.find_spec("mujoco_playground") is None, reason="needs the mjx extra")
def test_mjx_rows_name_playground_environments():
    from mujoco_playground import registry as pg

    for task in reg.names(mjx=True):
        row = reg.get(task)
        assert row.custom or row.dmc_mjx or row.playground in pg.dm_control_suite.ALL_ENVS, task
    # dm_control's own model on MJX: the tasks Playground lacks
    assert [t for t in reg.names(mjx=True) if reg.get(t).dmc_mjx] == [
        "dog-run", "dog-stand", "dog-trot", "dog-walk", "quadruped-run", "quadruped-walk", "dog-fetch", "quadruped-fetch"]


def test_mjx_implementation_of_each_task():
    """impl=auto: the dog on MuJoCo Warp, the quadruped on MJX's JAX implementation, pixels on Warp
    (its renderer), the rest on JAX; an explicit choice is kept, and one the task cannot run is named."""
    assert [reg.mjx_impl(t) for t in ("dog-run", "quadruped-walk", "cheetah-run")] == ["warp", "jax", "jax"]
    assert reg.mjx_impl("cheetah-run", pixels=True) == "warp" and reg.mjx_impl("cheetah-run", "jax", True) == "jax"
    assert reg.mjx_impl_refusal("dog-stand", "warp") is None and reg.mjx_impl_refusal("cheetah-run", "warp") is None
    assert reg.mjx_impl_refusal("dog-stand", "jax").startswith("impl=jax: dog-stand runs on MJX's Warp implementation only")
    assert "set impl=jax or leave impl=auto" in reg.mjx_impl_refusal("quadruped-run", "warp")
    # of dm_control's dog and quadruped tasks only quadruped-escape has no MJX version
    assert [t for t in reg.names(suite="dmcontrol", mjx=False) if t.startswith(("dog", "quadruped"))] == \
        list(reg.NO_MJX_REASON) == ["quadruped-escape"]


_SUITE_DIMS = """
import json, sys
from mbdpo_fast.envs.cpu.suites import make_suite_env
from mbdpo_fast.errors import AssetError
out = {}
for t in json.loads(sys.argv[1]):
    try:
        env = make_suite_env(t, 0)
    except AssetError:  # a download this machine has not made (ManiSkill's YCB objects, faucets)
        continue
    out[t] = [env.obs_dim, env.action_dim, env.action_repeat, env.episode_length]
print(json.dumps(out))
"""


@pytest.mark.slow
@pytest.mark.parametrize("suite", ["metaworld", "myosuite", "maniskill"])
def test_suite_rows_match_the_suites_environments(suite):
    """Every row against its environment (ManiSkill: the tasks whose assets are here, at least the
    two cube tasks, which need none)."""
    try:
        python = suite_python(suite)
    except ConfigError as exc:
        pytest.skip(str(exc))
    tasks = reg.names(suite=suite)
    out = subprocess.run([python, "-c", _SUITE_DIMS, json.dumps(tasks)], capture_output=True, text=True,
                         cwd=ROOT, timeout=1200, env={"PYTHONPATH": str(ROOT), "MUJOCO_GL": "disable", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-2000:]
    dims = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(dims) >= ({"ms-pick-cube", "ms-stack-cube"} if suite == "maniskill" else set(tasks))
    for t in dims:
        row = reg.get(t)
        assert dims[t] == [row.obs_dim, row.action_dim, row.action_repeat, row.episode_length], t
