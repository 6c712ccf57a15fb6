"""Zero-copy hand-over between torch and JAX (DLPack), and the matching JAX device."""
from __future__ import annotations

import jax
import torch


def jax_device_for(device: torch.device) -> jax.Device:
    """The JAX device holding the same memory as a torch device (cpu, or the same GPU index)."""
    if device.type == "cpu":
        return jax.devices("cpu")[0]
    if device.type == "cuda":
        gpus = jax.devices("gpu")
        index = device.index if device.index is not None else torch.cuda.current_device()
        if index >= len(gpus):
            raise RuntimeError(f"torch device {device} has no JAX counterpart (JAX sees {len(gpus)} GPUs)")
        return gpus[index]
    raise ValueError(f"unsupported device {device}")


def to_torch(x: jax.Array) -> torch.Tensor:
    """A torch view of a JAX array (no copy; keeps the JAX buffer alive)."""
    return torch.from_dlpack(x)


def to_jax(t: torch.Tensor) -> jax.Array:
    """A JAX view of a contiguous torch tensor (no copy)."""
    return jax.dlpack.from_dlpack(t)
