"""Santurkar 2018's deep linear network: k square linear layers, no bias, Glorot init."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from normlab.models.layers import numbered_layers
from normlab.norms import make_norm


class LinearLayer(nn.Module):
    """W u followed by the norm (identity for `norm=none`); no nonlinearity."""

    def __init__(self, width: int, norm: Mapping[str, Any] | None) -> None:
        super().__init__()
        self.linear = nn.Linear(width, width, bias=False)
        self.norm = make_norm(norm, width, dims=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.linear(x))


class DLN(nn.Module):
    """f(x) = W_k ... W_1 x with a norm after every layer but the last ("BN sits between the
    linear layers"). Weight layers are `layer1..layer{k}`; the probed activation of layer i < k is
    its norm's output. Glorot (Xavier) normal initialisation."""

    def __init__(
        self, depth: int = 25, width: int = 10, norm: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__()
        if depth < 2:
            raise ValueError(f"model.depth must be >= 2, got {depth}")
        self.layers = nn.ModuleDict(
            {f"layer{i}": LinearLayer(width, norm) for i in range(1, depth)}
        )
        self.layers[f"layer{depth}"] = nn.Linear(width, width, bias=False)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_normal_(module.weight)

    @property
    def hidden_layers(self) -> dict[int, LinearLayer]:
        """Layers followed by a norm, by their 1-based weight-layer number."""
        return numbered_layers(self.layers, LinearLayer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers.values():
            x = layer(x)
        return x
