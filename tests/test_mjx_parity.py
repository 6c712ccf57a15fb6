"""Every MJX task observes and rewards like dm_control on matched physics states (float32: 1e-5;
quadruped's contact-force sensors 1e-3, the dog's on MuJoCo Warp 1e-2)."""
import pytest

pytest.importorskip("mujoco_playground")

from mbdpo_fast.envs.mjx.tasks import PHYSICS_NOTES, mjx_task_names  # noqa: E402

from mjx_parity import parity_errors  # noqa: E402

TOL = 1e-5
# quadruped observes its toe forces and torques (arcsinh of contact forces), which come out of the
# constraint solver: MJX's and C MuJoCo's solvers agree to 7.8e-4 there (measured), the rest to 1e-5
OBS_TOL = {"quadruped-walk": 1e-3, "quadruped-run": 1e-3, "quadruped-fetch": 1e-3}
# the dog (MuJoCo Warp) observes its accelerometer and foot forces, also out of the solver: 4.2e-3
OBS_TOL.update({t: 1e-2 for t in ("dog-stand", "dog-walk", "dog-trot", "dog-run", "dog-fetch")})


@pytest.mark.parametrize("task", mjx_task_names())
def test_observation_and_reward_match_dm_control(task):
    err_obs, err_rew = parity_errors(task)
    assert err_obs < OBS_TOL.get(task, TOL) and err_rew < TOL, f"{task}: obs {err_obs:.2e}, reward {err_rew:.2e}"


def test_task_list_and_notes():
    names = mjx_task_names()
    # Playground's 25 DM Control Suite tasks + TD-MPC2's 11 custom tasks + quadruped-walk/-run/-fetch + 5 dog tasks
    assert len(names) == 44 and {"quadruped-walk", "quadruped-run", "dog-stand", "dog-run"} <= set(names)
    assert set(PHYSICS_NOTES) <= set(names)
