"""The MBDPO agent: acting with the diffusion planner and the update of docs/algorithm.md section 5.

Batch layout (time-major, as sampled from replay): obs [H+1, B, obs_dim], action [H, B, A],
reward [H, B, 1], terminated [H, B, 1], task [B] (multi-task) or None.
"""
from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from . import functional as fn
from .batch import Batch
from .config import RunSpec, discount_for, resolve_device
from .cpu_threads import ThreadTuner
from .diffusion import mc_score, sample_candidates, weight_all
from .planner import DiffusionPlanner, compile_options, imagined_value
from .world_model import WorldModel


class MBDPO:
    def __init__(self, cfg: RunSpec, action_dims: list[int] | None = None,
                 episode_lengths: list[int] | None = None):
        """cfg: the run spec (config.RunSpec). action_dims / episode_lengths: per task (multi-task)."""
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        if cfg.multitask:
            action_dims = list(cfg.action_dims) if action_dims is None else action_dims
            episode_lengths = list(cfg.episode_lengths) if episode_lengths is None else episode_lengths
        self.model = WorldModel(cfg, action_dims).to(self.device)
        lengths = episode_lengths if episode_lengths is not None else [cfg.episode_length]
        discounts = [discount_for(L, cfg.discount_denom, cfg.discount_min, cfg.discount_max) for L in lengths]
        self.discounts = torch.tensor(discounts, device=self.device)
        self.use_graphs = bool(cfg.cudagraphs) and self.device.type == "cuda"
        if cfg.cudagraphs and not self.use_graphs:
            warnings.warn(f"cudagraphs=true has no effect on device {self.device}: CUDA graphs need a CUDA device, "
                          f"so the planner and the update run eagerly", stacklevel=2)
        self.bf16_update = bool(cfg.bf16_update)
        self.fused_update = bool(cfg.get("fused_update", False))
        # Captured optimiser steps need their step counters on the device (capturable=True). A
        # compiled update on a CPU steps Adam as one fused kernel per parameter group.
        capturable = self.use_graphs
        fused = True if cfg.compile and self.device.type == "cpu" else None
        self.optim = torch.optim.Adam([
            {"params": self.model.encoder_parameters(), "lr": cfg.lr * cfg.enc_lr_scale},
            {"params": self.model.model_parameters(), "lr": cfg.lr},
        ], lr=cfg.lr, capturable=capturable, fused=fused)
        self.pi_optim = torch.optim.Adam(self.model.pi_parameters(), lr=cfg.lr, eps=1e-5, capturable=capturable,
                                         fused=fused)
        self.planner = DiffusionPlanner(cfg, self.model, discounts)
        self.threads = ThreadTuner.for_run(cfg, self.device)  # threads=0 on a CPU: every core or one, probed
        sch = self.planner.schedule
        self._abar = torch.tensor(sch.abar, device=self.device)
        self._rho = cfg.rho ** torch.arange(cfg.horizon + 1, device=self.device, dtype=torch.float32)
        # Plain copies of config values read every update.
        self.H, self.rho, self.num_q = int(cfg.horizon), float(cfg.rho), int(cfg.num_q)
        self.num_bins, self.vmin, self.vmax = int(cfg.num_bins), float(cfg.vmin), float(cfg.vmax)
        self._graphs: dict = {}
        self._dist = None  # DistContext once `enable_ddp` wrapped the losses
        self._wm_loss, self._pi_loss = self.world_model_losses, self.pi_loss
        if cfg.compile:  # the two losses, forward and backward; the optimiser steps stay outside the graphs
            options = compile_options(self.device)
            self._wm_loss = torch.compile(self.world_model_losses, **options)
            self._pi_loss = torch.compile(self.pi_loss, **options)
        self._graphed_update = None
        self._update_fn = self.update_step
        self.model.eval()

    def code_paths(self) -> dict[str, str]:
        """What actually runs, after the device has had its say (kernels=triton falls back to torch
        without CUDA or TRITON_INTERPRET=1; cudagraphs needs CUDA), e.g.
        {"planner": "torch eager fp32", "update": "eager bf16 +cudagraphs"}; the Triton planner is
        "triton kernels" (one launch per layer) or "triton fused rollout". Benchmarks label rows by it."""
        p = self.planner
        if p.kernels == "triton":
            from .kernels import interpreting
            planner = "triton " + ("fused rollout" if p.rollouts.fused else "kernels") + \
                (" (interpreted)" if interpreting() and self.device.type != "cuda" else "")
        else:
            planner = "torch " + ("grouped " if p.cfg_fused else "") + ("compiled" if p.compiled else "eager")
        graphs = " +cudagraphs" if self.use_graphs else ""
        update = ("fused " if self.fused_update else "") + ("compiled" if self.cfg.compile else "eager") + \
            (" bf16" if self.bf16_update else " fp32")
        return {"planner": f"{planner} {'bf16' if p.bf16 else 'fp32'}{graphs}", "update": update + graphs}

    # ----------------------------------------------------------------------------------------
    @torch.no_grad()
    def act(self, obs: torch.Tensor, plan: torch.Tensor, first: torch.Tensor | None = None,
            task: torch.Tensor | None = None, eval_mode: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """obs [E, obs_dim] -> (action [E, A], plan [E, H, A]); `plan` is the previous plan.
        With cudagraphs=true (CUDA, single task) the call replays a captured graph."""
        if self.use_graphs and task is None:
            key = (obs.shape[0], bool(eval_mode))
            if key not in self._graphs:
                from .cuda_graphs import GraphedAct
                self._graphs[key] = GraphedAct(self, obs.shape[0], eval_mode)
            return self._graphs[key](obs, plan, first)
        self.threads.poll()
        return self.plan_eager(obs, plan, first, task, eval_mode)

    @torch.no_grad()
    def plan_eager(self, obs, plan, first=None, task=None, eval_mode=False):
        """The reference path of `act`: encode, then the planner, op by op."""
        z = self.model.encode(obs, task)
        return self.planner.plan(z, plan, task=task, first=first, eval_mode=eval_mode)

    # ----------------------------------------------------------------------------------------
    def _gamma(self, task: torch.Tensor | None) -> torch.Tensor:
        return self.discounts[0] if task is None else self.discounts[task].unsqueeze(-1)

    @torch.no_grad()
    def td_target(self, next_z: torch.Tensor, reward: torch.Tensor, terminated: torch.Tensor,
                  task: torch.Tensor | None) -> torch.Tensor:
        """y_t = r_t + gamma (1 - term_t) min_{q in first two} decode(Q_target(z', a ~ pi(z')))."""
        a, _ = self.model.pi(next_z, task, with_info=False)
        q = self.model.Q(next_z, a, task, mode="min", target=True)
        return reward + self._gamma(task) * (1 - terminated) * q

    def energy_loss(self, z: torch.Tensor, a_pos: torch.Tensor, task: torch.Tensor | None):
        """Contrastive loss of F on detached latents z [H, B, L] and replay actions [H, B, A].

        Positives pair z[t, b] with a[t, b] (energy_pairing=aligned) or as the reference code does
        (energy_pairing=reference, see `reference_pairing`). One hard negative per positive: the
        candidate with the highest current F logit among {a ~ pi(z), clip(c + 0.5 N(0, 1)), uniform},
        c = that policy action (energy_neg_center=policy, the reference) or the replay action
        (replay). Returns (loss, all logits [2HB])."""
        m, hp = self.model, self.cfg
        if hp.energy_pairing == "reference":
            a_pos = reference_pairing(a_pos)
            if task is not None:
                task = reference_pairing(task.view(1, -1).expand(a_pos.shape[0], -1))
        # fused_update: the five evaluations of F share their latent part (energy_latent_part),
        # positives and negatives are one call; the reference evaluates F five times in full.
        part = m.energy_latent_part(z, task) if self.fused_update else None
        if not self.fused_update:
            f_pos = m.energy(z, a_pos, task)
        with torch.no_grad():
            a_pi, _ = m.pi(z, task, with_info=False)
            center = a_pi if hp.energy_neg_center == "policy" else a_pos
            a_noisy = (center + hp.energy_neg_noise * torch.randn_like(a_pos)).clamp(-1, 1)
            a_unif = torch.rand_like(a_pos) * 2 - 1
            mask = m.action_mask(task)
            if mask is not None:
                a_noisy, a_unif = a_noisy * mask, a_unif * mask
            cands = torch.stack([a_pi, a_noisy, a_unif])  # [3, H, B, A]
            if self.fused_update:
                f_cands = m.energy_from_latent_part(part.detach(), cands)
            else:
                f_cands = m.energy(z.unsqueeze(0).expand(3, *z.shape), cands, task)  # [3, H, B, 1]
            pick = f_cands.argmax(0, keepdim=True).expand(1, *a_pos.shape)
            a_neg = torch.gather(cands, 0, pick).squeeze(0)
        if self.fused_update:
            f_pos, f_neg = m.energy_from_latent_part(part, torch.stack([a_pos, a_neg])).unbind(0)
        else:
            f_neg = m.energy(z, a_neg, task)
        loss = 0.5 * (F.binary_cross_entropy_with_logits(f_pos, torch.ones_like(f_pos))
                      + F.binary_cross_entropy_with_logits(f_neg, torch.zeros_like(f_neg)))
        return loss, torch.cat([f_pos, f_neg]).detach().flatten()

    @torch.no_grad()
    def update_energy_stats(self, logits: torch.Tensor) -> None:
        """EMA (energy_momentum) of the mean and the biased (population) std, clamped at 1e-6, of the
        positive and negative logits [2HB], as the reference code keeps them."""
        mom = self.cfg.energy_momentum
        logits = logits.float()
        self.model.energy_mu.lerp_(logits.mean(), 1 - mom)
        self.model.energy_sigma.lerp_(logits.std(unbiased=False).clamp_min(1e-6), 1 - mom)

    def score_loss(self, zs0: torch.Tensor, task: torch.Tensor | None) -> torch.Tensor:
        """Optional score-network loss on the first `score_states` batch elements' latents z_0
        (zs0 [B, L]; batch elements are sampled uniformly, so the first is a random state; the
        reference code uses element 0). Per state: draw tau and x_tau ~ N(0, I), 64 candidates as in
        planner step 1, weights over all of them (`weight_all`), target s as in step 6;
        MSE(s_theta(z_0, x_tau, tau), s). z_0 keeps its graph (the loss reaches the encoder, as in
        the reference) unless score_detach_latent=true; the target is computed without gradient
        with the energy statistics already updated by this update's contrastive loss."""
        hp, m = self.cfg, self.model
        S, C, H, A = hp.score_states, hp.score_candidates, self.H, hp.action_dim
        z, t = zs0[:S], (task[:S] if task is not None else None)
        if hp.score_detach_latent:
            z = z.detach()
        S = z.shape[0]
        tau = torch.randint(1, hp.diffusion_steps, (S,), device=z.device)
        x = torch.randn(S, H, A, device=z.device)
        mask = m.action_mask(t)
        if mask is not None:
            x = x * mask.view(S, 1, A)
        with torch.no_grad():
            cand = sample_candidates(x, self._abar[tau], C)
            if mask is not None:
                cand = cand * mask.view(S, 1, 1, A)
            t_rep = t.repeat_interleave(C) if t is not None else None
            values = imagined_value(m, z.detach().repeat_interleave(C, dim=0),
                                    cand.reshape(S * C, H, A).transpose(0, 1), t_rep,
                                    self.planner.gamma_rows(t_rep, S * C), hp.energy_coef, hp.episodic)
            values = torch.nan_to_num(values.float().view(S, C), nan=0.0)
            target = mc_score(x, weight_all(values, cand, hp.temperature), self._abar[tau].view(S, 1, 1))
        pred = m.score(z, x.reshape(S, -1), tau.float(), t)
        return F.mse_loss(pred.float(), target.reshape(S, -1))

    def pi_loss(self, zs: torch.Tensor, task: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Policy prior loss on detached latents zs [H+1, B, L]:
        -mean_t rho^t [entropy_coef * scaled_entropy + Qavg / S], S the running Q scale (updated
        here). Returns (loss, mean scaled entropy)."""
        m = self.model
        with self._autocast():
            # The task embedding is the world-model optimiser's: no gradient from this loss (it
            # would be discarded, and under DDP it would reach a parameter of the other module).
            a, info = m.pi(zs, task, detach_task=True)
            q = m.Q(zs, a, task, mode="avg", detach=True).float()  # [H+1, B, 1]
        with torch.no_grad():
            p5, p95 = percentiles(q[0].flatten(), (0.05, 0.95))
            m.q_scale.lerp_((p95 - p5).clamp_min(1.0), self.cfg.tau)
        obj = (self.cfg.entropy_coef * info["scaled_entropy"].float() + q / m.q_scale).mean(dim=(1, 2))
        loss = -(obj * self._rho[: zs.shape[0]]).mean()
        return loss, info["scaled_entropy"].mean().detach()

    def update_pi(self, zs: torch.Tensor, task: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """One step of the policy prior's own optimiser on `pi_loss`."""
        m = self.model
        loss, entropy = self._pi_loss(zs, task)
        self.pi_optim.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(m.pi_parameters(), self.cfg.grad_clip_norm)
        self.pi_optim.step()
        return {"pi_loss": loss.detach(), "pi_grad_norm": grad_norm.detach(),
                "pi_entropy": entropy, "q_scale": m.q_scale.clone()}

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One update (section 5) on a batch from replay. Returns detached scalar tensors (no host
        sync). With cudagraphs=true (CUDA) the step is replayed from a captured graph and the
        returned tensors are the graph's outputs, overwritten by the next update."""
        if self.use_graphs and batch.task is None:
            if self._graphed_update is None:
                from .cuda_graphs import GraphedUpdate
                self._graphed_update = GraphedUpdate(self, batch)
            return self._graphed_update(batch)
        self.threads.poll()
        return self._update_fn(batch.obs, batch.action, batch.reward, batch.terminated, batch.task)

    def _autocast(self, enabled: bool | None = None):
        enabled = self.bf16_update if enabled is None else enabled
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=enabled)

    def world_model_losses(self, obs, action, reward, term, task):
        """The world-model part of section 5 (it also moves the energy statistics): returns (total
        loss, detached parts, latents zs [H+1, B, L])."""
        hp, m, H, rho = self.cfg, self.model, self.H, self.rho
        with torch.no_grad():
            next_z = m.encode(obs[1:], task)
            td = self.td_target(next_z, reward, term, task).float()
        z = m.encode(obs[0], task)
        zs = [z]
        consistency = 0.0
        for t in range(H):
            z = m.next(z, action[t], task)
            consistency = consistency + rho ** t * F.mse_loss(z.float(), next_z[t].float())
            zs.append(z)
        zs = torch.stack(zs)  # [H+1, B, L]
        _zs = zs[:-1]
        r_logits = m.reward(_zs, action, task)  # [H, B, bins]
        q_logits = m.Q(_zs, action, task, mode="all")  # [num_q, H, B, bins]
        w = self._rho[:H].view(H, 1, 1)
        reward_loss = (fn.soft_ce(r_logits, reward, self.num_bins, self.vmin, self.vmax) * w).mean(dim=(1, 2)).sum()
        value_ce = fn.soft_ce(q_logits, td.unsqueeze(0).expand(self.num_q, *td.shape), self.num_bins, self.vmin, self.vmax)
        value_loss = (value_ce * w).mean(dim=(2, 3)).sum()
        consistency, reward_loss, value_loss = consistency / H, reward_loss / H, value_loss / (H * self.num_q)
        energy_loss, energy_logits = self.energy_loss(_zs.detach(), action, task)
        # The statistics move here, before the score target below reads them (the reference's order).
        self.update_energy_stats(energy_logits)
        total = (hp.consistency_coef * consistency + hp.reward_coef * reward_loss
                 + hp.value_coef * value_loss + hp.energy_loss_coef * energy_loss.float())
        parts = {"consistency_loss": consistency.detach(), "reward_loss": reward_loss.detach(),
                 "value_loss": value_loss.detach(), "energy_loss": energy_loss.detach().float()}
        if hp.episodic:
            term_loss = F.binary_cross_entropy_with_logits(m.termination(zs[1:], task).float(), term)
            total = total + hp.termination_coef * term_loss
            parts["termination_loss"] = term_loss.detach()
        if hp.score_net:
            s_loss = self.score_loss(zs[0], task).float()
            total = total + hp.score_coef * s_loss
            parts["score_loss"] = s_loss.detach()
        return total, parts, zs

    def update_step(self, obs, action, reward, term, task=None) -> dict[str, torch.Tensor]:
        """The update on batch tensors (time-major, see the module docstring): what `cudagraphs`
        captures. With compile=true its two losses (world model and policy prior, forward and
        backward) run compiled; the optimiser steps, gradient clipping and Polyak update run
        around them."""
        m = self.model
        m.train()
        with self._autocast():
            total, out, zs = self._wm_loss(obs, action, reward, term, task)
        self.optim.zero_grad(set_to_none=True)
        total.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(m.encoder_parameters() + m.model_parameters(), self.cfg.grad_clip_norm)
        self.optim.step()
        out.update(self.update_pi(zs.detach(), task))
        m.soft_update_target(self.cfg.tau)
        if self._dist is not None:
            from .distributed import average_statistics

            average_statistics([m.energy_mu, m.energy_sigma, m.q_scale], self._dist.world_size)
        m.eval()
        out.update({"total_loss": total.detach(), "grad_norm": grad_norm.detach(),
                    "energy_mu": m.energy_mu.clone(), "energy_sigma": m.energy_sigma.clone()})
        return out

    def enable_ddp(self, ctx) -> None:
        """Data-parallel updates across the torchrun processes of `ctx` (distributed.DistContext):
        rank 0's state is broadcast, gradients are averaged by DDP in both backward passes. Call
        after loading any checkpoint. The batch each process passes to `update` is its shard."""
        if self.use_graphs or self.cfg.compile:
            raise ValueError("DDP updates run eagerly: set cudagraphs=false and compile=false")
        from .distributed import wrap_agent

        self._wm_loss, self._pi_loss = wrap_agent(self, ctx)
        self._dist = ctx

    # ----------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optim": self.optim.state_dict(),
                "pi_optim": self.pi_optim.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optim.load_state_dict(state["optim"])
        self.pi_optim.load_state_dict(state["pi_optim"])


def reference_pairing(x: torch.Tensor) -> torch.Tensor:
    """The reference code's energy positives: it flattens the latents time-major (row t*B + b holds
    z[t, b]) and the replay actions batch-major (row b*H + t holds a[t, b]), then pairs rows. So
    x [H, B, ...] -> y [H, B, ...] with y[t, b] = the batch-major flat row t*B + b of x, i.e.
    x[r % H, r // H] for r = t*B + b. Only the pairs with r % H == t and r // H == b are aligned
    (2 of 768 at H=3, B=256)."""
    H, B = x.shape[:2]
    return x.transpose(0, 1).reshape(H, B, *x.shape[2:])


def percentiles(x: torch.Tensor, qs: tuple[float, ...]) -> list[torch.Tensor]:
    """Linear-interpolation percentiles of a 1-D tensor (torch.quantile's default rule), computed
    by sorting at indices known on the host: torch.quantile validates q with a host sync, which a
    captured CUDA graph cannot contain."""
    v, n = x.float().sort().values, x.numel()
    out = []
    for q in qs:
        pos = q * (n - 1)
        lo = int(pos)
        hi = min(lo + 1, n - 1)
        out.append(v[lo] + (pos - lo) * (v[hi] - v[lo]))
    return out


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA). numpy/python RNGs are not used by the algorithm."""
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)

