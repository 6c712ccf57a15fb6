"""Batched RGB frames of MJX tasks from MuJoCo Warp's ray-traced renderer (obs=rgb with env_backend=mjx).

    frames = WarpFrames(env.mj_model, env.mjx_model, num_envs=E, camera=0, size=64, device=jax_device)
    rgb = frames(data)          # inside jit: batched Data [E] -> uint8 [E, 3, size, size]

The renderer belongs to MJX's Warp implementation (`mjx.create_render_context`, `mjx.render`), so the
physics must run with impl=warp too; it needs warp-lang (the `mujoco-mjx[warp]` extra) and renders
on the Warp device that matches JAX's: a CUDA GPU, or Warp's CPU backend (slow; tests). A render
context is made for a fixed number of worlds, so every call renders all E environments.

The camera, geometry, textures and skybox are the model's, as in dm_control's OpenGL renders of the
same state, but lighting differs and the floor's reflections are missing (side by side:
benchmarks/results/pixels/warp_vs_dm_control.png): a policy trained on one renderer meets a domain
gap on the other.
"""
from __future__ import annotations

import jax
import jax.numpy as jp

from ...errors import ConfigError


def warp_available() -> str | None:
    """None when MJX's Warp renderer can be used here, else why not (one sentence)."""
    try:
        import warp  # noqa: F401
        from mujoco.mjx.warp import WARP_INSTALLED
    except ImportError as exc:
        return f"warp-lang is not installed ({exc}); pip install 'mujoco-mjx[warp]'"
    if not WARP_INSTALLED:
        return "mujoco.mjx cannot import warp; pip install 'mujoco-mjx[warp]'"
    return None


def _warp_device_name(device: jax.Device) -> str:
    """The Warp device holding the same memory as a JAX device."""
    return "cpu" if device.platform == "cpu" else f"cuda:{device.id}"


class WarpFrames:
    """Renders one camera of E worlds at size x size, as uint8 [E, 3, size, size] (channel-first,
    rows top to bottom, as dm_control's renders transposed)."""

    def __init__(self, mj_model, mjx_model, num_envs: int, camera: int, size: int, device: jax.Device):
        why = warp_available()
        if why is not None:
            raise ConfigError(f"obs=rgb with env_backend=mjx renders with MuJoCo Warp: {why}")
        if mjx_model.impl.value != "warp":
            raise ConfigError("obs=rgb with env_backend=mjx renders with MuJoCo Warp, which needs the Warp "
                              "physics: set impl=warp")
        if not 0 <= camera < mj_model.ncam:
            raise ConfigError(f"camera {camera} does not exist (the model has {mj_model.ncam})")
        from mujoco import mjx
        from mujoco.mjx.warp import render_context

        self.num_envs, self.camera, self.size = int(num_envs), int(camera), int(size)
        self._model = mjx_model
        self._ctx = mjx.create_render_context(
            mjm=mj_model, nworld=self.num_envs, devices=[_warp_device_name(device)],
            cam_res=(self.size, self.size), render_rgb=True, render_depth=False,
            cam_active=[i == self.camera for i in range(mj_model.ncam)],
            use_textures=True, use_shadows=True, render_skybox=True, enabled_geom_groups=[0, 1, 2])
        self._tree = self._ctx.pytree()
        self._adr = int(render_context.get(self._tree).rgb_adr.numpy()[self.camera])

    def __call__(self, data) -> jax.Array:
        """data: batched mjx.Data [E] (impl=warp) -> uint8 [E, 3, size, size]."""
        from mujoco import mjx

        data = jax.vmap(mjx.refit_bvh, in_axes=(None, 0, None))(self._model, data, self._tree)
        packed, _, _ = jax.vmap(mjx.render, in_axes=(None, 0, None))(self._model, data, self._tree)
        n = self.size * self.size
        packed = jax.lax.dynamic_slice_in_dim(packed, self._adr, n, axis=1)
        # Each pixel is one uint32 holding 8-bit channels: red at bits 16-23, green 8-15, blue 0-7.
        rgb = jp.stack([(packed >> s) & 0xFF for s in (16, 8, 0)], axis=1).astype(jp.uint8)
        return rgb.reshape(self.num_envs, 3, self.size, self.size)
