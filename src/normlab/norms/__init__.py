"""Normalisation layers behind one factory, so that every model takes `norm=` the same way.

`make_norm(cfg, num_features, dims)` turns a `norm/` config (its `name` plus that norm's own
options) into a module for activations of shape (N, C) (`dims=1`) or (N, C, H, W) (`dims=2`).

Norms: `none`, `batch` (Ioffe 2015), `noisy_batch` (Santurkar 2018, App. A.2.1, Alg. 1; see
`normlab.norms.noisy`) and `lp` (Santurkar 2018, Sec. 3.3; see `normlab.norms.lp`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from normlab.norms.lp import LpNorm, parse_p
from normlab.norms.noisy import NoisyBatchNorm, frozen_noise, noisy_modules, seed_noise

__all__ = [
    "NORMS",
    "LpNorm",
    "NoisyBatchNorm",
    "frozen_noise",
    "make_norm",
    "noisy_modules",
    "parse_p",
    "register_norm",
    "seed_noise",
    "uses_batch_statistics",
]

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


@register_norm("noisy_batch")
def _noisy_batch_norm(
    num_features: int,
    dims: int,
    eps: float = 1e-5,
    momentum: float = 0.1,
    n_mu: float = 0.5,
    n_sigma: float = 1.25,
    r_mu: float = 0.1,
    r_sigma: float = 0.1,
    seed: int = 0,
) -> nn.Module:
    # Santurkar 2018, App. A.2.1, Alg. 1: BN (affine=False), then the time-varying noise in
    # training only, then gamma/beta. The noise has its own generator, seeded from `seed`.
    return NoisyBatchNorm(
        num_features, dims, eps, momentum, n_mu, n_sigma, r_mu, r_sigma, seed=seed
    )


@register_norm("lp")
def _lp_norm(
    num_features: int, dims: int, p: Any = 2, eps: float = 1e-5, momentum: float | None = 0.1
) -> nn.Module:
    # Santurkar 2018, Sec. 3.3 (written out in norms/lp.py); p in {1, 2, inf}.
    return LpNorm(num_features, dims, p=p, eps=eps, momentum=momentum)


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
    """Whether the norm normalises over the batch (and so replaces the preceding layer's bias):
    every norm but `none` (`batch`, `noisy_batch` and `lp` all centre over the batch)."""
    return bool(cfg) and cfg.get("name", "none") != "none"
