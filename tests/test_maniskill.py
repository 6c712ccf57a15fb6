"""ManiSkill tasks (ms-*): TD-MPC2's conventions on a fake simulator, and ManiSkill3 itself through
the suite worker where .venv-maniskill (make venv-maniskill) or MBDPO_MANISKILL_PYTHON exists."""
import numpy as np
import pytest

from mbdpo_fast.envs.cpu.wrappers import ActionRepeat, AutoReset, TimeLimit


class FakeManiSkill:
    """Simulator steps that pay reward 0.1 x (step number); the suite's `done` from step `done_at` on."""

    obs_dim, action_dim, has_success = 3, 2, True

    def __init__(self, done_at: int | None = None):
        self.done_at, self.t, self.calls = done_at, 0, 0

    def reset(self):
        self.t = 0
        return np.zeros(3, np.float32)

    def step(self, action):
        self.t += 1
        self.calls += 1
        done = self.done_at is not None and self.t >= self.done_at
        return np.full(3, self.t, np.float32), 0.1 * self.t, False, False, {"success": float(done), "done": done}


def conventions(sim):
    return TimeLimit(ActionRepeat(sim, 2, stop_info="done"), 100)


def test_repeat_sums_rewards_and_the_episode_lasts_100_agent_steps():
    env = conventions(sim := FakeManiSkill())
    env.reset()
    obs, reward, terminated, truncated, _ = env.step(np.zeros(2))
    assert sim.calls == 2 and reward == pytest.approx(0.1 + 0.2) and obs[0] == 2
    for t in range(2, 101):
        obs, reward, terminated, truncated, _ = env.step(np.zeros(2))
        assert not terminated and truncated == (t == 100)
    assert sim.calls == 200


def test_the_suites_done_cuts_the_repeat_short_but_not_the_episode():
    """done at the third simulator step: the second agent step stops after one simulator step
    (reward 0.3 only); later agent steps take one simulator step each; success is reported and the
    episode still runs to 100 agent steps."""
    env = conventions(sim := FakeManiSkill(done_at=3))
    env.reset()
    env.step(np.zeros(2))
    obs, reward, terminated, truncated, info = env.step(np.zeros(2))
    assert sim.calls == 3 and reward == pytest.approx(0.3) and info["success"] == 1.0
    assert not terminated and not truncated
    steps = 2
    while not truncated:
        _, _, terminated, truncated, _ = env.step(np.zeros(2))
        steps += 1
        assert not terminated
    assert steps == 100 and sim.calls == 3 + 98


def test_auto_reset_after_the_time_limit():
    env = AutoReset(conventions(FakeManiSkill()))
    env.reset()
    for _ in range(99):
        env.step(np.zeros(2))
    obs, _, _, truncated, info = env.step(np.zeros(2))
    assert truncated and info["final_obs"][0] == 200 and obs[0] == 0


def test_task_rows_and_the_refused_lift_cube():
    from mbdpo_fast import task_registry as reg
    from mbdpo_fast.envs.cpu.suites import MANISKILL_IDS
    from mbdpo_fast.errors import ConfigError

    assert set(MANISKILL_IDS) == {"ms-lift-cube", "ms-pick-cube", "ms-stack-cube", "ms-pick-ycb", "ms-turn-faucet"}
    assert reg.names(suite="maniskill") == ["ms-pick-cube", "ms-stack-cube", "ms-pick-ycb", "ms-turn-faucet"]
    for name in reg.names(suite="maniskill"):
        row = reg.get(name)
        assert (row.action_repeat, row.episode_length, row.has_success, row.paper) == (2, 100, True, True)
    with pytest.raises(ConfigError, match="LiftCube-v0, which ManiSkill3 does not have: train ms-pick-cube"):
        reg.get("ms-lift-cube")


def test_lift_cube_is_one_error_line(tmp_path):
    from helpers import run_cli

    p = run_cli("mbdpo_fast.train", ["task=ms-lift-cube", f"hydra.run.dir={tmp_path}"], cwd=tmp_path)
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
    assert p.returncode == 2 and len(errors) == 1 and "train ms-pick-cube" in errors[0], p.stderr


