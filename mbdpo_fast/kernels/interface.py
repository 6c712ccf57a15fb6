"""What the kernels read of the world model, as one object the world model builds
(`WorldModel.rollout_nets`). Free of Triton, so that the model can build it where Triton is absent."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn


@dataclass(frozen=True)
class RolloutNets:
    """What the fused rollouts read of a world model. MLPs as built by layers.mlp (NormedLinear
    hidden layers, then the output layer); q_params: the Q ensemble's stacked (weights, biases,
    ln_weights, ln_biases), each a list over layers of [num_q, ...] tensors; bins [num_bins];
    energy_mu / energy_sigma: 0-dim running statistics of F; with_task(x, task) appends the task
    embedding (identity single-task); pi_from_head(raw, task, eps, with_info) -> (action, info or
    None); log_std_min / log_std_max: the policy's log-std range."""
    dynamics: nn.Sequential
    reward: nn.Sequential
    energy: nn.Sequential
    termination: nn.Sequential | None
    pi: nn.Sequential
    q_params: tuple
    bins: torch.Tensor
    energy_mu: torch.Tensor
    energy_sigma: torch.Tensor
    energy_clip: float
    multitask: bool
    with_task: Callable
    pi_from_head: Callable
    log_std_min: float
    log_std_max: float
