"""What the step probes (ICS, landscape) share: gradients of the training loss at other weights,
computed with `torch.func` on the live model without touching it, and their reduction over DDP ranks.

The model is evaluated by `functional_call` over a parameter dict and a *copy* of its buffers (BN in
train mode updates the buffers it is given: the copies absorb it). It stays in the mode it is in:
during training that is train mode, so BN normalises with the batch's statistics, as the step did
(Santurkar 2018 leaves the mode open; normlab takes train mode with running statistics untouched).
Noisy BN replays the step's own noise (`frozen_noise(replay_last=True)`: the probe runs after the
step's forward). Nothing here reads or advances the global RNG.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, grad_and_value, vmap

from normlab.errors import NormlabError
from normlab.models.layers import parameters_by_layer
from normlab.norms import frozen_noise
from normlab.schema import integer

Params = dict[str, Tensor]
LossFn = Callable[[Tensor, Tensor], Tensor]

# How `gradients_along` evaluates a grid of step sizes (scripts/bench.py dln_probes compares them).
METHODS = ("vmap", "loop")
LOSS_REDUCTIONS = ("sum", "mean")


def detached_parameters(model: nn.Module) -> Params:
    return {name: p.detach() for name, p in model.named_parameters()}


def at_least_fp32(t: Tensor) -> Tensor:
    """`t` in float32 if it is a lower-precision float (bf16/fp16 weights, inputs or gradients),
    as it is otherwise (float32, float64, integers): probes reduce and compare, and take Hessian
    products, in fp32 at least whatever the training precision (curvature.md, "Practice")."""
    return t.float() if t.is_floating_point() and torch.finfo(t.dtype).bits < 32 else t


def cloned_buffers(model: nn.Module) -> Params:
    return {name: b.clone() for name, b in model.named_buffers()}


def flat(tensors: Mapping[str, Tensor], names: Sequence[str]) -> Tensor:
    """The tensors named `names`, flattened and concatenated in that order."""
    return torch.cat([tensors[n].flatten() for n in names])


def loss_at(
    model: nn.Module, loss_fn: LossFn, params: Params, buffers: Params, x: Tensor, y: Tensor
) -> Tensor:
    """The training loss of (x, y) with the model's parameters replaced by `params`."""
    return loss_fn(functional_call(model, (params, buffers), (x,)), y)


def gradient(
    model: nn.Module,
    loss_fn: LossFn,
    params: Params,
    x: Tensor,
    y: Tensor,
    wrt: Sequence[str],
) -> Tensor:
    """d loss / d params[wrt] at `params`, flattened in the order of `wrt`."""
    fixed = {n: t for n, t in params.items() if n not in wrt}

    # The buffers are an argument, not captured: train-mode BN updates them in place, which
    # torch.func allows only on the function's inputs.
    def loss_of(sub: Params, buffers: Params) -> Tensor:
        return loss_at(model, loss_fn, {**fixed, **sub}, buffers, x, y)

    grads = grad(loss_of)({n: params[n] for n in wrt}, cloned_buffers(model))
    return flat(grads, wrt)


def gradients_along(
    model: nn.Module,
    loss_fn: LossFn,
    params: Params,
    direction: Params,
    etas: Tensor,
    x: Tensor,
    y: Tensor,
    method: str = "vmap",
) -> tuple[Tensor, Tensor]:
    """Loss and gradient at params - eta * direction for every eta: losses [K] and flattened
    gradients [K, P] (parameters in `params` order). `method="vmap"` evaluates the grid as one
    batched call (`torch.func.vmap`; the buffers get a copy per eta), `"loop"` one eta at a time."""
    names = list(params)
    grad_loss = grad_and_value(
        lambda p, b: loss_at(model, loss_fn, p, b, x, y)  # noqa: E731 (a closure over x, y)
    )

    def at(eta: Tensor, buffers: Params) -> tuple[Params, Tensor]:
        return grad_loss({n: params[n] - eta * direction[n] for n in names}, buffers)

    if method == "vmap":
        buffers = {n: b.expand(len(etas), *b.shape).clone() for n, b in model.named_buffers()}
        # Noisy BN draws from its own generator; "same" lets vmap run a random op at all.
        grads, losses = vmap(at, randomness="same")(etas, buffers)
        return losses, torch.cat([grads[n].reshape(len(etas), -1) for n in names], dim=1)
    if method == "loop":
        results = [at(eta, cloned_buffers(model)) for eta in etas]
        losses = torch.stack([loss for _, loss in results])
        return losses, torch.stack([flat(g, names) for g, _ in results])
    raise ValueError(f"method={method!r}; valid choices: {list(METHODS)}")


