"""The imagined returns of one denoising step in one kernel (docs/algorithm.md sections 3 and 4,
steps 2-3): for every candidate row, the policy-prior actions (the first P candidates of each
environment), then H steps of reward, energy and dynamics (and termination), then the final policy
sample and the mean of two Q heads, accumulated into the return G. Every row is independent of the
others, so one program owns BLOCK_M rows for the whole rollout and nothing leaves it but the
values and the candidates' actions; the world model's layers run one after another inside the
program (fused_linear.linear_rows), their activations in a per-program scratch area (small enough to stay
in L2) with a barrier between layers. Programs are persistent: at most `max_programs` of them walk the
row blocks, so the scratch area does not grow with E x N.

What does not change within a plan is computed once per plan (`prepare`): at the first horizon step
every candidate of an environment has the same latent z0, so the z0 part of the first layer of
dynamics, reward and energy (and the policy's whole first layer) is one [E, mlp_dim] bias per
environment; the task embedding's part of every first layer likewise (multi-task). A policy row's
rollout latents are the value rollout's own (z_{t+1} = d(z_t, a_t) either way), so the policy prior
costs only its policy evaluations. Same random numbers as the reference path (planner.py:
imagined_value and policy_rollout); the Q heads are read at the two indices of `heads` in the
kernel (no gathered copy of their weights).
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

# 8 warps at every tile height: with 4, the kernel needs more than 255 registers per thread and
# spilled 216-428 B at preset 5 (tools/kernel_report.py --fused-rollout); with 8, tens of bytes
# (benchmarks/results/kernel_fit/kernel_fit_fused_rollout.csv).
NUM_WARPS = 8
# Persistent programs when the device cannot be asked (meta, the interpreter): two per SM of an H100.
DEFAULT_MAX_PROGRAMS = 264


@triton.jit
def _tanh(x):
    # tanh from exp, stable for any |x| (no libdevice: the same code runs under TRITON_INTERPRET=1)
    e = tl.exp(-2.0 * tl.abs(x))
    t = (1.0 - e) / (1.0 + e)
    return tl.where(x < 0, -t, t)


@triton.jit
def _hidden(x1_ptr, x1_off, x2_ptr, x2_off, w1, s1n, s1k, b1_ptr, b1_off, g1, e1, w2, s2n, s2k, b2, g2, e2, h1_ptr,
            h2_ptr, s_off, tmp_ptr, f_off, m_ok, ln_eps, K1: tl.constexpr, K2: tl.constexpr, M1: tl.constexpr,
            DOT_BF16: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr, k_start=0):
    """A head's two hidden NormedLinear (Mish) layers: [x1, x2] -> h1 -> h2 (scratch rows at s_off,
    staging at f_off); the first layer leaves out its inputs' first k_start columns (their part is
    in its per-row bias)."""
    linear_rows(x1_ptr, x1_off, x2_ptr, x2_off, w1, s1n, s1k, b1_ptr, b1_off, g1, e1, h1_ptr, s_off, tmp_ptr, f_off,
                m_ok, ln_eps, K1, K2, M1, True, 1, 8, DOT_BF16, BLOCK_M, BLOCK_H, BLOCK_K, k_start)
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


@triton.jit
def _policy(z_ptr, b1_ptr, b_off, p_w1, p_g1, p_e1, p_w2, p_b2, p_g2, p_e2, p_w3, p_b3, h1_ptr, h2_ptr, s_off,
            tmp_ptr, f_off, m_ok, eps_ptr, eps_off, mask_ptr, mask_off, ra, a_ok, ln_eps, log_std_min, log_std_max,
            L: tl.constexpr, TD: tl.constexpr, A: tl.constexpr, M1: tl.constexpr, HAS_MASK: tl.constexpr,
            DOT_BF16: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_A: tl.constexpr,
            BLOCK_K: tl.constexpr, k_start=0):
    """a = tanh(mean + eps exp(log_std)) of the policy head on the rows' latents (scratch rows), or
    (k_start = L: the first horizon step) on its per-environment first-layer bias alone:
    [BLOCK_M, BLOCK_A] fp32, WorldModel.pi_from_head without the log-probability."""
    _hidden(z_ptr, s_off, z_ptr, s_off, p_w1, L + TD, 1, b1_ptr, b_off, p_g1, p_e1, p_w2, M1, 1, p_b2, p_g2, p_e2,
            h1_ptr, h2_ptr, s_off, tmp_ptr, f_off, m_ok, ln_eps, L, 0, M1, DOT_BF16, BLOCK_M, BLOCK_H, BLOCK_K, k_start)
    mean = tl.zeros((BLOCK_M, BLOCK_A), dtype=tl.float32)
    mean = accumulate_tile(mean, h2_ptr, s_off, h2_ptr, s_off, p_w3, M1, 1, ra, m_ok, a_ok, M1, 0, DOT_BF16, BLOCK_K)
    raw = tl.zeros((BLOCK_M, BLOCK_A), dtype=tl.float32)
    raw = accumulate_tile(raw, h2_ptr, s_off, h2_ptr, s_off, p_w3 + A * M1, M1, 1, ra, m_ok, a_ok, M1, 0, DOT_BF16,
                          BLOCK_K)
    mean += tl.load(p_b3 + ra, mask=a_ok, other=0.0).to(tl.float32)[None, :]
    raw += tl.load(p_b3 + A + ra, mask=a_ok, other=0.0).to(tl.float32)[None, :]
    log_std = log_std_min + 0.5 * (log_std_max - log_std_min) * (_tanh(raw) + 1.0)
    ok = m_ok[:, None] & a_ok[None, :]
    eps = tl.load(eps_ptr + eps_off[:, None] + ra[None, :], mask=ok, other=0.0).to(tl.float32)
    if HAS_MASK:
        mask = tl.load(mask_ptr + mask_off[:, None] + ra[None, :], mask=ok, other=0.0).to(tl.float32)
        mean, log_std, eps = mean * mask, log_std * mask, eps * mask
    return _tanh(mean + eps * tl.exp(log_std))


@triton.jit
def _rollout_values_kernel(
        cand_ptr, eps_pi_ptr, eps_val_ptr, heads_ptr, mask_ptr, gamma_ptr, mu_ptr, sigma_ptr, bins_ptr,
        values_ptr, act_ptr, f32_ptr,
        d_w1, d_b1, d_g1, d_e1, d_w2, d_b2, d_g2, d_e2, d_w3, d_b3, d_g3, d_e3,
        r_w1, r_b1, r_g1, r_e1, r_w2, r_b2, r_g2, r_e2, r_w3, r_b3,
        f_w1, f_b1, f_g1, f_e1, f_w2, f_b2, f_g2, f_e2, f_w3, f_b3,
        p_w1, p_b1, p_g1, p_e1, p_w2, p_b2, p_g2, p_e2, p_w3, p_b3,
        t_w1, t_b1, t_g1, t_e1, t_w2, t_b2, t_g2, t_e2, t_w3, t_b3,
        q_w1, q_b1, q_g1, q_e1, q_w2, q_b2, q_g2, q_e2, q_w3, q_b3,
        E, num_blocks, num_programs, eta, energy_clip, log_std_min, log_std_max, ln_eps,
        N: tl.constexpr, P: tl.constexpr, H: tl.constexpr, A: tl.constexpr, L: tl.constexpr, M1: tl.constexpr,
        TD: tl.constexpr, NB: tl.constexpr, GROUP: tl.constexpr, HAS_MASK: tl.constexpr, EPISODIC: tl.constexpr,
        DOT_BF16: tl.constexpr, BLOCKS_PER_PROGRAM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_L: tl.constexpr,
        BLOCK_H: tl.constexpr, BLOCK_A: tl.constexpr, BLOCK_NB: tl.constexpr, BLOCK_K: tl.constexpr, EVEN: tl.constexpr):
    """First-layer biases per environment (PlanInputs): d/r/f/p_b1 [2, E, M1] (the first horizon
    step's, then later steps'), t_b1 [E, M1], q_b1 [num_q, E, M1]; Q weights stacked [num_q, in, out]."""
    pid = tl.program_id(0)
    lr = tl.arange(0, BLOCK_M)
    ra = tl.arange(0, BLOCK_A)
    a_ok = ra < A
    # This program's scratch rows, in the activation dtype: [z_t, a_t] twice (this step's and the
    # next's latent), h1, h2; fp32: a wide row's pre-norm values. The action sits right after its
    # latent so that the first layers read one input of L + A columns (a layer with a two-part input
    # takes 236-254 registers on its own, kernel_fit.csv; in this kernel neither form avoids spills).
    ZW: tl.constexpr = L + A
    SW: tl.constexpr = 2 * ZW + 2 * M1
    TW: tl.constexpr = M1 if M1 > L else L
    act_base = act_ptr + pid.to(tl.int64) * (BLOCK_M * SW)
    f_base = f32_ptr + pid.to(tl.int64) * (BLOCK_M * TW)
    s_off, f_off = lr * SW, lr * TW
    h1_ptr, h2_ptr = act_base + 2 * ZW, act_base + 2 * ZW + M1
    mu = tl.load(mu_ptr).to(tl.float32)
    sigma = tl.load(sigma_ptr).to(tl.float32)
    # Row blocks pid, pid + num_programs, ...: a runtime trip count when compiled (one binary for
    # every E), the constexpr BLOCKS_PER_PROGRAM under TRITON_INTERPRET=1, where runtime loop bounds
    # fail (fused_linear.RUNTIME_LOOP_START); a block past the end has every row masked.
    for k in range(tl.cdiv(num_blocks - pid, num_programs) if BLOCKS_PER_PROGRAM == 0 else BLOCKS_PER_PROGRAM):
        rm = (pid + k * num_programs) * BLOCK_M + lr
        if EVEN:  # every visited block is full: masks the compiler can drop
            m_ok = lr < BLOCK_M
        else:
            m_ok = rm < E * N
        env = tl.where(m_ok, rm // N, 0)
        b_off = env * M1  # row offsets into an [E, M1] per-environment bias
        i = rm % N
        pi_row = m_ok & (i < P)
        any_pi = tl.max(pi_row.to(tl.int32), axis=0) > 0
        c_off = rm * (H * A)  # candidate rows
        m_off = env * A  # mask rows
        gamma = tl.load(gamma_ptr + env, mask=m_ok, other=0.0).to(tl.float32)
        G = tl.zeros((BLOCK_M,), dtype=tl.float32)
        g = tl.zeros((BLOCK_M,), dtype=tl.float32) + 1.0
        alive = tl.zeros((BLOCK_M,), dtype=tl.float32) + 1.0
        ok = m_ok[:, None] & a_ok[None, :]
        for t in range(H):
            z_in = act_base + (t % 2) * ZW  # [z_t, a_t] (z_t not read at t = 0: z0's part is in the biases)
            z_out = act_base + ((t + 1) % 2) * ZW
            first = (t == 0)
            k0 = L * first  # the first step's first layers skip the latent's columns
            later = (E * M1) * (1 - first)  # the first-layer biases' row: [2, E, M1]
            a_t = cand_ptr + t * A
            a = tl.load(a_t + c_off[:, None] + ra[None, :], mask=ok, other=0.0)
            if any_pi:  # policy-prior rows: a_t ~ pi(z_t)
                a_pi = _policy(z_in, p_b1 + later, b_off, p_w1, p_g1, p_e1, p_w2, p_b2, p_g2, p_e2, p_w3, p_b3, h1_ptr,
                               h2_ptr, s_off, f_base, f_off, pi_row, eps_pi_ptr + t * (E * P * A), (env * P + i) * A,
                               mask_ptr, m_off, ra, a_ok, ln_eps, log_std_min, log_std_max, L, TD, A, M1, HAS_MASK,
                               DOT_BF16, BLOCK_M, BLOCK_H, BLOCK_A, BLOCK_K, k0)
                a = tl.where(pi_row[:, None], a_pi, a)
            if HAS_MASK:
                a = a * tl.load(mask_ptr + m_off[:, None] + ra[None, :], mask=ok, other=0.0)
            tl.store(a_t + c_off[:, None] + ra[None, :], a, mask=ok)
            tl.store(z_in + L + s_off[:, None] + ra[None, :], a.to(act_ptr.dtype.element_ty), mask=ok)
            tl.debug_barrier()
            # reward
            _hidden(z_in, s_off, z_in, s_off, r_w1, L + A + TD, 1, r_b1 + later, b_off, r_g1, r_e1, r_w2, M1, 1, r_b2,
                    r_g2, r_e2, h1_ptr, h2_ptr, s_off, f_base, f_off, m_ok, ln_eps, L + A, 0, M1, DOT_BF16, BLOCK_M,
                    BLOCK_H, BLOCK_K, k0)
            r = two_hot_rows(h2_ptr, s_off, r_w3, M1, 1, r_b3, bins_ptr, m_ok, M1, NB, DOT_BF16, BLOCK_M, BLOCK_NB,
                             BLOCK_K)
            tl.debug_barrier()
            # energy bonus
            _hidden(z_in, s_off, z_in, s_off, f_w1, L + A + TD, 1, f_b1 + later, b_off, f_g1, f_e1, f_w2, M1, 1, f_b2,
                    f_g2, f_e2, h1_ptr, h2_ptr, s_off, f_base, f_off, m_ok, ln_eps, L + A, 0, M1, DOT_BF16, BLOCK_M,
                    BLOCK_H, BLOCK_K, k0)
            f = _scalar_out(h2_ptr, s_off, f_w3, f_b3, m_ok, M1, DOT_BF16, BLOCK_M, BLOCK_K)
            f = tl.minimum(tl.maximum((f - mu) / sigma, -energy_clip), energy_clip)
            tl.debug_barrier()
            G += g * alive * (r + eta * f)
            # dynamics: z_{t+1}, SimNorm
            _hidden(z_in, s_off, z_in, s_off, d_w1, L + A + TD, 1, d_b1 + later, b_off, d_g1, d_e1, d_w2, M1, 1, d_b2,
                    d_g2, d_e2, h1_ptr, h2_ptr, s_off, f_base, f_off, m_ok, ln_eps, L + A, 0, M1, DOT_BF16, BLOCK_M,
                    BLOCK_H, BLOCK_K, k0)
            linear_rows(h2_ptr, s_off, h2_ptr, s_off, d_w3, M1, 1, d_b3, s_off * 0, d_g3, d_e3, z_out, s_off, f_base,
                        f_off, m_ok, ln_eps, M1, 0, L, True, 2, GROUP, DOT_BF16, BLOCK_M, BLOCK_L, BLOCK_K)
            tl.debug_barrier()
            g = g * gamma
            if EPISODIC:
                _hidden(z_out, s_off, z_out, s_off, t_w1, L + TD, 1, t_b1, b_off, t_g1, t_e1, t_w2, M1, 1, t_b2, t_g2,
                        t_e2, h1_ptr, h2_ptr, s_off, f_base, f_off, m_ok, ln_eps, L, 0, M1, DOT_BF16, BLOCK_M, BLOCK_H,
                        BLOCK_K)
                term = _scalar_out(h2_ptr, s_off, t_w3, t_b3, m_ok, M1, DOT_BF16, BLOCK_M, BLOCK_K)
                alive = alive * (term <= 0).to(tl.float32)
                tl.debug_barrier()
        # the final policy sample and Qavg over the two given heads
        z_h = act_base + (H % 2) * ZW
        a_pi = _policy(z_h, p_b1 + E * M1, b_off, p_w1, p_g1, p_e1, p_w2, p_b2, p_g2, p_e2, p_w3, p_b3, h1_ptr, h2_ptr,
                       s_off, f_base, f_off, m_ok, eps_val_ptr, rm * A, mask_ptr, m_off, ra, a_ok, ln_eps, log_std_min,
                       log_std_max, L, TD, A, M1, HAS_MASK, DOT_BF16, BLOCK_M, BLOCK_H, BLOCK_A, BLOCK_K)
        tl.store(z_h + L + s_off[:, None] + ra[None, :], a_pi.to(act_ptr.dtype.element_ty), mask=ok)
        tl.debug_barrier()
        q = tl.zeros((BLOCK_M,), dtype=tl.float32)
        for j in range(2):
            h = tl.load(heads_ptr + j).to(tl.int64)
            _hidden(z_h, s_off, z_h, s_off, q_w1 + h * ((L + A + TD) * M1), 1, M1, q_b1 + h * (E * M1), b_off,
                    q_g1 + h * M1, q_e1 + h * M1, q_w2 + h * (M1 * M1), 1, M1, q_b2 + h * M1, q_g2 + h * M1,
                    q_e2 + h * M1, h1_ptr, h2_ptr, s_off, f_base, f_off, m_ok, ln_eps, L + A, 0, M1, DOT_BF16, BLOCK_M,
                    BLOCK_H, BLOCK_K)
            q += two_hot_rows(h2_ptr, s_off, q_w3 + h * (M1 * NB), 1, NB, q_b3 + h * NB, bins_ptr, m_ok, M1, NB,
                              DOT_BF16, BLOCK_M, BLOCK_NB, BLOCK_K)
            tl.debug_barrier()
        G += g * alive * (q / 2.0)
        tl.store(values_ptr + rm, G, mask=m_ok)


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
    """How many persistent programs the rollout kernel launches at most: two per SM."""
    if device.type == "cuda":
        return 2 * torch.cuda.get_device_properties(device).multi_processor_count
    return DEFAULT_MAX_PROGRAMS


def rollout_values(nets: RolloutNets, plan: PlanInputs, cand: torch.Tensor, eps_pi: torch.Tensor,
                   eps_val: torch.Tensor, heads: torch.Tensor, eta: float, episodic: bool,
                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """cand [E, N, H, A] fp32 (contiguous; its first P rows per environment are overwritten with the
    policy prior's actions and every row masked, in place), eps_pi [H, E, P, A] (policy rollouts'
    noise), eps_val [E, N, A] (the final policy sample's), heads [2] int64 -> values [E, N] fp32.
    Activations in `dtype` (bf16: bf16 operands with fp32 accumulation)."""
    E, N, H, A = cand.shape
    P = eps_pi.shape[2]
    if not cand.is_contiguous() or cand.dtype != torch.float32:
        raise ValueError("cand must be a contiguous fp32 tensor (it is updated in place)")
    M1, NB, TD = nets.reward[0].weight.shape[0], nets.bins.shape[0], _task_dim(nets)
    L = nets.dynamics[-1].weight.shape[0]
    group = nets.dynamics[-1].act.group  # SimNorm's
    device = cand.device
    cfg = launch_config(E * N, M1)
    bm = cfg["BLOCK_M"]
    num_blocks = triton.cdiv(E * N, bm)
    programs = min(num_blocks, max_programs(device))
    block_l = min(MAX_BLOCK_N, max(16, triton.next_power_of_2(L)))
    if block_l % group:
        raise ValueError(f"SimNorm group {group} does not divide the tile width {block_l}")
    act = torch.empty(programs * bm, 2 * (L + A) + 2 * M1, device=device, dtype=dtype)
    f32 = torch.empty(programs * bm, max(M1, L), device=device, dtype=torch.float32)
    values = torch.empty(E, N, device=device, dtype=torch.float32)
    mask = plan.mask if plan.mask is not None else values  # (not read without a mask)
    d, r, f, p = nets.dynamics, nets.reward, nets.energy, nets.pi
    t = nets.termination if episodic else d  # (not read unless episodic)
    t_b1 = plan.first["t"] if episodic else plan.first["d"]
    qw, qb, qg, qe = nets.q_params

    def hidden(net):
        return (net[0].ln.weight, net[0].ln.bias, net[1].weight, net[1].bias, net[1].ln.weight, net[1].ln.bias)

    _rollout_values_kernel[(programs,)](
        cand, eps_pi.contiguous(), eps_val.contiguous(), heads, mask, plan.gamma, nets.energy_mu,
        nets.energy_sigma, nets.bins, values, act, f32,
        d[0].weight, plan.first["d"], *hidden(d), d[2].weight, d[2].bias, d[2].ln.weight, d[2].ln.bias,
        r[0].weight, plan.first["r"], *hidden(r), r[2].weight, r[2].bias,
        f[0].weight, plan.first["f"], *hidden(f), f[2].weight, f[2].bias,
        p[0].weight, plan.first["p"], *hidden(p), p[2].weight, p[2].bias,
        t[0].weight, t_b1, *hidden(t), t[2].weight, t[2].bias,
        qw[0], plan.q_b1, qg[0], qe[0], qw[1], qb[1], qg[1], qe[1], qw[2], qb[2],
        E, num_blocks, programs, float(eta), float(nets.energy_clip), float(nets.log_std_min),
        float(nets.log_std_max), 1e-5,
        N=N, P=P, H=H, A=A, L=L, M1=M1, TD=TD, NB=NB, GROUP=group, HAS_MASK=plan.mask is not None,
        EPISODIC=bool(episodic), DOT_BF16=dtype == torch.bfloat16,
        BLOCKS_PER_PROGRAM=triton.cdiv(num_blocks, programs) if interpreting() else 0, BLOCK_M=bm, BLOCK_L=block_l,
        BLOCK_H=min(MAX_BLOCK_N, max(16, triton.next_power_of_2(M1))),
        BLOCK_A=max(16, triton.next_power_of_2(A)), BLOCK_NB=max(16, triton.next_power_of_2(NB)), BLOCK_K=32,
        EVEN=(E * N) % bm == 0 and not interpreting(),
        num_warps=NUM_WARPS, num_stages=cfg["num_stages"])
    return values
