"""Santurkar 2018's l_p normalisation (Sec. 3.3), written out.

For unit j over a batch of m values (conv: batch and spatial positions):

    y_hat_ij = (y_ij - mean_i y_ij) / (s_j + eps),
    s_j = ((1/m) sum_i |y_ij|^p)^(1/p) for p = 1, 2,   s_j = max_i |y_ij| for p = inf,

with s_j taken on y *before* centring, then a per-channel gamma/beta (init 1/0) as in BN. The output
has zero batch mean but, in general, not unit l_p norm.

Eval mode (the paper is silent): like BN's Alg. 2, the layer keeps moving averages of the batch mean
and of s_j (rate `momentum`; `momentum=None` is a cumulative average, as in torch's BN) and uses them
in eval, so that inference is per example. Training always uses the batch statistics. Under DDP the
statistics are per rank (as torch's non-synchronised BN).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from normlab.errors import NormlabError

VALID_P = "[1, 2, inf]"
_INPUT_DIMS = {1: (2, 3), 2: (4,)}  # as torch's BatchNorm1d / BatchNorm2d
_SHAPES = {1: "(N, C) or (N, C, L)", 2: "(N, C, H, W)"}


def parse_p(p: Any) -> float:
    """`p` as 1.0, 2.0 or inf; accepts 1, 2, 1.0, 2.0, float('inf') and the strings "1", "2", "inf"
    (`norm.p=inf` on the command line arrives as a float, `p: inf` in YAML as a string)."""
    value: float | None = None
    if isinstance(p, str):
        try:
            value = float(p.strip())
        except ValueError:
            value = None
    elif isinstance(p, int | float) and not isinstance(p, bool):
        value = float(p)
    if value is None or value not in (1.0, 2.0, math.inf):
        raise NormlabError(f"norm.p must be one of {VALID_P}, got {p!r}")
    return value


def lp_statistics(y: torch.Tensor, p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel batch mean and s_j of `y` (N, C, ...) over every axis but 1 (Sec. 3.3)."""
    axes = [0, *range(2, y.dim())]
    mean = y.mean(dim=axes)
    if p == math.inf:
        scale = y.abs().amax(dim=axes)
    elif p == 1.0:
        scale = y.abs().mean(dim=axes)
    else:  # p == 2
        scale = y.square().mean(dim=axes).sqrt()
    return mean, scale


class LpNorm(nn.Module):
    """l_p normalisation (Santurkar 2018, Sec. 3.3) for (N, C) (`dims=1`) or (N, C, H, W)
    (`dims=2`): centre over the batch, divide by the batch l_p average s_j (+ eps) taken before
    centring, then gamma/beta. Eval uses running averages of the mean and of s_j (see module doc)."""

    def __init__(
        self,
        num_features: int,
        dims: int = 1,
        p: Any = 2,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
    ) -> None:
        super().__init__()
        if dims not in (1, 2):
            raise ValueError(f"dims must be 1 (N, C) or 2 (N, C, H, W), got {dims}")
        self.num_features, self.dims = num_features, dims
        self.p, self.eps, self.momentum = parse_p(p), float(eps), momentum
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_scale", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        if y.dim() not in _INPUT_DIMS[self.dims]:
            raise ValueError(
                f"LpNorm(dims={self.dims}) expects a {_SHAPES[self.dims]} input, got {tuple(y.shape)}"
            )
        if self.training:
            mean, scale = lp_statistics(y, self.p)
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                if self.momentum is None:  # cumulative average, as torch's BN
                    rate = 1.0 / float(self.num_batches_tracked)
                else:
                    rate = float(self.momentum)
                # (mul_/add_, not lerp_: torch.func.vmap, used by the landscape probe, has no
                # batching rule for lerp_ and would fall back to a slow loop.)
                self.running_mean.mul_(1 - rate).add_(mean.detach(), alpha=rate)
                self.running_scale.mul_(1 - rate).add_(scale.detach(), alpha=rate)
        else:
            mean, scale = self.running_mean, self.running_scale
        # gamma * (y - mean) / (s + eps) + beta, folded into one per-channel multiply-add over the
        # activation (a = gamma / (s + eps), c = beta - mean * a): the same function with two
        # fewer passes over the activation, which is what an l_p layer's time goes to.
        view = (1, -1) + (1,) * (y.dim() - 2)
        a = self.weight / (scale + self.eps)
        c = self.bias - mean * a
        return torch.addcmul(c.view(view), y, a.view(view))

    def extra_repr(self) -> str:
        p = "inf" if self.p == math.inf else f"{self.p:g}"
        return f"{self.num_features}, dims={self.dims}, p={p}, eps={self.eps}, momentum={self.momentum}"
