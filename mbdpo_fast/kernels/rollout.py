"""The planner's latent rollouts on the fused kernels: every MLP layer of the world model is one
fused_linear launch (GEMM + bias + LayerNorm + Mish/SimNorm, the concatenations read in place),
and the reward and Q output layers are fused with their two-hot decode. Same random-number inputs
as planner.imagined_value / planner.policy_rollout (their references). The networks come in as a
`RolloutNets`, which the world model builds (`WorldModel.rollout_nets`): this module reads no
model attribute.

Activations stay in `dtype` between layers (bf16 on the fast path: half the memory traffic;
fp32 for the comparisons with the reference); imagined returns are accumulated in fp32.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ..layers import NormedLinear, SimNorm
from .interface import RolloutNets
from .fused_linear import fused_linear
from .two_hot_head import two_hot_value


def run_mlp(seq: nn.Sequential, x1: torch.Tensor, x2: torch.Tensor | None = None, dtype=torch.float32,
            bins: torch.Tensor | None = None) -> torch.Tensor:
    """An `mlp` of layers.py on [x1, x2]: hidden NormedLinear layers fused, then the output layer
    (SimNorm/Mish NormedLinear, plain Linear, or with `bins` a Linear fused with the two-hot decode
    returning [..., 1] fp32)."""
    layers = list(seq)
    h, second = x1, x2
    for layer in layers[:-1]:
        h = fused_linear(h, layer.weight, layer.bias, layer.ln.weight, layer.ln.bias, act="mish", x2=second,
                         dot_dtype=dtype, out_dtype=dtype)
        second = None
    last = layers[-1]
    if bins is not None:
        return two_hot_value(h, last.weight, last.bias, bins, dot_dtype=dtype)
    if isinstance(last, NormedLinear):
        simn = isinstance(last.act, SimNorm)
        return fused_linear(h, last.weight, last.bias, last.ln.weight, last.ln.bias, act="simnorm" if simn else "mish",
                            group=last.act.group if simn else 8, x2=second, dot_dtype=dtype, out_dtype=dtype)
    return fused_linear(h, last.weight, last.bias, None, None, act="none", x2=second, dot_dtype=dtype,
                        out_dtype=torch.float32)


def q_value(nets: RolloutNets, z: torch.Tensor, a: torch.Tensor, task, heads: torch.Tensor,
            dtype=torch.float32) -> torch.Tensor:
    """Qavg: the mean of the decoded values of the Q heads in `heads` ([2] device tensor) -> [M, 1] fp32."""
    sel = [[p.index_select(0, heads) for p in group] for group in nets.q_params]
    ws, bs, gs, betas = sel
    x2 = nets.with_task(a.to(z.dtype), task)
    total = 0.0
    for i in range(heads.shape[0]):
        h, second = z, x2
        for j in range(len(gs)):
            h = fused_linear(h, ws[j][i].t(), bs[j][i], gs[j][i], betas[j][i], act="mish", x2=second,
                             dot_dtype=dtype, out_dtype=dtype)
            second = None
        total = total + two_hot_value(h, ws[-1][i].t(), bs[-1][i], nets.bins, dot_dtype=dtype)
    return total / heads.shape[0]


def task_part(nets: RolloutNets, z: torch.Tensor, task) -> torch.Tensor | None:
    """The task embedding as the second input part of a head that reads cat(z, emb) (None single-task)."""
    return nets.with_task(z[..., :0], task) if nets.multitask else None


def pi_sample(nets: RolloutNets, z: torch.Tensor, task, eps: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    raw = run_mlp(nets.pi, z, task_part(nets, z, task), dtype)
    action, _ = nets.pi_from_head(raw.float(), task, eps, with_info=False)
    return action


def imagined_value_fused(nets: RolloutNets, z, actions, task, gamma, eta, episodic, pi_eps, heads, dtype=torch.float32):
    """planner.imagined_value on the fused kernels: z [M, L], actions [H, M, A] -> G [M, 1] fp32."""
    z = z.to(dtype)
    G = torch.zeros(z.shape[0], 1, device=z.device)
    g = torch.ones_like(G)
    alive = torch.ones_like(G)
    for t in range(actions.shape[0]):
        a = nets.with_task(actions[t].to(dtype), task)
        r = run_mlp(nets.reward, z, a, dtype, bins=nets.bins)
        f = run_mlp(nets.energy, z, a, dtype)
        f = ((f - nets.energy_mu) / nets.energy_sigma).clamp(-nets.energy_clip, nets.energy_clip)
        G = G + g * alive * (r + eta * f)
        z = run_mlp(nets.dynamics, z, a, dtype)
        g = g * gamma
        if episodic:
            term = run_mlp(nets.termination, z, task_part(nets, z, task), dtype)
            alive = alive * (term <= 0).float()
    a_pi = pi_sample(nets, z, task, pi_eps, dtype)
    return G + g * alive * q_value(nets, z, a_pi, task, heads, dtype)


def policy_rollout_fused(nets: RolloutNets, z, horizon, task, eps, dtype=torch.float32):
    """planner.policy_rollout on the fused kernels: z [M, L] -> actions [H, M, A] (fp32)."""
    z = z.to(dtype)
    out = []
    for t in range(horizon):
        a = pi_sample(nets, z, task, eps[t], dtype)
        out.append(a)
        if t < horizon - 1:
            z = run_mlp(nets.dynamics, z, nets.with_task(a.to(dtype), task), dtype)
    return torch.stack(out)
