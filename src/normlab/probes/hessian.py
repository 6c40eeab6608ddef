"""The Hessian of the training loss without forming it: Hessian-vector products, Lanczos for the top
eigenvalues, Hutchinson for the trace. Used by the curvature probes (`normlab.probes.curvature`).

`hessian_operator` evaluates the model through `functional_call` over fresh leaf copies of the
parameters and *cloned* buffers (train-mode BN absorbs its running-statistics update there), and
differentiates with `torch.autograd.grad`, never `.backward()`: the live model, its `.grad` and
its buffers are untouched. The gradient's graph is built once per operator and every product is
one double-backward through it (`retain_graph`): on the DLN this makes one product about 2
plain training steps instead of 4-6 (`torch.func.grad` of `grad` rebuilds the forward each time and pays
torch.func's per-op overhead; forward-over-reverse `jvp` was slower still on the CPU).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from normlab.probes.functional import LossFn, Params, at_least_fp32, cloned_buffers, loss_at

MatVec = Callable[[Tensor], Tensor]


def hessian_operator(
    model: nn.Module,
    loss_fn: LossFn,
    params: Params,
    batches: Sequence[tuple[Tensor, Tensor]],
    wrt: Sequence[str],
) -> MatVec:
    """v -> H v, where H is the Hessian with respect to `params[wrt]` (flattened in `wrt` order) of
    the mean over `batches` of `loss_fn(model(x), y)`, at `params`, the other parameters fixed.

    Each batch is one forward with its own batch statistics (BN in the mode the model is in),
    as training sees a batch. Call inside `torch.enable_grad()` with autocast off (and
    `frozen_noise` for noisy BN, so that every batch's draw is fixed). Every product runs with
    autocast off itself: a double backward taken under autocast (a hook called from inside the
    training step under bf16-mixed) would run its matmuls in bf16."""
    leaves = {n: at_least_fp32(params[n]).detach().requires_grad_() for n in wrt}
    full = {n: at_least_fp32(t) for n, t in params.items()} | leaves
    grads: list[Tensor] | None = None
    for x, y in batches:
        buffers = {n: at_least_fp32(b) for n, b in cloned_buffers(model).items()}
        loss = loss_at(model, loss_fn, full, buffers, at_least_fp32(x), y)
        g = torch.autograd.grad(loss, list(leaves.values()), create_graph=True, allow_unused=True)
        g = [
            torch.zeros_like(p) if gi is None else gi
            for gi, p in zip(g, leaves.values(), strict=True)
        ]
        grads = g if grads is None else [a + b for a, b in zip(grads, g, strict=True)]
    assert grads is not None, "hessian_operator needs at least one batch"
    grads = [g / len(batches) for g in grads]
    sizes = [p.numel() for p in leaves.values()]
    # A gradient that does not depend on the parameters (constant) has no second derivative.
    live = [i for i, g in enumerate(grads) if g.requires_grad]

    device_type = next(iter(leaves.values())).device.type

    def apply(v: Tensor) -> Tensor:
        parts = [part.view_as(p) for part, p in zip(v.split(sizes), leaves.values(), strict=True)]
        with torch.autocast(device_type, enabled=False):
            hv = torch.autograd.grad(
                [grads[i] for i in live],
                list(leaves.values()),
                grad_outputs=[parts[i].to(grads[i].dtype) for i in live],
                retain_graph=True,
                allow_unused=True,
            )
        return torch.cat(
            [
                (torch.zeros_like(p) if h is None else h).flatten()
                for h, p in zip(hv, leaves.values(), strict=True)
            ]
        ).to(v.dtype)

    return apply


@dataclass(frozen=True)
class LanczosResult:
    """The top-k Ritz values (descending, float64; NaN-padded to k when the Krylov space is
    exhausted with fewer values), the number of products (iterations) and the largest relative
    Ritz residual ||H y - theta y|| / |theta| among them."""

    eigenvalues: Tensor
    iterations: int
    residual: float


# Rows of the Lanczos basis allocated first; the buffer doubles when full (at most max_iters).
_BASIS_ROWS = 8


def lanczos(
    matvec: MatVec,
    v0: Tensor,
    k: int = 1,
    tol: float = 1e-3,
    max_iters: int = 100,
    any_stops: Callable[[bool], bool] | None = None,
) -> LanczosResult:
    """The k largest (algebraic) eigenvalues of the symmetric operator `matvec` by Lanczos with
    full reorthogonalisation (Golub & Van Loan, Matrix Computations, Sec. 10.1; as scipy's `eigsh`
    with which="LA", minus the restarts), from the start vector `v0`.

    Stops after the first iteration at which every one of the top k Ritz pairs has a relative
    residual |beta_j s_j| / |theta| <= `tol` (||H y - theta y|| / |theta| of the Ritz pair: an
    eigenvalue lies within that relative distance of theta, usually far closer), at an invariant
    subspace (then fewer than k values may exist: the rest are NaN), at a non-finite product
    (all NaN), or after `max_iters` products. The tridiagonal problem is solved in float64; the
    Lanczos vectors keep `v0`'s dtype and device, in a buffer that starts at a few rows and
    doubles (memory: one vector per product taken, at most twice that while it grows).

    `any_stops` makes the decision collective: called once per iteration on every rank with this
    rank's decision, it returns whether any rank decided to stop (DDP: an all-reduce of a flag).
    The ranks then take the same number of products even when their floats differ in the last
    bits; None (one process) costs nothing."""
    dim = v0.numel()
    max_iters = min(max_iters, dim)
    basis = v0.new_zeros(min(_BASIS_ROWS, max_iters), dim)
    alphas: list[float] = []
    betas: list[float] = []
    q = v0 / torch.linalg.vector_norm(v0)
    theta = torch.full((k,), float("nan"), dtype=torch.float64)
    residual = float("nan")
    for j in range(max_iters):
        if j == len(basis):  # grow by doubling, never past max_iters
            grown = basis.new_zeros(min(2 * len(basis), max_iters), dim)
            grown[:j] = basis
            basis = grown
        basis[j] = q
        w = matvec(q)
        alpha = torch.dot(q, w)
        w = w - alpha * q - (betas[-1] * basis[j - 1] if j else 0)
        for _ in range(2):  # full reorthogonalisation, twice ("twice is enough", Parlett)
            w = w - basis[: j + 1].T @ (basis[: j + 1] @ w)
        beta = torch.linalg.vector_norm(w)
        alphas.append(alpha.item())
        betas.append(beta.item())
        finite = all(map(torch.isfinite, (alpha, beta)))
        converged = invariant = False
        if finite:
            theta, vectors = torch.linalg.eigh(tridiagonal(alphas, betas[:-1]))
            top = min(k, j + 1)
            theta, last = theta[-top:].flip(0), vectors[-1, -top:].flip(0)
            residual = (betas[-1] * last.abs() / theta.abs().clamp_min(1e-300)).max().item()
            scale = max(abs(a) for a in alphas) + max(betas)
            invariant = betas[-1] <= torch.finfo(v0.dtype).eps * scale  # exact: stop, no division
            converged = top == k and residual <= tol
        stop = not finite or converged or invariant or j + 1 == max_iters
        if any_stops is not None:
            stop = any_stops(stop)
        if not finite:  # a blown-up net: report NaN
            nan = torch.full((k,), float("nan"), dtype=torch.float64)
            return LanczosResult(nan, j + 1, float("nan"))
        if stop:
            break
        q = w / beta
    if len(theta) < k:
        theta = torch.cat([theta, theta.new_full((k - len(theta),), float("nan"))])
    return LanczosResult(theta, len(alphas), residual)


def tridiagonal(alphas: Sequence[float], betas: Sequence[float]) -> Tensor:
    """The symmetric tridiagonal matrix with diagonal `alphas` and off-diagonal `betas` (float64)."""
    t = torch.diag(torch.tensor(alphas, dtype=torch.float64))
    if betas:
        off = torch.tensor(betas, dtype=torch.float64)
        t += torch.diag(off, 1) + torch.diag(off, -1)
    return t


def hutchinson_samples(
    matvec: MatVec, num: int, like: Tensor, generator: torch.Generator
) -> Tensor:
    """`num` samples v^T H v (float64) with v Rademacher (+-1 entries, drawn on the CPU from
    `generator`, one vector at a time, in `like`'s dtype and device): E[v^T H v] = tr(H)
    (Hutchinson 1989), so their mean estimates the trace and their spread its standard error.
    Linear in the operator: under DDP, run it on each rank's own operator with the same
    generator and reduce the samples once (v^T (sum_r H_r) v = sum_r v^T H_r v)."""
    samples = []
    for _ in range(num):
        v = torch.randint(0, 2, (like.numel(),), generator=generator) * 2 - 1
        v = v.to(device=like.device, dtype=like.dtype)
        samples.append(torch.dot(v, matvec(v)).double())
    return torch.stack(samples)
