"""A FLOP and byte model of the planner's Triton launches (recorded by kernels/recording.py), per
launch and summed per plan call. FLOPs: the matrix products (2 x M x K x N over the rows and
columns a kernel actually multiplies; epilogues are a few operations per output and left out).
Bytes: its weights once (later programs find them in L2), its inputs and outputs once, and every
layer's activations written and read back once through the programs' scratch rows (with a wide
row's pre-norm values once more: the LayerNorm's two passes). A model, not a measurement: a time
implied from it (max of FLOPs / peak FLOP/s and bytes / bandwidth) is a lower bound.
"""
from __future__ import annotations

from dataclasses import dataclass

_BYTES = {"*fp32": 4, "*bf16": 2, "*fp16": 2, "*i64": 8, "*i32": 4, "*i1": 1}


@dataclass(frozen=True)
class Cost:
    flops: float
    bytes: float

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(self.flops + other.flops, self.bytes + other.bytes)

    def implied_ms(self, peak_tflops: float, bandwidth_gbs: float) -> float:
        """The roofline time: the larger of the compute and memory times at the given peaks."""
        return max(self.flops / (peak_tflops * 1e12), self.bytes / (bandwidth_gbs * 1e9)) * 1e3


def launch_cost(launch) -> Cost:
    """FLOPs and minimum bytes of one recorded launch (see the module docstring)."""
    c, v = dict(launch.constexprs), dict(launch.scalars)
    size = {name: _BYTES.get(kind, 0) for name, kind in launch.signature}
    if launch.kernel == "_fused_linear_kernel":
        M, K, N = v["M"], c["K1"] + c["K2"], c["N"]
        staged = 2 * M * N * 4 if N > c["BLOCK_N"] else 0
        params = N * K * size["w_ptr"] + (3 if c["LN"] else 1) * N * size["b_ptr"]
        moved = M * c["K1"] * size["x1_ptr"] + M * c["K2"] * size["x2_ptr"] + M * N * size["out_ptr"]
        return Cost(2.0 * M * K * N, float(params + moved + staged))
    if launch.kernel == "_two_hot_value_kernel":
        M, K, NB = v["M"], c["K"], c["NB"]
        return Cost(2.0 * M * K * NB, float(NB * K * size["w_ptr"] + 2 * NB * 4 + M * K * size["h_ptr"] + M * 4))
    if launch.kernel == "_policy_kernel":
        return _policy_cost(c, v, size)
    if launch.kernel == "_heads_kernel":
        return _heads_cost(c, v, size)
    if launch.kernel == "_elite_score_kernel":
        E = launch.grid[0]
        N, D = c["N"], c["D"]
        # per env: values, the candidates twice (weights, then none: the weighted sum), x in and out,
        # the next candidates written (and their noise read when given)
        per_env = N * 4 + N * D * 4 + 3 * D * 4 + (N * D * 4 * (2 if c["EPS_GIVEN"] else 1) if c["HAS_NEXT"] else 0)
        return Cost(float(E * (4 * N * D + 20 * N)), float(E * per_env))
    raise KeyError(f"no cost model for {launch.kernel}")


def _layers_cost(layers, act: int, block_h: int) -> tuple[float, float]:
    """(FLOPs, scratch bytes) of (rows, K, N_out, LayerNorm) layers run in a rollout kernel: each
    output written and read back once in the activation dtype, a wide row's pre-norm values once
    more in fp32 (the LayerNorm's two passes)."""
    flops = sum(2.0 * rows * k * n for rows, k, n, _ in layers)
    scratch = sum(rows * n * (2 * act + (8 if ln and n > block_h else 0)) for rows, _, n, ln in layers)
    return flops, float(scratch)


def _policy_cost(c: dict, v: dict, size: dict) -> Cost:
    """kernels/rollout_values._policy_kernel: the policy on `rows` rows (its first layer skips the
    latent's k_start columns: at the first horizon step it is the per-environment bias)."""
    L, M1, A, rows = c["L"], c["M1"], c["A"], v["rows"]
    k_in = L - v["k_start"]
    flops, scratch = _layers_cost([(rows, k_in, M1, True), (rows, M1, M1, True), (rows, M1, 2 * A, False)],
                                  size["act_ptr"], c["BLOCK_H"])
    weights = (k_in * M1 + M1 * M1 + 2 * A * M1) * size["p_w1"]
    envs = rows // c["R"]
    io = rows * (k_in * size["za_ptr"] + A * size["eps_ptr"] + A * size["out_ptr"]) + envs * M1 * 4  # + the biases
    return Cost(flops, float(weights + io + scratch))


