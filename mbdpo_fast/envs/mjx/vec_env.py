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

With pixels=True (obs=rgb; impl=warp) observations are the last 3 RGB frames of the task's
camera, uint8 [E, 9, 64, 64] (envs/mjx/pixels.py), rendered once per agent step after the action
repeat, the first frame repeated on reset: the conventions of the CPU workers' PixelObservation.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jp
import torch

from ... import task_registry
from .bridge import jax_device_for, to_jax, to_torch
from .tasks import build_task


class MJXVecEnv:
    def __init__(self, task: str, num_envs: int, seed: int = 0, action_repeat: int = 2,
                 episode_length: int = 500, impl: str = "auto", device: str | torch.device = "cpu",
                 pixels: bool = False):
        self.task, self.num_envs = task, int(num_envs)
        self.action_repeat, self.episode_length = int(action_repeat), int(episode_length)
        self.torch_device = self.device = torch.device(device)
        self.jax_device = jax_device_for(self.torch_device)
        self.env = build_task(task, impl, pixels, num_envs=self.num_envs)
        m = self.env.mj_model
        self.action_dim = int(self.env.action_size)
        self._lo = jp.asarray(m.actuator_ctrlrange[:, 0], dtype=jp.float32)
        self._hi = jp.asarray(m.actuator_ctrlrange[:, 1], dtype=jp.float32)
        self.obs_dim = int(self.env.observation_size)
        self.obs_shape = (self.obs_dim,)
        self._frames = None
        if pixels:
            from .pixels import WarpFrames

            self._frames = WarpFrames(m, self.env.mjx_model, self.num_envs, task_registry.PIXEL_CAMERAS[task],
                                      task_registry.PIXEL_SIZE, self.jax_device)
            self.obs_shape = task_registry.pixel_shape()
            self.obs_dim = math.prod(self.obs_shape)
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
        if self._frames is not None:
            carry["stack"] = self._first_stack(state)
        return jax.tree_util.tree_map(lambda x: jax.lax.convert_element_type(x, x.dtype), carry)

    def _first_stack(self, state):
        """uint8 [E, 3 x frames, H, W]: each env's current frame repeated (an episode's first stack)."""
        return jp.tile(self._frames(state.data), (1, task_registry.PIXEL_FRAMES, 1, 1))

    def _observe(self, state, carry):
        """The step's observation: the state vector, or the frame stack with the new frame last."""
        if self._frames is None:
            return state.obs
        return jp.concatenate([carry["stack"][:, 3:], self._frames(state.data)], axis=1)

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
        obs = self._observe(state, carry)

        def pick(f, s):  # fresh where done; leaves without the batch axis (Warp Data has some) stay
            if s.ndim == 0 or s.shape[0] != done.shape[0]:
                return s
            return jp.where(done.reshape((-1,) + (1,) * (s.ndim - 1)), f, s)

        terminal_obs = jp.where(physics_error.reshape((-1,) + (1,) * (obs.ndim - 1)), 0, obs).astype(obs.dtype)

        def reset_done(args):
            state, keys, obs = args
            split = jax.vmap(jax.random.split)(keys)
            fresh = jax.vmap(self.env.reset)(split[:, 1])
            # A render context draws all E worlds at once: the fresh states' frames are rendered
            # for every env and kept where an episode ended.
            first = fresh.obs if self._frames is None else self._first_stack(fresh)
            return (jax.tree_util.tree_map(pick, fresh, state), jp.where(done[:, None], split[:, 0], keys),
                    pick(first, obs))

        state, keys, obs = jax.lax.cond(done.any(), reset_done, lambda args: args, (state, carry["key"], obs))
        new_carry = {"state": state, "t": jp.where(done, 0, t), "ret": jp.where(done, 0.0, ret), "key": keys}
        if self._frames is not None:
            new_carry["stack"] = obs
        # Same dtypes as the carry that came in, and no weak types (Playground returns some leaves
        # weakly typed: a step's reward, cheetah's reset time), so that the next call hits the
        # compiled step instead of re-tracing.
        new_carry = jax.tree_util.tree_map(lambda new, old: jax.lax.convert_element_type(new, old.dtype),
                                           new_carry, carry)
        # Frame stacks leave through the carry only: a second output of the same stack would be a
        # second buffer (XLA copies values returned twice), E x 36 KB per step.
        out = {} if self._frames is not None else {"obs": obs}
        out |= {"reward": reward, "terminated": terminated, "truncated": truncated,
               "done": done, "terminal_obs": terminal_obs, "episode_return": ret, "episode_length": t,
               "physics_error": physics_error}
        return new_carry, out

    # ---------------------------------------------------------------- torch-facing API
    def _warm_up(self) -> None:
        """Compile reset and step once, with an action that arrives through DLPack from torch (an
        array built by JAX itself has another layout and would compile the step a second time)."""
        carry = self._reset_fn(self._key)
        self._step_fn(carry, to_jax(torch.zeros(self.num_envs, self.action_dim, device=self.torch_device)))

    def _obs_of(self, carry) -> jax.Array:
        return carry["stack"] if self._frames is not None else carry["state"].obs

    def reset(self, seed: int | None = None) -> torch.Tensor:
        """Start fresh episodes, from PRNGKey(seed) when given, else continuing the key stream."""
        if seed is not None:
            self._key = jax.random.PRNGKey(seed)
        self._key, sub = jax.random.split(self._key)
        self._carry = self._reset_fn(sub)
        return to_torch(self._obs_of(self._carry))

    def step(self, actions: torch.Tensor):
        """actions [E, A] torch float32 on the env's device -> obs [E, D] (pixels: uint8 [E, 9, H, W]), reward [E],
        terminated [E] bool, truncated [E] bool, info (torch tensors)."""
        if self._carry is None:
            raise RuntimeError("call reset() before step()")
        if tuple(actions.shape) != (self.num_envs, self.action_dim):
            raise ValueError(f"actions must be [{self.num_envs}, {self.action_dim}], got {list(actions.shape)}")
        self._carry, out = self._step_fn(self._carry, to_jax(actions.to(self.torch_device, torch.float32).contiguous()))
        out = {k: to_torch(v) for k, v in out.items()}
        info = {k: out[k] for k in ("terminal_obs", "episode_return", "episode_length", "done", "physics_error")}
        obs = out["obs"] if self._frames is None else to_torch(self._carry["stack"])
        return obs, out["reward"], out["terminated"], out["truncated"], info

    def render_rgb(self, indices: list[int], size: int) -> list:
        """The current frames of copies `indices`, uint8 [size, size, 3] each: their positions,
        velocities and mocap poses copied to the host into C MuJoCo (mj_forward) and rendered there
        from the task's first camera (headless OpenGL: envs/cpu/pixels.use_headless_gl before MuJoCo
        is imported). For evaluation videos: one small device-to-host copy per call."""
        import mujoco
        import numpy as np

        m = self.env.mj_model
        if getattr(self, "_renderer", None) is None or self._renderer.height != size:
            self._renderer, self._mj_data = mujoco.Renderer(m, size, size), mujoco.MjData(m)
        data, idx = self._carry["state"].data, np.asarray(indices)
        fields = ["qpos", "qvel"] + (["mocap_pos", "mocap_quat"] if m.nmocap else [])
        host = {f: np.asarray(getattr(data, f)[idx]) for f in fields}
        frames = []
        for k in range(len(indices)):
            for f in fields:
                getattr(self._mj_data, f)[:] = host[f][k]
            mujoco.mj_forward(m, self._mj_data)
            self._renderer.update_scene(self._mj_data, camera=0 if m.ncam else -1)
            frames.append(self._renderer.render().copy())
        return frames

    def compiled_counts(self) -> dict[str, int]:
        """Distinct compiled versions of the jitted reset and step ({"reset": 1, "step": 1} after
        warm-up when nothing re-traces)."""
        return {"reset": self._reset_fn._cache_size(), "step": self._step_fn._cache_size()}
