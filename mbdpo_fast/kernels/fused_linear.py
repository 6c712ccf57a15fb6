"""Fused MLP layer: y = act(LayerNorm(x @ W^T + b)) in one kernel, act in {Mish, SimNorm, none},
optionally without the LayerNorm (a plain output layer). The input may come in two parts
(x1 [M, K1], x2 [M, K2]), read as the concatenation [x1, x2] without materialising it: the
dynamics/reward/energy/Q heads take cat(z, a).

One program owns BLOCK_M rows and walks the output width in BLOCK_N-wide tiles (at most 128), so
its registers and shared memory do not grow with the layer's width (a program that held the whole
row needed 257 KiB of shared memory at mlp_dim 1024, more than an H100 SM has, and spilled). Each
tile streams W in BLOCK_K slices and accumulates in fp32. LayerNorm needs the whole row: with more
than one tile, the first pass writes each tile's pre-norm values (fp32, to `out` or to a scratch
buffer when `out` is narrower) and merges per-tile mean and M2 (Chan's parallel update: stable
where E[y^2] - mean^2 would cancel); after a barrier the second pass reads the tiles back (from L2
at these sizes) and applies the norm and the activation. SimNorm groups never straddle a tile
(BLOCK_N is a multiple of the group). Operands are cast to `dot_dtype` (bf16 on the GPU fast
path, fp32 in the reference comparison and under TRITON_INTERPRET=1).
Inference only (no autograd): the planner uses it, the update does not.

Launch parameters (`launch_config`, also what tools/kernel_report.py compiles ahead of time):
BLOCK_M = 16 / 32 / 64 rows for M < 256 / < 4096 / larger (64-row tiles let Hopper use its
warpgroup MMA, smaller ones keep small batches spread over more SMs), BLOCK_K = 32, 4 warps
(8 for 64-row tiles), 3 pipeline stages: the largest that compile without spilling for sm_90
(BLOCK_K = 64 for bf16 spilled where the input comes in two parts).
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from ..functional import simnorm

ACTS = {"none": 0, "mish": 1, "simnorm": 2}
# A loop that starts at a runtime value fails under TRITON_INTERPRET=1 (the interpreter's scalars
# are 1-element arrays, which numpy 2 will not turn into an int): there the K loop starts at 0 and
# the columns before k_start are masked out, which adds the same products.
RUNTIME_LOOP_START = tl.constexpr(os.environ.get("TRITON_INTERPRET", "0") != "1")


@triton.jit
def _mish(y):
    # mish(y) = y * tanh(softplus(y)); softplus >= 0, so tanh(s) = (1 - e^{-2s}) / (1 + e^{-2s}) is stable.
    sp = tl.where(y > 20.0, y, tl.log(1.0 + tl.exp(tl.minimum(y, 20.0))))
    e = tl.exp(-2.0 * sp)
    return y * (1.0 - e) / (1.0 + e)


@triton.jit
def accumulate_tile(acc, x1_ptr, x1_off, x2_ptr, x2_off, w_ptr, s_wn, s_wk, rn, m_ok, n_ok, K1: tl.constexpr,
                    K2: tl.constexpr, DOT_BF16: tl.constexpr, BLOCK_K: tl.constexpr, k_start=0):
    """acc[BLOCK_M, BLOCK_N] += [x1, x2][rows, k_start:K1+K2] @ W[rn, k_start:K1+K2]^T. Rows of x1 at
    x1_ptr + x1_off ([BLOCK_M] element offsets), likewise x2 (either part may be empty: K1 = 0 or
    K2 = 0). Row offsets rather than row pointers: one int32 vector serves several buffers, where
    64-bit pointer vectors for each buffer, kept in several layouts, exhausted the registers;
    k_start (runtime) skips leading input columns (their part is in the bias). Streams BLOCK_K
    slices in one loop: a slice that crosses from x1 into x2 reads both (masked). One
    software-pipelined loop instead of one per input part: two loops in one kernel pushed it past 255
    registers and spilled (tools/kernel_report.py)."""
    for k0 in range(k_start if RUNTIME_LOOP_START else 0, K1 + K2, BLOCK_K):
        rk = k0 + tl.arange(0, BLOCK_K)
        r2 = rk - K1
        use = rk >= k_start
        if K1 > 0:
            a = tl.load(x1_ptr + x1_off[:, None] + rk[None, :], mask=m_ok[:, None] & (use & (rk < K1))[None, :],
                        other=0.0).to(tl.float32)
            if K2 > 0:
                a += tl.load(x2_ptr + x2_off[:, None] + r2[None, :], mask=m_ok[:, None] & (use & (r2 >= 0) & (r2 < K2))[None, :],
                             other=0.0).to(tl.float32)
        else:
            a = tl.load(x2_ptr + x2_off[:, None] + r2[None, :], mask=m_ok[:, None] & (use & (r2 < K2))[None, :],
                        other=0.0).to(tl.float32)
        w = tl.load(w_ptr + rn[None, :] * s_wn + rk[:, None] * s_wk,
                    mask=(use & (rk < K1 + K2))[:, None] & n_ok[None, :], other=0.0)
        if DOT_BF16:
            acc += tl.dot(a.to(tl.bfloat16), w.to(tl.bfloat16))
        else:
            acc += tl.dot(a, w.to(tl.float32))
    return acc


@triton.jit
def _epilogue(y, rn, n_ok, g_ptr, beta_ptr, mean, rstd, LN: tl.constexpr, ACT: tl.constexpr, GROUP: tl.constexpr,
              BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """Norm (with the row's mean and 1/std) and activation of one [BLOCK_M, BLOCK_N] tile."""
    if LN:
        g = tl.load(g_ptr + rn, mask=n_ok, other=1.0).to(tl.float32)
        beta = tl.load(beta_ptr + rn, mask=n_ok, other=0.0).to(tl.float32)
        y = (y - mean[:, None]) * rstd[:, None] * g[None, :] + beta[None, :]
    if ACT == 1:
        y = _mish(y)
    if ACT == 2:
        grp = tl.reshape(y, (BLOCK_M, BLOCK_N // GROUP, GROUP))
        e = tl.exp(grp - tl.max(grp, axis=2)[:, :, None])
        y = tl.reshape(e / tl.sum(e, axis=2)[:, :, None], (BLOCK_M, BLOCK_N))
    return y


@triton.jit
def linear_rows(x1_ptr, x1_off, x2_ptr, x2_off, w_ptr, s_wn, s_wk, b_ptr, b_off, g_ptr, beta_ptr, out_ptr, out_off,
                tmp_ptr, tmp_off, m_ok, eps, K1: tl.constexpr, K2: tl.constexpr, N: tl.constexpr, LN: tl.constexpr, ACT: tl.constexpr, GROUP: tl.constexpr,
                DOT_BF16: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                k_start=0):
    """One layer for one program's BLOCK_M rows: out[r, :N] = act(LN([x1, x2][r] @ W^T + b[r])),
    the inputs' first k_start columns left out (accumulate_tile).
    Each buffer as a base pointer and [BLOCK_M] row offsets: x1, x2 (inputs), b (each row's bias:
    offsets 0 for one shared bias, per environment otherwise), out (output, its dtype), tmp (fp32
    staging of a multi-tile row's pre-norm values; may be `out` when that is fp32)."""
    N_TILES: tl.constexpr = (N + BLOCK_N - 1) // BLOCK_N
    if N_TILES == 1:  # the whole row in one tile: one pass, in registers
        rn = tl.arange(0, BLOCK_N)
        n_ok = rn < N
        ok = m_ok[:, None] & n_ok[None, :]
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        acc = accumulate_tile(acc, x1_ptr, x1_off, x2_ptr, x2_off, w_ptr, s_wn, s_wk, rn, m_ok, n_ok, K1, K2, DOT_BF16, BLOCK_K, k_start)
        y = acc + tl.load(b_ptr + b_off[:, None] + rn[None, :], mask=ok, other=0.0).to(tl.float32)
        mean = tl.sum(tl.where(n_ok[None, :], y, 0.0), axis=1) / (N * 1.0)
        d = tl.where(n_ok[None, :], y - mean[:, None], 0.0)
        rstd = 1.0 / tl.sqrt(tl.sum(d * d, axis=1) / (N * 1.0) + eps)
        y = _epilogue(y, rn, n_ok, g_ptr, beta_ptr, mean, rstd, LN, ACT, GROUP, BLOCK_M, BLOCK_N)
        tl.store(out_ptr + out_off[:, None] + rn[None, :], y.to(out_ptr.dtype.element_ty), mask=ok)
    else:
        mean = tl.zeros((BLOCK_M,), dtype=tl.float32)
        m2 = tl.zeros((BLOCK_M,), dtype=tl.float32)
        for t in range(N_TILES):  # pass 1: the GEMM tile by tile, and the row statistics
            rn = t * BLOCK_N + tl.arange(0, BLOCK_N)
            n_ok = rn < N
            ok = m_ok[:, None] & n_ok[None, :]
            acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
            acc = accumulate_tile(acc, x1_ptr, x1_off, x2_ptr, x2_off, w_ptr, s_wn, s_wk, rn, m_ok, n_ok, K1, K2, DOT_BF16, BLOCK_K, k_start)
            y = acc + tl.load(b_ptr + b_off[:, None] + rn[None, :], mask=ok, other=0.0).to(tl.float32)
            if LN:  # merge this tile's (count, mean, M2) into the running ones (Chan et al.)
                nb = tl.minimum(N - t * BLOCK_N, BLOCK_N) * 1.0
                na = t * BLOCK_N * 1.0
                mb = tl.sum(tl.where(n_ok[None, :], y, 0.0), axis=1) / nb
                db = tl.where(n_ok[None, :], y - mb[:, None], 0.0)
                delta = mb - mean
                mean = mean + delta * (nb / (na + nb))
                m2 = m2 + tl.sum(db * db, axis=1) + delta * delta * (na * nb / (na + nb))
            tl.store(tmp_ptr + tmp_off[:, None] + rn[None, :], y, mask=ok)
        rstd = 1.0 / tl.sqrt(m2 / (N * 1.0) + eps)
        tl.debug_barrier()  # pass 1's stores are visible to every thread of the program
        for t in range(N_TILES):  # pass 2: norm and activation of each stored tile
            rn = t * BLOCK_N + tl.arange(0, BLOCK_N)
            n_ok = rn < N
            ok = m_ok[:, None] & n_ok[None, :]
            yt = tl.load(tmp_ptr + tmp_off[:, None] + rn[None, :], mask=ok, other=0.0)
            yt = _epilogue(yt, rn, n_ok, g_ptr, beta_ptr, mean, rstd, LN, ACT, GROUP, BLOCK_M, BLOCK_N)
            tl.store(out_ptr + out_off[:, None] + rn[None, :], yt.to(out_ptr.dtype.element_ty), mask=ok)


@triton.jit
def _fused_linear_kernel(x1_ptr, x2_ptr, w_ptr, b_ptr, g_ptr, beta_ptr, out_ptr, tmp_ptr,
                         M, s_x1m, s_x2m, s_wn, s_wk, s_om, s_tm, eps, K1: tl.constexpr, K2: tl.constexpr,
                         N: tl.constexpr, LN: tl.constexpr, ACT: tl.constexpr, GROUP: tl.constexpr,
                         DOT_BF16: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    rm = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    linear_rows(x1_ptr, rm * s_x1m, x2_ptr, rm * s_x2m, w_ptr, s_wn, s_wk, b_ptr, rm * 0, g_ptr, beta_ptr,
                out_ptr, rm * s_om, tmp_ptr, rm * s_tm, rm < M, eps, K1, K2, N, LN, ACT, GROUP, DOT_BF16,
                BLOCK_M, BLOCK_N, BLOCK_K)


def _rows(x: torch.Tensor) -> torch.Tensor:
    x = x.reshape(-1, x.shape[-1])
    return x if x.stride(-1) == 1 else x.contiguous()


MAX_BLOCK_N = 128


def launch_config(M: int, N: int) -> dict:
    """Block sizes, warps and stages for an [M, K] x [K, N] layer (see the module docstring)."""
    block_m = 16 if M < 256 else 32 if M < 4096 else 64
    # 64-row tiles with a two-part input spilled at 4 warps (72 B tf32 on sm_90, 164 B bf16 on
    # sm_80): 8 warps there (two warpgroups; sm_90 still uses wgmma)
    warps = 8 if block_m == 64 else 4
    return dict(BLOCK_M=block_m, BLOCK_N=min(MAX_BLOCK_N, max(16, triton.next_power_of_2(N))),
                BLOCK_K=32, num_warps=warps, num_stages=3)


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
    if act == "simnorm" and N % group:
        raise ValueError(f"SimNorm needs N={N} divisible by group={group}")
    out = torch.empty(M, N, device=a1.device, dtype=out_dtype or x1.dtype)
    cfg = launch_config(M, N)
    if act == "simnorm" and cfg["BLOCK_N"] % group:
        raise ValueError(f"SimNorm group {group} does not divide the tile width {cfg['BLOCK_N']}")
    # pre-norm values of a multi-tile row wait in fp32: in `out` itself when it is fp32
    multi = N > cfg["BLOCK_N"]
    tmp = out if (not multi or out.dtype == torch.float32) else torch.empty(M, N, device=a1.device, dtype=torch.float32)
    ln = ln_weight is not None
    _fused_linear_kernel[(triton.cdiv(M, cfg["BLOCK_M"]),)](
        a1, a2, weight, bias, ln_weight if ln else bias, ln_bias if ln else bias, out, tmp,
        M, a1.stride(0), a2.stride(0), weight.stride(0), weight.stride(1), out.stride(0), tmp.stride(0), eps,
        K1=K1, K2=K2, N=N, LN=ln, ACT=ACTS[act], GROUP=group,
        DOT_BF16=dot_dtype == torch.bfloat16, **cfg)
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
