"""The plan and the update written in JAX and compiled whole by XLA: the bar for fusion on a CPU.

    python benchmarks/xla_reference.py --check            # its numbers against the package's (tiny sizes)
    python benchmarks/xla_reference.py --threads 1        # time the plan and the update (JSON lines)

This is this project's own port of docs/algorithm.md sections 3-5, for measurement only: the
networks take the weights of an mbdpo_fast WorldModel, the planner (encoder, then K-1 denoising
levels in one lax.scan, each level's policy-prior rollout and imagined values in lax.scan over the
horizon, elite weighting and score update) is one jitted function, and the update (world-model
losses and their gradient, both Adam steps with clipping, the energy statistics, the policy loss,
the Q scale and the Polyak step) is another, as the MBDPO authors' JAX implementation organises
them. It is not the authors' code (not available to this project). It does the reference path's
matrix work (every head on every row, the policy rollouts' own dynamics; two Q heads in the
planner), so its FLOPs are kernels/cost.py's plan_flops(grouped=False) and update_flops(fused=False).

benchmarks/cpu_roofline.py --sections xla runs it in a subprocess per thread count (XLA's CPU
threads are set by XLA_FLAGS before JAX starts) beside the package's paths. --check compares, on a
small model with dropout off, the imagined values of one denoising step and the update's
deterministic losses (consistency, reward, value) with the package's (fp32, 1e-5), so that the
timings compare the same computation.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

OBS_DIM, ACTION_DIM = 24, 6


def xla_flags(threads: int) -> str:
    """XLA_FLAGS that keep XLA's CPU backend to one thread for its products (threads=1; 0: its
    default, every core). With --threads 1 the process is also pinned to one core, so whatever
    threads XLA starts share it."""
    if threads == 1:
        return "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    return ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="compare with the package's numbers and stop")
    ap.add_argument("--threads", type=int, default=0, help="1: one thread (XLA_FLAGS set here); 0: every core")
    ap.add_argument("--workloads", nargs="+", default=["plan m1", "plan m5", "update m1 B=64", "update m1 B=256",
                                                        "update m5 B=64", "update m5 B=256"])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--quick", action="store_true", help="tiny widths")
    args = ap.parse_args()
    if args.threads == 1:  # before JAX starts: XLA's own flags, and every thread of this process on one core
        os.environ.setdefault("XLA_FLAGS", xla_flags(1))
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import torch

    torch.set_num_threads(1)
    if args.check:
        check()
        return
    for workload in args.workloads:
        print(json.dumps(time_workload(workload, args)), flush=True)


# ------------------------------------------------------------------------------------------------
def spec(preset: int, quick: bool, **over):
    from mbdpo_fast.config import default_config, resolve

    sizes = {"model_size": preset, **(dict(mlp_dim=64, latent_dim=32, enc_dim=32) if quick else {})}
    return resolve(default_config(device="cpu", work_dir="unused", **sizes, **over), OBS_DIM, ACTION_DIM)


PLANNERS = {"plan m1": (1, dict(num_samples=64, diffusion_steps=6, num_elites=8, num_pi_trajs=4)),
            "plan m5": (5, dict(num_samples=512, diffusion_steps=20, num_elites=64, num_pi_trajs=24))}
UPDATES = {"update m1 B=64": (1, 64), "update m1 B=256": (1, 256), "update m5 B=64": (5, 64),
           "update m5 B=256": (5, 256)}


def time_workload(workload: str, args) -> dict:
    import jax
    import numpy as np

    from mbdpo_fast.world_model import WorldModel

    if workload in PLANNERS:
        preset, planner = PLANNERS[workload]
        if args.quick:
            planner = dict(planner, num_samples=16, diffusion_steps=3, num_elites=4, num_pi_trajs=2)
        cfg = spec(preset, args.quick, **planner)
        net = Nets(cfg, WorldModel(cfg).state_dict())
        fn = jax.jit(partial(plan, net.static))
        obs = jax.numpy.asarray(np.random.default_rng(0).standard_normal((1, OBS_DIM)), dtype="float32")
        prev = jax.numpy.zeros((cfg.horizon, ACTION_DIM))
        state = (net.params, obs, prev, jax.random.PRNGKey(0))
        call = lambda: fn(*state)[0].block_until_ready()
    else:
        preset, batch = UPDATES[workload]
        batch = 16 if args.quick else batch
        cfg = spec(preset, args.quick, batch_size=batch)
        net = Nets(cfg, WorldModel(cfg).state_dict())
        fn = jax.jit(partial(update, net.static), donate_argnums=(0,))
        rng = np.random.default_rng(0)
        H = cfg.horizon
        data = tuple(jax.numpy.asarray(x, dtype="float32") for x in (
            rng.standard_normal((H + 1, batch, OBS_DIM)), rng.uniform(-1, 1, (H, batch, ACTION_DIM)),
            rng.uniform(0, 1, (H, batch, 1)), np.zeros((H, batch, 1))))
        holder = {"state": init_state(net)}

        def call():
            holder["state"], out = fn(holder["state"], data, jax.random.PRNGKey(0))
            out["total_loss"].block_until_ready()
    t0 = time.perf_counter()
    call()
    first = time.perf_counter() - t0
    times = []
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    times.sort()
    return {"workload": workload, "ms": 1000 * times[len(times) // 2], "first_call_s": first,
            "threads": args.threads or len(os.sched_getaffinity(0)), "jax": jax.__version__}


# ------------------------------------------------------------------------------------------------
class Static:
    """The Python numbers the jitted functions read (hashable: jit's static argument)."""

    def __init__(self, cfg):
        from mbdpo_fast.config import discount_for
        from mbdpo_fast.diffusion import DiffusionSchedule

        self.L, self.A, self.M = int(cfg.latent_dim), int(cfg.action_dim), int(cfg.mlp_dim)
        self.N, self.P, self.H = int(cfg.num_samples), int(cfg.num_pi_trajs), int(cfg.horizon)
        self.K, self.elites, self.temperature = int(cfg.diffusion_steps), int(cfg.num_elites), float(cfg.temperature)
        self.num_q, self.group, self.bins = int(cfg.num_q), int(cfg.simnorm_dim), int(cfg.num_bins)
        self.vmin, self.vmax, self.eta, self.clip = float(cfg.vmin), float(cfg.vmax), float(cfg.energy_coef), \
            float(cfg.energy_clip)
        self.gamma = discount_for(cfg.episode_length, cfg.discount_denom, cfg.discount_min, cfg.discount_max)
        sch = DiffusionSchedule.linear(cfg.diffusion_steps, cfg.beta_start, cfg.beta_end)
        self.abar, self.alphas = tuple(sch.abar), tuple(sch.alphas)
        self.noise, self.dropout = float(cfg.action_noise), float(cfg.dropout)
        self.lo, self.hi = float(cfg.log_std_min), float(cfg.log_std_max)
        self.lr, self.enc_scale, self.clip_norm, self.tau = float(cfg.lr), float(cfg.enc_lr_scale), \
            float(cfg.grad_clip_norm), float(cfg.tau)
        self.rho, self.coefs = float(cfg.rho), (float(cfg.consistency_coef), float(cfg.reward_coef),
                                                float(cfg.value_coef), float(cfg.energy_loss_coef))
        self.entropy_coef, self.neg_noise, self.momentum = float(cfg.entropy_coef), float(cfg.energy_neg_noise), \
            float(cfg.energy_momentum)


class Nets:
    """A WorldModel's state dict as JAX arrays (`params`) and the static numbers."""

    def __init__(self, cfg, state_dict):
        import jax.numpy as jnp

        self.static = Static(cfg)
        self.params = {k: jnp.asarray(v.detach().float().numpy()) for k, v in state_dict.items()
                       if k not in ("action_masks",)}


def _ln(x, g, b):
    import jax.numpy as jnp

    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / jnp.sqrt(var + 1e-5) * g + b


def _mish(x):
    import jax
    import jax.numpy as jnp

    return x * jnp.tanh(jax.nn.softplus(x))


def _layer(p, name, x, act=True):
    h = x @ p[f"{name}.weight"].T + p[f"{name}.bias"]
    return _mish(_ln(h, p[f"{name}.ln.weight"], p[f"{name}.ln.bias"])) if act else h


def _simnorm(x, group):
    import jax

    s = x.shape
    return jax.nn.softmax(x.reshape(*s[:-1], -1, group), axis=-1).reshape(s)


def mlp(p, name, x, simnorm_group=0):
    """layers.mlp with two hidden layers: NormedLinear, NormedLinear, then Linear (or LN + SimNorm)."""
    h = _layer(p, f"{name}.0", x)
    h = _layer(p, f"{name}.1", h)
    out = _layer(p, f"{name}.2", h, act=False)
    if simnorm_group:
        out = _simnorm(_ln(out, p[f"{name}.2.ln.weight"], p[f"{name}.2.ln.bias"]), simnorm_group)
    return out


def encoder(s, p, obs):
    h = _layer(p, "encoder.0", obs)
    out = _layer(p, "encoder.1", h, act=False)
    return _simnorm(_ln(out, p["encoder.1.ln.weight"], p["encoder.1.ln.bias"]), s.group)


def ensemble(s, p, prefix, x, heads=None, key=None):
    """EnsembleMLP: x [..., in] -> [n, ..., out]; dropout after the first layer when key is given."""
    import jax
    import jax.numpy as jnp

    ws = [p[f"{prefix}.weights.{i}"] for i in range(3)]
    bs = [p[f"{prefix}.biases.{i}"] for i in range(3)]
    gs = [p[f"{prefix}.ln_weights.{i}"] for i in range(2)]
    es = [p[f"{prefix}.ln_biases.{i}"] for i in range(2)]
    if heads is not None:
        ws, bs, gs, es = ([t[heads] for t in group] for group in (ws, bs, gs, es))
    lead = x.shape[:-1]
    h = x.reshape(-1, x.shape[-1])
    h = jnp.einsum("rk,nko->nro", h, ws[0]) + bs[0][:, None]
    if key is not None and s.dropout > 0:
        keep = jax.random.bernoulli(key, 1 - s.dropout, h.shape)
        h = jnp.where(keep, h / (1 - s.dropout), 0.0)
    h = _mish(_ln(h, gs[0][:, None], es[0][:, None]))
    h = _mish(_ln(jnp.einsum("nrk,nko->nro", h, ws[1]) + bs[1][:, None], gs[1][:, None], es[1][:, None]))
    out = jnp.einsum("nrk,nko->nro", h, ws[2]) + bs[2][:, None]
    return out.reshape(out.shape[0], *lead, out.shape[-1])


def two_hot_inv(s, logits, bins):
    import jax
    import jax.numpy as jnp

    v = (jax.nn.softmax(logits, axis=-1) * bins).sum(-1, keepdims=True)
    return jnp.sign(v) * jnp.expm1(jnp.abs(v))


def two_hot(s, x):
    import jax
    import jax.numpy as jnp

    x = jnp.clip(jnp.sign(x) * jnp.log1p(jnp.abs(x)), s.vmin, s.vmax)
    pos = (x - s.vmin) / ((s.vmax - s.vmin) / (s.bins - 1))
    lo = jnp.clip(jnp.floor(pos), max=s.bins - 1)
    frac = pos - lo
    lo = lo.astype(jnp.int32)
    hi = jnp.clip(lo + 1, max=s.bins - 1)
    return jax.nn.one_hot(lo, s.bins) * (1 - frac)[..., None] + jax.nn.one_hot(hi, s.bins) * frac[..., None]


def soft_ce(s, logits, target):
    import jax

    return -(two_hot(s, target[..., 0]) * jax.nn.log_softmax(logits, axis=-1)).sum(-1, keepdims=True)


def pi_sample(s, p, z, eps):
    """(action, scaled entropy) of the policy prior at z with noise eps."""
    import jax.numpy as jnp

    raw = mlp(p, "pi_head", z)
    mean, raw_std = raw[..., :s.A], raw[..., s.A:]
    log_std = s.lo + 0.5 * (s.hi - s.lo) * (jnp.tanh(raw_std) + 1)
    action = jnp.tanh(mean + eps * jnp.exp(log_std))
    gauss = (-0.5 * eps ** 2 - log_std - 0.5 * jnp.log(2 * jnp.pi)).sum(-1, keepdims=True)
    return action, -gauss * s.A


def imagined_values(s, p, z0, actions, pi_eps, heads):
    """Section 3 for R rows from one latent: z0 [L], actions [H, R, A] -> [R] (lax.scan over H)."""
    import jax
    import jax.numpy as jnp

    R = actions.shape[1]
    z = jnp.broadcast_to(z0, (R, s.L))

    def step(carry, a):
        z, G, g = carry
        za = jnp.concatenate([z, a], -1)
        r = two_hot_inv(s, mlp(p, "reward_head", za), p["bins"])
        f = jnp.clip((mlp(p, "energy_head", za) - p["energy_mu"]) / p["energy_sigma"], -s.clip, s.clip)
        G = G + g * (r + s.eta * f)
        return (mlp(p, "dynamics", za, s.group), G, g * s.gamma), None

    (z, G, g), _ = jax.lax.scan(step, (z, jnp.zeros((R, 1)), jnp.ones((R, 1))), actions)
    a, _ = pi_sample(s, p, z, pi_eps)
    q = two_hot_inv(s, ensemble(s, p, "qs", jnp.concatenate([z, a], -1), heads), p["bins"]).mean(0)
    return (G + g * q)[:, 0]


def plan(s, p, obs, prev, key):
    """One planner call for one environment: obs [1, obs_dim], prev [H, A] -> (action [A], plan [H, A])."""
    import jax
    import jax.numpy as jnp

    z0 = encoder(s, p, obs)[0]
    x = jnp.sqrt(s.abar[-1]) * jnp.concatenate([prev[1:], jnp.zeros((1, s.A))])
    taus = jnp.arange(s.K - 1, 0, -1)

    def level(x, inputs):
        tau, k = inputs
        abar, alpha = jnp.asarray(s.abar)[tau], jnp.asarray(s.alphas)[tau]
        k1, k2, k3, k4 = jax.random.split(k, 4)
        cand = jnp.clip(x / jnp.sqrt(abar) + jnp.sqrt((1 - abar) / abar) * jax.random.normal(k1, (s.N, s.H, s.A)),
                        -1, 1)
        if s.P:  # the policy prior's rollouts in the first P candidates
            eps = jax.random.normal(k2, (s.H, s.P, s.A))

            def roll(z, e):
                a, _ = pi_sample(s, p, z, e)
                return mlp(p, "dynamics", jnp.concatenate([z, a], -1), s.group), a

            _, pi_actions = jax.lax.scan(roll, jnp.broadcast_to(z0, (s.P, s.L)), eps)
            cand = cand.at[:s.P].set(pi_actions.transpose(1, 0, 2))
        heads = jax.random.permutation(k3, s.num_q)[:2]
        values = imagined_values(s, p, z0, cand.transpose(1, 0, 2), jax.random.normal(k4, (s.N, s.A)), heads)
        values = jnp.nan_to_num(values)
        std = values.std(ddof=1)
        std = jnp.where(std < 1e-4, 1.0, std)
        logits = (values - values.mean()) / std / s.temperature
        top, idx = jax.lax.top_k(values, s.elites)
        w = jax.nn.softmax(logits[idx])
        target = (w[:, None, None] * cand[idx]).sum(0)
        score = (-x + jnp.sqrt(abar) * target) / (1 - abar + 1e-8)
        return (x + (1 - abar) * score) / jnp.sqrt(alpha), None

    x, _ = jax.lax.scan(level, x, (taus, jax.random.split(key, s.K - 1)))
    plan_ = jnp.clip(x, -1, 1)
    action = jnp.clip(plan_[0] + s.noise * jax.random.normal(jax.random.fold_in(key, 1), (s.A,)), -1, 1)
    return action, plan_


# ------------------------------------------------------------------------------------------------
MODEL_PREFIXES = ("encoder.", "dynamics.", "reward_head.", "energy_head.", "qs.")


def _optimisers(s):
    import optax

    wm = optax.chain(optax.clip_by_global_norm(s.clip_norm),
                     optax.multi_transform({"enc": optax.adam(s.lr * s.enc_scale), "rest": optax.adam(s.lr)},
                                           lambda t: {k: "enc" if k.startswith("encoder.") else "rest" for k in t}))
    pi = optax.chain(optax.clip_by_global_norm(s.clip_norm), optax.adam(s.lr, eps=1e-5))
    return wm, pi


def init_state(net: Nets) -> dict:
    s, p = net.static, net.params
    model = {k: v for k, v in p.items() if k.startswith(MODEL_PREFIXES)}
    pi = {k: v for k, v in p.items() if k.startswith("pi_head.")}
    target = {k: v for k, v in p.items() if k.startswith("target_qs.")}
    stats = {k: p[k] for k in ("bins", "energy_mu", "energy_sigma", "q_scale")}
    wm_opt, pi_opt = _optimisers(s)
    return {"model": model, "pi": pi, "target": target, "stats": stats, "wm_opt": wm_opt.init(model),
            "pi_opt": pi_opt.init(pi)}


def world_model_loss(s, model, pi, target, stats, data, key):
    """Section 5's model losses on one batch (obs [H+1, B, O], action [H, B, A], reward, term)."""
    import jax
    import jax.numpy as jnp

    obs, action, reward, term = data
    p = {**model, **pi, **target, **stats}
    k_td, k_q, k_pi, k_noise, k_unif = jax.random.split(key, 5)
    next_z = jax.lax.stop_gradient(encoder(s, p, obs[1:]))
    a_next, _ = pi_sample(s, jax.lax.stop_gradient(p), next_z, jax.random.normal(k_td, next_z.shape[:-1] + (s.A,)))
    q_t = two_hot_inv(s, ensemble(s, jax.lax.stop_gradient(p), "target_qs", jnp.concatenate([next_z, a_next], -1),
                                  jnp.arange(2)), p["bins"]).min(0)
    td = jax.lax.stop_gradient(reward + s.gamma * (1 - term) * q_t)
    z = encoder(s, p, obs[0])
    zs, consistency = [z], 0.0
    for t in range(s.H):
        z = mlp(p, "dynamics", jnp.concatenate([z, action[t]], -1), s.group)
        consistency = consistency + s.rho ** t * ((z - next_z[t]) ** 2).mean()
        zs.append(z)
    zs = jnp.stack(zs)
    za = jnp.concatenate([zs[:-1], action], -1)
    w = (s.rho ** jnp.arange(s.H)).reshape(s.H, 1, 1)
    reward_loss = (soft_ce(s, mlp(p, "reward_head", za), reward) * w).mean((1, 2)).sum()
    q_logits = ensemble(s, p, "qs", za, key=k_q)
    value_loss = (soft_ce(s, q_logits, jnp.broadcast_to(td, (s.num_q,) + td.shape)) * w).mean((2, 3)).sum()
    consistency, reward_loss, value_loss = consistency / s.H, reward_loss / s.H, value_loss / (s.H * s.num_q)
    # energy: positives with their replay actions, the hardest of three negatives
    zd = jax.lax.stop_gradient(zs[:-1])
    energy = lambda a: mlp(p, "energy_head", jnp.concatenate([zd, a], -1))
    a_pi, _ = pi_sample(s, jax.lax.stop_gradient(p), zd, jax.random.normal(k_pi, action.shape))
    noisy = jnp.clip(a_pi + s.neg_noise * jax.random.normal(k_noise, action.shape), -1, 1)
    unif = jax.random.uniform(k_unif, action.shape, minval=-1, maxval=1)
    cands = jnp.stack([a_pi, noisy, unif])
    f_c = jax.lax.stop_gradient(jax.vmap(energy)(cands))
    a_neg = jnp.take_along_axis(cands, jnp.argmax(f_c, 0)[None].repeat(s.A, -1), 0)[0]
    f_pos, f_neg = energy(action), energy(jax.lax.stop_gradient(a_neg))
    energy_loss = 0.5 * (jax.nn.softplus(-f_pos).mean() + jax.nn.softplus(f_neg).mean())
    logits = jax.lax.stop_gradient(jnp.concatenate([f_pos, f_neg]).reshape(-1))
    total = (s.coefs[0] * consistency + s.coefs[1] * reward_loss + s.coefs[2] * value_loss
             + s.coefs[3] * energy_loss)
    return total, {"consistency_loss": consistency, "reward_loss": reward_loss, "value_loss": value_loss,
                   "energy_loss": energy_loss, "zs": jax.lax.stop_gradient(zs), "logits": logits}


def pi_loss(s, pi, model, stats, zs, key):
    import jax
    import jax.numpy as jnp

    p = {**jax.lax.stop_gradient(model), **pi, **stats}
    k_eps, k_heads, k_q = jax.random.split(key, 3)
    a, ent = pi_sample(s, p, zs, jax.random.normal(k_eps, zs.shape[:-1] + (s.A,)))
    heads = jax.random.permutation(k_heads, s.num_q)[:2]
    q = two_hot_inv(s, ensemble(s, p, "qs", jnp.concatenate([zs, a], -1), heads, key=k_q), p["bins"]).mean(0)
    v = jnp.sort(jax.lax.stop_gradient(q[0]).reshape(-1))
    n = v.shape[0]
    pct = lambda f: v[int(f * (n - 1))] + (f * (n - 1) - int(f * (n - 1))) * (v[min(int(f * (n - 1)) + 1, n - 1)] - v[int(f * (n - 1))])
    scale = stats["q_scale"] + s.tau * (jnp.maximum(pct(0.95) - pct(0.05), 1.0) - stats["q_scale"])
    obj = (s.entropy_coef * ent + q / scale).mean((1, 2))
    return -(obj * s.rho ** jnp.arange(zs.shape[0])).mean(), scale


def update(s, state, data, key):
    """One update: the world model's losses and Adam step, the energy statistics, the policy
    loss and its Adam step, the Q scale, the Polyak step."""
    import jax
    import optax

    wm_opt, pi_opt = _optimisers(s)
    k_wm, k_pi = jax.random.split(key)
    (total, aux), grads = jax.value_and_grad(world_model_loss, argnums=1, has_aux=True)(
        s, state["model"], state["pi"], state["target"], state["stats"], data, k_wm)
    updates, wm_state = wm_opt.update(grads, state["wm_opt"], state["model"])
    model = optax.apply_updates(state["model"], updates)
    stats = dict(state["stats"])
    lg = aux["logits"]
    stats["energy_mu"] = stats["energy_mu"] + (1 - s.momentum) * (lg.mean() - stats["energy_mu"])
    stats["energy_sigma"] = stats["energy_sigma"] + (1 - s.momentum) * (max_(lg.std(), 1e-6) - stats["energy_sigma"])
    (loss, scale), pgrads = jax.value_and_grad(pi_loss, argnums=1, has_aux=True)(
        s, state["pi"], model, stats, aux["zs"], k_pi)
    stats["q_scale"] = scale
    pupdates, pi_state = pi_opt.update(pgrads, state["pi_opt"], state["pi"])
    pi = optax.apply_updates(state["pi"], pupdates)
    target = {k: v + s.tau * (model["qs." + k[len("target_qs."):]] - v) for k, v in state["target"].items()}
    new = {"model": model, "pi": pi, "target": target, "stats": stats, "wm_opt": wm_state, "pi_opt": pi_state}
    return new, {"total_loss": total, "pi_loss": loss, **{k: aux[k] for k in ("consistency_loss", "reward_loss",
                                                                               "value_loss", "energy_loss")}}


def max_(x, lo):
    import jax.numpy as jnp

    return jnp.maximum(x, lo)


# ------------------------------------------------------------------------------------------------
def check() -> None:
    """This port against the package on a small model (dropout off): one denoising step's
    imagined values for the same candidates, noise and heads, and the update's deterministic
    losses for the same batch."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch

    from mbdpo_fast.agent import MBDPO
    from mbdpo_fast.planner import imagined_value

    torch.manual_seed(0)
    cfg = spec(1, True, dropout=0.0, num_samples=32, num_pi_trajs=4, num_elites=8, diffusion_steps=4)
    agent = MBDPO(cfg)
    m = agent.model
    with torch.no_grad():  # non-zero heads and statistics
        for t in list(m.parameters()):
            t.add_(0.05 * torch.randn_like(t))
        m.target_qs.load_state_dict(m.qs.state_dict())
        m.energy_mu.fill_(0.2)
        m.energy_sigma.fill_(1.3)
    net = Nets(cfg, m.state_dict())
    s = net.static
    z0 = m.encode(torch.randn(1, OBS_DIM)).detach()
    acts = torch.rand(s.H, 32, s.A) * 2 - 1
    eps, heads = torch.randn(32, s.A), torch.tensor([1, 0])
    gamma = torch.full((32, 1), s.gamma)
    with torch.no_grad():
        want = imagined_value(m, z0.expand(32, -1), acts, None, gamma, s.eta, False, pi_eps=eps, heads=heads)[:, 0]
    got = imagined_values(s, net.params, jnp.asarray(z0[0].numpy()), jnp.asarray(acts.numpy()), jnp.asarray(eps.numpy()),
                          jnp.asarray(heads.numpy()))
    err = float(np.abs(np.asarray(got) - want.numpy()).max() / np.abs(want.numpy()).max())
    print(f"imagined values: relative error {err:.2e} (32 candidates, H={s.H})")
    assert err < 1e-5
    B, H = 16, s.H
    rng = np.random.default_rng(0)
    data = [rng.standard_normal((H + 1, B, OBS_DIM)), rng.uniform(-1, 1, (H, B, s.A)), rng.uniform(0, 1, (H, B, 1)),
            np.zeros((H, B, 1))]
    tdata = [torch.tensor(x, dtype=torch.float32) for x in data]
    m.train()
    _, parts, _ = agent.world_model_losses(*tdata, None)
    state = init_state(net)
    _, aux = world_model_loss(s, state["model"], state["pi"], state["target"], state["stats"],
                              tuple(jnp.asarray(x, dtype=jnp.float32) for x in data), jax.random.PRNGKey(0))
    for k in ("consistency_loss", "reward_loss"):
        e = abs(float(aux[k]) - float(parts[k])) / abs(float(parts[k]))
        print(f"{k}: package {float(parts[k]):.6f}, XLA port {float(aux[k]):.6f} (relative error {e:.1e})")
        assert e < 1e-5
    print("the XLA port computes the package's numbers")


if __name__ == "__main__":
    main()
