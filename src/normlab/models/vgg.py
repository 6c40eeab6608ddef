"""The VGG family for 32x32 inputs (CIFAR-10), Santurkar 2018's "VGG-like" net (App. A.1).

Each conv layer is conv 3x3 (padding 1) -> norm -> ReLU, followed by a 2x2 max-pool where the plan
says `M`; the classifier is one linear layer from the last conv layer's channels to the classes
(after five pools a 32x32 input is 1x1, so it sees C x 1 x 1 features). Weight layers are numbered
1-based, conv layers first and then the classifier: `layer1..layer{k}` are the k conv layers and
`layer{k+1}` the linear one (VGG-16: `layer1..layer13` conv, `layer14` linear).

Channel plans (Simonyan & Zisserman's configurations A, B, D, E; `M` = max-pool):

    11: 64 M 128 M 256 256 M 512 512 M 512 512 M
    13: 64 64 M 128 128 M 256 256 M 512 512 M 512 512 M
    16: 64 64 M 128 128 M 256 256 256 M 512 512 512 M 512 512 512 M
    19: 64 64 M 128 128 M 256 256 256 256 M 512 512 512 512 M 512 512 512 512 M

with every channel count scaled by `width` (rounded, at least 1).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from normlab.errors import NormlabError
from normlab.models.layers import numbered_layers
from normlab.norms import make_norm, uses_batch_statistics

POOL = "M"
PLANS: dict[int, tuple[int | str, ...]] = {
    11: (64, POOL, 128, POOL, 256, 256, POOL, 512, 512, POOL, 512, 512, POOL),
    13: (64, 64, POOL, 128, 128, POOL, 256, 256, POOL, 512, 512, POOL, 512, 512, POOL),
    16: (
        *(64, 64, POOL, 128, 128, POOL),
        *(256, 256, 256, POOL, 512, 512, 512, POOL, 512, 512, 512, POOL),
    ),
    19: (
        *(64, 64, POOL, 128, 128, POOL, 256, 256, 256, 256, POOL),
        *(512, 512, 512, 512, POOL, 512, 512, 512, 512, POOL),
    ),
}


class VGGConfigError(NormlabError, ValueError):
    """A bad `model.*` value of the VGG (a ValueError; the CLI prints it as one line)."""


def scaled_channels(channels: int, width: float) -> int:
    """`channels` times the width multiplier, rounded, at least 1."""
    return max(1, round(channels * width))


class ConvLayer(nn.Module):
    """conv 3x3 (padding 1) -> norm -> ReLU [-> max-pool 2x2]. The conv's bias is dropped where
    the norm centres over the batch (its beta replaces it). The pool, which has no parameters,
    lives here so that every module with parameters sits inside a numbered layer."""

    def __init__(
        self, in_channels: int, out_channels: int, norm: Mapping[str, Any] | None, pool: bool
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, 3, padding=1, bias=not uses_batch_statistics(norm)
        )
        self.norm = make_norm(norm, out_channels, dims=2)
        # Not in place: the probes capture the norm's output through a forward hook (a view that
        # an in-place ReLU would overwrite; with norm=none the norm's output is the conv's own).
        self.act = nn.ReLU()
        self.pool = nn.MaxPool2d(2) if pool else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.act(self.norm(self.conv(x))))


class VGG(nn.Module):
    """VGG-`depth` (11, 13, 16 or 19) for 3x32x32 inputs with channels scaled by `width`, a norm
    after every conv layer (`make_norm(norm, C, dims=2)`), and one linear classifier to
    `num_classes` outputs (the attribute `out_features`). Glorot (Xavier) normal initialisation
    of every conv and linear weight, zero biases.

    Layers: `layers["layer{i}"]`, 1-based over weight layers, conv layers `1..depth-3` then the
    linear classifier `layer{depth-2}`; `hidden_layers` maps each conv layer's number to its
    `ConvLayer`, whose `.norm` output (the ReLU's input) is the probed activation.

    `channels_last=True` stores the conv kernels in channels_last memory format and converts the
    input to it in `forward` (the faster layout for convolutions on GPUs, above all under bf16);
    the function computed is the same.
    """

    def __init__(
        self,
        depth: int = 16,
        width: float = 1.0,
        num_classes: int = 10,
        norm: Mapping[str, Any] | None = None,
        in_channels: int = 3,
        channels_last: bool = False,
        out_features: int | None = None,
    ) -> None:
        super().__init__()
        # `out_features` is the config's mirror of `num_classes` (conf/model/vgg.yaml sets it to
        # `${.num_classes}`), the key module=classifier reads; given, it must agree.
        if out_features is not None and int(out_features) != int(num_classes):
            raise VGGConfigError(
                f"model.out_features={out_features} disagrees with model.num_classes={num_classes}; "
                "set model.num_classes only"
            )
        if depth not in PLANS:
            raise VGGConfigError(f"model.depth must be one of {sorted(PLANS)}, got {depth!r}")
        if not float(width) > 0:  # also rejects NaN
            raise VGGConfigError(f"model.width must be > 0, got {width!r}")
        if int(num_classes) < 1:
            raise VGGConfigError(f"model.num_classes must be >= 1, got {num_classes!r}")
        self.depth, self.width = depth, float(width)
        self.out_features = int(num_classes)
        self.channels_last = bool(channels_last)
        plan = PLANS[depth]
        self.layers = nn.ModuleDict()
        channels = in_channels
        for pos, entry in enumerate(plan):
            if entry == POOL:
                continue
            out = scaled_channels(int(entry), self.width)
            pool = pos + 1 < len(plan) and plan[pos + 1] == POOL
            self.layers[f"layer{len(self.layers) + 1}"] = ConvLayer(channels, out, norm, pool)
            channels = out
        self.layers[f"layer{len(self.layers) + 1}"] = nn.Linear(channels, self.out_features)
        self.reset_parameters()
        if self.channels_last:
            self.to(memory_format=torch.channels_last)

    def reset_parameters(self) -> None:
        """Glorot normal weights (std sqrt(2 / (fan_in + fan_out)), with a conv's fans counting
        the 3x3 kernel's positions), zero biases; the norms keep their own init (gamma 1, beta 0)."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                nn.init.xavier_normal_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    @property
    def hidden_layers(self) -> dict[int, ConvLayer]:
        """The conv layers by their 1-based weight-layer number (each has a `.norm`)."""
        return numbered_layers(self.layers, ConvLayer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        layers = list(self.layers.values())
        for layer in layers[:-1]:
            x = layer(x)
        if x.shape[-2:] != (1, 1):  # shapes only: no host sync
            raise ValueError(
                f"VGG expects 32x32 inputs: after the five pools they are 1x1, these are "
                f"{x.shape[-2]}x{x.shape[-1]}"
            )
        # After the five pools a 32x32 input is C x 1 x 1: the classifier sees C features.
        return layers[-1](x.flatten(1))
