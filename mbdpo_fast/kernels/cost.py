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
    if launch.kernel == "_rollout_values_kernel":
        return _rollout_cost(c, v["E"], size)
    if launch.kernel == "_elite_score_kernel":
        E = launch.grid[0]
        N, D = c["N"], c["D"]
        # per env: values, the candidates twice (weights, then none: the weighted sum), x in and out,
        # the next candidates written (and their noise read when given)
        per_env = N * 4 + N * D * 4 + 3 * D * 4 + (N * D * 4 * (2 if c["EPS_GIVEN"] else 1) if c["HAS_NEXT"] else 0)
        return Cost(float(E * (4 * N * D + 20 * N)), float(E * per_env))
    raise KeyError(f"no cost model for {launch.kernel}")


def policy_rows(E: int, N: int, P: int, block_m: int) -> int:
    """Rows the rollout kernel runs the policy prior on: whole row blocks holding a policy row."""
    blocks = {b for e in range(E) for b in range((e * N) // block_m, (e * N + P - 1) // block_m + 1)} if P else set()
    return len(blocks) * block_m


def _rollout_cost(c: dict, E: int, size: dict) -> Cost:
    L, M1, A, NB, H, N, P = c["L"], c["M1"], c["A"], c["NB"], c["H"], c["N"], c["P"]
    R, R_pi = E * N, policy_rows(E, N, P, c["BLOCK_M"])
    layers = []  # (rows, K, N_out, LayerNorm)
    for t in range(H):  # the first step's first layers skip the latent's columns (in the biases)
        k_in = A if t == 0 else L + A
        for out in (NB, 1, L):  # reward, energy, dynamics
            layers += [(R, k_in, M1, True), (R, M1, M1, True), (R, M1, out, out == L)]
        layers += [(R_pi, 0 if t == 0 else L, M1, True), (R_pi, M1, M1, True), (R_pi, M1, 2 * A, False)]
        if c["EPISODIC"]:
            layers += [(R, L, M1, True), (R, M1, M1, True), (R, M1, 1, False)]
    layers += [(R, L, M1, True), (R, M1, M1, True), (R, M1, 2 * A, False)]  # final policy sample
    layers += 2 * [(R, L + A, M1, True), (R, M1, M1, True), (R, M1, NB, False)]  # two Q heads
    flops = sum(2.0 * rows * k * n for rows, k, n, _ in layers)
    act = size["act_ptr"]
    scratch = sum(rows * n * (2 * act + (8 if ln and n > c["BLOCK_H"] else 0)) for rows, _, n, ln in layers)
    # weights read (biases and norms left out): dynamics, reward, energy, two Q heads on [z, a], the
    # policy (and termination) on z; first layers over L + A columns (the task's part is in the biases)
    weights = 5 * (L + A) * M1 + L * M1 + 6 * M1 * M1 + M1 * (L + NB + 1 + 2 * A + 2 * NB)
    if c["EPISODIC"]:
        weights += L * M1 + M1 * M1 + M1
    io = R * H * A * 4 * 2 + (E * P * H * A + R * A) * size["eps_val_ptr"] + R * 4  # candidates, noise, values
    return Cost(flops, float(weights * size["d_w1"] + io + scratch))


def plan_cost(launches) -> Cost:
    total = Cost(0.0, 0.0)
    for launch in launches:
        total = total + launch_cost(launch)
    return total
