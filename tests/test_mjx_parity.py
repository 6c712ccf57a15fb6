"""Every MJX task observes and rewards like dm_control on matched physics states (float32: 1e-5)."""
import pytest

pytest.importorskip("mujoco_playground")

from mbdpo_fast.envs.mjx.tasks import PHYSICS_NOTES, mjx_task_names  # noqa: E402

from mjx_parity import parity_errors  # noqa: E402

TOL = 1e-5


@pytest.mark.parametrize("task", mjx_task_names())
def test_observation_and_reward_match_dm_control(task):
    err_obs, err_rew = parity_errors(task)
    assert err_obs < TOL and err_rew < TOL, f"{task}: obs {err_obs:.2e}, reward {err_rew:.2e}"


def test_task_list_and_notes():
    names = mjx_task_names()
    assert len(names) == 36  # Playground's 25 DM Control Suite tasks + TD-MPC2's 11 custom tasks
    assert set(PHYSICS_NOTES) <= set(names)
