"""Santurkar 2018's Sec. 4 measured on the BN layers of a training run (Thm 4.1, Thm 4.2).

At a probed step t, on the step's own batch and at the weights W^t the step starts from, for
each chosen hidden layer k whose norm is a torch BatchNorm, with y its input (C units of m
samples each), g = dL/dz the upstream gradient at its output and v = dL_hat/dy the gradient at
its input (`normlab.theory` for the notation):

- `theory/layer{k}/removed_frac`: the share of the upstream gradient's squared norm that BN's two
  projections remove (Thm 4.1), sum_j (<1,g_j>^2/m + <g_j,y_hat_j>^2/m) / sum_j ||g_j||^2, and its
  two parts `mean_frac` (the centring's) and `proj_frac` (the division by sigma's);
- `theory/layer{k}/gamma2_over_sigma2`: the mean over units of Thm 4.1's factor gamma_j^2/sigma_j^2;
- `theory/layer{k}/grad_ratio`: ||dL_hat/dy||^2 / ||dL/dz||^2, the two effects together (with
  eps = 0 it is the gamma^2/sigma^2-weighted share of ||g||^2 that is *not* removed);
- with `curvature: true`, Thm 4.2's quadratic forms along v, unit block by unit block, each
  normalised by sum_j ||v_j||^2: `curv_bn` = sum_j v_j^T (d2 L_hat/dy_j dy_j) v_j (the BN net's
  curvature along its own gradient), `curv_scaled` = sum_j gamma_j^2/sigma_j^2 v_j^T H_jj v_j
  (H = d2 L/dz dz, the rest of the net's curvature at the layer's output) and `curv_shift` =
  sum_j gamma_j/(m sigma_j^2) <g_j, y_hat_j> ||v_j||^2. Thm 4.2 is the identity
  curv_bn = curv_scaled - curv_shift (at eps = 0; the layer's eps makes a gap of order
  eps/sigma^2). curv_bn and curv_scaled cost one Hessian-vector product per unit each
  (vmapped over the units, `chunk_size` at a time); `curvature_units` = K takes the sums over
  the first K units of each layer only. On VGG-16 x1/8 at batch 128 (2 CPU cores) a call on
  layers 5 and 10 takes 0.1 s without the curvature, 5.5 s with it on all their 96 units (about
  one training step per unit) and 0.7 s with K = 4.

sigma_j includes the layer's eps, as the layer divides by it. The net is evaluated through
`torch.func.functional_call` with detached parameters and every buffer replaced by None: each BN
then normalises with its batch's statistics, as in the step, and updates nothing (as with
`track_running_stats=False`). The probed quantities are read through hooks registered on the
layer's norm for the duration of the call (adding a zero tensor to its input or output, whose
gradient is the quantity wanted). Nothing is drawn from the global RNG and no module's mode
changes. Under DDP each rank measures its own shard (whose BN statistics are its own) and the
metrics are averaged over ranks (a ratio is the mean of the per-rank ratios). Thm 4.1's metrics
are recomputed in the step's precision context (under bf16-mixed, from a bf16 forward's g, summed
in float64); Thm 4.2's are taken with autocast off and parameters and input in at least fp32,
along one v for the products and both sides of the identity. Refused (NormlabError): noisy BN
and l_p norms (at setup), SyncBatchNorm (`trainer.sync_batchnorm`, at fit start, after
Lightning's conversion).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn
from torch.func import functional_call, grad

from normlab.errors import NormlabError
from normlab.module import log_to_loggers
from normlab.norms import LpNorm, NoisyBatchNorm
from normlab.probes.curvature import fp32_context
from normlab.probes.functional import (
    LossFn,
    Params,
    StepProbe,
    at_least_fp32,
    check_layers,
    detached_parameters,
    reduce_over_ranks,
    step_context,
)
from normlab.theory import (
    from_units,
    gradient_terms,
    input_gradient,
    thm42_rhs,
    unit_curvatures,
    unit_hvps,
    units,
)

BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


def bn_layers(model: nn.Module) -> dict[int, nn.Module]:
    """The hidden layers' norms that are torch BatchNorms with gamma and beta, by layer number."""
    hidden = getattr(model, "hidden_layers", {})
    return {
        i: layer.norm
        for i, layer in hidden.items()
        if type(layer.norm) in BATCH_NORMS and layer.norm.affine
    }


