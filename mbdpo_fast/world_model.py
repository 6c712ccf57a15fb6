"""The MBDPO world model: TD-MPC2's latent model plus the energy network F (docs/algorithm.md section 1).

Shapes: obs [..., obs_dim], z [..., latent_dim], a [..., A], task [...] int64 (multi-task only,
aligned with the trailing batch dims of the input). Reward/Q heads return num_bins logits; F and
termination return one logit.
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint

from . import functional as fn
from .config import RunSpec, uses_pixels
from .kernels.interface import RolloutNets
from .layers import EnsembleMLP, PixelEncoder, SimNorm, mlp, use_mish_exp


class WorldModel(nn.Module):
    def __init__(self, cfg: RunSpec, action_dims: list[int] | None = None):
        """cfg: the run spec (config.RunSpec). action_dims: per-task action dims (multi-task), for the masks."""
        super().__init__()
        self.multitask = bool(cfg.multitask)
        # Plain copies of the values the hot path reads (DictConfig access costs microseconds).
        self.num_q, self.energy_clip = int(cfg.num_q), float(cfg.energy_clip)
        self.log_std_min, self.log_std_max = float(cfg.log_std_min), float(cfg.log_std_max)
        self.time_embed_dim = int(cfg.time_embed_dim)
        self.entropy_tanh_correction = bool(cfg.get("entropy_tanh_correction", False))
        self.grad_checkpoint = bool(cfg.get("grad_checkpoint", False))
        A, L, M = cfg.action_dim, cfg.latent_dim, cfg.mlp_dim
        td = cfg.task_dim if self.multitask else 0
        self.action_dim, self.latent_dim, self.task_dim = A, L, td

        if self.multitask:
            ntask = len(cfg.tasks)
            self.task_emb = nn.Embedding(ntask, td, max_norm=1.0)
            if action_dims is None:
                given = list(cfg.get("action_dims", []))
                action_dims = given if len(given) == ntask else [A] * ntask
            dims = action_dims
            if len(dims) != ntask or max(dims) > A:
                raise ValueError(f"action_dims {dims} do not fit {ntask} tasks padded to {A} action dims")
            masks = torch.zeros(ntask, A)
            for i, d in enumerate(dims):
                masks[i, :d] = 1.0
            self.register_buffer("action_masks", masks)
        else:
            self.task_emb = None
            self.register_buffer("action_masks", torch.ones(1, A))

        hidden = [M, M]
        enc_hidden = [cfg.enc_dim] * max(cfg.num_enc_layers - 1, 1)
        if uses_pixels(cfg):  # TD-MPC2's image encoder: random shift, 4 convolutions, 512 features (= L)
            self.encoder = PixelEncoder(cfg.obs_shape[0], out_act=SimNorm(cfg.simnorm_dim), size=cfg.obs_shape[-1])
        else:
            self.encoder = mlp(cfg.obs_dim + td, enc_hidden, L, out_act=SimNorm(cfg.simnorm_dim))
        self.dynamics = mlp(L + A + td, hidden, L, out_act=SimNorm(cfg.simnorm_dim))
        self.reward_head = mlp(L + A + td, hidden, cfg.num_bins)
        self.energy_head = mlp(L + A + td, hidden, 1)
        self.pi_head = mlp(L + td, hidden, 2 * A)
        self.qs = EnsembleMLP(cfg.num_q, L + A + td, hidden, cfg.num_bins, dropout=cfg.dropout)
        self.termination_head = mlp(L + td, hidden, 1) if cfg.episodic else None
        self.score_head = (mlp(L + td + cfg.horizon * A + cfg.time_embed_dim, hidden, cfg.horizon * A)
                           if cfg.score_net else None)
        self._init_weights()
        self.target_qs = copy.deepcopy(self.qs).requires_grad_(False)
        self.target_qs.train(False)
        if cfg.get("compile", False):  # what compiled graphs run fast: Mish from one exponential
            use_mish_exp(self)

        self.register_buffer("bins", fn.bin_centers(cfg.num_bins, cfg.vmin, cfg.vmax))
        # Running statistics of F's logits (momentum cfg.energy_momentum) and of the Q scale S.
        self.register_buffer("energy_mu", torch.zeros(()))
        self.register_buffer("energy_sigma", torch.ones(()))
        self.register_buffer("q_scale", torch.ones(()))

    # ----------------------------------------------------------------------------------------
    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Embedding):
                nn.init.uniform_(m.weight, -0.02, 0.02)
        # Reward, energy and every Q head start at zero output (docs/algorithm.md section 1).
        for head in (self.reward_head, self.energy_head):
            nn.init.zeros_(head[-1].weight)
        nn.init.zeros_(self.qs.weights[-1])

    def train(self, mode: bool = True) -> "WorldModel":
        super().train(mode)
        self.target_qs.train(False)  # target heads never use dropout
        return self

    def num_parameters(self) -> int:
        """Trainable parameters (the target heads are a copy and not counted)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def encoder_parameters(self) -> list[nn.Parameter]:
        return list(self.encoder.parameters())

    def model_parameters(self) -> list[nn.Parameter]:
        """Everything the world-model optimiser trains except the encoder (lr x enc_lr_scale)."""
        mods = [self.dynamics, self.reward_head, self.energy_head, self.qs,
                self.termination_head, self.score_head, self.task_emb]
        return [p for m in mods if m is not None for p in m.parameters()]

    def pi_parameters(self) -> list[nn.Parameter]:
        return list(self.pi_head.parameters())

    # ----------------------------------------------------------------------------------------
    def _run(self, net: nn.Module, x: torch.Tensor, **kwargs) -> torch.Tensor:
        """net(x): with grad_checkpoint (training, grads on) only the input is kept and the MLP's
        activations are recomputed in the backward pass (dropout masks replayed: the RNG state is
        saved with the checkpoint)."""
        if self.grad_checkpoint and self.training and torch.is_grad_enabled():
            return torch.utils.checkpoint.checkpoint(net, x, use_reentrant=False, **kwargs)
        return net(x, **kwargs)

    def with_task(self, x: torch.Tensor, task: torch.Tensor | None, detach: bool = False) -> torch.Tensor:
        """Append the task embedding (multi-task); task's dims align with x's trailing batch dims.
        detach=True: no gradient to the embedding."""
        if not self.multitask:
            return x
        if task is None:
            raise ValueError("multi-task world model needs a task index tensor")
        e = self.task_emb(task.long())
        e = e.detach() if detach else e
        e = e.view((1,) * (x.dim() - e.dim()) + tuple(e.shape)).expand(*x.shape[:-1], -1)
        return torch.cat([x, e], dim=-1)

    def rollout_nets(self) -> RolloutNets:
        """The networks and statistics the fused rollouts (kernels/rollout.py, kernels/rollout_values.py) read, by reference."""
        qs = self.qs
        return RolloutNets(self.dynamics, self.reward_head, self.energy_head, self.termination_head, self.pi_head,
                           (qs.weights, qs.biases, qs.ln_weights, qs.ln_biases), self.bins, self.energy_mu,
                           self.energy_sigma, self.energy_clip, self.multitask, self.with_task, self.pi_from_head,
                           self.log_std_min, self.log_std_max)

    def action_mask(self, task: torch.Tensor | None) -> torch.Tensor | None:
        """[..., A] mask of the valid action dims (None in single-task mode)."""
        return self.action_masks[task.long()] if self.multitask else None

    def encode(self, obs: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
        return self._run(self.encoder, self.with_task(obs, task))

    def next(self, z: torch.Tensor, a: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
        return self._run(self.dynamics, self.with_task(torch.cat([z, a], dim=-1), task))

    def reward(self, z: torch.Tensor, a: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
        return self._run(self.reward_head, self.with_task(torch.cat([z, a], dim=-1), task))

    def energy(self, z: torch.Tensor, a: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
        return self._run(self.energy_head, self.with_task(torch.cat([z, a], dim=-1), task))

    def energy_bonus(self, z: torch.Tensor, a: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
        """clip((F - mu_F) / sigma_F, -c, c): the normalised energy bonus of section 3, [..., 1]."""
        f = (self.energy(z, a, task) - self.energy_mu) / self.energy_sigma
        return f.clamp(-self.energy_clip, self.energy_clip)

    def energy_latent_part(self, z: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
        """The part of F's first layer that does not read the action: W_z z (+ W_task e) + b,
        z [..., L] -> [..., M1]. `energy_from_latent_part` completes F for any actions on these
        latents, so that F at several actions per latent multiplies z once."""
        net, L = self.energy_head[0], self.latent_dim
        part = F.linear(z, net.weight[:, :L], net.bias)
        if self.multitask:
            e = self.task_emb(task.long())
            part = part + F.linear(e, net.weight[:, L + self.action_dim:])
        return part

    def energy_from_latent_part(self, part: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """F's logits [..., 1] from `energy_latent_part` [..., M1] and actions a [..., A] (leading
        dims broadcast against part's): equal to energy(z, a, task)."""
        first, L = self.energy_head[0], self.latent_dim
        h = first.act(first.ln(part + F.linear(a, first.weight[:, L:L + self.action_dim])))
        return self.energy_head[2](self.energy_head[1](h))

    def termination(self, z: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
        if self.termination_head is None:
            raise RuntimeError("termination head exists only for episodic tasks (episodic=true)")
        return self._run(self.termination_head, self.with_task(z, task))

    def pi(self, z: torch.Tensor, task: torch.Tensor | None = None, eps: torch.Tensor | None = None,
           detach_task: bool = False, with_info: bool = True) -> tuple[torch.Tensor, dict[str, torch.Tensor] | None]:
        """Sample a = tanh(mean + std * eps) (eps ~ N(0, I) unless given, [..., A]). Returns a [..., A] and
        info with mean, log_std and `scaled_entropy` [..., 1] (see `pi_from_head`; None with
        with_info=False: the planner only samples). detach_task: no gradient to the task embedding
        (the policy loss: the embedding belongs to the world model's optimiser)."""
        return self.pi_from_head(self._run(self.pi_head, self.with_task(z, task, detach_task)), task, eps, with_info)

    def pi_from_head(self, raw: torch.Tensor, task: torch.Tensor | None = None, eps: torch.Tensor | None = None,
                     with_info: bool = True) -> tuple[torch.Tensor, dict[str, torch.Tensor] | None]:
        """The policy's sampling and entropy from its head's output raw [..., 2A] (see `pi`).

        scaled_entropy, by default the reference code's value: -A_eff * log N(eps; 0, diag(std^2)), with
        A_eff the (unmasked) action dims and the log-density summed over all A dims (padded dims, where
        eps = log_std = 0, add only the -log(2 pi)/2 constant, as in TD-MPC2). The reference computes
        -log_prob * (A_eff * gauss / (log_prob + 1e-8)) with log_prob = gauss - tanh log-det, in which
        log_prob cancels; the closed form here equals it to a relative 1e-8 / |log_prob| and has no
        pole where log_prob = -1e-8. With entropy_tanh_correction=true: -(A_eff * gauss - sum log(1 -
        tanh(u)^2)) over the unmasked dims, the scaled log-likelihood of the squashed action."""
        A = raw.shape[-1] // 2
        eps = torch.randn(*raw.shape[:-1], A, device=raw.device, dtype=raw.dtype) if eps is None else eps
        mask = self.action_mask(task)
        if mask is not None:
            mask = mask.expand(*raw.shape[:-1], A)
        pre_tanh, mean, log_std, eps = fn.policy_pre_tanh(raw, eps, mask, self.log_std_min, self.log_std_max)
        dims = mask.sum(-1, keepdim=True) if mask is not None else float(A)
        if not with_info:  # the same action; no log-probability, entropy or mean (unused by the planner)
            return torch.tanh(pre_tanh), None
        if self.entropy_tanh_correction:
            log_prob = fn.gaussian_log_prob(eps, log_std, mask) * dims - fn.tanh_log_det(pre_tanh, mask)
        else:
            log_prob = fn.gaussian_log_prob(eps, log_std) * dims
        action = torch.tanh(pre_tanh)
        return action, {"mean": torch.tanh(mean), "log_std": log_std, "scaled_entropy": -log_prob}

    def Q(self, z: torch.Tensor, a: torch.Tensor, task: torch.Tensor | None = None, mode: str = "all",
          target: bool = False, detach: bool = False, heads: torch.Tensor | None = None) -> torch.Tensor:
        """mode 'all': logits [num_q, ..., num_bins] of every head;
        'avg': mean of 2 randomly chosen heads (or the 2 given in `heads`), decoded, [..., 1] (planner,
        policy loss);
        'min': min of the first two heads, decoded, [..., 1] (TD targets, as the reference code)."""
        x = self.with_task(torch.cat([z, a], dim=-1), task, detach=detach)
        net = self.target_qs if target else self.qs
        if mode == "all":
            return self._run(net, x, detach=detach)
        if mode == "avg":
            # argsort of uniforms, not randperm: capturable in a CUDA graph.
            if heads is None:
                heads = self.random_heads(z.device)
            return fn.two_hot_inv(self._run(net, x, heads=heads, detach=detach), self.bins).mean(0)
        if mode == "min":
            heads = torch.arange(2, device=z.device)
            return fn.two_hot_inv(self._run(net, x, heads=heads, detach=detach), self.bins).min(0).values
        raise ValueError(f"unknown Q mode {mode!r}")

    def random_heads(self, device) -> torch.Tensor:
        """Two distinct Q heads drawn uniformly ([2] int64; argsort of uniforms is graph-capturable)."""
        return torch.rand(self.num_q, device=device).argsort()[:2]

    def score(self, z: torch.Tensor, x_flat: torch.Tensor, tau: torch.Tensor,
              task: torch.Tensor | None = None) -> torch.Tensor:
        """s_theta(z0, x_tau, tau): z [..., L], x_flat [..., H*A], tau [...] -> [..., H*A]."""
        if self.score_head is None:
            raise RuntimeError("score network is disabled (score_net=false)")
        temb = fn.sinusoidal_embedding(tau, self.time_embed_dim).expand(*x_flat.shape[:-1], -1)
        return self._run(self.score_head, torch.cat([self.with_task(z, task), x_flat, temb], dim=-1))

    @torch.no_grad()
    def soft_update_target(self, tau: float) -> None:
        """Polyak: target <- target + tau (online - target)."""
        for tp, p in zip(self.target_qs.parameters(), self.qs.parameters()):
            tp.lerp_(p, tau)

    def decode(self, logits: torch.Tensor) -> torch.Tensor:
        return fn.two_hot_inv(logits, self.bins)
