"""The imagined returns of one denoising step in a few kernels (docs/algorithm.md sections 3 and 4,
steps 2-3): for every candidate row, the policy-prior actions (the first P candidates of each
environment), then H steps of reward, energy and dynamics (and termination), then the final policy
sample and the mean of two Q heads, accumulated into the return G. Every row is independent of the
others, so a program owns BLOCK_M rows and runs a head's layers one after another on them
(fused_linear.linear_rows), hidden activations in a per-program scratch area (small enough to stay
in L2) with a barrier between layers. Programs are persistent: at most `max_programs` of them walk
the row blocks, so the scratch area does not grow with E x N.

A step is 3H + 3 launches: per horizon step t the policy prior on the P policy rows of each
environment (_policy_kernel), then reward and energy added to G (_heads_kernel), then the next
latent and termination (STEP_GROUPS); after the horizon the final policy sample, then the two Q
heads one after the other (FINAL_GROUPS). One kernel
for the whole step (one launch) needed more than 255 registers per thread and spilled 4-488 B at
every size (the ptxas spills grew with the code in the kernel); a kernel per group of heads does not
(benchmarks/results/kernel_fit/kernel_fit_fused_rollout.csv). Between launches a row's latent and
action ([z_t, a_t], two slots, ping-pong), G and its survival mask stay in global memory.

What does not change within a plan is computed once per plan (`prepare`): at the first horizon step
every candidate of an environment has the same latent z0, so the z0 part of the first layer of
dynamics, reward and energy (and the policy's whole first layer) is one [E, mlp_dim] bias per
environment; the task embedding's part of every first layer likewise (multi-task); the discounts
gamma^t per environment. A policy row's rollout latents are the value rollout's own (z_{t+1} =
d(z_t, a_t) either way), so the policy prior costs only its policy evaluations. Same random numbers
as the reference path (planner.py: imagined_value and policy_rollout); the Q heads are read at the
two indices of `heads` in the kernel (no gathered copy of their weights).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from . import interpreting
from .fused_linear import MAX_BLOCK_N, accumulate_tile, launch_config, linear_rows
from .interface import RolloutNets
from .two_hot_head import two_hot_rows

# Launch parameters, chosen by compiling for sm_90 and sm_80 (tools/kernel_report.py
# --fused-rollout; kernel_fit_fused_rollout.csv): 8 warps; 64-wide output tiles (128-wide ones
# spilled 4-44 B per thread at 255 registers: 64-row tiles on sm_80, the SimNorm output in bf16 on
# both); at least 32 rows per program. MAXNREG: left to itself, ptxas gave some of these
# kernels 80-128 registers and 20-88 B of spills (its own occupancy trade-off: the first Q head's
# PTX at preset 5 compiled without spills under .maxnreg 255, 168 or 128), so the limit is stated.
NUM_WARPS = 8
BLOCK_N = 64
MIN_BLOCK_M = 32
MAXNREG = 255
# Persistent programs when the device cannot be asked (meta, the interpreter): two per SM of an H100.
DEFAULT_MAX_PROGRAMS = 264


@triton.jit
def _tanh(x):
    # tanh from exp, stable for any |x| (no libdevice: the same code runs under TRITON_INTERPRET=1)
    e = tl.exp(-2.0 * tl.abs(x))
    t = (1.0 - e) / (1.0 + e)
    return tl.where(x < 0, -t, t)


@triton.jit
def _hidden(x_ptr, x_off, w1, s1n, s1k, b1_ptr, b1_off, g1, e1, w2, s2n, s2k, b2, g2, e2, h1_ptr, h2_ptr, s_off,
            tmp_ptr, f_off, m_ok, ln_eps, K1: tl.constexpr, M1: tl.constexpr, DOT_BF16: tl.constexpr,
            BLOCK_M: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr, k_start=0):
    """A head's two hidden NormedLinear (Mish) layers: x -> h1 -> h2 (x's rows at x_off, scratch rows
    at s_off, staging at f_off); the first layer leaves out its input's first k_start columns (their
    part is in its per-row bias)."""
    linear_rows(x_ptr, x_off, x_ptr, x_off, w1, s1n, s1k, b1_ptr, b1_off, g1, e1, h1_ptr, s_off, tmp_ptr, f_off,
                m_ok, ln_eps, K1, 0, M1, True, 1, 8, DOT_BF16, BLOCK_M, BLOCK_H, BLOCK_K, k_start)
    tl.debug_barrier()
    linear_rows(h1_ptr, s_off, h1_ptr, s_off, w2, s2n, s2k, b2, s_off * 0, g2, e2, h2_ptr, s_off, tmp_ptr, f_off, m_ok,
                ln_eps, M1, 0, M1, True, 1, 8, DOT_BF16, BLOCK_M, BLOCK_H, BLOCK_K)
    tl.debug_barrier()


@triton.jit
def _scalar_out(h_ptr, s_off, w3, b3, m_ok, M1: tl.constexpr, DOT_BF16: tl.constexpr, BLOCK_M: tl.constexpr,
                BLOCK_K: tl.constexpr):
    """A one-output plain Linear (energy, termination): [BLOCK_M] fp32."""
    rn = tl.arange(0, 16)
    acc = tl.zeros((BLOCK_M, 16), dtype=tl.float32)
    acc = accumulate_tile(acc, h_ptr, s_off, h_ptr, s_off, w3, M1, 1, rn, m_ok, rn < 1, M1, 0, DOT_BF16, BLOCK_K)
    return tl.sum(tl.where(rn[None, :] == 0, acc, 0.0), axis=1) + tl.load(b3).to(tl.float32)


# Offsets and the horizon step are not specialised on their values (Triton would compile t = 1 and
# offsets divisible by 16 separately): one binary per head group.
@triton.jit(do_not_specialize=["rows", "num_blocks", "num_programs", "k_start", "b_start", "eps_start", "out_col"])
def _policy_kernel(za_ptr, b1_ptr, eps_ptr, mask_ptr, out_ptr, act_ptr, f32_ptr,
                   p_w1, p_g1, p_e1, p_w2, p_b2, p_g2, p_e2, p_w3, p_b3,
                   rows, num_blocks, num_programs, k_start, b_start, eps_start, out_col, out_stride, log_std_min, log_std_max, ln_eps,
                   N: tl.constexpr, R: tl.constexpr, A: tl.constexpr, L: tl.constexpr, M1: tl.constexpr,
                   TD: tl.constexpr, HAS_MASK: tl.constexpr, DOT_BF16: tl.constexpr, BLOCKS_PER_PROGRAM: tl.constexpr,
                   BLOCK_M: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_A: tl.constexpr, BLOCK_K: tl.constexpr,
                   EVEN: tl.constexpr):
    """a = tanh(mean + eps exp(log_std)), WorldModel.pi_from_head without the log-probability, for
    the first R candidates of each environment (E x R rows; R = P: the policy prior, R = N: the
    final sample): latents from za [E x N, L + A] (k_start = L: the first horizon step, where the
    whole first layer is the per-environment bias at b1 + b_start, [E, M1]), noise at eps +
    eps_start [E x R, A], actions to out_ptr + candidate row x out_stride + out_col (E x N rows).
    Offsets rather than sliced tensors: a slice's address need not be 16-byte aligned, which the
    compiled kernel would otherwise assume (tools/kernel_report.py compiles what is recorded)."""
    pid = tl.program_id(0)
    lr = tl.arange(0, BLOCK_M)
    ra = tl.arange(0, BLOCK_A)
    a_ok = ra < A
    act_base = act_ptr + pid.to(tl.int64) * (BLOCK_M * 2 * M1)
    f_base = f32_ptr + pid.to(tl.int64) * (BLOCK_M * M1)
    s_off, f_off = lr * (2 * M1), lr * M1
    h1_ptr, h2_ptr = act_base, act_base + M1
    # Row blocks pid, pid + num_programs, ...: a runtime trip count when compiled (one binary for
    # every E), the constexpr BLOCKS_PER_PROGRAM under TRITON_INTERPRET=1, where runtime loop bounds
    # fail (fused_linear.RUNTIME_LOOP_START); a block past the end has every row masked.
    for k in range(tl.cdiv(num_blocks - pid, num_programs) if BLOCKS_PER_PROGRAM == 0 else BLOCKS_PER_PROGRAM):
        q = (pid + k * num_programs) * BLOCK_M + lr
        if EVEN:  # every visited block is full: masks the compiler can drop
            m_ok = lr < BLOCK_M
        else:
            m_ok = q < rows
        env = tl.where(m_ok, q // R, 0)
        row = env * N + q % R
        _hidden(za_ptr, row * (L + A), p_w1, L + TD, 1, b1_ptr + b_start, env * M1, p_g1, p_e1, p_w2, M1, 1, p_b2, p_g2, p_e2, h1_ptr,
                h2_ptr, s_off, f_base, f_off, m_ok, ln_eps, L, M1, DOT_BF16, BLOCK_M, BLOCK_H, BLOCK_K, k_start)
        # the log-std half first, folded into the noise term; then the mean half accumulates onto
        # it, so one [BLOCK_M, BLOCK_A] tile is live instead of two (two spilled on sm_80/sm_90).
        # With a mask m in {0, 1}: tanh(m mean + m eps exp(m log_std)) = tanh(m (mean + eps std)).
        raw = tl.zeros((BLOCK_M, BLOCK_A), dtype=tl.float32)
        raw = accumulate_tile(raw, h2_ptr, s_off, h2_ptr, s_off, p_w3 + A * M1, M1, 1, ra, m_ok, a_ok, M1, 0, DOT_BF16,
                              BLOCK_K)
        raw += tl.load(p_b3 + A + ra, mask=a_ok, other=0.0).to(tl.float32)[None, :]
        ok = m_ok[:, None] & a_ok[None, :]
        eps = tl.load(eps_ptr + eps_start + q[:, None] * A + ra[None, :], mask=ok, other=0.0).to(tl.float32)
        pre = eps * tl.exp(log_std_min + 0.5 * (log_std_max - log_std_min) * (_tanh(raw) + 1.0))
        pre += tl.load(p_b3 + ra, mask=a_ok, other=0.0).to(tl.float32)[None, :]
        pre = accumulate_tile(pre, h2_ptr, s_off, h2_ptr, s_off, p_w3, M1, 1, ra, m_ok, a_ok, M1, 0, DOT_BF16, BLOCK_K)
        if HAS_MASK:
            pre = pre * tl.load(mask_ptr + env[:, None] * A + ra[None, :], mask=ok, other=0.0).to(tl.float32)
        a = _tanh(pre)
        tl.store(out_ptr + (row * out_stride + out_col)[:, None] + ra[None, :], a.to(out_ptr.dtype.element_ty), mask=ok)
        tl.debug_barrier()


@triton.jit(do_not_specialize=["E", "num_blocks", "num_programs", "t"])
def _heads_kernel(cand_ptr, za_in, za_out, mask_ptr, gamma_ptr, mu_ptr, sigma_ptr, bins_ptr, heads_ptr, values_ptr,
                  alive_ptr, q_ptr, act_ptr, f32_ptr,
                  d_w1, d_b1, d_g1, d_e1, d_w2, d_b2, d_g2, d_e2, d_w3, d_b3, d_g3, d_e3,
                  r_w1, r_b1, r_g1, r_e1, r_w2, r_b2, r_g2, r_e2, r_w3, r_b3,
                  f_w1, f_b1, f_g1, f_e1, f_w2, f_b2, f_g2, f_e2, f_w3, f_b3,
                  t_w1, t_b1, t_g1, t_e1, t_w2, t_b2, t_g2, t_e2, t_w3, t_b3,
                  q_w1, q_b1, q_g1, q_e1, q_w2, q_b2, q_g2, q_e2, q_w3, q_b3,
                  E, num_blocks, num_programs, t, eta, energy_clip, ln_eps,
                  N: tl.constexpr, H: tl.constexpr, A: tl.constexpr, L: tl.constexpr, M1: tl.constexpr,
                  TD: tl.constexpr, NB: tl.constexpr, GROUP: tl.constexpr, HAS_MASK: tl.constexpr, EPISODIC: tl.constexpr,
                  GATHER: tl.constexpr, REWARD: tl.constexpr, ENERGY: tl.constexpr, DYNAMICS: tl.constexpr,
                  Q: tl.constexpr, DOT_BF16: tl.constexpr, BLOCKS_PER_PROGRAM: tl.constexpr, BLOCK_M: tl.constexpr,
                  BLOCK_L: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_A: tl.constexpr, BLOCK_NB: tl.constexpr,
                  BLOCK_K: tl.constexpr, EVEN: tl.constexpr):
    """One group of heads of one horizon step for all E x N rows. za_in/za_out [E x N, L + A]: this
    step's [z_t, a_t] and the next latent's slot; t: the horizon step (H: the final value). GATHER:
    a_t from the candidates [E x N, H x A] (masked in place) into za_in. REWARD, ENERGY, Q = 2 (the
    mean of the two heads at `heads`, the first one's value from q [E x N], where Q = 1 left it):
    added to G (values [E x N] fp32) with the discount gamma^t (gamma
    [E]) and the
    survival mask alive [E x N] (episodic); at t = 0 G starts at 0 and alive at 1. DYNAMICS:
    z_{t+1} (SimNorm) into za_out, and with EPISODIC its termination into alive. First-layer biases
    per environment: d/r/f_b1 [2, E, M1] (the first horizon step's, then later steps': at t = 0 the
    first layers skip the latent's columns, z0's part being in the bias), t_b1 [E, M1], q_b1
    [num_q, E, M1]; Q weights stacked [num_q, in, out]."""
    pid = tl.program_id(0)
    lr = tl.arange(0, BLOCK_M)
    ra = tl.arange(0, BLOCK_A)
    a_ok = ra < A
    ZW: tl.constexpr = L + A
    TW: tl.constexpr = M1 if M1 > L else L
    act_base = act_ptr + pid.to(tl.int64) * (BLOCK_M * 2 * M1)
    f_base = f32_ptr + pid.to(tl.int64) * (BLOCK_M * TW)
    s_off, f_off = lr * (2 * M1), lr * TW
    h1_ptr, h2_ptr = act_base, act_base + M1
    first = t == 0
    k_start = L * first
    b_start = (E * M1) * (1 - first)
    # persistent row blocks, as in _policy_kernel
    for k in range(tl.cdiv(num_blocks - pid, num_programs) if BLOCKS_PER_PROGRAM == 0 else BLOCKS_PER_PROGRAM):
        rm = (pid + k * num_programs) * BLOCK_M + lr
        if EVEN:
            m_ok = lr < BLOCK_M
        else:
            m_ok = rm < E * N
        env = tl.where(m_ok, rm // N, 0)
        b_off = env * M1  # row offsets into an [E, M1] per-environment bias
        z_off = rm * ZW
        ok = m_ok[:, None] & a_ok[None, :]
        if GATHER:
            c_off = rm * (H * A) + t * A
            a = tl.load(cand_ptr + c_off[:, None] + ra[None, :], mask=ok, other=0.0)
            if HAS_MASK:
                a = a * tl.load(mask_ptr + env[:, None] * A + ra[None, :], mask=ok, other=0.0)
            tl.store(cand_ptr + c_off[:, None] + ra[None, :], a, mask=ok)
            tl.store(za_in + z_off[:, None] + L + ra[None, :], a.to(za_in.dtype.element_ty), mask=ok)
            tl.debug_barrier()
        if EPISODIC:
            alive = tl.where(first, 1.0, tl.load(alive_ptr + rm, mask=m_ok, other=1.0))
        else:
            alive = tl.zeros((BLOCK_M,), dtype=tl.float32) + 1.0
        if REWARD or ENERGY or Q > 0:
            gain = tl.zeros((BLOCK_M,), dtype=tl.float32)
            if REWARD:
                _hidden(za_in, z_off, r_w1, ZW + TD, 1, r_b1 + b_start, b_off, r_g1, r_e1, r_w2, M1, 1, r_b2, r_g2, r_e2, h1_ptr,
                        h2_ptr, s_off, f_base, f_off, m_ok, ln_eps, ZW, M1, DOT_BF16, BLOCK_M, BLOCK_H, BLOCK_K,
                        k_start)
                gain += two_hot_rows(h2_ptr, s_off, r_w3, M1, 1, r_b3, bins_ptr, m_ok, M1, NB, DOT_BF16, BLOCK_M,
                                     BLOCK_NB, BLOCK_K)
                tl.debug_barrier()
            if ENERGY:
                _hidden(za_in, z_off, f_w1, ZW + TD, 1, f_b1 + b_start, b_off, f_g1, f_e1, f_w2, M1, 1, f_b2, f_g2, f_e2, h1_ptr,
                        h2_ptr, s_off, f_base, f_off, m_ok, ln_eps, ZW, M1, DOT_BF16, BLOCK_M, BLOCK_H, BLOCK_K,
                        k_start)
                f = _scalar_out(h2_ptr, s_off, f_w3, f_b3, m_ok, M1, DOT_BF16, BLOCK_M, BLOCK_K)
                mu = tl.load(mu_ptr).to(tl.float32)
                sigma = tl.load(sigma_ptr).to(tl.float32)
                gain += eta * tl.minimum(tl.maximum((f - mu) / sigma, -energy_clip), energy_clip)
                tl.debug_barrier()
            if Q > 0:  # head Q - 1 of the two at `heads`; the first one's value waits in q_ptr
                h = tl.load(heads_ptr + (Q - 1)).to(tl.int64)
                _hidden(za_in, z_off, q_w1 + h * ((ZW + TD) * M1), 1, M1, q_b1 + h * (E * M1), b_off, q_g1 + h * M1,
                        q_e1 + h * M1, q_w2 + h * (M1 * M1), 1, M1, q_b2 + h * M1, q_g2 + h * M1, q_e2 + h * M1,
                        h1_ptr, h2_ptr, s_off, f_base, f_off, m_ok, ln_eps, ZW, M1, DOT_BF16, BLOCK_M, BLOCK_H,
                        BLOCK_K)
                q = two_hot_rows(h2_ptr, s_off, q_w3 + h * (M1 * NB), 1, NB, q_b3 + h * NB, bins_ptr, m_ok, M1, NB,
                                 DOT_BF16, BLOCK_M, BLOCK_NB, BLOCK_K)
                tl.debug_barrier()
                if Q == 1:
                    tl.store(q_ptr + rm, q, mask=m_ok)
                else:
                    gain += (tl.load(q_ptr + rm, mask=m_ok, other=0.0) + q) / 2.0
            gamma = tl.load(gamma_ptr + env, mask=m_ok, other=0.0).to(tl.float32)
            g = tl.zeros((BLOCK_M,), dtype=tl.float32) + 1.0
            for s in tl.static_range(H):  # gamma^t by repeated products, as the reference rollout
                g = tl.where(s < t, g * gamma, g)
            if Q != 1:
                G = tl.where(first, 0.0, tl.load(values_ptr + rm, mask=m_ok, other=0.0))
                tl.store(values_ptr + rm, G + g * alive * gain, mask=m_ok)
        if DYNAMICS:
            _hidden(za_in, z_off, d_w1, ZW + TD, 1, d_b1 + b_start, b_off, d_g1, d_e1, d_w2, M1, 1, d_b2, d_g2, d_e2, h1_ptr, h2_ptr,
                    s_off, f_base, f_off, m_ok, ln_eps, ZW, M1, DOT_BF16, BLOCK_M, BLOCK_H, BLOCK_K, k_start)
            linear_rows(h2_ptr, s_off, h2_ptr, s_off, d_w3, M1, 1, d_b3, s_off * 0, d_g3, d_e3, za_out, z_off, f_base,
                        f_off, m_ok, ln_eps, M1, 0, L, True, 2, GROUP, DOT_BF16, BLOCK_M, BLOCK_L, BLOCK_K)
            tl.debug_barrier()
            if EPISODIC:
                _hidden(za_out, z_off, t_w1, L + TD, 1, t_b1, b_off, t_g1, t_e1, t_w2, M1, 1, t_b2, t_g2, t_e2, h1_ptr,
                        h2_ptr, s_off, f_base, f_off, m_ok, ln_eps, L, M1, DOT_BF16, BLOCK_M, BLOCK_H, BLOCK_K)
                term = _scalar_out(h2_ptr, s_off, t_w3, t_b3, m_ok, M1, DOT_BF16, BLOCK_M, BLOCK_K)
                tl.store(alive_ptr + rm, alive * (term <= 0).to(tl.float32), mask=m_ok)
                tl.debug_barrier()


# The head groups of one horizon step, then of the final value, launched in this order
# (_heads_kernel's flags). The two Q heads in one launch spilled 8-92 B at preset 5 (sm_90); one
# launch each does not.
STEP_GROUPS = (dict(GATHER=1, REWARD=1, ENERGY=1), dict(DYNAMICS=1))
FINAL_GROUPS = (dict(Q=1), dict(Q=2))
_FLAGS = ("GATHER", "REWARD", "ENERGY", "DYNAMICS", "Q")


@dataclass(frozen=True)
class PlanInputs:
    """What stays fixed over one plan call's denoising steps (`prepare`), fp32: per-environment
    first-layer biases `first[head]` [2, E, mlp_dim] for dynamics, reward, energy and policy (row 0:
    the first horizon step's, z0's and the task embedding's parts included; row 1: later steps',
    the task embedding's part included), termination's [E, mlp_dim] (later steps' kind), the Q
    heads' [num_q, E, mlp_dim]; the discount per environment [E] and the action mask [E, A] (None
    single-task)."""
    first: dict
    q_b1: torch.Tensor
    gamma: torch.Tensor
    mask: torch.Tensor | None


def _first_layer(net, z0, emb, L: int, task_cols: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(first-step bias [E, M1], later-step bias [E, M1]) of an MLP's first layer reading
    [z, (a), task]; task_cols: where the task embedding's columns start."""
    w, b = net[0].weight.float(), net[0].bias.float()
    later = b.expand(z0.shape[0], -1) if emb.shape[1] == 0 else torch.addmm(b, emb, w[:, task_cols:].t())
    return torch.addmm(later, z0, w[:, :L].t()), later


def prepare(nets: RolloutNets, z0: torch.Tensor, task: torch.Tensor | None, gamma: torch.Tensor,
            mask: torch.Tensor | None) -> PlanInputs:
    """z0 [E, L], task [E] or None, gamma [E, 1] or [E], mask [E, A] or None -> PlanInputs."""
    z0 = z0.float()
    E, L = z0.shape
    TD = _task_dim(nets)
    A = nets.reward[0].weight.shape[1] - L - TD
    emb = nets.with_task(z0[:, :0], task).float()  # [E, TD] (TD = 0 single-task)
    first = {}
    for name, net, task_cols in (("d", nets.dynamics, L + A), ("r", nets.reward, L + A), ("f", nets.energy, L + A),
                                 ("p", nets.pi, L)):
        first[name] = torch.stack(_first_layer(net, z0, emb, L, task_cols))
    if nets.termination is not None:
        first["t"] = _first_layer(nets.termination, z0, emb, L, L)[1].contiguous()
    qw, qb = nets.q_params[0][0].float(), nets.q_params[1][0].float()  # [num_q, L+A+TD, M1], [num_q, M1]
    q_b1 = qb[:, None, :].expand(-1, E, -1) if TD == 0 else \
        qb[:, None, :] + torch.einsum("et,qtm->qem", emb, qw[:, L + A:, :])
    return PlanInputs(first, q_b1.contiguous(), gamma.reshape(-1).float().contiguous(),
                      mask.float().contiguous() if mask is not None else None)



def _task_dim(nets: RolloutNets) -> int:
    return nets.pi[0].weight.shape[1] - nets.dynamics[-1].weight.shape[0]


def max_programs(device: torch.device) -> int:
    """How many persistent programs a rollout kernel launches at most: two per SM."""
    if device.type == "cuda":
        return 2 * torch.cuda.get_device_properties(device).multi_processor_count
    return DEFAULT_MAX_PROGRAMS


def _grid(rows: int, mlp_dim: int, device: torch.device) -> tuple[int, int, int]:
    """(BLOCK_M, row blocks, persistent programs) for a launch over `rows` rows."""
    bm = max(MIN_BLOCK_M, launch_config(rows, mlp_dim)["BLOCK_M"])
    blocks = triton.cdiv(rows, bm)
    return bm, blocks, min(blocks, max_programs(device))


def _blocks_per_program(blocks: int, programs: int) -> int:
    return triton.cdiv(blocks, programs) if interpreting() else 0


def rollout_values(nets: RolloutNets, plan: PlanInputs, cand: torch.Tensor, eps_pi: torch.Tensor,
                   eps_val: torch.Tensor, heads: torch.Tensor, eta: float, episodic: bool,
                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """cand [E, N, H, A] fp32 (contiguous; its first P rows per environment are overwritten with the
    policy prior's actions and every row masked, in place), eps_pi [H, E, P, A] (policy rollouts'
    noise), eps_val [E, N, A] (the final policy sample's), heads [2] int64 -> values [E, N] fp32.
    Activations in `dtype` (bf16: bf16 operands with fp32 accumulation). 3H + 3 launches (H fewer
    without a policy prior)."""
    E, N, H, A = cand.shape
    P = eps_pi.shape[2]
    if not cand.is_contiguous() or cand.dtype != torch.float32:
        raise ValueError("cand must be a contiguous fp32 tensor (it is updated in place)")
    M1, NB, TD = nets.reward[0].weight.shape[0], nets.bins.shape[0], _task_dim(nets)
    L = nets.dynamics[-1].weight.shape[0]
    group = nets.dynamics[-1].act.group  # SimNorm's
    device = cand.device
    block_l = min(BLOCK_N, max(16, triton.next_power_of_2(L)))
    if block_l % group:
        raise ValueError(f"SimNorm group {group} does not divide the tile width {block_l}")
    cfg = launch_config(E * N, M1)
    bm, blocks, programs = _grid(E * N, M1, device)
    bm_p, blocks_p, programs_p = _grid(E * max(P, 1), M1, device)
    scratch_rows = max(programs * bm, programs_p * bm_p)
    act = torch.empty(scratch_rows, 2 * M1, device=device, dtype=dtype)
    f32 = torch.empty(scratch_rows, max(M1, L), device=device, dtype=torch.float32)
    za = [torch.empty(E * N, L + A, device=device, dtype=dtype) for _ in range(2)]  # [z_t, a_t], ping-pong
    values = torch.empty(E, N, device=device, dtype=torch.float32)
    alive = torch.empty(E * N, device=device, dtype=torch.float32) if episodic else values
    qbuf = torch.empty(E * N, device=device, dtype=torch.float32)  # the first Q head's value
    mask = plan.mask if plan.mask is not None else values  # (not read without a mask)
    eps_pi, eps_val = eps_pi.contiguous(), eps_val.contiguous()
    d, r, f, p = nets.dynamics, nets.reward, nets.energy, nets.pi
    term = nets.termination if episodic else d  # (not read unless episodic)
    t_b1 = plan.first["t"] if episodic else plan.first["d"]
    qw, qb, qg, qe = nets.q_params
    bf16 = dtype == torch.bfloat16
    block_h = min(BLOCK_N, max(16, triton.next_power_of_2(M1)))
    block_a = max(16, triton.next_power_of_2(A))

    def hidden(net):
        return (net[0].ln.weight, net[0].ln.bias, net[1].weight, net[1].bias, net[1].ln.weight, net[1].ln.bias)

    def policy(z, rows, R, bm_, blocks_, programs_, eps, k_start, b_start, eps_start, out, out_col, out_stride):
        _policy_kernel[(programs_,)](
            z, plan.first["p"], eps, mask, out, act, f32, p[0].weight, *hidden(p), p[2].weight, p[2].bias,
            rows, blocks_, programs_, k_start, b_start, eps_start, out_col, out_stride, float(nets.log_std_min),
            float(nets.log_std_max), 1e-5,
            N=N, R=R, A=A, L=L, M1=M1, TD=TD, HAS_MASK=plan.mask is not None, DOT_BF16=bf16,
            BLOCKS_PER_PROGRAM=_blocks_per_program(blocks_, programs_), BLOCK_M=bm_, BLOCK_H=block_h,
            BLOCK_A=block_a, BLOCK_K=32, EVEN=rows % bm_ == 0 and not interpreting(),
            num_warps=NUM_WARPS, num_stages=cfg["num_stages"],
            maxnreg=MAXNREG)

    def step_heads(t, flags):
        _heads_kernel[(programs,)](
            cand, za[t % 2], za[(t + 1) % 2], mask, plan.gamma, nets.energy_mu, nets.energy_sigma, nets.bins, heads,
            values, alive, qbuf, act, f32,
            d[0].weight, plan.first["d"], *hidden(d), d[2].weight, d[2].bias, d[2].ln.weight, d[2].ln.bias,
            r[0].weight, plan.first["r"], *hidden(r), r[2].weight, r[2].bias,
            f[0].weight, plan.first["f"], *hidden(f), f[2].weight, f[2].bias,
            term[0].weight, t_b1, *hidden(term), term[2].weight, term[2].bias,
            qw[0], plan.q_b1, qg[0], qe[0], qw[1], qb[1], qg[1], qe[1], qw[2], qb[2],
            E, blocks, programs, t, float(eta), float(nets.energy_clip), 1e-5,
            N=N, H=H, A=A, L=L, M1=M1, TD=TD, NB=NB, GROUP=group, HAS_MASK=plan.mask is not None,
            EPISODIC=bool(episodic), **{k: flags.get(k, 0) for k in _FLAGS}, DOT_BF16=bf16,
            BLOCKS_PER_PROGRAM=_blocks_per_program(blocks, programs), BLOCK_M=bm, BLOCK_L=block_l,
            BLOCK_H=block_h, BLOCK_A=block_a, BLOCK_NB=max(16, triton.next_power_of_2(NB)), BLOCK_K=32,
            EVEN=(E * N) % bm == 0 and not interpreting(), num_warps=NUM_WARPS, num_stages=cfg["num_stages"],
            maxnreg=MAXNREG)

    for t in range(H):
        if P:  # the policy prior's actions a_t ~ pi(z_t) into the first P candidates of each environment
            policy(za[t % 2], E * P, P, bm_p, blocks_p, programs_p, eps_pi, L if t == 0 else 0,
                   0 if t == 0 else E * M1, t * E * P * A, cand, t * A, H * A)
        for flags in STEP_GROUPS:
            step_heads(t, flags)
    # the final policy sample a_H ~ pi(z_H) into z_H's row, then Qavg over the two given heads
    policy(za[H % 2], E * N, N, bm, blocks, programs, eps_val, 0, E * M1, 0, za[H % 2], L, L + A)
    for flags in FINAL_GROUPS:
        step_heads(H, flags)
    return values