@contextmanager
def shifted(module: nn.Module, at: str, delta: Tensor) -> Iterator[None]:
    """Within the block, `module` computes on its input + delta (`at="input"`) or returns its
    output + delta (`at="output"`); delta is zero, so values are unchanged and d loss / d delta is
    the gradient at the module's input or output."""
    if at == "input":
        handle = module.register_forward_pre_hook(lambda _, args: (args[0] + delta, *args[1:]))
    else:
        handle = module.register_forward_hook(lambda _, args, out: out + delta)
    try:
        yield
    finally:
        handle.remove()


class LayerLoss:
    """The step's loss as a function of a zero shift of one BN layer's input or output, on the
    net evaluated functionally at `params` with batch statistics (see the module docstring)."""

    def __init__(
        self, model: nn.Module, loss_fn: LossFn, params: Params, x: Tensor, target: Tensor
    ) -> None:
        self.model, self.loss_fn, self.params = model, loss_fn, params
        self.x, self.target = x, target
        self.no_buffers = {name: None for name, _ in model.named_buffers()}

    def __call__(self, norm: nn.Module, at: str, delta: Tensor) -> Tensor:
        with shifted(norm, at, delta):
            out = functional_call(self.model, (self.params, self.no_buffers), (self.x,))
        return self.loss_fn(out, self.target)

    def of_units(self, norm: nn.Module, at: str, shape: torch.Size) -> Callable[[Tensor], Tensor]:
        """The same, with the shift given in the (C, m) layout of `normlab.theory.units`."""
        return lambda u: self(norm, at, from_units(u, shape))

    def layer_inputs(self, norms: Mapping[int, nn.Module]) -> dict[int, Tensor]:
        """Each norm's input in the step's forward, by layer number."""
        captured: dict[int, Tensor] = {}
        handles = [
            norm.register_forward_pre_hook(
                lambda _, args, i=i: captured.__setitem__(i, args[0].detach())
            )
            for i, norm in norms.items()
        ]
        try:
            with torch.no_grad():
                functional_call(self.model, (self.params, self.no_buffers), (self.x,))
        finally:
            for handle in handles:
                handle.remove()
        return captured


def layer_metrics(loss: LayerLoss, k: int, norm: nn.Module, y_in: Tensor) -> dict[str, Tensor]:
    """Thm 4.1's metrics of layer k (module docstring; 0-dim tensors), from its input `y_in`."""
    g_full = grad(lambda d: loss(norm, "output", d))(torch.zeros_like(y_in))
    y, g = units(y_in), units(g_full)
    gamma, eps = norm.weight.detach(), float(norm.eps)
    # Thm 4.1's terms in float64: sums of squares of float32 gradients lose digits otherwise
    terms = gradient_terms(y.double(), g.double(), gamma.double(), eps)
    v = input_gradient(y.double(), g.double(), gamma.double(), eps)
    grad_sq = terms.grad_sq.sum()
    prefix = f"theory/layer{k}"
    return {
        f"{prefix}/mean_frac": terms.mean_term.sum() / grad_sq,
        f"{prefix}/proj_frac": terms.proj_term.sum() / grad_sq,
        f"{prefix}/removed_frac": (terms.mean_term + terms.proj_term).sum() / grad_sq,
        f"{prefix}/gamma2_over_sigma2": terms.gain.mean(),
        f"{prefix}/grad_ratio": v.pow(2).sum() / grad_sq,
    }


