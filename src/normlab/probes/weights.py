"""Weight norms, their alignment with the gradient, and the effective rate of scale-invariant layers.

A weight w followed by a scale-invariant norm (BN, noisy BN, l_p: L(c w) = L(w) for c > 0) has a
gradient orthogonal to w, so under plain SGD ||w_{t+1}||^2 = ||w_t||^2 + lr^2 ||g_t||^2 exactly:
the norm only grows, and the step's effect on the normalised weight w / ||w|| is that of a rate
lr / ||w||^2, the *effective* rate, which falls as the norm grows ("auto rate-tuning": Arora, Li &
Lyu, ICLR 2019; van Laarhoven 2017; Hoffer et al. 2018). Curvature in raw coordinates shrinks as
1 / ||w||^2 with it.

Per numbered layer i, with w its weight matrix or kernel (not the norm's gamma/beta, nor a bias)
and g the gradient the optimizer is about to apply at step t (all-reduced by DDP):
`weights/layer{i}/norm_sq` = ||w||^2, `weights/layer{i}/grad_norm_sq` = ||g||^2,
`weights/layer{i}/cos_wg` = cos(w, g) (~0 for a scale-invariant layer), and for layers followed by a
scale-invariant norm `weights/layer{i}/eff_lr` = lr / ||w||^2. Computed in float64 from the
weights as they are (no forward, no torch.func).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from normlab.module import log_to_loggers
from normlab.norms import LpNorm, NoisyBatchNorm
from normlab.probes.curvature import integer, integer_list
from normlab.probes.functional import StepProbe, check_layers, weight_layers
from normlab.probes.ics import weight_names

# Norms whose output does not change when the preceding weight is scaled by c > 0 (BN centres and
# divides by the batch std; l_p by the batch l_p average: exactly so with eps = 0).
SCALE_INVARIANT_NORMS = (nn.modules.batchnorm._BatchNorm, NoisyBatchNorm, LpNorm)


def scale_invariant_layers(model: nn.Module) -> set[int]:
    """The numbered layers whose output goes through a scale-invariant norm (`layer{i}.norm`)."""
    hidden = getattr(model, "hidden_layers", {})
    return {i for i, layer in hidden.items() if isinstance(layer.norm, SCALE_INVARIANT_NORMS)}


def weight_metrics(w: Tensor, g: Tensor, lr: float | None, prefix: str) -> dict[str, float]:
    """||w||^2, ||g||^2, cos(w, g) and, with `lr`, lr / ||w||^2 of flattened w and g, in float64."""
    w, g = w.double(), g.double()
    norm_sq, grad_norm_sq = torch.dot(w, w), torch.dot(g, g)
    metrics = {
        f"{prefix}/norm_sq": norm_sq.item(),
        f"{prefix}/grad_norm_sq": grad_norm_sq.item(),
        f"{prefix}/cos_wg": (torch.dot(w, g) / (norm_sq * grad_norm_sq).sqrt()).item(),
    }
    if lr is not None:
        metrics[f"{prefix}/eff_lr"] = lr / norm_sq.item()
    return metrics


class WeightsProbe(StepProbe):
    """Every `every_n_steps` steps, the module docstring's metrics of each layer in `layers` (null:
    every numbered layer with a weight matrix or kernel), at step t before its update."""

    key = "probe.weights"
    metrics = ("weights/",)
    uses_torch_func = False  # plain tensor arithmetic on the weights and their .grad

    def __init__(self, every_n_steps: int = 100, layers: Sequence[int] | None = None) -> None:
        super().__init__(integer(f"{self.key}.every_n_steps", every_n_steps, 1))
        self.layers = None if layers is None else integer_list(f"{self.key}.layers", layers)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        model = pl_module.model
        with_weights = [
            i for i, names in weight_layers(model).items() if weight_names(model, names)
        ]
        if self.layers is None:
            self.layers = with_weights
        check_layers(f"{self.key}.layers", self.layers, with_weights, "a weight layer")

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any
    ) -> None:
        if self._batch is None:
            return
        model = pl_module.model
        params = dict(model.named_parameters())
        by_layer = weight_layers(model)
        invariant = scale_invariant_layers(model)
        lr = float(optimizer.param_groups[0]["lr"])
        metrics: dict[str, float] = {}
        for i in self.layers:
            names = weight_names(model, by_layer[i])
            w = torch.cat([params[n].detach().flatten() for n in names])
            g = torch.cat(
                [
                    torch.zeros_like(params[n]).flatten()
                    if params[n].grad is None
                    else params[n].grad.detach().flatten()
                    for n in names
                ]
            )
            metrics |= weight_metrics(w, g, lr if i in invariant else None, f"weights/layer{i}")
        log_to_loggers(trainer, metrics, self._step)
