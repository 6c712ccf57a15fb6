"""Triton kernels of the planner's hot path, each with a PyTorch reference:

    fused_linear.py    one MLP layer: GEMM + bias + LayerNorm + Mish / SimNorm (`linear_rows`, for
                       a program's rows), and its one-layer kernel
    two_hot_head.py    a reward/Q output layer fused with the two-hot decode, likewise
    rollout.py         the planner's imagined returns and policy rollouts, one launch per layer
    rollout_values.py  with fused_rollout=true: the imagined returns of one denoising step in
                       3H + 3 kernels, each a whole head group on every candidate row (policy
                       prior, reward + energy, dynamics + termination per horizon step; final
                       policy sample; two Q heads)
    elite_score.py     return weighting + score update + the next step's candidates (Philox)

The references: planner.TorchRollouts (rollouts) and diffusion.py (elites, score). A denoising
step is 52 Triton launches per layer, 13 with fused_rollout at H = 3 (tests/test_kernel_launches.py).
`kernels=triton` in the config selects them for the planner; `resolve_backend` decides where
they can run: on CUDA devices, or anywhere under TRITON_INTERPRET=1 (the CPU tests). Elsewhere
the planner keeps the PyTorch path and says so once.
"""
from __future__ import annotations

import os
import warnings

import torch

BACKENDS = ("torch", "triton")


def triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def resolve_backend(requested: str, device: torch.device) -> str:
    """'triton' where the kernels can run for `device`, else 'torch' (with a warning if triton was asked for)."""
    if requested not in BACKENDS:
        raise ValueError(f"kernels={requested!r}: use one of {BACKENDS}")
    if requested == "torch":
        return "torch"
    if not triton_available():
        warnings.warn("kernels=triton but triton is not installed: using the PyTorch planner", stacklevel=2)
        return "torch"
    if device.type == "cuda" or interpreting():
        return "triton"
    warnings.warn(f"kernels=triton on {device.type} needs TRITON_INTERPRET=1 (slow; for tests): using the "
                  "PyTorch planner", stacklevel=2)
    return "torch"
