"""Network building blocks: Linear -> LayerNorm -> Mish layers, SimNorm heads, a vectorised ensemble."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .functional import simnorm


class SimNorm(nn.Module):
    """Softmax over groups of `group` features (docs/algorithm.md section 1)."""

    def __init__(self, group: int):
        super().__init__()
        self.group = group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return simnorm(x, self.group)

    def extra_repr(self) -> str:
        return f"group={self.group}"


class NormedLinear(nn.Linear):
    """Linear -> (Dropout) -> LayerNorm -> activation (Mish unless given)."""

    def __init__(self, in_dim: int, out_dim: int, dropout: float = 0.0, act: nn.Module | None = None):
        super().__init__(in_dim, out_dim)
        self.ln = nn.LayerNorm(out_dim)
        self.act = act if act is not None else nn.Mish()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = super().forward(x)
        if self.dropout is not None:
            x = self.dropout(x)
        return self.act(self.ln(x))


def mlp(in_dim: int, hidden: list[int], out_dim: int, out_act: nn.Module | None = None,
        dropout: float = 0.0) -> nn.Sequential:
    """Hidden NormedLinear layers (dropout after the first linear only), then a plain Linear
    output, or NormedLinear with `out_act` (e.g. SimNorm) when given."""
    dims = [in_dim, *hidden]
    layers: list[nn.Module] = [
        NormedLinear(dims[i], dims[i + 1], dropout=dropout if i == 0 else 0.0) for i in range(len(hidden))
    ]
    layers.append(NormedLinear(dims[-1], out_dim, act=out_act) if out_act is not None else nn.Linear(dims[-1], out_dim))
    return nn.Sequential(*layers)


class EnsembleMLP(nn.Module):
    """`num` independent MLPs of identical shape evaluated as batched matmuls.

    Hidden layers are Linear -> (Dropout on the first) -> LayerNorm -> Mish; the output layer is
    plain Linear. Weights are [num, in, out]. `forward(x, heads)` evaluates only the heads in
    `heads` (an index tensor), gathering their weights, so the planner's 2-of-5 value estimate
    costs 2 heads, not 5.
    """

    def __init__(self, num: int, in_dim: int, hidden: list[int], out_dim: int, dropout: float = 0.0):
        super().__init__()
        self.num = num
        self.dropout = dropout
        dims = [in_dim, *hidden, out_dim]
        self.weights = nn.ParameterList([nn.Parameter(torch.empty(num, dims[i], dims[i + 1])) for i in range(len(dims) - 1)])
        self.biases = nn.ParameterList([nn.Parameter(torch.zeros(num, dims[i + 1])) for i in range(len(dims) - 1)])
        self.ln_weights = nn.ParameterList([nn.Parameter(torch.ones(num, d)) for d in hidden])
        self.ln_biases = nn.ParameterList([nn.Parameter(torch.zeros(num, d)) for d in hidden])
        for w in self.weights:
            nn.init.trunc_normal_(w, std=0.02)

    def forward(self, x: torch.Tensor, heads: torch.Tensor | None = None, detach: bool = False) -> torch.Tensor:
        """x [..., in] -> [H, ..., out] with H = num heads (or len(heads)).

        detach=True uses detached parameters (gradients flow to x only).
        """
        lead = x.shape[:-1]
        params = [list(p) for p in (self.weights, self.biases, self.ln_weights, self.ln_biases)]
        if detach:
            params = [[t.detach() for t in group] for group in params]
        if heads is not None:
            params = [[t.index_select(0, heads) for t in group] for group in params]
        ws, bs, gs, betas = params
        n = ws[0].shape[0]
        h = x.reshape(1, -1, x.shape[-1]).expand(n, -1, -1)
        for i, (w, b) in enumerate(zip(ws, bs)):
            h = torch.baddbmm(b.unsqueeze(1), h, w)
            if i < len(gs):
                if i == 0 and self.dropout > 0:
                    h = F.dropout(h, self.dropout, self.training)
                h = F.layer_norm(h, h.shape[-1:]) * gs[i].unsqueeze(1) + betas[i].unsqueeze(1)
                h = F.mish(h)
        return h.reshape(n, *lead, h.shape[-1])
