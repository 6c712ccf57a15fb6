"""The CPU suites' episode conventions (envs/cpu/wrappers.py) on a scripted adapter."""
from mbdpo_fast.envs.cpu.wrappers import ActionRepeat, AutoReset, TimeLimit


class Scripted:
    """Reward t at simulator step t; terminates at step `end` (None: never)."""

    obs_dim, action_dim, random_state = 1, 1, "rng"

    def __init__(self, end=None):
        self.end, self.t, self.actions = end, 0, []

    def reset(self):
        self.t = 0
        return [0.0]

    def step(self, action):
        self.t += 1
        self.actions.append(action)
        return [float(self.t)], float(self.t), self.t == self.end, False, {"t": self.t}


def test_repeat_sums_rewards_and_stops_at_an_episode_end():
    env = ActionRepeat(Scripted(end=5), 2)
    assert env.reset() == [0.0] and env.action_repeat == 2 and env.random_state == "rng"
    assert env.step(0.5) == ([2.0], 1.0 + 2.0, False, False, {"t": 2})
    assert env.env.actions == [0.5, 0.5]
    env.step(0.1)
    obs, r, term, trunc, info = env.step(0.1)  # simulator step 5 terminates: no 6th step
    assert (obs, r, term, trunc, info["t"]) == ([5.0], 5.0, True, False, 5)


def test_time_limit_truncates_unless_terminated():
    env = TimeLimit(ActionRepeat(Scripted(), 3), 4)
    env.reset()
    flags = [env.step(0.0)[2:4] for _ in range(4)]
    assert flags == [(False, False)] * 3 + [(False, True)]
    env.reset()
    assert env.step(0.0)[3] is False and env.env.env.t == 3  # reset restarts the count
    env = TimeLimit(Scripted(end=2), 2)
    env.reset()
    env.step(0.0)
    assert env.step(0.0)[2:4] == (True, False)  # terminated, not truncated


def test_auto_reset_hands_out_the_next_first_observation():
    env = AutoReset(TimeLimit(Scripted(), 2))
    env.reset()
    assert env.step(0.0) == ([1.0], 1.0, False, False, {"t": 1})
    obs, r, term, trunc, info = env.step(0.0)
    assert obs == [0.0] and trunc and info["final_obs"] == [2.0] and info["final_info"] == {"t": 2}
    assert env.step(0.0)[0] == [1.0]  # the new episode
