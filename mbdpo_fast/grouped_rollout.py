"""The imagined returns of one denoising step in PyTorch with the world model's heads grouped
(docs/algorithm.md sections 3 and 4, steps 2-3): the planner's path for kernels=torch with
fused_rollout=true, and what compile=true compiles for it. Its reference is planner.TorchRollouts
(the world model's own modules, head by head), which computes the same values with more work:

- heads that read the same input are one matrix product: the first layers of dynamics, reward
  and energy on [z_t, a_t] are one [rows, L+A] x [L+A, 3 M1] product; the first layers of the two
  Q heads on [z_H, a_H] one [rows, L+A] x [L+A, 2 M1] product, their later layers batched;
- what does not change within a plan is computed once per plan (`prepare`): at t = 0 every
  candidate of an environment has the same latent z0, so the z0 part of those three first layers
  is one bias per environment (the rows multiply only their A action columns) and the policy at z0
  is one evaluation per environment; the task embedding's part of every first layer is a bias
  per environment likewise (multi-task);
- the policy prior's rows are rows of the value rollout: their latents z_t are the rollout's own
  (z_{t+1} = d(z_t, a_t) either way), so the policy prior costs its policy evaluations only (the
  reference runs the dynamics of those rows a second time);
- LayerNorm + Mish is one elementwise expression with Mish from one exponential
  (functional.mish_exp): one loop over a layer's output under torch.compile (Inductor), a few
  vectorised passes eagerly, instead of torch's tanh-based Mish;
- the rollout's latents are kept group-major: the dynamics' output features (and every weight
  that reads a latent) are permuted once per plan so that SimNorm's groups of 8 lie 8 slices
  apart, and its softmax reduces across slices with vectorised loads (over 8 adjacent values, a
  compiled CPU kernel reduced with masked vectors and horizontal sums: 5 ns per element).

`prepare` gathers every weight the step reads into one flat dict of tensors (what a compiled
step takes as input: no module attributes to guard), `select_q_heads` gathers the two Q heads of
a step (a copy of two heads' rows, done eagerly: a gather inside a compiled graph was a slow
scalar loop) and `rollout_values` is the step itself.

Shapes: E environments, N candidates, P policy rows per environment, H horizon, A action dims,
L latent dims, M1 hidden width, NB two-hot bins; rows = E * N, environment-major. Same random
numbers as the reference: the policy prior's noise eps_pi [H, E, P, A], the final policy sample's
eps_val [E, N, A], the two Q heads `heads` [2].
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from . import functional as fn
from .kernels.interface import RolloutNets

LN_EPS = 1e-5  # nn.LayerNorm's default, as the reference layers use
_Q_KEYS = ("q_w1", "q_b1", "q_g1", "q_e1", "q_w2", "q_b2", "q_g2", "q_e2", "q_w3", "q_b3")


@dataclass(frozen=True)
class StepConstants:
    """The Python numbers a step reads (constants of a compiled step)."""
    eta: float
    episodic: bool
    energy_clip: float
    log_std_min: float
    log_std_max: float
    simnorm_group: int


def _ln_mish(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """LayerNorm over the last dim, its affine (weight/bias broadcast against h), then Mish."""
    return fn.mish_exp(F.layer_norm(h, h.shape[-1:], eps=LN_EPS) * weight + bias)


def _tail(h1: torch.Tensor, w: dict, name: str) -> torch.Tensor:
    """A layers.mlp head's second hidden layer and output layer's pre-activation, from its first
    hidden layer's output h1 [rows, M1]."""
    h = _ln_mish(F.linear(h1, w[f"{name}_w2"], w[f"{name}_b2"]), w[f"{name}_g2"], w[f"{name}_e2"])
    return F.linear(h, w[f"{name}_w3"], w[f"{name}_b3"])


