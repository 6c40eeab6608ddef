"""Curvature of the training loss: the top Hessian eigenvalues, the batch sharpness and the trace.

Why: gradient descent at rate lr is stable along a direction of curvature lambda only while
lr * lambda < 2; under full-batch GD the top eigenvalue rises until lr * lambda_max ~ 2 and hovers
there, the "edge of stability" (Cohen et al., ICLR 2021), and under SGD the quantity that settles
at 2 / lr is the batch sharpness (Andreyev & Beneventano, arXiv 2412.20553). Background:
`../shared/docs/curvature.md`; keys, configs and costs: `docs/curvature-probes.md`.

- `SharpnessProbe`: the top-k eigenvalues of the Hessian of the training loss on a fixed batch
  (below), by Lanczos from a start vector drawn from (seed, step), and for chosen layers i the top
  eigenvalue of the Hessian block of layers 1..i-1 (every parameter of those layers, their norms'
  gamma/beta included, as ICS's "earlier layers"). Keys `curv/lambda_max`, `curv/lr_lambda_max`,
  `curv/lanczos_iters`, `curv/lanczos_residual`, `curv/top{j}` (j = 1..k, when k > 1; NaN past
  the values an early invariant subspace gives), `curv/below_layer{i}/lambda_max`,
  `curv/below_layer{i}/lr_lambda_max`, `curv/below_layer{i}/lanczos_iters`,
  `curv/below_layer{i}/lanczos_residual`.
- `HessianTraceProbe`: Hutchinson's estimate of tr(H) on the same fixed batch, `curv/trace`, and
  its standard error over the samples, `curv/trace_se`.
- `BatchSharpnessProbe`: g^T H_B g / ||g||^2 on the step's own batch B and gradient g (the one the
  optimizer is about to apply), `curv/batch_sharpness`, `curv/lr_batch_sharpness`.

The fixed batch is a subset of the training set drawn once from `batch_seed`: `num_examples`
examples (at most the whole set; the DLN's 1000 points are its full batch), rounded down to whole
chunks of `data.batch_size`, each chunk one forward with its own batch statistics, as training
sees a batch; the objective is the mean of the chunks' losses, each reduced as the module reduces
its loss (summed for the DLN). Under DDP each rank takes its share of every chunk, as it does of a
training batch, and the products are reduced over the ranks (summed for a summed loss): Lanczos
all-reduces every product and agrees on when to stop, Hutchinson and batch sharpness reduce their
scalars once. lr is the optimizer's current rate (first parameter group).

Every probe runs with BN in train mode (batch statistics) over cloned buffers, replays noisy BN's
noise, takes its products in fp32 whatever the training precision, and draws its random vectors
from a private generator seeded by (seed, step): nothing of the run changes, and a resumed run
measures what the uninterrupted one would. Sharpness and trace measure the weights after t updates
(at the start of step t, and after the last step); batch sharpness measures step t itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from normlab.module import log_to_loggers
from normlab.norms import frozen_noise
from normlab.norms.noisy import derive_seed
from normlab.probes.functional import (
    StepProbe,
    at_least_fp32,
    check_layers,
    detached_parameters,
    flat,
    reduce_over_ranks,
    weight_layers,
)
from normlab.probes.hessian import (
    LanczosResult,
    MatVec,
    hessian_operator,
    hutchinson_samples,
    lanczos,
)
from normlab.schema import integer, integer_list, positive_number, require

Batch = tuple[Tensor, Tensor]

# The random streams of (seed, step): one per probe kind, so that two probes never share draws.
_LANCZOS, _HUTCHINSON = 0, 1


@contextmanager
def fp32_context(model: nn.Module, replay_last: bool) -> Iterator[None]:
    """Gradients on, autocast off (products in fp32 under bf16: curvature.md, "Practice"), and noisy
    BN's noise pinned: the step's own noise (`replay_last`, after its forward) or the noise the
    next training forward will draw (before it)."""
    device_type = next(model.parameters()).device.type
    with (
        torch.autocast(device_type, enabled=False),
        torch.enable_grad(),
        frozen_noise(model, replay_last=replay_last),
    ):
        yield


def private_generator(*keys: int) -> torch.Generator:
    """A CPU generator seeded from `keys` (e.g. seed, step, stream): the same draws on every rank
    and device, never the global RNG's."""
    return torch.Generator().manual_seed(derive_seed(*keys))


