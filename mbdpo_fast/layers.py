"""Network building blocks: Linear -> LayerNorm -> Mish layers, SimNorm heads, a vectorised ensemble."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .functional import mish_exp, simnorm


class SimNorm(nn.Module):
    """Softmax over groups of `group` features (docs/algorithm.md section 1)."""

    def __init__(self, group: int):
        super().__init__()
        self.group = group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return simnorm(x, self.group)

    def extra_repr(self) -> str:
        return f"group={self.group}"


class MishExp(nn.Module):
    """Mish from one exponential (functional.mish_exp), what compiled graphs use: Inductor turns
    torch's Mish into tanh and log1p, which cost about 5x more per element on a CPU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return mish_exp(x)


def use_mish_exp(module: nn.Module) -> None:
    """Switch every Mish in `module` (NormedLinear activations, EnsembleMLP hidden layers) to
    MishExp. Parameters and state dict are unchanged (the activations have none)."""
    for m in module.modules():
        if isinstance(m, NormedLinear) and isinstance(m.act, nn.Mish):
            m.act = MishExp()
        elif isinstance(m, EnsembleMLP):
            m.mish = mish_exp


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
        self.mish = F.mish  # the hidden layers' activation (use_mish_exp switches it)
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
                h = self.mish(h)
        return h.reshape(n, *lead, h.shape[-1])


class RandomShift(nn.Module):
    """Random-shift augmentation of images [B, C, H, W] (square): pad each side by `pad` pixels
    repeating the border, then resample the original size at an integer offset drawn uniformly
    from [0, 2 pad] in each axis, per image (grid_sample at pixel centres, so the result is an
    exact crop of the padded image). Applied in training and acting alike. `generator` makes the
    draw reproducible."""

    def __init__(self, pad: int = 3):
        super().__init__()
        self.pad = int(pad)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.pad == 0:
            return x
        n, _, h, w = x.shape
        if h != w:
            raise ValueError(f"RandomShift needs square images, got {h}x{w}")
        size = h + 2 * self.pad
        x = F.pad(x, (self.pad,) * 4, mode="replicate")
        # normalised coordinates of the first h pixel centres of the padded image (align_corners=False)
        eps = 1.0 / size
        base = torch.linspace(-1.0 + eps, 1.0 - eps, size, device=x.device, dtype=x.dtype)[:h]
        grid = torch.stack(torch.meshgrid(base, base, indexing="xy"), dim=-1)  # [h, w, (x, y)]
        # drawn on the images' device (a CUDA graph can capture it) unless a generator says where
        where = generator.device if generator is not None else x.device
        shift = torch.randint(0, 2 * self.pad + 1, (n, 1, 1, 2), device=where, generator=generator)
        grid = grid.unsqueeze(0) + shift.to(x.device, x.dtype) * (2.0 / size)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    def extra_repr(self) -> str:
        return f"pad={self.pad}"


class PixelEncoder(nn.Module):
    """TD-MPC2's image encoder: uint8 frames [B, C, 64, 64] (a stack of RGB frames, C = 3 x
    frames) -> random shift -> x / 255 - 0.5 -> Conv 7/2, 5/2, 3/2, 3/1 (ReLU between) ->
    flatten [B, channels x 4 x 4] -> `out_act` (SimNorm). channels = 32 gives 512 features."""

    def __init__(self, in_channels: int, channels: int = 32, pad: int = 3, out_act: nn.Module | None = None,
                 size: int = 64):
        super().__init__()
        self.shift = RandomShift(pad)
        self.convs = nn.Sequential(
            nn.Conv2d(in_channels, channels, 7, stride=2), nn.ReLU(),
            nn.Conv2d(channels, channels, 5, stride=2), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, stride=2), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, stride=1))
        self.out_act = out_act if out_act is not None else nn.Identity()
        self.in_shape = (in_channels, size, size)
        self.out_dim = channels * self.conv_side(size) ** 2

    @staticmethod
    def conv_side(size: int) -> int:
        """The side of the last feature map for `size` x `size` inputs (64 -> 29 -> 13 -> 6 -> 4)."""
        for k, s in ((7, 2), (5, 2), (3, 2), (3, 1)):
            size = (size - k) // s + 1
        return size

    def forward(self, obs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """obs [..., C, H, W] uint8 (or float in 0..255) -> [..., out_dim]."""
        lead = obs.shape[:-3]
        if tuple(obs.shape[-3:]) != self.in_shape:
            raise ValueError(f"pixel observations of shape {tuple(obs.shape[-3:])}, the encoder takes {self.in_shape}")
        x = obs.reshape(-1, *self.in_shape).float()
        x = self.shift(x, generator) / 255.0 - 0.5
        return self.out_act(self.convs(x).flatten(1)).reshape(*lead, self.out_dim)