def _head(pre: torch.Tensor, w: dict, name: str) -> torch.Tensor:
    """A layers.mlp head from its first layer's pre-activation pre [rows, M1] (computed by the
    caller, with the per-environment part of its bias) to its output layer's pre-activation."""
    return _tail(_ln_mish(pre, w[f"{name}_g1"], w[f"{name}_e1"]), w, name)


def _per_env(x: torch.Tensor, bias: torch.Tensor, E: int) -> torch.Tensor:
    """x [E * n, k] + bias [E, k] broadcast over each environment's n rows."""
    return (x.view(E, -1, x.shape[-1]) + bias[:, None, :]).view(x.shape)


def _layers(net, name: str, L: int) -> dict:
    """A layers.mlp's tensors under `name`: first layer's latent columns w1 [M1, L] (the rest of its
    columns are folded into biases by `prepare`), LayerNorm g/e, later weights and biases."""
    out = {f"{name}_w1": net[0].weight[:, :L], f"{name}_b1": net[0].bias,
           f"{name}_g1": net[0].ln.weight, f"{name}_e1": net[0].ln.bias}
    for i in (2, 3):
        out.update({f"{name}_w{i}": net[i - 1].weight, f"{name}_b{i}": net[i - 1].bias})
    out.update({f"{name}_g2": net[1].ln.weight, f"{name}_e2": net[1].ln.bias})
    if hasattr(net[2], "ln"):
        out.update({f"{name}_g3": net[2].ln.weight, f"{name}_e3": net[2].ln.bias})
    return out