def current_lr(trainer: L.Trainer) -> float:
    return float(trainer.optimizers[0].param_groups[0]["lr"])


def fixed_training_batches(
    datamodule: Any, num_examples: int, seed: int, rank: int = 0, world_size: int = 1
) -> list[Batch]:
    """This rank's share of the fixed batch: `num_examples` training examples (at most the whole
    set) drawn from `seed`, rounded down to chunks of the global `datamodule.batch_size`, each
    chunk split across the ranks as a training batch is (strided), through the batch transform."""
    x, y = datamodule.train_x, datamodule.train_y
    chunk = datamodule.batch_size
    num_chunks = min(num_examples, len(x)) // chunk
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    batches = []
    for c in range(num_chunks):
        idx = order[c * chunk : (c + 1) * chunk][rank::world_size].to(x.device)
        batches.append((datamodule.transform(x[idx]), y[idx]))
    return batches


def reduced(trainer: L.Trainer, local: MatVec, loss_reduction: str) -> MatVec:
    """The product of the global objective: each rank's product all-reduced (every rank calls it
    the same number of times)."""
    return lambda v: reduce_over_ranks(trainer, local(v), loss_reduction)


def any_rank_stops(trainer: L.Trainer) -> Callable[[bool], bool] | None:
    """Lanczos's collective stop decision (`lanczos(any_stops=...)`): one all-reduce (max) of this
    rank's flag per iteration, so that every rank takes the same number of products whatever its
    last bits say. None in a single process: no collective."""
    if trainer.world_size == 1:
        return None

    def agree(stop: bool) -> bool:
        flag = torch.tensor([float(stop)], device=trainer.strategy.root_device)
        return bool(trainer.strategy.reduce(flag, reduce_op="max").item() > 0)

    return agree


def block(matvec: MatVec, mask: Tensor) -> MatVec:
    """The product of the Hessian block of the coordinates where `mask` is true, embedded in the
    full space (zero elsewhere): v -> P H P v."""
    return lambda v: matvec(v * mask) * mask


