"""The model-based diffusion planner (docs/algorithm.md sections 3 and 4), batched over E environments.

One call denoises a plan x [E, H, A] in K-1 steps. Each step samples N candidate action
sequences around x's current estimate of the clean plan, scores them by imagined returns in the
world model, and moves x with the score built from the elites' temperature-softmax average.
This is the reference (plain PyTorch) path: the fast paths of later modules are tested against it.
"""
from __future__ import annotations

import contextlib
import math
import torch

from .config import RunSpec
from .diffusion import DiffusionSchedule, sample_candidates, score_update, weight_elites
from .world_model import WorldModel


def compile_options(device: torch.device) -> dict:
    """torch.compile's keyword arguments for the plan and the update on `device`: random numbers
    from torch's own generators (fallback_random), so that a compiled call draws what the eager
    one draws (and on a CPU Inductor's in-graph generator made dropout 5x slower than eager); on a
    CPU also Inductor's C++ wrapper (a compiled graph calls its kernels and MKL from C++ rather than
    Python)."""
    options = {"fallback_random": True}
    if torch.device(device).type == "cpu":
        options["cpp_wrapper"] = True
    return {"options": options}


def discount_tensor(discounts: list[float], device) -> torch.Tensor:
    return torch.tensor(discounts, dtype=torch.float32, device=device)


def imagined_value(model: WorldModel, z: torch.Tensor, actions: torch.Tensor, task: torch.Tensor | None,
                   gamma: torch.Tensor, eta: float, episodic: bool, pi_eps: torch.Tensor | None = None,
                   heads: torch.Tensor | None = None) -> torch.Tensor:
    """Section 3. z [M, L], actions [H, M, A], gamma [M, 1] (per-row discount), task [M] or None;
    pi_eps [M, A] / heads [2]: the final policy sample's noise and the 2 Q heads (random if None).

    G = sum_t g_t (r_t + eta * f_t) + g_H * Qavg(z_H, a ~ pi(z_H)), g_t = gamma^t; episodic tasks
    stop accumulating after a predicted termination. Returns G [M, 1].
    """
    G = torch.zeros(z.shape[0], 1, device=z.device)
    g = torch.ones_like(G)
    alive = torch.ones_like(G)
    for t in range(actions.shape[0]):
        a = actions[t]
        r = model.decode(model.reward(z, a, task))
        f = model.energy_bonus(z, a, task)
        G = G + g * alive * (r + eta * f)
        z = model.next(z, a, task)
        g = g * gamma
        if episodic:
            alive = alive * (model.termination(z, task) <= 0).float()
    a_pi, _ = model.pi(z, task, eps=pi_eps, with_info=False)
    return G + g * alive * model.Q(z, a_pi, task, mode="avg", heads=heads)


def policy_rollout(model: WorldModel, z: torch.Tensor, horizon: int, task: torch.Tensor | None,
                   eps: torch.Tensor | None = None) -> torch.Tensor:
    """Policy-prior action sequences: a_t ~ pi(z_t), z_{t+1} = d(z_t, a_t). z [M, L] -> [H, M, A];
    eps [H, M, A]: the policy's sampling noise (random if None)."""
    out = []
    for t in range(horizon):
        a, _ = model.pi(z, task, eps=None if eps is None else eps[t], with_info=False)
        out.append(a)
        if t < horizon - 1:
            z = model.next(z, a, task)
    return torch.stack(out)