def prepare(nets: RolloutNets, z0: torch.Tensor, task: torch.Tensor | None, gamma: torch.Tensor,
            mask: torch.Tensor | None, num_samples: int, num_pi_trajs: int) -> dict:
    """What one plan call's denoising steps share, as one flat dict of tensors. z0 [E, L], task [E]
    or None, gamma [E, 1], mask [E, A] or None.

    w1 [3 M1, L+A]: the first layers of dynamics (d), reward (r) and energy (f) stacked; b1 [E, 3 M1]
    their biases with the task's part (t >= 1), b1_z0 [E, 3 M1] with z0's part too (t = 0); g1/e1
    [3, M1] their LayerNorms; {d,r,f,p,t}_*: every later layer (p the policy, t termination) and the
    policy's/termination's first layer's latent columns with per-environment biases p_b1e/t_b1e;
    pi_raw0 [E, 2A] the policy head's output at z0; q_* every Q head (q_w1 [L+A, num_q, M1] for a
    gather along heads, q_b1 [num_q, E, M1] with the task's part); gamma [E, 1]; bins, mu, sigma;
    mask [E, A], mask_rows [E*N, A] and mask_pi [E*P, A] where multi-task."""
    E, L = z0.shape
    d, r, f, p = nets.dynamics, nets.reward, nets.energy, nets.pi
    A = p[2].weight.shape[0] // 2
    w = {}
    for name, net in (("d", d), ("r", r), ("f", f), ("p", p)):
        w.update(_layers(net, name, L))
    w_first = torch.cat([d[0].weight, r[0].weight, f[0].weight], 0)  # [3 M1, L + A + TD]
    b1 = torch.cat([d[0].bias, r[0].bias, f[0].bias]).expand(E, -1)
    p_b1 = p[0].bias.expand(E, -1)
    qw, qb, qg, qe = nets.q_params
    q_b1 = qb[0][:, None, :].expand(-1, E, -1)
    emb = nets.with_task(z0[:, :0], task) if nets.multitask else None  # [E, TD]
    if emb is not None:  # the task embedding's columns: a bias per environment
        b1 = b1 + F.linear(emb, w_first[:, L + A:])
        p_b1 = p_b1 + F.linear(emb, p[0].weight[:, L:])
        q_b1 = q_b1 + torch.einsum("et,qtm->qem", emb, qw[0][:, L + A:, :])
    w_first = w_first[:, :L + A]
    w.update(b1=b1.contiguous(), b1_z0=b1 + F.linear(z0, w_first[:, :L]),
             g1=torch.stack([d[0].ln.weight, r[0].ln.weight, f[0].ln.weight]),
             e1=torch.stack([d[0].ln.bias, r[0].ln.bias, f[0].ln.bias]), p_b1e=p_b1.contiguous())
    w["pi_raw0"] = _head(p_b1 + F.linear(z0, w["p_w1"]), w, "p")
    # from here on latents are group-major (see the module docstring): new feature j * (L / G) + g
    # is old feature g * G + j, G = SimNorm's group
    group = d[2].act.group
    perm = torch.arange(L, device=z0.device).view(L // group, group).t().reshape(-1)
    cols = torch.cat([perm, torch.arange(L, L + A, device=z0.device)])  # the latent's columns permuted, then a's
    out = torch.cat([w["d_w3"], w["d_b3"][:, None], w["d_g3"][:, None], w["d_e3"][:, None]], 1).index_select(0, perm)
    w["d_w3"], w["d_b3"], w["d_g3"], w["d_e3"] = out[:, :-3], out[:, -3], out[:, -2], out[:, -1]
    w["w1"] = w_first.index_select(1, cols)
    w["p_w1"] = w["p_w1"].index_select(1, perm)
    if nets.termination is not None:
        tn = nets.termination
        w.update(_layers(tn, "t", L))
        w["t_w1"] = w["t_w1"].index_select(1, perm)
        w["t_b1e"] = (tn[0].bias.expand(E, -1) + (F.linear(emb, tn[0].weight[:, L:]) if emb is not None else 0)).contiguous()
    q_w1 = qw[0].index_select(1, cols).permute(1, 0, 2).contiguous()  # [L+A, num_q, M1]
    w.update(q_w1=q_w1, q_b1=q_b1.contiguous(), q_g1=qg[0], q_e1=qe[0],
             q_w2=qw[1], q_b2=qb[1], q_g2=qg[1], q_e2=qe[1], q_w3=qw[2], q_b3=qb[2])
    w.update(gamma=gamma.reshape(E, 1).float(), bins=nets.bins, mu=nets.energy_mu, sigma=nets.energy_sigma)
    if mask is not None:
        w.update(mask=mask, mask_rows=mask.repeat_interleave(num_samples, 0),
                 mask_pi=mask.repeat_interleave(num_pi_trajs, 0))
    return w


def select_q_heads(w: dict, heads: torch.Tensor) -> dict:
    """The two Q heads `heads` [2] of one step: q_w1 [L+A, 2 M1] (both first layers side by side),
    the other Q tensors [2, ...]. With two heads in all, both are taken as they are: the step uses
    their mean, which does not depend on their order (no copy)."""
    if w["q_b1"].shape[0] == 2:
        q = {k: w[k] for k in _Q_KEYS}
        q["q_w1"] = w["q_w1"].flatten(1)
        return q
    q = {k: w[k].index_select(0, heads) for k in _Q_KEYS if k not in ("q_w1", "q_b1")}
    q["q_w1"] = w["q_w1"].index_select(1, heads).flatten(1)
    q["q_b1"] = w["q_b1"].index_select(0, heads)  # [2, E, M1]
    return q


def rollout_values(w: dict, q: dict, cand: torch.Tensor, eps_pi: torch.Tensor, eps_val: torch.Tensor,
                   c: StepConstants) -> tuple[torch.Tensor, torch.Tensor]:
    """w: `prepare`'s dict, q: `select_q_heads`'s; cand [E, N, H, A], eps_pi [H, E, P, A], eps_val
    [E, N, A] -> (values [E, N] fp32, cand [E, N, H, A] with the policy prior's actions in each
    environment's first P rows and the action mask applied). `cand` itself is not modified."""
    E, N, H, A = cand.shape
    P = eps_pi.shape[2]
    L, M1 = w["d_w3"].shape[0], w["d_w2"].shape[0]
    rows = E * N
    mask = w.get("mask")
    if mask is not None:
        cand = cand * mask.view(E, 1, 1, A)
    G = torch.zeros(rows, 1, device=cand.device, dtype=torch.float32)
    g = torch.ones_like(G)
    alive = torch.ones_like(G) if c.episodic else None
    gamma = w["gamma"].repeat_interleave(N, dim=0)  # [rows, 1]
    actions = []
    z = None
    for t in range(H):
        a = cand[:, :, t]  # [E, N, A]
        if P:  # the policy prior: a_t ~ pi(z_t) in each environment's first P rows
            if t == 0:
                raw = w["pi_raw0"][:, None, :].expand(E, P, -1).reshape(E * P, -1)
            else:
                zp = z.view(E, N, L)[:, :P].reshape(E * P, L)
                raw = _head(_per_env(F.linear(zp, w["p_w1"]), w["p_b1e"], E), w, "p")
            pre, _, _, _ = fn.policy_pre_tanh(raw, eps_pi[t].reshape(E * P, A), w.get("mask_pi"), c.log_std_min,
                                              c.log_std_max)
            a = torch.cat([torch.tanh(pre).view(E, P, A).to(a.dtype), a[:, P:]], dim=1)
        actions.append(a)
        a = a.reshape(rows, A)
        if t == 0:  # every row's latent is its environment's z0, whose part is in the bias
            h1 = _per_env(F.linear(a, w["w1"][:, L:]), w["b1_z0"], E)
        else:
            h1 = _per_env(F.linear(torch.cat([z, a], -1), w["w1"]), w["b1"], E)
        h1 = _ln_mish(h1.view(rows, 3, M1), w["g1"], w["e1"])
        reward = fn.two_hot_inv(_tail(h1[:, 1], w, "r"), w["bins"])
        energy = ((_tail(h1[:, 2], w, "f") - w["mu"]) / w["sigma"]).clamp(-c.energy_clip, c.energy_clip)
        step = g * (reward + c.eta * energy)
        G = G + (step * alive if c.episodic else step)
        z = F.layer_norm(_tail(h1[:, 0], w, "d"), (L,), w["d_g3"], w["d_e3"], LN_EPS)
        z = torch.softmax(z.view(rows, c.simnorm_group, L // c.simnorm_group), dim=1).view(rows, L)  # SimNorm
        g = g * gamma
        if c.episodic:
            logit = _head(_per_env(F.linear(z, w["t_w1"]), w["t_b1e"], E), w, "t")
            alive = alive * (logit <= 0).float()
    # the final policy sample a_H ~ pi(z_H), then the mean of two Q heads' decoded values
    raw = _head(_per_env(F.linear(z, w["p_w1"]), w["p_b1e"], E), w, "p")
    pre, _, _, _ = fn.policy_pre_tanh(raw, eps_val.reshape(rows, A), w.get("mask_rows"), c.log_std_min, c.log_std_max)
    h = torch.cat([z, torch.tanh(pre).to(z.dtype)], -1) @ q["q_w1"]  # [rows, 2 M1]
    h = h.view(E, N, 2, M1) + q["q_b1"].permute(1, 0, 2)[:, None]  # + [E, 1, 2, M1]
    h = _ln_mish(h.view(rows, 2, M1), q["q_g1"], q["q_e1"]).transpose(0, 1)  # [2, rows, M1]
    h = _ln_mish(torch.baddbmm(q["q_b2"][:, None, :], h, q["q_w2"]), q["q_g2"][:, None, :], q["q_e2"][:, None, :])
    q_logits = torch.baddbmm(q["q_b3"][:, None, :], h, q["q_w3"])  # [2, rows, NB]
    final = g * fn.two_hot_inv(q_logits, w["bins"]).mean(0)
    G = G + (final * alive if c.episodic else final)
    cand = torch.stack(actions, dim=2)
    if mask is not None:
        cand = cand * mask.view(E, 1, 1, A)
    return G.view(E, N), cand

