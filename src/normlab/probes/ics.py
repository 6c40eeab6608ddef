"""Internal covariate shift as Santurkar 2018 define it (Def. 2.1, Fig. 3).

For layer i at step t, on the step's own batch (x_t, y_t):

- G_{t,i}  = d L / d W_i at (W_1^t, ..., W_k^t), the weights the step started from;
- G'_{t,i} = d L / d W_i at (W_1^{t+1}, ..., W_{i-1}^{t+1}, W_i^t, ..., W_k^t): every earlier layer
  already moved by this step's update, the real optimizer's (momentum, weight decay, whatever
  `optim` is), read back from the model after `optimizer.step()`.

Logged: `ics/layer{i}/l2` = ||G - G'||_2 and `ics/layer{i}/cos` = cos(G, G') (no ICS: 0 and 1).
W_i is layer i's weight matrix (or conv kernel); "earlier layers" are every parameter of layers
1..i-1, their norms' gamma/beta included, since those sit before W_i in the forward pass.
Under DDP each rank computes G and G' on its shard; the stacked gradients are reduced once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from normlab.errors import NormlabError
from normlab.module import log_to_loggers
from normlab.probes.functional import (
    LossFn,
    Params,
    StepProbe,
    at_least_fp32,
    check_layers,
    detached_parameters,
    gradient,
    reduce_over_ranks,
    step_context,
    weight_layers,
)


def ics_gradients(
    model: nn.Module,
    loss_fn: LossFn,
    x: Tensor,
    y: Tensor,
    before: Params,
    after: Params,
    layers: Sequence[int],
) -> dict[int, tuple[Tensor, Tensor]]:
    """{layer i: (G_i, G'_i)} flattened, on (x, y), for weights `before` (W^t) and `after`
    (W^{t+1}). Not reduced over ranks."""
    by_layer = weight_layers(model)
    weights = {i: weight_names(model, by_layer[i]) for i in layers}
    all_weights = [n for i in layers for n in weights[i]]
    g = gradient(model, loss_fn, before, x, y, all_weights)
    sizes = [sum(before[n].numel() for n in weights[i]) for i in layers]
    out = {}
    for i, g_i in zip(layers, torch.split(g, sizes), strict=True):
        earlier = {n for j, names in by_layer.items() if j < i for n in names}
        mixed = {n: after[n] if n in earlier else t for n, t in before.items()}
        out[i] = (g_i, gradient(model, loss_fn, mixed, x, y, weights[i]))
    return out


def weight_names(model: nn.Module, names: Sequence[str]) -> list[str]:
    """The weight matrices / kernels among a layer's parameters (not gamma/beta or biases)."""
    params = dict(model.named_parameters())
    return [n for n in names if params[n].dim() >= 2]


def ics_metrics(g: Tensor, g_prime: Tensor) -> tuple[float, float]:
    """(||G - G'||_2, cos(G, G')); cos is NaN if either gradient is zero."""
    l2 = torch.linalg.vector_norm(g - g_prime)
    cos = torch.dot(g, g_prime) / (torch.linalg.vector_norm(g) * torch.linalg.vector_norm(g_prime))
    return l2.item(), cos.item()


class ICSProbe(StepProbe):
    """Every `every_n_steps` steps, G and G' (Def. 2.1) of each layer in `layers` (1-based weight
    layers, as the paper numbers them: Fig. 3(b) uses #9 and #17 of the DLN)."""

    key = "probe.ics"
    metrics = ("ics/",)
    # torch.func transforms (grad, vmap) over the model: train.compile_model refuses compile.
    uses_torch_func = True

    def __init__(self, layers: Sequence[int] = (9, 17), every_n_steps: int = 100) -> None:
        super().__init__(every_n_steps)
        self.layers = list(dict.fromkeys(int(i) for i in layers))
        self._before: Params | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        by_layer = weight_layers(pl_module.model)
        check_layers(f"{self.key}.layers", self.layers, list(by_layer), "a weight layer")
        for i in self.layers:
            if not weight_names(pl_module.model, by_layer[i]):
                raise NormlabError(f"{self.key}: layer {i} has no weight matrix or kernel")

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any
    ) -> None:
        if self._batch is not None:  # W^t, before the update
            self._before = {n: p.clone() for n, p in detached_parameters(pl_module.model).items()}

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, idx: int
    ) -> None:
        before, self._before = self._before, None
        if before is None:  # not a probed step, or the step was skipped (non-finite loss)
            return
        model = pl_module.model
        x, y = self._batch
        with step_context(trainer, model):
            grads = ics_gradients(
                model, pl_module.loss, x, y, before, detached_parameters(model), self.layers
            )
        stacked = torch.cat([torch.cat(pair) for pair in grads.values()])
        stacked = at_least_fp32(stacked)  # bf16 training: reduced and compared in fp32
        stacked = reduce_over_ranks(trainer, stacked, pl_module.loss_reduction)
        metrics = {}
        sizes = [2 * len(grads[i][0]) for i in self.layers]
        for i, pair in zip(self.layers, stacked.split(sizes), strict=True):
            l2, cos = ics_metrics(*pair.chunk(2))
            metrics |= {f"ics/layer{i}/l2": l2, f"ics/layer{i}/cos": cos}
        log_to_loggers(trainer, metrics, self._step)