class TorchRollouts:
    """The reference rollout backend (kernels=torch): the world model's own modules in PyTorch, and
    the elite weighting / score update / next candidates of diffusion.py.

    A backend's `prepare` computes what one plan call's denoising steps share; `step_values` is
    steps 2-3 of one denoising step: policy-prior rollouts replace the first P candidates (the
    action mask applied), then every candidate's imagined return. cand [E, N, H, A] -> (values
    [E, N] fp32, cand)."""

    autocast = True  # bf16_plan runs these under torch.autocast

    def __init__(self, model: WorldModel, num_samples: int, num_pi_trajs: int, eta: float, episodic: bool):
        self.model, self.N, self.P, self.eta, self.episodic = model, num_samples, num_pi_trajs, eta, episodic

    def prepare(self, z0, task, gamma_env, mask):
        """z0 [E, L], task [E] or None, gamma_env [E, 1], mask [E, A] or None -> the rows every step
        reads: z0 and task repeated per candidate and per policy trajectory, the discount per row."""
        N, P = self.N, self.P
        rep = lambda t, n: t.repeat_interleave(n, dim=0) if t is not None else None
        return {"z_rep": rep(z0, N), "task_rep": rep(task, N), "z_pi": rep(z0, P), "task_pi": rep(task, P),
                "gamma": rep(gamma_env, N), "mask": mask}

    def step_values(self, cand, ctx, noise):
        E, N, H, A = cand.shape
        P, mask = self.P, ctx["mask"]
        if P > 0:
            pi_seq = self._policy_rollout(ctx["z_pi"], H, ctx["task_pi"], noise["pi_roll"].reshape(H, E * P, -1))
            cand[:, :P] = pi_seq.view(H, E, P, -1).permute(1, 2, 0, 3).to(cand.dtype)
        if mask is not None:
            cand = cand * mask.view(E, 1, 1, -1)
        values = self._values(ctx["z_rep"], cand.reshape(E * N, H, -1).transpose(0, 1), ctx["task_rep"], ctx["gamma"],
                              noise["pi_value"].reshape(E * N, -1), noise["heads"])
        return values.view(E, N), cand

    def denoise_step(self, cand, ctx, noise, x, abar, alpha, num_elites, temperature, next_abar=None, eps=None,
                     seed=None):
        """One denoising step: `step_values`, then `elite_score` (see both) -> (new x, elite
        average, the next step's candidates or None)."""
        values, cand = self.step_values(cand, ctx, noise)
        return self.elite_score(values, cand, x, abar, alpha, num_elites, temperature, next_abar, eps, seed)

    def compiled_denoise_step(self, options: dict):
        """denoise_step under torch.compile with these keyword arguments (compile=true): one graph
        for the steps with a next one, one for the last."""
        return torch.compile(self.denoise_step, **options)

    def _policy_rollout(self, z, horizon, task, eps):
        return policy_rollout(self.model, z, horizon, task, eps=eps)

    def _values(self, z, actions, task, gamma, pi_eps, heads):
        return imagined_value(self.model, z, actions, task, gamma, self.eta, self.episodic, pi_eps=pi_eps, heads=heads)

    def elite_score(self, values, cand, x, abar, alpha, num_elites, temperature, next_abar=None, eps=None, seed=None):
        """values [E, N], cand [E, N, H, A], x [E, H, A] -> (new x, elite average [E, H, A], the next
        step's candidates [E, N, H, A] from eps, or None at the last step)."""
        target, _, _ = weight_elites(torch.nan_to_num(values.float(), nan=0.0), cand, num_elites, temperature)
        x = score_update(x, target, abar, alpha)
        nxt = sample_candidates(x, next_abar, cand.shape[1], eps=eps) if next_abar is not None else None
        return x, target, nxt


class GroupedRollouts(TorchRollouts):
    """The head-group rollout in PyTorch (kernels=torch, fused_rollout=true; grouped_rollout.py):
    the reference's values from fewer matrix products and elementwise passes. compile=true
    compiles its step (`rollout_values`); the two Q heads of a step are gathered before it,
    eagerly. Elite weighting and the score update as the reference."""

    def __init__(self, model: WorldModel, num_samples: int, num_pi_trajs: int, eta: float, episodic: bool):
        from . import grouped_rollout

        super().__init__(model, num_samples, num_pi_trajs, eta, episodic)
        self._grouped = grouped_rollout
        self._step = self._values_and_elites
        self.constants = grouped_rollout.StepConstants(
            float(eta), bool(episodic), model.energy_clip, model.log_std_min, model.log_std_max,
            int(model.dynamics[-1].act.group))

    def prepare(self, z0, task, gamma_env, mask):
        return self._grouped.prepare(self.model.rollout_nets(), z0, task, gamma_env, mask, self.N, self.P)

    def step_values(self, cand, ctx, noise):
        E, N, H, A = cand.shape
        q = self._grouped.select_q_heads(ctx, noise["heads"])
        return self._grouped.rollout_values(ctx, q, cand, noise["pi_roll"].reshape(H, E, self.P, A),
                                            noise["pi_value"], self.constants)

    def denoise_step(self, cand, ctx, noise, x, abar, alpha, num_elites, temperature, next_abar=None, eps=None,
                     seed=None):
        E, N, H, A = cand.shape
        q = self._grouped.select_q_heads(ctx, noise["heads"])  # eagerly: a copy of two heads' rows
        return self._step(ctx, q, cand, noise["pi_roll"].reshape(H, E, self.P, A), noise["pi_value"], x, abar, alpha,
                          num_elites, temperature, next_abar, eps)

    def _values_and_elites(self, ctx, q, cand, eps_pi, eps_val, x, abar, alpha, num_elites, temperature, next_abar,
                           eps):
        values, cand = self._grouped.rollout_values(ctx, q, cand, eps_pi, eps_val, self.constants)
        return self.elite_score(values, cand, x, abar, alpha, num_elites, temperature, next_abar, eps)

    def compiled_denoise_step(self, options: dict):
        self._step = torch.compile(self._values_and_elites, **options)
        return self.denoise_step


