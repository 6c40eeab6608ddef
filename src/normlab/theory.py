"""The quantities of Santurkar 2018's Sec. 4 (Thm 4.1, Thm 4.2, Obs. 4.3, Lemma 4.5, Fact C.2),
computed on a BN layer's own tensors.

Notation (docs/theory.md, "Setting"): a BN layer takes pre-activations y and returns
z = gamma * y_hat + beta, with y_hat the batch-normalised y. A *unit* j is a column of an (N, C)
activation or a channel of an (N, C, H, W) one; its m samples are its values over the batch (and
the spatial positions). Everything here works on the `(C, m)` layout of `units(t)`:

- `y`: the layer's input, per unit; `g = dL/dz`: the gradient of the loss with respect to the
  layer's output (Thm 4.1's grad_y L: the standard net's gradient at the same activations);
- `sigma_j = sqrt(var_j + eps)`, with the biased batch variance (Ioffe 2015, Alg. 1), the value
  the layer divides by; `eps = 0` is the paper's setting;
- `v = dL_hat/dy`: the BN net's gradient with respect to the layer's input, `gamma J g`, where J
  is the Jacobian of y_hat (Fact C.2).

With eps = 0, Thm 4.1 (with 1/m on its last term) and Thm 4.2 hold as identities, and Lemma 4.5 as
an identity too; `docs/theory.md` gives the derivations and what the tests found.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.func import grad, jvp, vmap

LAST_TERMS = ("1/m", "1/sqrt(m)")


def units(t: Tensor) -> Tensor:
    """(N, C) or (N, C, *spatial) -> (C, m): each row one unit's m samples (m = N * prod(spatial))."""
    return t.transpose(0, 1).reshape(t.shape[1], -1)


def from_units(u: Tensor, shape: torch.Size) -> Tensor:
    """The inverse of `units` for a tensor of `shape` (N, C, *spatial)."""
    swapped = (shape[1], shape[0], *shape[2:])
    return u.reshape(swapped).transpose(0, 1)


def batch_std(y: Tensor, eps: float = 0.0) -> Tensor:
    """sigma_j = sqrt(biased batch variance + eps) of each unit of `y` (C, m): shape (C,)."""
    return (y.var(dim=1, unbiased=False) + eps).sqrt()


def normalise(y: Tensor, eps: float = 0.0) -> Tensor:
    """y_hat = (y - mu) / sigma per unit, as BN computes it in training (Ioffe 2015, Alg. 1)."""
    return (y - y.mean(dim=1, keepdim=True)) / batch_std(y, eps)[:, None]


def normalise_jacobian(y: Tensor, eps: float = 0.0) -> Tensor:
    """Fact C.2: d y_hat^(b) / d y^(k) = (1/sigma) (1[b=k] - 1/m - (1/m) y_hat^(b) y_hat^(k)), per
    unit: shape (C, m, m). It holds for every eps once sigma and y_hat include it."""
    m = y.shape[1]
    y_hat = normalise(y, eps)
    eye = torch.eye(m, dtype=y.dtype, device=y.device)
    inner = eye - 1.0 / m - y_hat[:, :, None] * y_hat[:, None, :] / m
    return inner / batch_std(y, eps)[:, None, None]


def input_gradient(y: Tensor, g: Tensor, gamma: Tensor, eps: float = 0.0) -> Tensor:
    """dL_hat/dy = gamma J^T g per unit (C, m), from the upstream gradient g = dL/dz (C, m).
    J is symmetric, so J^T g = (1/sigma) (g - mean(g) - y_hat <g, y_hat> / m)."""
    m = y.shape[1]
    y_hat = normalise(y, eps)
    align = (g * y_hat).sum(dim=1, keepdim=True)
    projected = g - g.mean(dim=1, keepdim=True) - y_hat * align / m
    return (gamma / batch_std(y, eps))[:, None] * projected


@dataclass(frozen=True)
class GradientTerms:
    """Thm 4.1's pieces, one value per unit j (shape (C,)), for a batch of m samples:
    `grad_sq` = ||g_j||^2, `total` = <1, g_j>, `align` = <g_j, y_hat_j>, `gain` = gamma_j^2/sigma_j^2."""

    m: int
    grad_sq: Tensor
    total: Tensor
    align: Tensor
    gain: Tensor

    @property
    def mean_term(self) -> Tensor:
        """(1/m) <1, g>^2: the part of ||g||^2 along the constant direction, which the centring
        removes."""
        return self.total**2 / self.m

    @property
    def proj_term(self) -> Tensor:
        """(1/m) <g, y_hat>^2: the part of ||g||^2 along y_hat (||y_hat|| = sqrt(m) at eps = 0),
        which the division by sigma removes."""
        return self.align**2 / self.m

    def bound(self, last_term: str = "1/m") -> Tensor:
        """Thm 4.1's right-hand side, gamma^2/sigma^2 (||g||^2 - (1/m)<1,g>^2 - c <g,y_hat>^2),
        with c = 1/m (the derivation's) or 1/sqrt(m) (as v3 prints it)."""
        if last_term not in LAST_TERMS:
            raise ValueError(f"last_term={last_term!r}; valid choices: {list(LAST_TERMS)}")
        c = 1.0 / self.m if last_term == "1/m" else 1.0 / math.sqrt(self.m)
        return self.gain * (self.grad_sq - self.mean_term - c * self.align**2)

    def removed_frac(self) -> Tensor:
        """The fraction of the upstream gradient's squared norm that BN's two projections remove,
        (mean_term + proj_term) / ||g||^2, per unit (NaN where g_j = 0)."""
        return (self.mean_term + self.proj_term) / self.grad_sq