def reduce_over_ranks(trainer: L.Trainer, stacked: Tensor, loss_reduction: str) -> Tensor:
    """One all-reduce of what every rank computed on its shard: summed for a summed loss (the
    global batch's loss is the sum of the shards'), averaged for a mean loss (equal shards).
    Every rank must call it at the same step. Identity in a single process."""
    if loss_reduction not in LOSS_REDUCTIONS:
        raise ValueError(f"loss_reduction={loss_reduction!r}; valid: {list(LOSS_REDUCTIONS)}")
    if trainer.world_size == 1:
        return stacked
    return trainer.strategy.reduce(stacked, reduce_op="sum" if loss_reduction == "sum" else "mean")


@contextmanager
def step_context(trainer: L.Trainer, model: nn.Module) -> Iterator[None]:
    """Recompute a step as it ran: in the trainer's precision context (autocast under bf16;
    callbacks run outside it), with gradients on (hooks may run under no_grad), replaying the
    step's noisy-BN noise."""
    with (
        trainer.precision_plugin.forward_context(),
        torch.enable_grad(),
        frozen_noise(model, replay_last=True),
    ):
        yield


def check_layers(key: str, layers: Sequence[int], valid: Sequence[int], what: str) -> None:
    """NormlabError naming the valid range when a layer in `layers` is not in `valid`."""
    bad = [layer for layer in layers if layer not in valid]
    if bad:
        shown = f"{min(valid)}..{max(valid)}" if valid else "none"
        raise NormlabError(f"{key}: layer(s) {bad} not {what} of the model; valid layers: {shown}")


class StepProbe(L.Callback):
    """A probe of the training step itself, on the step's own batch, every `every_n_steps` steps
    (steps 0, n, 2n, ...). Remembers the batch of a probed step; subclasses measure in the
    optimizer hooks. Values are logged at step = the step's index t (the update t + 1 is
    what the step makes).

    Every probe declares what the rest of normlab reads about it: `key`, its config node (its
    cadence is `<key>.every_n_steps`); `metrics`, the prefixes or globs of the metrics it logs
    (the claims find a metric's cadence by them); `files`, the per-run files it appends to;
    `uses_torch_func`, whether it runs torch.func transforms (grad, vmap, jvp), which a compiled
    model cannot take (`normlab.train.compile_model`)."""

    key = "probe"
    metrics: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    uses_torch_func = False

    def __init__(self, every_n_steps: int) -> None:
        self.every_n_steps = integer(f"{self.key}.every_n_steps", every_n_steps, minimum=1)
        self._batch: Any = None
        self._step: int | None = None

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        probed = step % self.every_n_steps == 0
        self._batch, self._step = (batch, step) if probed else (None, None)


def weight_layers(model: nn.Module) -> dict[int, list[str]]:
    """`parameters_by_layer`, with a clear error for a model whose layers are not numbered."""
    by_layer = parameters_by_layer(model)
    numbered = {n for names in by_layer.values() for n in names}
    unnumbered = [n for n, _ in model.named_parameters() if n not in numbered]
    if not by_layer or unnumbered:
        # A parameter outside every `layer<i>` would never count as "earlier" (ICS's G' would
        # silently keep its old value): refuse the model rather than measure the wrong thing.
        raise NormlabError(
            f"{type(model).__name__}: the step probes need every parameter inside a numbered "
            f"weight layer `layer<i>`; not numbered: {unnumbered or 'every parameter'}"
        )
    return by_layer
