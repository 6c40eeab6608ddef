"""What the papers' models share: weight layers named `layer1..layerK`, numbered as the papers do."""

from __future__ import annotations

from torch import nn


def numbered_layers(layers: nn.ModuleDict, kind: type[nn.Module]) -> dict[int, nn.Module]:
    """The layers of class `kind` in `layers` (named `layer{i}`), by their 1-based number."""
    return {
        int(name.removeprefix("layer")): layer
        for name, layer in layers.items()
        if isinstance(layer, kind)
    }
