"""A FLOP and byte model of the planner's Triton launches (recorded by kernels/recording.py), per
launch and summed per plan call. FLOPs: the matrix products (2 x M x K x N; epilogues are a few
operations per output and left out). Bytes: what a launch must move at least: its weights once
(later programs find them in L2), its inputs and its outputs once, and a wide row's pre-norm values
written and read back once more (fused_linear's two passes). A model, not a measurement: a time
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
    if launch.kernel == "_elite_score_kernel":
        E = launch.grid[0]
        N, D = c["N"], c["D"]
        # per env: values, the candidates twice (weights, then none: the weighted sum), x in and out,
        # the next candidates written (and their noise read when given)
        per_env = N * 4 + N * D * 4 + 3 * D * 4 + (N * D * 4 * (2 if c["EPS_GIVEN"] else 1) if c["HAS_NEXT"] else 0)
        return Cost(float(E * (4 * N * D + 20 * N)), float(E * per_env))
    raise KeyError(f"no cost model for {launch.kernel}")


def plan_cost(launches) -> Cost:
    total = Cost(0.0, 0.0)
    for launch in launches:
        total = total + launch_cost(launch)
    return total