def _heads_cost(c: dict, v: dict, size: dict) -> Cost:
    """kernels/rollout_values._heads_kernel: the head groups its flags select, on E x N rows (the
    first layers on [z, a] skip the latent's columns at the first horizon step)."""
    L, M1, A, NB, R = c["L"], c["M1"], c["A"], c["NB"], v["E"] * c["N"]
    k_in = L + A - (L if v["t"] == 0 else 0)
    act = size["act_ptr"]
    layers, weights, io = [], 0, 0
    heads = [(NB, c["REWARD"]), (1, c["ENERGY"]), (L, c["DYNAMICS"]), (NB, c["Q"] > 0)]
    for out, on in heads:
        if on:
            layers += [(R, k_in, M1, True), (R, M1, M1, True), (R, M1, out, out == L)]
            weights += k_in * M1 + M1 * M1 + out * M1
            io += R * k_in * size["za_in"] + v["E"] * M1 * 4  # its input rows and per-environment biases
    if c["DYNAMICS"]:
        io += R * L * size["za_out"]
        if c["EPISODIC"]:
            layers += [(R, L, M1, True), (R, M1, M1, True), (R, M1, 1, False)]
            weights += L * M1 + M1 * M1 + M1
            io += R * (L * size["za_out"] + 8)  # z_{t+1} read back, the survival mask
    if c["GATHER"]:
        io += R * A * (2 * 4 + size["za_in"])  # the candidates read and masked in place, a_t staged
    if c["REWARD"] or c["ENERGY"] or c["Q"]:
        io += R * 8  # G (or the first Q head's value) read and written
    flops, scratch = _layers_cost(layers, act, c["BLOCK_H"])
    return Cost(flops, float(weights * size["d_w1"] + io + scratch))


def plan_cost(launches) -> Cost:
    total = Cost(0.0, 0.0)
    for launch in launches:
        total = total + launch_cost(launch)
    return total


# ------------------------------------------------------------------------------------------------
# Closed-form matrix FLOPs of a whole plan call and of an update, per code path (any device): what
# the CPU roofline (benchmarks/cpu_roofline.py) divides by the measured time. Counted like
# torch.utils.flop_counter (2 x rows x in x out per matrix product, forward and backward; the
# tests compare the two on the paths that run).

@dataclass(frozen=True)
class ModelDims:
    """The widths the FLOP counts read from a run spec: observation (plus task embedding) width,
    action dims A, latent L, hidden M, two-hot bins NB, task embedding TD, encoder hidden widths,
    Q heads, episodic."""
    obs: int
    A: int
    L: int
    M: int
    NB: int
    TD: int
    enc: tuple[int, ...]
    num_q: int
    episodic: bool

    @classmethod
    def of(cls, cfg) -> "ModelDims":
        enc = (int(cfg.enc_dim),) * max(int(cfg.num_enc_layers) - 1, 1)
        return cls(int(cfg.obs_dim), int(cfg.action_dim), int(cfg.latent_dim), int(cfg.mlp_dim), int(cfg.num_bins),
                   int(cfg.task_dim), enc, int(cfg.num_q), bool(cfg.episodic))

    def mlp(self, k_in: int, out: int) -> int:
        """Multiply-adds per row of a two-hidden-layer head: k_in -> M -> M -> out."""
        return k_in * self.M + self.M * self.M + self.M * out

    def encoder(self) -> int:
        dims = [self.obs + self.TD, *self.enc, self.L]
        return sum(a * b for a, b in zip(dims[:-1], dims[1:]))


