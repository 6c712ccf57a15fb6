"""TD-MPC2's episode conventions for the CPU suites, written once as wrappers over a suite
adapter (dmcontrol.py, suites.py) that steps the simulator once per call:

    TimeLimit(ActionRepeat(adapter, k), L)

ActionRepeat plays each action k times, summing the rewards, and stops early where the adapter's
episode ends; TimeLimit truncates after L agent steps. Auto-reset follows gymnasium's same-step
convention: gymnasium's vector envs do it for dm_control, AutoReset below for the suite workers. Both wrappers pass every other
attribute (obs_dim, action_dim, random_state, physics, has_success, ...) through to the adapter.
Imports nothing but the standard library (suite workers run it under other interpreters).
"""
from __future__ import annotations


class _Wrapper:
    def __init__(self, env):
        self.env = env

    def __getattr__(self, name):  # only called for attributes not found on the wrapper
        if name == "env":
            raise AttributeError(name)
        return getattr(self.env, name)

    def reset(self):
        return self.env.reset()


class ActionRepeat(_Wrapper):
    """step(a): `action_repeat` adapter steps with a, rewards summed; the last step's observation,
    flags and info; fewer steps if the adapter's episode ends first, or (stop_info) where the
    adapter's info[stop_info] is true: a suite's own `done` that cuts the repeat short without
    ending the episode (ManiSkill's, as TD-MPC2's wrapper breaks its repeat loop on it)."""

    def __init__(self, env, action_repeat: int, stop_info: str | None = None):
        super().__init__(env)
        self.action_repeat = int(action_repeat)
        self.stop_info = stop_info

    def step(self, action):
        reward = 0.0
        for _ in range(self.action_repeat):
            obs, r, terminated, truncated, info = self.env.step(action)
            reward += r
            if terminated or truncated or (self.stop_info is not None and info.get(self.stop_info)):
                break
        return obs, reward, terminated, truncated, info


class TimeLimit(_Wrapper):
    """Truncate the episode after `episode_length` agent steps (unless it terminated)."""

    def __init__(self, env, episode_length: int):
        super().__init__(env)
        self.episode_length = int(episode_length)
        self._t = 0

    def reset(self):
        self._t = 0
        return self.env.reset()

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._t += 1
        truncated = (not terminated) and (truncated or self._t >= self.episode_length)
        return obs, reward, terminated, truncated, info


class AutoReset(_Wrapper):
    """Same-step auto-reset (gymnasium's convention): a step that ends the episode resets the env
    and returns the next episode's first observation; the terminal observation and info are
    info["final_obs"] and info["final_info"]."""

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if terminated or truncated:
            info = {**info, "final_obs": obs, "final_info": info}
            obs = self.env.reset()
        return obs, reward, terminated, truncated, info