def maniskill_python():
    from mbdpo_fast.envs.cpu import suite_python
    from mbdpo_fast.errors import ConfigError

    try:
        return suite_python("maniskill")
    except ConfigError as exc:
        pytest.skip(str(exc))


@pytest.mark.parametrize("task,dims", [("ms-pick-cube", (42, 4)), ("ms-stack-cube", (48, 4))])
def test_cube_tasks_through_the_worker(task, dims):
    """Two ManiSkill3 workers: shapes, finite observations, rewards within normalized_dense's [0, 1]
    per simulator step (so [0, 2] per agent step), seeded resets that repeat, and 110 agent steps,
    which cross the 100-step time limit and the same-step reset (success reported each step)."""
    import torch

    from mbdpo_fast.envs.cpu.vector import AsyncVecEnv

    maniskill_python()
    env = AsyncVecEnv(task, 2, seed=3)
    try:
        assert (env.obs_dim, env.action_dim) == dims and env.has_success
        first = env.reset()
        assert first.shape == (2, dims[0]) and torch.isfinite(first).all()
        assert not torch.equal(first[0], first[1])  # seeds 3 and 4
        torch.manual_seed(0)
        for t in range(1, 111):
            obs, reward, terminated, truncated, info = env.step(torch.rand(2, dims[1]) * 2 - 1)
            assert torch.isfinite(obs).all() and ((reward >= 0) & (reward <= 2)).all()
            assert not terminated.any() and bool(truncated.all()) == (t == 100)
            assert set(info["success"].tolist()) <= {0.0, 1.0}
        assert (info["episode_length"] == 10).all()
    finally:
        env.close()
    again = AsyncVecEnv(task, 2, seed=3)
    try:
        assert torch.equal(again.reset(), first)
    finally:
        again.close()


def test_a_task_whose_assets_are_missing_is_one_error_line(tmp_path):
    """ms-pick-ycb needs ManiSkill's YCB objects: with an empty asset directory the run stops with
    one error line naming the download command; nothing is downloaded."""
    from helpers import run_cli

    maniskill_python()
    assets = tmp_path / "assets"
    assets.mkdir()
    p = run_cli("mbdpo_fast.train", ["task=ms-pick-ycb", "device=cpu", "steps=10", f"hydra.run.dir={tmp_path / 'run'}"],
                cwd=tmp_path, env={"MS_ASSET_DIR": str(assets)})
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
    assert p.returncode == 2 and len(errors) == 1, p.stderr[-3000:]
    assert "mani_skill.utils.download_asset ycb" in errors[0] and "Traceback" not in p.stderr
    assert not any(assets.iterdir())


_VEC_AGAINST_WORKER = """
import json, torch
from mbdpo_fast.envs.maniskill import ManiSkillVecEnv
from mbdpo_fast.envs.cpu.suites import make_suite_env
from mbdpo_fast.envs.cpu.wrappers import AutoReset
vec = ManiSkillVecEnv("ms-pick-cube", 1, seed=5, episode_length=6, device="cpu")
ref = AutoReset(make_suite_env("ms-pick-cube", 5, 2, 6))
out = {"reset": float((vec.reset()[0] - torch.as_tensor(ref.reset())).abs().max()), "obs": [], "reward": [],
       "flags": [], "terminal": []}
g = torch.Generator().manual_seed(0)
for t in range(8):
    a = torch.rand(1, vec.action_dim, generator=g) * 2 - 1
    obs, reward, terminated, truncated, info = vec.step(a)
    obs_r, reward_r, terminated_r, truncated_r, info_r = ref.step(a[0].numpy())
    out["obs"].append(float((obs[0] - torch.as_tensor(obs_r)).abs().max()))
    out["reward"].append(abs(float(reward[0]) - reward_r))
    out["flags"].append([bool(truncated[0]), bool(truncated_r), bool(terminated[0]), bool(terminated_r)])
    if truncated_r:
        out["terminal"].append(float((info["terminal_obs"][0] - torch.as_tensor(info_r["final_obs"])).abs().max()))
out["length"], out["device"] = int(info["episode_length"][0]), str(obs.device)
print(json.dumps(out))
"""


