"""Normalisation layers behind one factory, so that every model takes `norm=` the same way.

`make_norm(cfg, num_features, dims)` turns a `norm/` config (its `name` plus that norm's own
options) into a module for activations of shape (N, C) (`dims=1`) or (N, C, H, W) (`dims=2`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

NORMS: dict[str, Callable[..., nn.Module]] = {}


def register_norm(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register a builder `(num_features, dims, **options) -> nn.Module` under `name`."""

    def wrap(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        NORMS[name] = builder
        return builder

    return wrap


@register_norm("none")
def _identity(num_features: int, dims: int) -> nn.Module:
    return nn.Identity()


@register_norm("batch")
def _batch_norm(
    num_features: int, dims: int, eps: float = 1e-5, momentum: float = 0.1
) -> nn.Module:
    # torch's BatchNorm is Ioffe 2015's Alg. 1 in training (biased batch variance) and Alg. 2 in
    # eval (running mean and *unbiased* running variance, tracked as a moving average).
    cls = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d}[dims]
    return cls(num_features, eps=eps, momentum=momentum)


def make_norm(cfg: Mapping[str, Any] | None, num_features: int, dims: int = 1) -> nn.Module:
    """Build the norm named by `cfg["name"]` for `num_features` features; other keys are options."""
    options = dict(cfg or {"name": "none"})
    name = options.pop("name", "none")
    if name not in NORMS:
        raise ValueError(f"unknown norm {name!r}; valid choices: {sorted(NORMS)}")
    if dims not in (1, 2):
        raise ValueError(f"dims must be 1 (N, C) or 2 (N, C, H, W), got {dims}")
    return NORMS[name](num_features, dims, **options)


def uses_batch_statistics(cfg: Mapping[str, Any] | None) -> bool:
    """Whether the norm normalises over the batch (and so replaces the preceding layer's bias)."""
    return bool(cfg) and cfg.get("name", "none") != "none"
