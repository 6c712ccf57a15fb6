"""Reward/Q output layer fused with the two-hot decode: value = symexp(sum_j softmax(h W^T + b)_j c_j)
for h [M, K], W [bins, K], bin centres c [bins] -> [M] (fp32). The [M, bins] logits never reach
memory: one program owns BLOCK_M rows and all (padded) bins.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from ..functional import two_hot_inv
from .fused_linear import accumulate_tile


@triton.jit
def two_hot_rows(h_ptr, h_off, w_ptr, s_wn, s_wk, b_ptr, bins_ptr, m_ok, K: tl.constexpr, NB: tl.constexpr,
                 DOT_BF16: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """The decoded values [BLOCK_M] fp32 of one program's rows of h (at h_ptr + h_off, [BLOCK_M] offsets)."""
    rn = tl.arange(0, BLOCK_N)
    n_ok = rn < NB
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    acc = accumulate_tile(acc, h_ptr, h_off, h_ptr, h_off, w_ptr, s_wn, s_wk, rn, m_ok, n_ok, K, 0, DOT_BF16, BLOCK_K)
    logits = acc + tl.load(b_ptr + rn, mask=n_ok, other=0.0).to(tl.float32)[None, :]
    logits = tl.where(n_ok[None, :], logits, float("-inf"))
    p = tl.exp(logits - tl.max(logits, axis=1)[:, None])
    c = tl.load(bins_ptr + rn, mask=n_ok, other=0.0).to(tl.float32)
    v = tl.sum(p * c[None, :], axis=1) / tl.sum(p, axis=1)
    mag = tl.exp(tl.abs(v)) - 1.0
    return tl.where(v < 0, -mag, mag)


@triton.jit
def _two_hot_value_kernel(h_ptr, w_ptr, b_ptr, bins_ptr, out_ptr, M, s_hm, s_wn, s_wk, K: tl.constexpr, NB: tl.constexpr,
                          DOT_BF16: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                          BLOCK_K: tl.constexpr):
    rm = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    m_ok = rm < M
    v = two_hot_rows(h_ptr, rm * s_hm, w_ptr, s_wn, s_wk, b_ptr, bins_ptr, m_ok, K, NB, DOT_BF16, BLOCK_M, BLOCK_N,
                     BLOCK_K)
    tl.store(out_ptr + rm, v, mask=m_ok)


def two_hot_value(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, bins: torch.Tensor,
                  dot_dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """h [..., K], weight [bins, K] (nn.Linear layout, any strides), bias [bins], bins [bins] -> [..., 1] fp32."""
    lead = h.shape[:-1]
    a = h.reshape(-1, h.shape[-1])
    if a.stride(-1) != 1:
        a = a.contiguous()
    M, K = a.shape
    NB = weight.shape[0]
    out = torch.empty(M, device=h.device, dtype=torch.float32)
    BLOCK_N = max(16, triton.next_power_of_2(NB))
    BLOCK_M = 32
    _two_hot_value_kernel[(triton.cdiv(M, BLOCK_M),)](
        a, weight, bias, bins, out, M, a.stride(0), weight.stride(0), weight.stride(1), K=K, NB=NB,
        DOT_BF16=dot_dtype == torch.bfloat16, BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, BLOCK_K=32, num_warps=4)
    return out.view(*lead, 1)


def two_hot_value_reference(h, weight, bias, bins, dot_dtype=torch.float32):
    """The same output layer and decode in PyTorch ops (same signature)."""
    logits = F.linear(h.to(dot_dtype), weight.to(dot_dtype)).float() + bias.float()
    return two_hot_inv(logits, bins.float())
