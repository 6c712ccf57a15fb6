"""E MJX environments stepped together on one device, exposed as torch tensors by DLPack.

    env = MJXVecEnv("cheetah-run", num_envs=1024, seed=0, device="cuda")
    obs = env.reset()                                   # [E, obs_dim] float32 torch
    obs, reward, terminated, truncated, info = env.step(actions)   # actions [E, A] torch in [-1, 1]

TD-MPC2 conventions: actions in [-1, 1] rescaled to each actuator's ctrlrange, `action_repeat`
control steps per agent step with their rewards summed, truncation after `episode_length` agent
steps. Episodes end together or alone; envs that ended are reset inside the same jitted step
(auto-reset), and info["terminal_obs"] keeps the observation they ended on (for TD targets),
with info["episode_return"]/["episode_length"] valid where info["done"].

The reset branch runs only when some env is done (`lax.cond` on the batch), so a task whose reset
is costly (cheetah stabilises for 200 physics steps) pays for it once per episode, not per step.
Data cross the boundary without copies: observations leave as JAX buffers viewed by torch
(`torch.from_dlpack`), actions enter as torch buffers viewed by JAX. Nothing is donated, so a
torch view of an earlier step's output stays valid. A physics blow-up (NaN state, Playground's
`done`) ends that env's episode as truncated with info["physics_error"] set and a zeroed
terminal observation; DM Control tasks have no terminal states, so `terminated` stays False.
"""
from __future__ import annotations


import jax
import jax.numpy as jp
import torch

from .bridge import jax_device_for, to_jax, to_torch
from .tasks import build_task


class MJXVecEnv:
    def __init__(self, task: str, num_envs: int, seed: int = 0, action_repeat: int = 2,
                 episode_length: int = 500, impl: str = "jax", device: str | torch.device = "cpu"):
        self.task, self.num_envs = task, int(num_envs)
        self.action_repeat, self.episode_length = int(action_repeat), int(episode_length)
        self.torch_device = self.device = torch.device(device)
        self.jax_device = jax_device_for(self.torch_device)
        self.env = build_task(task, impl)
        m = self.env.mj_model
        self.action_dim = int(self.env.action_size)
        self._lo = jp.asarray(m.actuator_ctrlrange[:, 0], dtype=jp.float32)
        self._hi = jp.asarray(m.actuator_ctrlrange[:, 1], dtype=jp.float32)
        self.obs_dim = int(self.env.observation_size)
        self._reset_fn = jax.jit(self._reset_batch, device=self.jax_device)
        self._step_fn = jax.jit(self._step_batch, device=self.jax_device)
        self._key = jax.random.PRNGKey(seed)
        self._carry = None
        self._warm_up()

    # ---------------------------------------------------------------- pure JAX (traced once)
    def _reset_batch(self, key):
        keys = jax.random.split(key, self.num_envs + 1)
        state = jax.vmap(self.env.reset)(keys[1:])
        E = self.num_envs
        carry = {"state": state, "t": jp.zeros(E, jp.int32), "ret": jp.zeros(E, jp.float32),
                 "key": jax.random.split(keys[0], E)}
        return jax.tree_util.tree_map(lambda x: jax.lax.convert_element_type(x, x.dtype), carry)

    def _step_batch(self, carry, action):
        a = self._lo + (jp.clip(action, -1.0, 1.0) + 1.0) * 0.5 * (self._hi - self._lo)
        vstep = jax.vmap(self.env.step)

        def repeat(state, _):
            state = vstep(state, a)
            return state, state.reward

        state, rewards = jax.lax.scan(repeat, carry["state"], None, length=self.action_repeat)
        physics_error = state.done > 0.5
        reward = jp.where(physics_error, 0.0, rewards.sum(0)).astype(jp.float32)
        t = carry["t"] + 1
        truncated = (t >= self.episode_length) | physics_error
        terminated = jp.zeros_like(truncated)
        done = terminated | truncated
        ret = carry["ret"] + reward
        terminal_obs = jp.where(physics_error[:, None], 0.0, state.obs)

        def reset_done(args):
            state, keys = args
            split = jax.vmap(jax.random.split)(keys)
            fresh = jax.vmap(self.env.reset)(split[:, 1])
            pick = lambda f, s: jp.where(done.reshape((-1,) + (1,) * (s.ndim - 1)), f, s)
            return jax.tree_util.tree_map(pick, fresh, state), jp.where(done[:, None], split[:, 0], keys)

        state, keys = jax.lax.cond(done.any(), reset_done, lambda args: args, (state, carry["key"]))
        new_carry = {"state": state, "t": jp.where(done, 0, t), "ret": jp.where(done, 0.0, ret), "key": keys}
        # Same dtypes as the carry that came in, and no weak types (Playground returns some leaves
        # weakly typed: a step's reward, cheetah's reset time), so that the next call hits the
        # compiled step instead of re-tracing.
        new_carry = jax.tree_util.tree_map(lambda new, old: jax.lax.convert_element_type(new, old.dtype),
                                           new_carry, carry)
        out = {"obs": state.obs, "reward": reward, "terminated": terminated, "truncated": truncated,
               "done": done, "terminal_obs": terminal_obs, "episode_return": ret, "episode_length": t,
               "physics_error": physics_error}
        return new_carry, out

    # ---------------------------------------------------------------- torch-facing API
    def _warm_up(self) -> None:
        """Compile reset and step once, with an action that arrives through DLPack from torch (an
        array built by JAX itself has another layout and would compile the step a second time)."""
        carry = self._reset_fn(self._key)
        self._step_fn(carry, to_jax(torch.zeros(self.num_envs, self.action_dim, device=self.torch_device)))

    def reset(self, seed: int | None = None) -> torch.Tensor:
        """Start fresh episodes, from PRNGKey(seed) when given, else continuing the key stream."""
        if seed is not None:
            self._key = jax.random.PRNGKey(seed)
        self._key, sub = jax.random.split(self._key)
        self._carry = self._reset_fn(sub)
        return to_torch(self._carry["state"].obs)

    def step(self, actions: torch.Tensor):
        """actions [E, A] torch float32 on the env's device -> obs [E, D], reward [E],
        terminated [E] bool, truncated [E] bool, info (torch tensors)."""
        if self._carry is None:
            raise RuntimeError("call reset() before step()")
        if tuple(actions.shape) != (self.num_envs, self.action_dim):
            raise ValueError(f"actions must be [{self.num_envs}, {self.action_dim}], got {list(actions.shape)}")
        self._carry, out = self._step_fn(self._carry, to_jax(actions.to(self.torch_device, torch.float32).contiguous()))
        out = {k: to_torch(v) for k, v in out.items()}
        info = {k: out[k] for k in ("terminal_obs", "episode_return", "episode_length", "done", "physics_error")}
        return out["obs"], out["reward"], out["terminated"], out["truncated"], info

    def compiled_counts(self) -> dict[str, int]:
        """Distinct compiled versions of the jitted reset and step ({"reset": 1, "step": 1} after
        warm-up when nothing re-traces)."""
        return {"reset": self._reset_fn._cache_size(), "step": self._step_fn._cache_size()}
