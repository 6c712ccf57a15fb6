"""The diffusion maths of the planner (docs/algorithm.md section 4), free of any model: the noise
schedule, candidate sampling around the iterate, elite weighting, the Monte Carlo score and the
score update. The torch planner, the score-network target and the Triton kernels' references all
use these functions.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from . import functional as fn


@dataclass(frozen=True)
class DiffusionSchedule:
    """beta linear in [beta_start, beta_end] over K steps; alpha = 1 - beta; abar = cumprod(alpha).
    Kept as Python floats: the planner's loop over tau is fixed, so scalars avoid tensor indexing."""

    betas: tuple[float, ...]
    alphas: tuple[float, ...]
    abar: tuple[float, ...]

    @classmethod
    def linear(cls, steps: int, beta_start: float, beta_end: float) -> "DiffusionSchedule":
        betas = torch.linspace(beta_start, beta_end, steps, dtype=torch.float64)
        alphas = 1 - betas
        abar = torch.cumprod(alphas, 0)
        return cls(tuple(betas.tolist()), tuple(alphas.tolist()), tuple(abar.tolist()))

    @property
    def steps(self) -> int:
        return len(self.betas)


def weight_elites(values: torch.Tensor, candidates: torch.Tensor, num_elites: int,
                  temperature: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Section 4 steps 4-5. values [E, N], candidates [E, N, H, A] ->
    (abar_a [E, H, A], elite weights [E, k], elite indices [E, k]).

    l = (V - mean V) / std V / temperature (std < 1e-4 -> 1; std is the unbiased sample std);
    keep the k elites by V; w = softmax(l over the elites); abar_a = sum_i w_i a_i.
    """
    mean = values.mean(dim=1, keepdim=True)
    std = values.std(dim=1, keepdim=True)
    std = torch.where(std < 1e-4, torch.ones_like(std), std)
    logits = (values - mean) / std / temperature
    elite_v, elite_idx = torch.topk(values, num_elites, dim=1)
    w = torch.softmax(torch.gather(logits, 1, elite_idx), dim=1)
    E, _, H, A = candidates.shape
    elites = torch.gather(candidates, 1, elite_idx.view(E, -1, 1, 1).expand(-1, -1, H, A))
    return (w.view(E, -1, 1, 1) * elites).sum(1), w, elite_idx


def mc_score(x: torch.Tensor, target: torch.Tensor, abar: float | torch.Tensor) -> torch.Tensor:
    """Section 4 step 6's Monte Carlo score s = (-x + sqrt(abar) * target) / (1 - abar + 1e-8).
    abar: a float, or a tensor broadcasting against x (per-row noise levels)."""
    return (-x + abar ** 0.5 * target) / (1 - abar + fn.SCORE_DENOM_EPS)


def weight_all(values: torch.Tensor, candidates: torch.Tensor, temperature: float) -> torch.Tensor:
    """The score network's target weighting (section 5): every candidate, no elites.
    values [S, C], candidates [S, C, H, A] -> abar_a [S, H, A] = sum_i softmax(l)_i a_i with
    l = (V - mean V) / (std V + 1e-6) / temperature (unbiased std, the reference code's guard)."""
    mean = values.mean(dim=1, keepdim=True)
    std = values.std(dim=1, keepdim=True)
    w = torch.softmax((values - mean) / (std + 1e-6) / temperature, dim=1)
    return (w.view(*w.shape, 1, 1) * candidates).sum(1)


def score_update(x: torch.Tensor, target: torch.Tensor | None, abar: float, alpha: float,
                 score: torch.Tensor | None = None) -> torch.Tensor:
    """Section 4 step 6: x <- (x + (1 - abar) s) / sqrt(alpha), s the Monte Carlo score of
    `target` or a given score (the score network's)."""
    if score is None:
        score = mc_score(x, target, abar)
    return (x + (1 - abar) * score) / alpha ** 0.5


def sample_candidates(x: torch.Tensor, abar: float | torch.Tensor, num: int,
                      eps: torch.Tensor | None = None) -> torch.Tensor:
    """Section 4 step 1: a0_i = clip(x / sqrt(abar) + sqrt((1 - abar) / abar) eps_i, -1, 1).
    x [E, H, A] -> [E, num, H, A]; abar a float or an [E] tensor (one noise level per row);
    eps [E, num, H, A] standard normal (drawn if None)."""
    E, H, A = x.shape
    if torch.is_tensor(abar):
        abar = abar.reshape(-1, 1, 1, 1)  # [E] per-row levels, or a 0-dim level for all rows
    if eps is None:
        eps = torch.randn(E, num, H, A, device=x.device, dtype=x.dtype)
    return (x.unsqueeze(1) / abar ** 0.5 + ((1 - abar) / abar) ** 0.5 * eps).clamp(-1, 1)