def test_in_process_backend_equals_the_worker_on_cpu():
    """env_backend=maniskill's batched class, run on ManiSkill's CPU backend (one env), steps
    exactly as the worker's adapter for the same seed and actions: observations, summed rewards, the
    6-step time limit and the terminal observation (after the reset, ManiSkill's partial reset draws
    a different episode than a full reset, so the comparison stops there)."""
    import json
    import subprocess
    from pathlib import Path

    python = maniskill_python()
    root = Path(__file__).resolve().parents[1]
    p = subprocess.run([python, "-c", _VEC_AGAINST_WORKER], capture_output=True, text=True, timeout=600, cwd=root,
                       env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["reset"] == 0.0 and max(out["obs"][:5]) == 0.0 and max(out["reward"][:6]) < 1e-6
    assert [f[:2] for f in out["flags"]] == [[t == 5, t == 5] for t in range(8)]
    assert not any(f[2] or f[3] for f in out["flags"]) and out["terminal"] == [0.0]
    assert out["length"] == 2 and out["device"] == "cpu"


@pytest.mark.cuda
def test_physx_cuda_backend_hands_device_tensors_over():
    """Where CUDA and mani-skill exist in this interpreter: 64 environments on physx_cuda, observations
    and rewards on the GPU, the step's observation the simulation's own tensor where nothing ended."""
    import torch

    pytest.importorskip("mani_skill")
    from mbdpo_fast.envs.maniskill import ManiSkillVecEnv

    env = ManiSkillVecEnv("ms-pick-cube", 64, seed=0, episode_length=3, device="cuda")
    obs = env.reset()
    assert obs.shape == (64, 42) and obs.is_cuda
    for t in range(1, 5):
        obs, reward, terminated, truncated, info = env.step(torch.rand(64, 4, device="cuda") * 2 - 1)
        assert obs.is_cuda and reward.is_cuda and torch.isfinite(obs).all()
        assert bool(truncated.all()) == (t == 3) and not terminated.any()
    env.close()


def test_maniskill_backend_refusals(tmp_path):
    from helpers import compose_cfg

    from mbdpo_fast.config import resolve_task
    from mbdpo_fast.envs import make_env
    from mbdpo_fast.errors import ConfigError

    with pytest.raises(ConfigError, match="simulates ManiSkill tasks"):
        resolve_task(compose_cfg(["task=cheetah-run", "env_backend=maniskill", "device=cpu"], tmp_path))
    spec = resolve_task(compose_cfg(["task=ms-pick-cube", "env_backend=maniskill", "device=cpu", "num_envs=4"], tmp_path))
    with pytest.raises(ConfigError, match="runs ManiSkill3 in this process|one environment per process"):
        make_env(spec, 4, 0)


def test_the_paper_faithful_maniskill2_route_resolves_its_own_tasks(tmp_path, monkeypatch):
    """maniskill=2: the ManiSkill2 sizes (lift-cube included) and the ManiSkill2 interpreter, whose
    absence is one clear error naming make venv-maniskill2 (the route itself needs an NVIDIA Vulkan
    device and is not run here)."""
    from helpers import compose_cfg

    from mbdpo_fast.config import resolve_task
    from mbdpo_fast.envs import make_env
    from mbdpo_fast.errors import ConfigError

    spec = resolve_task(compose_cfg(["task=ms-lift-cube", "maniskill=2", "device=cpu"], tmp_path))
    assert (spec.obs_dim, spec.action_dim, spec.action_repeat, spec.episode_length) == (42, 4, 2, 100)
    assert resolve_task(compose_cfg(["task=ms-pick-cube", "maniskill=2", "device=cpu"], tmp_path)).obs_dim == 51
    assert resolve_task(compose_cfg(["task=ms-pick-cube", "device=cpu"], tmp_path)).obs_dim == 42
    with pytest.raises(ConfigError, match="use 3 \\(ManiSkill3\\) or 2"):
        resolve_task(compose_cfg(["task=ms-pick-cube", "maniskill=1", "device=cpu"], tmp_path))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MBDPO_MANISKILL2_PYTHON", raising=False)
    import mbdpo_fast.envs.cpu as cpu

    monkeypatch.setattr(cpu.Path, "exists", lambda self: False)  # no .venv-maniskill2 anywhere
    with pytest.raises(ConfigError, match="make venv-maniskill2"):
        make_env(spec, 1, 0)