class TritonRollouts(TorchRollouts):
    """The fused backend (kernels=triton), activations in bf16 with bf16_plan. By default every MLP
    layer is one fused_linear launch, the reward and Q heads fused with their two-hot decode
    (kernels/rollout.py), around the same steps as TorchRollouts. With fused_rollout=true a
    denoising step's rollout is 3H + 3 kernels, each running a group of heads on every candidate
    (policy prior, rewards + energies, latents + termination, final policy sample, Q heads;
    kernels/rollout_values.py), with what the steps share
    (the first layers' parts of z0 and of the task) computed once per plan. Either way the elite
    weighting, score update and next candidates are one kernel (kernels/elite_score.py), which can
    draw the candidates' noise itself (Philox) instead of reading it."""

    autocast = False  # precision is the kernels' dtype argument

    def __init__(self, model: WorldModel, num_samples: int, num_pi_trajs: int, eta: float, episodic: bool,
                 dtype: torch.dtype, fused_rollout: bool = False):
        from .kernels import elite_score, rollout, rollout_values

        super().__init__(model, num_samples, num_pi_trajs, eta, episodic)
        self.dtype, self.fused = dtype, fused_rollout
        self._elite, self._layers, self._kernel = elite_score.elite_score, rollout, rollout_values

    def prepare(self, z0, task, gamma_env, mask):
        if not self.fused:
            return super().prepare(z0, task, gamma_env, mask)
        return self._kernel.prepare(self.model.rollout_nets(), z0, task, gamma_env, mask)

    def step_values(self, cand, ctx, noise):
        if not self.fused:
            return super().step_values(cand, ctx, noise)
        E, N, H, A = cand.shape
        eps_pi = noise["pi_roll"].reshape(H, E, self.P, A)
        values = self._kernel.rollout_values(self.model.rollout_nets(), ctx, cand, eps_pi, noise["pi_value"],
                                             noise["heads"], self.eta, self.episodic, self.dtype)
        return values, cand

    def _policy_rollout(self, z, horizon, task, eps):
        return self._layers.policy_rollout_fused(self.model.rollout_nets(), z, horizon, task, eps, self.dtype)

    def _values(self, z, actions, task, gamma, pi_eps, heads):
        return self._layers.imagined_value_fused(self.model.rollout_nets(), z, actions, task, gamma, self.eta,
                                                 self.episodic, pi_eps, heads, self.dtype)

    def elite_score(self, values, cand, x, abar, alpha, num_elites, temperature, next_abar=None, eps=None, seed=None):
        return self._elite(values, cand, x, abar, alpha, num_elites, temperature, next_abar=next_abar, eps=eps, seed=seed)


