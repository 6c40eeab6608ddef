"""What the papers' models share: weight layers named `layer1..layerK`, numbered as the papers do."""

from __future__ import annotations

import re

from torch import nn

_LAYER = re.compile(r"(?:^|\.)layer(\d+)(?:\.|$)")


def numbered_layers(layers: nn.ModuleDict, kind: type[nn.Module]) -> dict[int, nn.Module]:
    """The layers of class `kind` in `layers` (named `layer{i}`), by their 1-based number."""
    return {
        int(name.removeprefix("layer")): layer
        for name, layer in layers.items()
        if isinstance(layer, kind)
    }


def layer_number(name: str) -> int | None:
    """The weight-layer number in a parameter name (`layers.layer9.norm.weight` -> 9), or None."""
    match = _LAYER.search(name)
    return int(match.group(1)) if match else None


def parameters_by_layer(model: nn.Module) -> dict[int, list[str]]:
    """Parameter names by weight-layer number, in layer order. A layer's parameters include its
    norm's (gamma, beta): they sit between its weights and the next layer's."""
    by_layer: dict[int, list[str]] = {}
    for name, _ in model.named_parameters():
        number = layer_number(name)
        if number is not None:
            by_layer.setdefault(number, []).append(name)
    return dict(sorted(by_layer.items()))
