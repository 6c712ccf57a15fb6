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