def plan_flops(cfg, envs: int, grouped: bool = False) -> float:
    """Matrix FLOPs of one planner call for `envs` environments: the encoder, then K-1 denoising
    steps (N candidates, P policy rows per environment, horizon H). grouped=False: the reference
    path (planner.TorchRollouts: every head on every row, the policy rollouts' own dynamics);
    grouped=True: grouped_rollout.py (t = 0 multiplies only the action columns, the policy at z0
    once per environment and plan, the policy rows reuse the value rollout's latents; the task's
    columns are per-environment biases computed once per plan)."""
    d = ModelDims.of(cfg)
    E, N, P, H, K = envs, int(cfg.num_samples), int(cfg.num_pi_trajs), int(cfg.horizon), int(cfg.diffusion_steps)
    L, A, M, NB, TD = d.L, d.A, d.M, d.NB, d.TD
    rows = E * N
    step_heads = d.mlp(L + A + TD, L) + d.mlp(L + A + TD, NB) + d.mlp(L + A + TD, 1)
    term = d.mlp(L + TD, 1) if d.episodic else 0
    final = d.mlp(L + TD, 2 * A) + 2 * d.mlp(L + A + TD, NB)
    if not grouped:
        per_row = H * (step_heads + term) + final
        per_pi_row = H * d.mlp(L + TD, 2 * A) + (H - 1) * d.mlp(L + A + TD, L)
        step = rows * per_row + E * P * per_pi_row
        once = 0
    else:
        later = M * M + M * L + M * M + M * NB + M * M + M  # the three heads' second and output layers
        first_t0, first = A * 3 * M, (L + A) * 3 * M
        term_g = (L * M + M * M + M) if d.episodic else 0
        pi_g = L * M + M * M + M * 2 * A
        q_g = (L + A) * 2 * M + 2 * (M * M + M * NB)
        step = rows * (first_t0 + H * later + (H - 1) * first + H * term_g + pi_g + q_g) + E * P * (H - 1) * pi_g
        # once per plan: z0's part of the three first layers, the policy at z0, the task's columns
        once = E * (L * 3 * M + pi_g) + (E * TD * (3 * M + M + d.num_q * M + (M if d.episodic else 0)) if TD else 0)
    return 2.0 * (E * d.encoder() + (K - 1) * step + once)


def update_flops(cfg, batch: int, fused: bool = False) -> tuple[float, float]:
    """Matrix FLOPs (forward, backward) of one update (docs/algorithm.md section 5; score_net off)
    on `batch` sequences of horizon H: encoder, TD target (policy + the first two target Q heads),
    latent rollout, reward, every Q head, the energy's five evaluations and the policy action its
    negatives centre on, termination (episodic),
    the policy loss (policy + two Q heads on the detached latents). A backward product costs the
    forward's FLOPs once per gradient it makes: the input's (where it needs one) and the weight's
    (where it is trained). fused=True: agent.energy_loss with fused_update (F's latent part once
    for the five action sets, positives and negatives as one evaluation)."""
    d = ModelDims.of(cfg)
    H, B = int(cfg.horizon), int(batch)
    L, A, M, NB, TD, Q = d.L, d.A, d.M, d.NB, d.TD, d.num_q
    R, R1 = H * B, (H + 1) * B
    za = L + A + TD
    first_enc = (d.obs + TD) * (d.enc[0] if d.enc else L)
    fwd = back = 0
    # encoder: the next observations without gradient, the first with (obs needs none)
    fwd += (R + B) * d.encoder()
    back += B * (2 * d.encoder() - first_enc)
    # TD target, no gradient: pi(next z), two target Q heads
    fwd += R * (d.mlp(L + TD, 2 * A) + 2 * d.mlp(za, NB))
    # latent rollout, reward, all Q heads, termination: gradients to inputs and weights
    grad_both = B * H * d.mlp(za, L) + R * d.mlp(za, NB) + Q * R * d.mlp(za, NB) + (R * d.mlp(L + TD, 1) if d.episodic else 0)
    fwd += grad_both
    back += 2 * grad_both
    # energy: z detached and replay/candidate actions need no gradient: the first layer trains its weight only;
    # the policy's action on every latent (the negatives' centre), without gradient
    later = M * M + M
    fwd += R * d.mlp(L + TD, 2 * A)
    if fused:
        fwd += R * (L + TD) * M + 5 * R * A * M + 5 * R * later
        back += R * (L + TD) * M + 2 * R * A * M + 2 * 2 * R * later
    else:
        fwd += 5 * R * (za * M + later)
        back += 2 * R * (za * M + 2 * later)
    # policy loss: pi on the detached latents (first layer: weight gradient only), two Q heads with
    # detached weights (input gradients only: the action's)
    pi = d.mlp(L + TD, 2 * A)
    fwd += R1 * (pi + 2 * d.mlp(za, NB))
    back += R1 * (2 * pi - (L + TD) * M) + R1 * 2 * d.mlp(za, NB)
    return 2.0 * fwd, 2.0 * back