class FixedBatchProbe(L.Callback):
    """A probe of the weights after t updates on the fixed training batch (module docstring), every
    `every_n_steps` steps (0, n, 2n, ...; after the last step too when it is a multiple of n).
    Subclasses implement `measure` on this rank's operator and reduce over the ranks as they
    need; every rank measures."""

    # The declarations of `normlab.probes.functional.StepProbe`.
    key = "probe"
    metrics: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    uses_torch_func = True  # grad and vmap over functional_call: a compiled model cannot take them

    def __init__(self, every_n_steps: int, num_examples: int, batch_seed: int, seed: int) -> None:
        self.every_n_steps = integer(f"{self.key}.every_n_steps", every_n_steps, 1)
        self.num_examples = integer(f"{self.key}.num_examples", num_examples, 1)
        self.batch_seed = integer(f"{self.key}.batch_seed", batch_seed, 0)
        self.seed = integer(f"{self.key}.seed", seed, 0)
        self._batches: list[Batch] = []
        self._last_step: int | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        chunk = trainer.datamodule.batch_size
        require(
            f"{self.key}.num_examples",
            self.num_examples,
            f"an integer >= data.batch_size={chunk} (the batch is taken in chunks of the "
            "training batch)",
            self.num_examples >= chunk,
        )

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        batches = fixed_training_batches(
            trainer.datamodule,
            self.num_examples,
            self.batch_seed,
            trainer.global_rank,
            trainer.world_size,
        )
        # In the dtype training batches get (float64 under trainer.precision=64-true).
        self._batches = [trainer.precision_plugin.convert_input(batch) for batch in batches]

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._probe(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._probe(trainer, pl_module)

    def _probe(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        step = trainer.global_step
        # A diverged step ends training at the step it started: probe it once.
        if step % self.every_n_steps or step == self._last_step:
            return
        self._last_step = step
        # The products too run in the context (autocast off, noise pinned), not only the graph.
        with fp32_context(pl_module.model, replay_last=False):
            local = hessian_operator(
                pl_module.model,
                pl_module.loss,
                detached_parameters(pl_module.model),
                self._batches,
                [n for n, _ in pl_module.model.named_parameters()],
            )
            metrics = self.measure(trainer, pl_module, local, step)
        log_to_loggers(trainer, metrics, step)

    def start_like(self, pl_module: L.LightningModule) -> Tensor:
        """A zero vector of the flattened parameters' size, dtype (>= fp32) and device."""
        params = list(pl_module.model.parameters())
        dtype = torch.promote_types(params[0].dtype, torch.float32)
        return torch.zeros(sum(p.numel() for p in params), dtype=dtype, device=params[0].device)

    def measure(
        self, trainer: L.Trainer, pl_module: L.LightningModule, local: MatVec, step: int
    ) -> dict[str, float]:
        """The metrics of `step` from `local`, the product of this rank's share of the objective
        (every rank calls it with the same arguments and must reduce over the ranks the same
        number of times)."""
        raise NotImplementedError


class SharpnessProbe(FixedBatchProbe):
    """Every `every_n_steps` steps, the top-`k` Hessian eigenvalues on the fixed batch by Lanczos
    (`tol`: relative Ritz residual, `max_iters`: products at most), and lambda_max of the block of
    layers 1..i-1 for each i in `below_layers` (module docstring)."""

    key = "probe.sharpness"
    metrics = (
        "curv/lambda_max",
        "curv/lr_lambda_max",
        "curv/lanczos_",
        "curv/top",
        "curv/below_layer",
    )

    def __init__(
        self,
        every_n_steps: int = 100,
        num_examples: int = 1024,
        batch_seed: int = 0,
        seed: int = 0,
        k: int = 1,
        tol: float = 1e-3,
        max_iters: int = 100,
        below_layers: Sequence[int] = (),
    ) -> None:
        super().__init__(every_n_steps, num_examples, batch_seed, seed)
        self.k = integer(f"{self.key}.k", k, 1)
        self.tol = positive_number(f"{self.key}.tol", tol)
        self.max_iters = integer(f"{self.key}.max_iters", max_iters, self.k, f"an integer >= k={k}")
        self.below_layers = integer_list(f"{self.key}.below_layers", below_layers)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        layers = list(weight_layers(pl_module.model))
        check_layers(
            f"{self.key}.below_layers",
            self.below_layers,
            layers[1:],
            "a weight layer past the first",
        )

    def block_mask(self, model: nn.Module, layer: int) -> Tensor:
        """True at the flattened coordinates of every parameter of layers 1..layer-1."""
        below = {n for i, names in weight_layers(model).items() if i < layer for n in names}
        return torch.cat(
            [torch.full((p.numel(),), n in below) for n, p in model.named_parameters()]
        )

    def measure(
        self, trainer: L.Trainer, pl_module: L.LightningModule, local: MatVec, step: int
    ) -> dict[str, float]:
        matvec = reduced(trainer, local, pl_module.loss_reduction)
        stops = any_rank_stops(trainer)
        like = self.start_like(pl_module)
        lr = current_lr(trainer)
        top = self._lanczos(matvec, like, step, block=0, k=self.k, any_stops=stops)
        lam = top.eigenvalues[0].item()
        metrics = {
            "curv/lambda_max": lam,
            "curv/lr_lambda_max": lr * lam,
            "curv/lanczos_iters": float(top.iterations),
            "curv/lanczos_residual": top.residual,
        }
        if self.k > 1:
            metrics |= {f"curv/top{j + 1}": v for j, v in enumerate(top.eigenvalues.tolist())}
        for i in self.below_layers:
            mask = self.block_mask(pl_module.model, i).to(like.device)
            sub = self._lanczos(
                block(matvec, mask), like, step, block=i, k=1, mask=mask, any_stops=stops
            )
            lam_i = sub.eigenvalues[0].item()
            metrics[f"curv/below_layer{i}/lambda_max"] = lam_i
            metrics[f"curv/below_layer{i}/lr_lambda_max"] = lr * lam_i
            metrics[f"curv/below_layer{i}/lanczos_iters"] = float(sub.iterations)
            metrics[f"curv/below_layer{i}/lanczos_residual"] = sub.residual
        return metrics

    def _lanczos(
        self,
        matvec: MatVec,
        like: Tensor,
        step: int,
        block: int,
        k: int,
        mask: Tensor | None = None,
        any_stops: Callable[[bool], bool] | None = None,
    ) -> LanczosResult:
        generator = private_generator(self.seed, step, _LANCZOS, block)
        v0 = torch.randn(like.numel(), generator=generator, dtype=torch.float64)
        v0 = v0.to(like)
        if mask is not None:  # start inside the block: Krylov space of P H P stays there
            v0 = v0 * mask
        return lanczos(matvec, v0, k=k, tol=self.tol, max_iters=self.max_iters, any_stops=any_stops)


class HessianTraceProbe(FixedBatchProbe):
    """Every `every_n_steps` steps, Hutchinson's estimate of tr(H) on the fixed batch from
    `samples` Rademacher vectors drawn from (seed, step): `curv/trace` (their mean) and
    `curv/trace_se` (its standard error, std / sqrt(samples); NaN for one sample). Every rank
    draws the same vectors, so v^T (sum_r H_r) v = sum_r v^T H_r v: the samples are taken on this
    rank's operator and their stack is reduced once (a product each, no collective per sample)."""

    key = "probe.hessian_trace"
    metrics = ("curv/trace",)

    def __init__(
        self,
        every_n_steps: int = 100,
        num_examples: int = 1024,
        batch_seed: int = 0,
        seed: int = 0,
        samples: int = 10,
    ) -> None:
        super().__init__(every_n_steps, num_examples, batch_seed, seed)
        self.samples = integer(f"{self.key}.samples", samples, 1)

    def measure(
        self, trainer: L.Trainer, pl_module: L.LightningModule, local: MatVec, step: int
    ) -> dict[str, float]:
        generator = private_generator(self.seed, step, _HUTCHINSON)
        forms = hutchinson_samples(local, self.samples, self.start_like(pl_module), generator)
        forms = reduce_over_ranks(trainer, forms, pl_module.loss_reduction)
        se = forms.std() / self.samples**0.5 if self.samples > 1 else torch.tensor(float("nan"))
        return {"curv/trace": forms.mean().item(), "curv/trace_se": se.item()}


class BatchSharpnessProbe(StepProbe):
    """Every `every_n_steps` steps, g^T H_B g / ||g||^2 with g the gradient the optimizer is about
    to apply (all-reduced by DDP: the global batch's) and H_B the Hessian on the step's own batch,
    one product (Andreyev & Beneventano's batch sharpness). Santurkar's beta_eff, the gradient
    change along the step over its length, tends to ||H_B g|| / ||g|| as the step shrinks: an
    upper bound of g^T H_B g / ||g||^2 (Cauchy-Schwarz), equal when g is an eigenvector of H_B.
    Under DDP each rank takes g^T H_r g on its shard, and the scalar is reduced once.

    The hook fires from `optimizer.step()` inside the training step, under the trainer's
    autocast (bf16-mixed): the graph *and* the product are taken in the fp32 context."""

    key = "probe.batch_sharpness"
    metrics = ("curv/batch_sharpness", "curv/lr_batch_sharpness")
    uses_torch_func = True

    def __init__(self, every_n_steps: int) -> None:
        super().__init__(integer(f"{self.key}.every_n_steps", every_n_steps, 1))

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any
    ) -> None:
        if self._batch is None:
            return
        model = pl_module.model
        names = [n for n, _ in model.named_parameters()]
        grads = {
            n: torch.zeros_like(p) if p.grad is None else p.grad.detach()
            for n, p in model.named_parameters()
        }
        g = at_least_fp32(flat(grads, names))
        with fp32_context(model, replay_last=True):
            local = hessian_operator(
                model, pl_module.loss, detached_parameters(model), [self._batch], names
            )
            quad = torch.dot(g, local(g)).reshape(1)
        quad = reduce_over_ranks(trainer, quad, pl_module.loss_reduction)
        sharpness = (quad[0] / torch.dot(g, g)).item()
        lr = float(optimizer.param_groups[0]["lr"])
        metrics = {"curv/batch_sharpness": sharpness, "curv/lr_batch_sharpness": lr * sharpness}
        log_to_loggers(trainer, metrics, self._step)
