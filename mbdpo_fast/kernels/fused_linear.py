"""Fused MLP layer: y = act(LayerNorm(x @ W^T + b)) in one kernel, act in {Mish, SimNorm, none},
optionally without the LayerNorm (a plain output layer). The input may come in two parts
(x1 [M, K1], x2 [M, K2]), read as the concatenation [x1, x2] without materialising it: the
dynamics/reward/energy/Q heads take cat(z, a).

One program owns BLOCK_M rows and the whole output width (LayerNorm and SimNorm need the full
row), streams W in BLOCK_K slices and accumulates in fp32; operands are cast to `dot_dtype`
(bf16 on the GPU fast path, fp32 in the reference comparison and under TRITON_INTERPRET=1).
Inference only (no autograd): the planner uses it, the update does not.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from ..functional import simnorm

ACTS = {"none": 0, "mish": 1, "simnorm": 2}


@triton.jit
def _mish(y):
    # mish(y) = y * tanh(softplus(y)); softplus >= 0, so tanh(s) = (1 - e^{-2s}) / (1 + e^{-2s}) is stable.
    sp = tl.where(y > 20.0, y, tl.log(1.0 + tl.exp(tl.minimum(y, 20.0))))
    e = tl.exp(-2.0 * sp)
    return y * (1.0 - e) / (1.0 + e)


@triton.jit
def accumulate_tile(acc, x_ptr, s_xm, w_ptr, s_wn, s_wk, k_base, rm, rn, m_ok, n_ok, K: tl.constexpr,
                    DOT_BF16: tl.constexpr, BLOCK_K: tl.constexpr):
    """acc[BLOCK_M, BLOCK_N] += x[rm, :K] @ W[rn, k_base:k_base+K]^T, streaming BLOCK_K slices."""
    for k0 in range(0, K, BLOCK_K):
        rk = k0 + tl.arange(0, BLOCK_K)
        k_ok = rk < K
        a = tl.load(x_ptr + rm[:, None] * s_xm + rk[None, :], mask=m_ok[:, None] & k_ok[None, :], other=0.0)
        w = tl.load(w_ptr + rn[None, :] * s_wn + (k_base + rk[:, None]) * s_wk, mask=k_ok[:, None] & n_ok[None, :],
                    other=0.0)
        if DOT_BF16:
            acc += tl.dot(a.to(tl.bfloat16), w.to(tl.bfloat16))
        else:
            acc += tl.dot(a.to(tl.float32), w.to(tl.float32))
    return acc


@triton.jit
def _fused_linear_kernel(x1_ptr, x2_ptr, w_ptr, b_ptr, g_ptr, beta_ptr, out_ptr,
                         M, s_x1m, s_x2m, s_wn, s_wk, s_om, eps, K1: tl.constexpr, K2: tl.constexpr, N: tl.constexpr,
                         HAS_X2: tl.constexpr, LN: tl.constexpr, ACT: tl.constexpr, GROUP: tl.constexpr,
                         DOT_BF16: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                         BLOCK_K: tl.constexpr):
    pid = tl.program_id(0)
    rm = pid * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = tl.arange(0, BLOCK_N)
    m_ok = rm < M
    n_ok = rn < N
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    acc = accumulate_tile(acc, x1_ptr, s_x1m, w_ptr, s_wn, s_wk, 0, rm, rn, m_ok, n_ok, K1, DOT_BF16, BLOCK_K)
    if HAS_X2:  # the second part of the input: weight columns K1..K1+K2
        acc = accumulate_tile(acc, x2_ptr, s_x2m, w_ptr, s_wn, s_wk, K1, rm, rn, m_ok, n_ok, K2, DOT_BF16, BLOCK_K)
    y = acc + tl.load(b_ptr + rn, mask=n_ok, other=0.0).to(tl.float32)[None, :]
    if LN:
        nf = N * 1.0
        y = tl.where(n_ok[None, :], y, 0.0)
        mean = tl.sum(y, axis=1) / nf
        d = tl.where(n_ok[None, :], y - mean[:, None], 0.0)
        var = tl.sum(d * d, axis=1) / nf
        g = tl.load(g_ptr + rn, mask=n_ok, other=1.0).to(tl.float32)
        beta = tl.load(beta_ptr + rn, mask=n_ok, other=0.0).to(tl.float32)
        y = d / tl.sqrt(var + eps)[:, None] * g[None, :] + beta[None, :]
    if ACT == 1:
        y = _mish(y)
    if ACT == 2:
        grp = tl.reshape(y, (BLOCK_M, BLOCK_N // GROUP, GROUP))
        e = tl.exp(grp - tl.max(grp, axis=2)[:, :, None])
        y = tl.reshape(e / tl.sum(e, axis=2)[:, :, None], (BLOCK_M, BLOCK_N))
    tl.store(out_ptr + rm[:, None] * s_om + rn[None, :], y.to(out_ptr.dtype.element_ty),
             mask=m_ok[:, None] & n_ok[None, :])


def _rows(x: torch.Tensor) -> torch.Tensor:
    x = x.reshape(-1, x.shape[-1])
    return x if x.stride(-1) == 1 else x.contiguous()


def fused_linear(x1: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, ln_weight: torch.Tensor | None = None,
                 ln_bias: torch.Tensor | None = None, act: str = "mish", group: int = 8, x2: torch.Tensor | None = None,
                 eps: float = 1e-5, dot_dtype: torch.dtype = torch.float32,
                 out_dtype: torch.dtype | None = None) -> torch.Tensor:
    """x1 [..., K1] (and x2 [..., K2]), weight [N, K1+K2] (nn.Linear layout, any strides), bias [N],
    LayerNorm affine [N] each or None (no LayerNorm) -> [..., N] in out_dtype (default x1's)."""
    lead = x1.shape[:-1]
    a1 = _rows(x1)
    a2 = _rows(x2) if x2 is not None else a1
    M, K1 = a1.shape
    K2 = a2.shape[1] if x2 is not None else 0
    N = weight.shape[0]
    if weight.shape[1] != K1 + K2:
        raise ValueError(f"weight {tuple(weight.shape)} does not match inputs of width {K1}+{K2}")
    out = torch.empty(M, N, device=a1.device, dtype=out_dtype or x1.dtype)
    BLOCK_N = max(16, triton.next_power_of_2(N))
    if act == "simnorm" and N % group:
        raise ValueError(f"SimNorm needs N={N} divisible by group={group}")
    BLOCK_M = 32 if BLOCK_N <= 256 else 16
    ln = ln_weight is not None
    grid = (triton.cdiv(M, BLOCK_M),)
    _fused_linear_kernel[grid](
        a1, a2, weight, bias, ln_weight if ln else bias, ln_bias if ln else bias, out,
        M, a1.stride(0), a2.stride(0), weight.stride(0), weight.stride(1), out.stride(0), eps, K1=K1, K2=K2, N=N,
        HAS_X2=x2 is not None, LN=ln, ACT=ACTS[act], GROUP=group, DOT_BF16=dot_dtype == torch.bfloat16,
        BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, BLOCK_K=32, num_warps=4 if BLOCK_N <= 256 else 8)
    return out.view(*lead, N)


def fused_linear_reference(x1, weight, bias, ln_weight=None, ln_bias=None, act="mish", group=8, x2=None, eps=1e-5,
                           dot_dtype=torch.float32, out_dtype=None):
    """The same layer in PyTorch ops (same signature)."""
    x = x1 if x2 is None else torch.cat([x1, x2], dim=-1)
    y = F.linear(x.to(dot_dtype), weight.to(dot_dtype)).float() + bias.float()
    if ln_weight is not None:
        y = F.layer_norm(y, y.shape[-1:], ln_weight.float(), ln_bias.float(), eps)
    if act == "mish":
        y = F.mish(y)
    elif act == "simnorm":
        y = simnorm(y, group)
    return y.to(out_dtype or x1.dtype)
