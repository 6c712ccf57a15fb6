"""Batched MJX environments (MuJoCo Playground's DM Control Suite and TD-MPC2's custom tasks) on
torch tensors. Importing this package stops JAX from preallocating 75% of the GPU, so that JAX
and PyTorch share one device; JAX reads the setting when its GPU backend first starts, so import
this package before the first JAX computation (a user's XLA_PYTHON_CLIENT_MEM_FRACTION or
XLA_PYTHON_CLIENT_PREALLOCATE wins)."""
from __future__ import annotations

import logging
import os

if "XLA_PYTHON_CLIENT_MEM_FRACTION" not in os.environ:
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
# JAX reports every platform it probes (no TPU here) at INFO, which Hydra's logging would print.
logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
try:  # MuJoCo Warp (impl=warp): Warp logs a banner and a line per kernel module it loads on stdout
    import warp

    warp.config.log_level = warp.LOG_WARNING  # its warnings and errors still show
except ImportError:
    pass


def make_mjx_env(task: str, num_envs: int, seed: int = 0, action_repeat: int = 2, episode_length: int = 500,
                 impl: str = "auto", device="cpu", pixels: bool = False):
    """An MJXVecEnv for a TD-MPC2 task name, with one clear error for unknown tasks, an implementation
    the task cannot run on or a missing stack (impl=auto: the task's own, task_registry.mjx_impl;
    pixels: stacked RGB frames from MuJoCo Warp's renderer, envs/mjx/pixels.py)."""
    from ... import task_registry
    from ...task_registry import suggest
    from ...errors import ConfigError

    try:
        from .tasks import mjx_task_names
        from .vec_env import MJXVecEnv
    except ImportError as exc:
        raise ConfigError(f"MJX environments need the gpu extra (jax, mujoco-mjx, playground): "
                          f"pip install 'mbdpo_fast[gpu]' ({exc})") from None
    names = mjx_task_names()
    if task not in names:
        raise ConfigError(f"unknown MJX task {task!r}.{suggest(task, names)} MJX tasks: {', '.join(names)}")
    if impl not in ("auto", "jax", "warp"):
        raise ConfigError(f"impl={impl!r}: use auto, jax or warp")
    why = task_registry.mjx_impl_refusal(task, impl)
    if why is not None:
        raise ConfigError(why)
    impl = task_registry.mjx_impl(task, impl, pixels)
    if impl == "warp":
        try:
            import warp  # noqa: F401
        except ImportError:
            raise ConfigError("impl=warp needs warp-lang installed (pip install warp-lang)") from None
    if pixels:
        from .pixels import warp_available

        why = warp_available()
        if why is not None:
            raise ConfigError(f"obs=rgb with env_backend=mjx renders with MuJoCo Warp: {why}")
        if impl != "warp":
            raise ConfigError("obs=rgb with env_backend=mjx renders with MuJoCo Warp, whose renderer needs "
                              "the Warp physics: set impl=warp")
    return MJXVecEnv(task, num_envs, seed=seed, action_repeat=action_repeat, episode_length=episode_length,
                     impl=impl, device=device, pixels=pixels)