def layer_curvatures(
    loss: LayerLoss,
    k: int,
    norm: nn.Module,
    y_in: Tensor,
    chunk_size: int | None = None,
    curvature_units: int | None = None,
) -> dict[str, Tensor]:
    """Thm 4.2's terms of layer k (module docstring), from its input `y_in`: y, g and v are this
    loss's own (at its precision), and the Hessian-vector products and both sides of the
    identity use the one v the products were taken along."""
    g_full = grad(lambda d: loss(norm, "output", d))(torch.zeros_like(y_in))
    y, g = units(y_in), units(g_full)
    gamma, eps = norm.weight.detach().to(y.dtype), float(norm.eps)
    v_net = input_gradient(y.double(), g.double(), gamma.double(), eps).to(y.dtype)
    on_input = loss.of_units(norm, "input", y_in.shape)
    on_output = loss.of_units(norm, "output", y_in.shape)
    zeros = torch.zeros_like(y)
    hvps = {"chunk_size": chunk_size, "first": curvature_units}
    curv_bn = unit_curvatures(on_input, zeros, v_net, **hvps).double()
    hv = unit_hvps(on_output, zeros, v_net, **hvps).double()
    c = len(hv)  # the units measured: the first curvature_units, or all
    v = v_net[:c].double()  # the direction of both products, for both sides of Thm 4.2
    scaled, shift = thm42_rhs(y[:c].double(), g[:c].double(), v, hv, gamma[:c].double(), eps)
    v_sq = v.pow(2).sum()
    prefix = f"theory/layer{k}"
    return {
        f"{prefix}/curv_bn": curv_bn.sum() / v_sq,
        f"{prefix}/curv_scaled": scaled.sum() / v_sq,
        f"{prefix}/curv_shift": shift.sum() / v_sq,
    }


def _norms(model: nn.Module, layers: Sequence[int]) -> dict[int, nn.Module]:
    found = bn_layers(model)
    return {k: found[k] for k in layers}


def gradient_metrics(
    model: nn.Module,
    loss_fn: LossFn,
    params: Params,
    x: Tensor,
    target: Tensor,
    layers: Sequence[int],
) -> dict[str, Tensor]:
    """Thm 4.1's metrics for each BN layer in `layers`, in the ambient precision context (the
    step's: under bf16-mixed, from the bf16 forward's g)."""
    norms = _norms(model, layers)
    loss = LayerLoss(model, loss_fn, params, x, target)
    inputs = loss.layer_inputs(norms)
    metrics: dict[str, Tensor] = {}
    for k, norm in norms.items():
        metrics |= layer_metrics(loss, k, norm, inputs[k])
    return metrics


def curvature_metrics(
    model: nn.Module,
    loss_fn: LossFn,
    params: Params,
    x: Tensor,
    target: Tensor,
    layers: Sequence[int],
    chunk_size: int | None = None,
    curvature_units: int | None = None,
) -> dict[str, Tensor]:
    """Thm 4.2's terms for each BN layer in `layers`, with parameters and input in at least
    float32 (`at_least_fp32`); call with autocast off (`fp32_context`), as the probe does, so
    that the Hessian-vector products are not taken in bf16."""
    norms = _norms(model, layers)
    params32 = {name: at_least_fp32(p) for name, p in params.items()}
    loss = LayerLoss(model, loss_fn, params32, at_least_fp32(x), target)
    inputs = loss.layer_inputs(norms)
    metrics: dict[str, Tensor] = {}
    for k, norm in norms.items():
        metrics |= layer_curvatures(loss, k, norm, inputs[k], chunk_size, curvature_units)
    return metrics


def theory_metrics(
    model: nn.Module,
    loss_fn: LossFn,
    params: Params,
    x: Tensor,
    target: Tensor,
    layers: Sequence[int],
    curvature: bool = True,
    chunk_size: int | None = None,
    curvature_units: int | None = None,
) -> dict[str, Tensor]:
    """The module docstring's metrics for each BN layer in `layers`, on the batch (x, target) at
    `params`, in the ambient context; Thm 4.2's terms over the first `curvature_units` units of
    each layer (all: None)."""
    metrics = gradient_metrics(model, loss_fn, params, x, target, layers)
    if curvature:
        metrics |= curvature_metrics(
            model, loss_fn, params, x, target, layers, chunk_size, curvature_units
        )
    return metrics