def gradient_terms(y: Tensor, g: Tensor, gamma: Tensor, eps: float = 0.0) -> GradientTerms:
    """Thm 4.1's terms for a BN layer with input `y` and upstream gradient `g` (both (C, m)) and
    scale `gamma` (C,)."""
    return GradientTerms(
        m=y.shape[1],
        grad_sq=(g**2).sum(dim=1),
        total=g.sum(dim=1),
        align=(g * normalise(y, eps)).sum(dim=1),
        gain=gamma**2 / batch_std(y, eps) ** 2,
    )


def thm42_rhs(
    y: Tensor, g: Tensor, v: Tensor, hv: Tensor, gamma: Tensor, eps: float = 0.0
) -> tuple[Tensor, Tensor]:
    """Thm 4.2's right-hand side, per unit, as its two terms (each (C,)):
    `scaled` = gamma^2/sigma^2 <v, H v> and `shift` = gamma/(m sigma^2) <g, y_hat> ||v||^2, so that
    v^T (d2 L_hat / dy dy) v = scaled - shift (an identity at eps = 0). `v` = dL_hat/dy and
    `hv` = H v, with H = d2 L / dz_j dz_j the loss's Hessian in the layer's output, unit by unit."""
    m = y.shape[1]
    sigma2 = batch_std(y, eps) ** 2
    align = (g * normalise(y, eps)).sum(dim=1)
    scaled = gamma**2 / sigma2 * (v * hv).sum(dim=1)
    shift = gamma / (m * sigma2) * align * (v**2).sum(dim=1)
    return scaled, shift


def unit_hvps(
    f: Callable[[Tensor], Tensor],
    at: Tensor,
    v: Tensor,
    chunk_size: int | None = None,
    first: int | None = None,
) -> Tensor:
    """(d2 f / dx_j dx_j) v_j for each unit j, stacked as rows (C, m): the Hessian's diagonal unit
    block times that unit's row of `v` (C, m) (Thm 4.2 is about one unit's block). `f` takes an
    input shaped like `at`; forward-over-reverse, batched over the units (`chunk_size` at a time,
    all at once by default). `first`: only the first units, (first, m)."""
    count = v.shape[0] if first is None else min(first, v.shape[0])
    directions = torch.diag_embed(v.T).permute(1, 2, 0)[:count]  # [j] = v masked to row j

    def hvp(direction: Tensor) -> Tensor:
        return jvp(grad(f), (at,), (direction,))[1]

    rows = torch.arange(count, device=v.device)
    return vmap(hvp, chunk_size=chunk_size)(directions)[rows, rows]


def unit_curvatures(
    f: Callable[[Tensor], Tensor],
    at: Tensor,
    v: Tensor,
    chunk_size: int | None = None,
    first: int | None = None,
) -> Tensor:
    """v_j^T (d2 f / dx_j dx_j) v_j per unit (C,): d^2/dt^2 f(at + t v_j) with only unit j moved
    (`first`: only the first units)."""
    hv = unit_hvps(f, at, v, chunk_size, first)
    return (v[: len(hv)] * hv).sum(dim=1)


def rescaled_optimum(w0: Tensor, w_star: Tensor) -> tuple[Tensor, Tensor]:
    """Lemma 4.5: (k, W_hat*) with k = <W*, W_0>/||W*||^2 and W_hat* = k W*, the point of the ray
    through W* closest to W_0. A BN layer's output does not change when its input's weights are
    scaled by k > 0, so W_hat* is a minimum of the BN net wherever W* is one of the standard net."""
    k = torch.dot(w_star.flatten(), w0.flatten()) / w_star.pow(2).sum()
    return k, k * w_star


def lemma45_bound(w0: Tensor, w_star: Tensor) -> Tensor:
    """Lemma 4.5's right-hand side, ||W_0 - W*||^2 - (||W*||^2 - <W*, W_0>)^2 / ||W*||^2 (the
    left-hand side, ||W_0 - W_hat*||^2, equals it: the lemma is Pythagoras on the ray)."""
    norm2 = w_star.pow(2).sum()
    dot = torch.dot(w_star.flatten(), w0.flatten())
    return (w0 - w_star).pow(2).sum() - (norm2 - dot) ** 2 / norm2
