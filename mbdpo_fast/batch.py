"""The training batch every data source hands to the update (replay, offline dataset)."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Batch:
    """Time-major windows of H steps: obs [H+1, B, obs_dim], action [H, B, A], reward [H, B, 1],
    terminated [H, B, 1] (1.0 where the transition ended the episode), task [B] long (multi-task) or None."""
    obs: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor
    terminated: torch.Tensor
    task: torch.Tensor | None = None
