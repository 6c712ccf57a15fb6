"""Return weighting + score update + next candidates, one program per environment (section 4
steps 4-6 and the next step's step 1):

    l = (V - mean V) / std V / T (unbiased std; std < 1e-4 -> 1; NaN values count as 0)
    elites = top-k of V (ties: lowest index first); w = softmax of l over the elites
    abar_a = sum_i w_i a_i;  s = (-x + sqrt(abar) abar_a) / (1 - abar + 1e-8);  x' = (x + (1 - abar) s) / sqrt(alpha)
    next candidates: clip(x' / sqrt(abar') + sqrt((1 - abar') / abar') eps, -1, 1)

eps comes from a given tensor (bit-comparable with the reference) or from Philox in the kernel
(`tl.randn(seed, offset)`, the seed read from a device tensor so the call stays graph-capturable
and sync-free); the two streams differ from torch.randn, so the Philox path is tested for its
distribution, not for equality.

Values are held in registers whole (BLOCK_N >= N); candidates stream in BLOCK_C-row chunks.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..diffusion import sample_candidates, score_update, weight_elites


@triton.jit
def _elite_score_kernel(v_ptr, cand_ptr, x_ptr, eps_ptr, seed_ptr, xout_ptr, target_ptr, next_ptr,
                        abar, alpha, next_abar, inv_temp, N: tl.constexpr, D: tl.constexpr, NUM_ELITES: tl.constexpr,
                        HAS_NEXT: tl.constexpr, EPS_GIVEN: tl.constexpr,
                        BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_D: tl.constexpr):
    e = tl.program_id(0)
    rn = tl.arange(0, BLOCK_N)
    n_ok = rn < N
    v = tl.load(v_ptr + e * N + rn, mask=n_ok, other=0.0).to(tl.float32)
    v = tl.where(v == v, v, 0.0)  # NaN -> 0, as the reference's nan_to_num
    nf = N * 1.0
    mean = tl.sum(tl.where(n_ok, v, 0.0), axis=0) / nf
    dv = tl.where(n_ok, v - mean, 0.0)
    std = tl.sqrt(tl.sum(dv * dv, axis=0) / (nf - 1.0))
    std = tl.where(std < 1e-4, 1.0, std)
    # k-th largest value and the index of the last elite equal to it, by k rounds of
    # "take the first maximum" (exact top-k; ties resolved by index).
    work = tl.where(n_ok, v, float("-inf"))
    thr = 0.0
    last = 0
    for _ in range(NUM_ELITES):
        thr = tl.max(work, axis=0)
        last = tl.min(tl.where(work == thr, rn, BLOCK_N), axis=0)
        work = tl.where(rn == last, float("-inf"), work)
    elite = n_ok & ((v > thr) | ((v == thr) & (rn <= last)))
    logit = (v - mean) / std * inv_temp
    lmax = tl.max(tl.where(elite, logit, float("-inf")), axis=0)
    z = tl.sum(tl.where(elite, tl.exp(logit - lmax), 0.0), axis=0)

    rd = tl.arange(0, BLOCK_D)
    d_ok = rd < D
    target = tl.zeros((BLOCK_D,), dtype=tl.float32)
    for c0 in range(0, N, BLOCK_C):
        rc = c0 + tl.arange(0, BLOCK_C)
        c_ok = rc < N
        vc = tl.load(v_ptr + e * N + rc, mask=c_ok, other=0.0).to(tl.float32)
        vc = tl.where(vc == vc, vc, 0.0)
        el = c_ok & ((vc > thr) | ((vc == thr) & (rc <= last)))
        w = tl.where(el, tl.exp((vc - mean) / std * inv_temp - lmax) / z, 0.0)
        a = tl.load(cand_ptr + (e * N + rc[:, None]) * D + rd[None, :], mask=c_ok[:, None] & d_ok[None, :],
                    other=0.0).to(tl.float32)
        target += tl.sum(w[:, None] * a, axis=0)
    x = tl.load(x_ptr + e * D + rd, mask=d_ok, other=0.0).to(tl.float32)
    score = (-x + tl.sqrt(abar) * target) / (1.0 - abar + 1e-8)  # functional.SCORE_DENOM_EPS
    x_new = (x + (1.0 - abar) * score) / tl.sqrt(alpha)
    tl.store(target_ptr + e * D + rd, target, mask=d_ok)
    tl.store(xout_ptr + e * D + rd, x_new, mask=d_ok)
    if HAS_NEXT:
        scale = tl.sqrt((1.0 - next_abar) / next_abar)
        inv = 1.0 / tl.sqrt(next_abar)
        if not EPS_GIVEN:
            seed = tl.load(seed_ptr)
        for c0 in range(0, N, BLOCK_C):
            rc = c0 + tl.arange(0, BLOCK_C)
            c_ok = rc < N
            offs = (e * N + rc[:, None]) * D + rd[None, :]
            ok = c_ok[:, None] & d_ok[None, :]
            if EPS_GIVEN:
                eps = tl.load(eps_ptr + offs, mask=ok, other=0.0).to(tl.float32)
            else:
                eps = tl.randn(seed, offs)
            nxt = tl.minimum(tl.maximum(x_new[None, :] * inv + scale * eps, -1.0), 1.0)
            tl.store(next_ptr + offs, nxt, mask=ok)


def elite_score(values: torch.Tensor, cand: torch.Tensor, x: torch.Tensor, abar: float, alpha: float,
                num_elites: int, temperature: float, next_abar: float | None = None,
                eps: torch.Tensor | None = None, seed: torch.Tensor | None = None):
    """values [E, N], cand [E, N, H, A], x [E, H, A] -> (x' [E, H, A], abar_a [E, H, A], next
    candidates [E, N, H, A] or None). next_abar: the next step's noise level (None: last step);
    eps [E, N, H, A] its standard normal noise, or seed (int64 [1] device tensor) for Philox."""
    E, N, H, A = cand.shape
    D = H * A
    values, cand, x = values.float().contiguous(), cand.float().contiguous(), x.float().contiguous()
    x_out, target = torch.empty_like(x), torch.empty_like(x)
    has_next = next_abar is not None
    nxt = torch.empty_like(cand) if has_next else x_out
    if has_next and eps is None and seed is None:
        raise ValueError("next candidates need eps or a seed")
    eps_t = eps.float().contiguous() if eps is not None else x_out
    seed_t = seed if seed is not None else torch.zeros(1, dtype=torch.int64, device=x.device)
    BLOCK_D = max(16, triton.next_power_of_2(D))
    _elite_score_kernel[(E,)](
        values, cand, x, eps_t, seed_t, x_out, target, nxt, float(abar), float(alpha),
        float(next_abar) if has_next else 1.0, 1.0 / temperature, N=N, D=D, NUM_ELITES=num_elites, HAS_NEXT=has_next,
        EPS_GIVEN=eps is not None, BLOCK_N=max(16, triton.next_power_of_2(N)),
        BLOCK_C=max(16, min(128, 4096 // BLOCK_D)), BLOCK_D=BLOCK_D, num_warps=4)
    return x_out, target, (nxt if has_next else None)


def elite_score_reference(values, cand, x, abar, alpha, num_elites, temperature, next_abar=None, eps=None, seed=None):
    """The planner's PyTorch ops (weight_elites, score_update, sample_candidates), same signature;
    the Philox path has no reference (eps must be given when next_abar is)."""
    target, _, _ = weight_elites(torch.nan_to_num(values.float(), nan=0.0), cand.float(), num_elites, temperature)
    x_new = score_update(x.float(), target, abar, alpha)
    nxt = sample_candidates(x_new, next_abar, cand.shape[1], eps=eps) if next_abar is not None else None
    return x_new, target, nxt