class DiffusionPlanner:
    """Stateless planner: the warm-start plan is passed in and returned, so training and evaluation
    (or E environments) keep their own plans."""

    def __init__(self, cfg: RunSpec, model: WorldModel, discounts: list[float] | None = None):
        self.model = model
        self.schedule = DiffusionSchedule.linear(cfg.diffusion_steps, cfg.beta_start, cfg.beta_end)
        self.num_samples, self.num_elites = int(cfg.num_samples), int(cfg.num_elites)
        self.num_pi_trajs, self.temperature = int(cfg.num_pi_trajs), float(cfg.temperature)
        self.horizon, self.action_dim = int(cfg.horizon), int(cfg.action_dim)
        self.action_noise, self.eta = float(cfg.action_noise), float(cfg.energy_coef)
        # With the score network on, the reference code moves x by s_theta at every step and discards
        # the Monte Carlo estimate, so its rollouts cannot change the plan: planner_score=network
        # skips them ("auto" was resolved by config.resolve).
        self.episodic, self.score_only = bool(cfg.episodic), str(cfg.planner_score) == "network"
        device = model.bins.device
        self.discounts = discount_tensor(discounts if discounts is not None else [cfg.discount], device)
        self.bf16 = bool(cfg.bf16_plan)
        # compile: one denoising step is compiled and called K-1 times; its noise level comes in
        # as 0-dim tensors so that the 19 steps share one compiled graph (a Python float would be
        # specialised into the graph and recompiled per step).
        from .kernels import resolve_backend

        self.kernels = resolve_backend(str(cfg.get("kernels", "torch")), device)
        args = (model, self.num_samples, self.num_pi_trajs, self.eta, self.episodic)
        fused = self.cfg_fused = bool(cfg.get("fused_rollout", False))
        if self.kernels == "triton":
            self.rollouts = TritonRollouts(*args, torch.bfloat16 if self.bf16 else torch.float32, fused)
        else:
            self.rollouts = GroupedRollouts(*args) if fused else TorchRollouts(*args)
        self.compiled = bool(cfg.compile) and self.kernels == "torch"
        options = compile_options(device)
        self._step_fn = self.rollouts.compiled_denoise_step(options) if self.compiled else self.rollouts.denoise_step
        self._abar_t = torch.tensor(self.schedule.abar, dtype=torch.float32, device=device)
        self._alpha_t = torch.tensor(self.schedule.alphas, dtype=torch.float32, device=device)

    def initial_plan(self, num_envs: int, device=None) -> torch.Tensor:
        return torch.zeros(num_envs, self.horizon, self.action_dim, device=device or self.discounts.device)

    def warm_start(self, prev_plan: torch.Tensor, first: torch.Tensor | None) -> torch.Tensor:
        """m = previous plan shifted one step left with a zero appended; zeros where `first`."""
        m = torch.cat([prev_plan[:, 1:], torch.zeros_like(prev_plan[:, :1])], dim=1)
        if first is not None:
            m = m * (~first.bool()).view(-1, 1, 1).to(m.dtype)
        return m

    def draw_noise(self, E: int, device, candidates: bool = True) -> dict[str, torch.Tensor]:
        """The random numbers of one denoising step for E envs: candidates [E, N, H, A], the
        policy rollouts' sampling noise [H, E, P, A], the final policy sample's noise [E, N, A]
        and the 2 Q heads [2] (shared by the batch, as one call of Qavg)."""
        N, P, H, A = self.num_samples, self.num_pi_trajs, self.horizon, self.action_dim
        out = {"pi_roll": torch.randn(H, E, P, A, device=device), "pi_value": torch.randn(E, N, A, device=device),
               "heads": self.model.random_heads(device)}
        if candidates:  # the Triton path samples later steps' candidates in its kernel (Philox)
            out["cand"] = torch.randn(E, N, H, A, device=device)
        return out

    @torch.no_grad()
    def plan(self, z0: torch.Tensor, prev_plan: torch.Tensor, task: torch.Tensor | None = None,
             first: torch.Tensor | None = None, eval_mode: bool = False, return_info: bool = False,
             noise_fn=None):
        """z0 [E, L], prev_plan [E, H, A], task [E] or None, first [E] bool (episode starts).

        Returns (action [E, A], plan [E, H, A]) and, with return_info, a dict whose 'targets'
        [K-1, E, H, A] holds each step's elite average abar_a and 'x' the iterate after each step.
        noise_fn(tau, E) -> dict like draw_noise(), plus "action" [E, A] at tau=0 (the action noise):
        the random numbers to use (default: drawn fresh). Per-env slices of one draw given to E
        single-env calls reproduce the batched call (tests/test_planner.py).
        """
        injected = noise_fn is not None
        noise_fn = noise_fn or self._fresh_noise
        sch, E = self.schedule, z0.shape[0]
        mask = self.model.action_mask(task)  # [E, A] or None
        x = math.sqrt(sch.abar[sch.steps - 1]) * self.warm_start(prev_plan, first)
        info = {"targets": [], "x": []}
        if self.score_only:
            x = self._score_only(z0, x, task, mask, info)
        else:
            x = self._denoise(z0, x, task, mask, noise_fn, injected, info, return_info)
        plan = x.clamp(-1, 1)
        action = plan[:, 0]
        if not eval_mode:
            action = (action + self.action_noise * noise_fn(0, E)["action"]).clamp(-1, 1)
        if mask is not None:
            action = action * mask
        if return_info:
            info = {k: torch.stack(v) if v else None for k, v in info.items()}
            return action, plan, info
        return action, plan

    def _denoise(self, z0, x, task, mask, noise_fn, injected, info, return_info):
        """Section 4 steps 1-6 for tau = K-1..1 on the rollout backend: candidates around x (the
        first step's from sample_candidates, each later step's from the elite step before), policy
        rollouts in the first P, imagined returns, elite weighting and the score update.
        Random numbers in the order of the reference: a step's noise, its values, the next step's
        noise. The Triton backend with fresh noise draws later candidates' noise in its kernel
        (Philox, seeded from torch's generator on the device: no host sync)."""
        sch, N = self.schedule, self.num_samples
        E, K = z0.shape[0], sch.steps
        level = (lambda t: self._abar_t[t]) if self.compiled else (lambda t: sch.abar[t])
        alpha = (lambda t: self._alpha_t[t]) if self.compiled else (lambda t: sch.alphas[t])
        ctx = self.rollouts.prepare(z0, task, self.gamma_rows(task, E), mask)
        kernel_noise = isinstance(self.rollouts, TritonRollouts) and not injected
        autocast = self.bf16 and self.rollouts.autocast  # (a disabled autocast still refuses the meta device)
        with torch.autocast(device_type=z0.device.type, dtype=torch.bfloat16) if autocast else contextlib.nullcontext():
            noise = noise_fn(K - 1, E)
            cand = sample_candidates(x, level(K - 1), N, eps=noise["cand"])
            for tau in range(K - 1, 0, -1):
                # the next step's random numbers (the values draw none, so the order is the reference's)
                nxt = eps = seed = None
                if tau > 1:
                    nxt = self.draw_noise(E, x.device, candidates=False) if kernel_noise else noise_fn(tau - 1, E)
                    if kernel_noise:
                        seed = torch.randint(0, 2**31 - 1, (1,), device=x.device)
                    else:
                        eps = nxt["cand"]
                x, target, cand = self._step_fn(cand, ctx, noise, x, level(tau), alpha(tau), self.num_elites,
                                                self.temperature, next_abar=level(tau - 1) if tau > 1 else None,
                                                eps=eps, seed=seed)
                if return_info:
                    info["targets"].append(target)
                    info["x"].append(x)
                noise = nxt
        return x

    def _fresh_noise(self, tau: int, E: int) -> dict[str, torch.Tensor]:
        device = self.discounts.device
        if tau == 0:
            return {"action": torch.randn(E, self.action_dim, device=device)}
        return self.draw_noise(E, device)

    def gamma_rows(self, task: torch.Tensor | None, rows: int) -> torch.Tensor:
        """Per-row discount [rows, 1]: the task's (multi-task) or the single task's."""
        if task is None:
            return self.discounts[:1].expand(rows).unsqueeze(-1)
        return self.discounts[task].unsqueeze(-1)

    def _score_only(self, z0, x, task, mask, info):
        """planner_score=network: x <- (x + (1-abar) s_theta(z0, x, tau)) / sqrt(alpha); no rollouts."""
        sch, E = self.schedule, z0.shape[0]
        for tau in range(sch.steps - 1, 0, -1):
            t = torch.full((E,), float(tau), device=z0.device)
            s = self.model.score(z0, x.reshape(E, -1), t, task).view_as(x)
            if mask is not None:
                s = s * mask.view(E, 1, -1)
            x = score_update(x, None, sch.abar[tau], sch.alphas[tau], score=s)
            info["x"].append(x)
        return x


def record_plan_launches(cfg: RunSpec, envs: int = 1, noise_fn=None):
    """The kernel launches of one plan call for `envs` environments, without running anything: the
    world model is built on the meta device (any preset fits), Triton launches are recorded with
    the parameters their launchers chose and PyTorch's kernel-launching operations are counted
    (kernels/recording.py). Returns the Recording."""
    from .kernels.recording import record_launches

    with torch.device("meta"):
        model = WorldModel(cfg)
    with record_launches() as rec:
        planner = DiffusionPlanner(cfg, model)
        z0 = torch.zeros(envs, cfg.latent_dim, device="meta")
        planner.plan(z0, planner.initial_plan(envs, device="meta"), noise_fn=noise_fn)
    return rec
