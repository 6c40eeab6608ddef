"""The fully connected net of Ioffe 2015, Sec. 4.1: 784-100-100-100-10 with sigmoid hidden units."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from normlab.models.layers import numbered_layers
from normlab.norms import make_norm, uses_batch_statistics

ACTIVATIONS = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU, "tanh": nn.Tanh}


class HiddenLayer(nn.Module):
    """z = g(norm(W u + b)): the norm sits between the affine map and the nonlinearity (Ioffe 2015,
    Sec. 3.2). The bias is dropped where the norm's beta replaces it."""

    def __init__(
        self, fan_in: int, fan_out: int, norm: Mapping[str, Any] | None, activation: str
    ) -> None:
        super().__init__()
        self.linear = nn.Linear(fan_in, fan_out, bias=not uses_batch_statistics(norm))
        self.norm = make_norm(norm, fan_out, dims=1)
        self.act = ACTIVATIONS[activation]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.linear(x)))


class MLP(nn.Module):
    """A multilayer perceptron whose weight layers are `layer1..layerK` (1-based, as the papers
    number them). The probed activation of hidden layer i is the output of `layer{i}.norm`, i.e.
    the nonlinearity's input after normalisation."""

    def __init__(
        self,
        in_features: int = 784,
        hidden: Sequence[int] = (100, 100, 100),
        out_features: int = 10,
        activation: str = "sigmoid",
        init_std: float = 0.1,
        norm: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"unknown activation {activation!r}; valid choices: {sorted(ACTIVATIONS)}"
            )
        widths = [in_features, *hidden]
        self.layers = nn.ModuleDict(
            {
                f"layer{i + 1}": HiddenLayer(fan_in, fan_out, norm, activation)
                for i, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:], strict=True))
            }
        )
        self.layers[f"layer{len(hidden) + 1}"] = nn.Linear(widths[-1], out_features)
        self.init_std = init_std
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Ioffe 2015: "weights initialized to small random Gaussian values"; the std is open.
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=self.init_std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    @property
    def hidden_layers(self) -> dict[int, HiddenLayer]:
        """Hidden layers by their 1-based weight-layer number."""
        return numbered_layers(self.layers, HiddenLayer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for layer in self.layers.values():
            x = layer(x)
        return x