class TheoryProbe(StepProbe):
    """Every `every_n_steps` steps, Thm 4.1's and Thm 4.2's quantities (module docstring) for the
    BN layers `layers` (1-based hidden-layer numbers, as the papers number them), measured on the
    step's batch at the weights before its update."""

    key = "probe.theory"
    metrics = ("theory/",)
    uses_torch_func = True  # functional_call, grad, jvp, vmap: a compiled model cannot be probed

    def __init__(
        self,
        layers: Sequence[int] = (1, 2, 3),
        every_n_steps: int = 100,
        curvature: bool = True,
        curvature_units: int | None = None,
        chunk_size: int | None = None,
    ) -> None:
        super().__init__(every_n_steps)
        self.layers = list(dict.fromkeys(int(i) for i in layers))
        self.curvature = bool(curvature)
        self.curvature_units = self._positive_or_none("curvature_units", curvature_units)
        self.chunk_size = self._positive_or_none("chunk_size", chunk_size)

    def _positive_or_none(self, name: str, value: int | None) -> int | None:
        if value is not None and int(value) < 1:
            raise NormlabError(f"{self.key}.{name} must be >= 1 or null, got {value}")
        return None if value is None else int(value)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        model = pl_module.model
        self._refuse_other_norms(model)
        check_layers(f"{self.key}.layers", self.layers, sorted(bn_layers(model)), "a BN layer")
        others = [
            name
            for name, module in model.named_modules()
            if type(module) not in BATCH_NORMS and list(module.buffers(recurse=False))
        ]
        if others:
            # Every buffer is replaced by None (batch statistics, nothing updated): only torch's
            # BatchNorm reads that as "normalise with the batch"; refuse anything else.
            raise NormlabError(
                f"{self.key}: needs norm=batch throughout (torch BatchNorm layers only); "
                f"{others[0]} keeps other buffers"
            )

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning converts BN to SyncBatchNorm (trainer.sync_batchnorm) in the strategy's setup,
        # after Callback.setup: only now are the layers the ones the step will run.
        self._refuse_other_norms(pl_module.model)

    def _refuse_other_norms(self, model: nn.Module) -> None:
        """NormlabError when a hidden layer's norm is noisy BN, an l_p norm or a SyncBatchNorm:
        the probe's formulas and its functional evaluation are for torch's per-rank BatchNorm."""
        hidden = getattr(model, "hidden_layers", {})
        for k, layer in hidden.items():
            norm = getattr(layer, "norm", None)
            if isinstance(norm, nn.SyncBatchNorm):
                raise NormlabError(
                    f"{self.key}: SyncBatchNorm (trainer.sync_batchnorm=true) is not supported "
                    f"(layer {k}): the probe measures each rank's own BN statistics; run without "
                    "sync_batchnorm"
                )
            if isinstance(norm, NoisyBatchNorm | LpNorm):
                raise NormlabError(
                    f"{self.key}: layer {k} has a {type(norm).__name__}; noisy BN "
                    "(norm=noisy_batch) and l_p norms (norm=lp) are not supported: Thm 4.1 and "
                    "4.2 are measured on torch BatchNorm layers (norm=batch)"
                )

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any
    ) -> None:
        if self._batch is None:
            return
        model = pl_module.model
        x, target = self._batch
        params = detached_parameters(model)
        with step_context(trainer, model):  # Thm 4.1 as the step computed it
            metrics = gradient_metrics(model, pl_module.loss, params, x, target, self.layers)
        if self.curvature:
            # Thm 4.2's second derivatives in fp32 (autocast off, parameters and input upcast),
            # with the step's noise replayed, whatever the training precision
            with fp32_context(model, replay_last=True):
                metrics |= curvature_metrics(
                    model,
                    pl_module.loss,
                    params,
                    x,
                    target,
                    self.layers,
                    self.chunk_size,
                    self.curvature_units,
                )
        stacked = torch.stack([value.detach().double() for value in metrics.values()])
        stacked = reduce_over_ranks(trainer, stacked, "mean")
        log_to_loggers(trainer, dict(zip(metrics, stacked.tolist(), strict=True)), self._step)
