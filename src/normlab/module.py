"""The LightningModules: loss, metrics and optimizer of a task. They know no probe.

`SupervisedModule` holds what every task shares (the optimization step, divergence handling,
throttled logging with explicit steps); `ClassifierModule` (cross-entropy, accuracy: the MLP and
VGG experiments) and `RegressionModule` (squared error: the deep linear network) add their loss
and metrics. `conf/module/` picks one.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Iterable, Mapping

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from normlab.errors import NormlabError
from normlab.norms import noisy_modules

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]


def log_to_loggers(trainer: L.Trainer, metrics: Mapping[str, float | Tensor], step: int) -> None:
    """Send `metrics` to every logger at `step` (= trainer/global_step), bypassing `self.log`.

    `self.log` is throttled by `log_every_n_steps` and attaches its own step counter; probes and
    throttled training metrics log with an explicit step instead, so every value lands on the
    step it was measured at. Loggers write on rank 0 only."""
    for logger in trainer.loggers:
        logger.log_metrics(dict(metrics), step=step)


class SupervisedModule(L.LightningModule):
    """Trains `model` on (x, y) batches with the optimizer built by `optimizer(params)`.

    Logs `train/loss` (and the task's other training metrics) every `log_every_n_steps` steps:
    values of the batch *before* that step's update, at step = updates done so far. A non-finite
    training loss records `diverged_at_step` and stops training (the run ends `diverged`).

    `finite_check_every_n_steps` says how often the host looks: 1 (default) checks every loss
    before its update, so a non-finite loss is never applied, at the cost of one host
    synchronisation a step (nothing on a CPU; on a GPU it stalls the queue each step). With n > 1
    the first non-finite step is tracked on the device and read every n steps and at the end of
    training: `diverged_at_step` is the same, but up to n - 1 further updates (with non-finite
    values) run before training stops."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: OptimizerFactory,
        log_every_n_steps: int = 50,
        finite_check_every_n_steps: int = 1,
    ) -> None:
        super().__init__()
        # Manual optimization: one backward and one optimizer step, written out, without the
        # closure machinery of automatic optimization (a third of Lightning's per-step overhead
        # on a small net, scripts/bench.py). Optimizer hooks (on_before_optimizer_step, ...) run.
        self.automatic_optimization = False
        self.model = model
        self.optimizer_factory = optimizer
        self.log_every_n_steps = log_every_n_steps
        if finite_check_every_n_steps < 1:
            raise NormlabError(
                f"module.finite_check_every_n_steps={finite_check_every_n_steps}; valid: an "
                "integer >= 1 (1: check every loss before its update)"
            )
        self.finite_check_every_n_steps = finite_check_every_n_steps
        self.diverged_at_step: int | None = None
        # n > 1: the first step whose loss was non-finite, on the device (-1: none yet).
        self._first_nonfinite: Tensor | None = None

    # How a batch's loss combines over examples: "mean" or "sum". Under DDP each rank sees a shard
    # and DDP averages gradients; a summed loss is scaled by the number of ranks so that the step
    # equals one process's step on the global batch, and the logged loss is reduced the same way.
    loss_reduction = "mean"

    @abstractmethod
    def loss(self, outputs: Tensor, y: Tensor) -> Tensor:
        """The training objective of a batch."""

    def train_metrics(self, outputs: Tensor, y: Tensor) -> dict[str, Tensor]:
        """Metrics of the training batch logged with `train/loss` (none by default)."""
        return {}

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        outputs = self.model(x)
        loss = self.loss(outputs, y)
        step = self.global_step
        if self._stop_if_diverged(loss, step):
            return  # no backward, no update
        world_size = self.trainer.world_size
        if step % self.log_every_n_steps == 0:
            metrics = {"train/loss": loss.detach()} | {
                f"train/{k}": v for k, v in self.train_metrics(outputs, y).items()
            }
            if world_size > 1:  # every rank takes this branch at the same step
                metrics = {
                    k: self.trainer.strategy.reduce(
                        v,
                        reduce_op="sum"
                        if k == "train/loss" and self.loss_reduction == "sum"
                        else "mean",
                    )
                    for k, v in metrics.items()
                }
            log_to_loggers(self.trainer, {k: v.item() for k, v in metrics.items()}, step)
        optimizer = self.optimizers()
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss * world_size if self.loss_reduction == "sum" else loss)
        optimizer.step()
        # Nothing returned: Lightning would only copy the loss into its step results.

    def setup(self, stage: str) -> None:
        # Noisy BN layers are built from one config and share its seed: give each layer its own
        # noise stream and each DDP rank its own per-element noise (Santurkar 2018, App. A.2.1).
        for index, layer in enumerate(noisy_modules(self.model)):
            layer.reseed(layer.seed, rank=self.global_rank, stream=index)

    def _stop_if_diverged(self, loss: Tensor, step: int) -> bool:
        """Whether training stops here because a loss was non-finite (`diverged_at_step` set)."""
        if self.finite_check_every_n_steps == 1:
            if self._all_finite(loss):
                return False
            self.diverged_at_step = step
            self.trainer.should_stop = True
            return True
        if self._first_nonfinite is None:
            self._first_nonfinite = torch.full((), -1, dtype=torch.long, device=loss.device)
        nonfinite = ~torch.isfinite(loss) & (self._first_nonfinite < 0)
        self._first_nonfinite = torch.where(nonfinite, step, self._first_nonfinite)
        if step % self.finite_check_every_n_steps or self._read_first_nonfinite() is None:
            return False
        self.trainer.should_stop = True
        return True

    def _read_first_nonfinite(self) -> int | None:
        """The first non-finite step over every rank (host sync), into `diverged_at_step`."""
        if self._first_nonfinite is None:
            return None
        first = self._first_nonfinite
        if self.trainer.world_size > 1:  # every rank must stop together, or DDP hangs
            steps = self.all_gather(first)
            steps = steps[steps >= 0]
            first = steps.min() if len(steps) else first.new_tensor(-1)
        if int(first) >= 0:
            self.diverged_at_step = int(first)
        return self.diverged_at_step

    def _all_finite(self, loss: Tensor) -> bool:
        finite = bool(torch.isfinite(loss))
        if self.trainer.world_size > 1:  # every rank must stop together, or DDP hangs
            finite = self.trainer.strategy.reduce_boolean_decision(finite, all=True)
        return finite

    def on_train_end(self) -> None:
        if self.diverged_at_step is None:
            self._read_first_nonfinite()  # n > 1: a loss after the last check
        # `callback_metrics` is what Lightning sends back from `ddp_spawn` workers to the launching
        # process, whose own trainer and module never trained: report where the run ended there.
        self.trainer.callback_metrics["run/global_step"] = torch.tensor(self.global_step)
        if self.diverged_at_step is not None:
            self.trainer.callback_metrics["run/diverged_at_step"] = torch.tensor(
                self.diverged_at_step
            )

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer_factory(self.model.parameters())


class ClassifierModule(SupervisedModule):
    """Cross-entropy; `train/acc`, and `test/loss`, `test/acc` after each validation pass over the
    test set."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: OptimizerFactory,
        num_classes: int | None = 10,
        log_every_n_steps: int = 50,
        finite_check_every_n_steps: int = 1,
    ) -> None:
        if num_classes is None:
            raise NormlabError(
                f"module=classifier needs the model's number of classes (model.out_features), "
                f"and {type(model).__name__} has none; for a regression model use "
                "module=regression (the santurkar2018/dln_* presets set it)"
            )
        super().__init__(model, optimizer, log_every_n_steps, finite_check_every_n_steps)
        self.test_loss = MeanMetric()
        self.test_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")

    def loss(self, outputs: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(outputs, y)

    def train_metrics(self, outputs: Tensor, y: Tensor) -> dict[str, Tensor]:
        return {"acc": (outputs.argmax(dim=1) == y).float().mean()}

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self.model(x)
        self.test_loss.update(F.cross_entropy(logits, y, reduction="none"))
        self.test_acc.update(logits, y)

    def on_validation_epoch_end(self) -> None:
        # torchmetrics reduces sums and counts across ranks, so uneven shards average correctly.
        metrics = {"test/loss": self.test_loss.compute(), "test/acc": self.test_acc.compute()}
        self.test_loss.reset()
        self.test_acc.reset()
        if not self.trainer.sanity_checking:
            log_to_loggers(
                self.trainer, {k: v.item() for k, v in metrics.items()}, self.global_step
            )


REDUCTIONS = ("sum", "mean")


class RegressionModule(SupervisedModule):
    """Squared error ||f(x) - y||^2 (Santurkar 2018's deep linear network), summed over output
    dimensions and, with `reduction="sum"`, over the batch too (`"mean"`: averaged over the batch).
    Logs `test/loss` after each validation pass as the mean over the test set of each example's
    squared error (per example, whatever `reduction`: with "sum", `train/loss` is summed over the
    training batch and so is `batch_size` times larger in scale)."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: OptimizerFactory,
        reduction: str = "sum",
        log_every_n_steps: int = 50,
        finite_check_every_n_steps: int = 1,
    ) -> None:
        if reduction not in REDUCTIONS:
            raise NormlabError(f"module.reduction={reduction!r}; valid choices: {list(REDUCTIONS)}")
        super().__init__(model, optimizer, log_every_n_steps, finite_check_every_n_steps)
        self.reduction = self.loss_reduction = reduction
        self.test_loss = MeanMetric()

    def loss(self, outputs: Tensor, y: Tensor) -> Tensor:
        per_example = (outputs - y).pow(2).sum(dim=1)
        return per_example.sum() if self.reduction == "sum" else per_example.mean()

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        self.test_loss.update((self.model(x) - y).pow(2).sum(dim=1))

    def on_validation_epoch_end(self) -> None:
        value = self.test_loss.compute()
        self.test_loss.reset()
        if not self.trainer.sanity_checking:
            log_to_loggers(self.trainer, {"test/loss": value.item()}, self.global_step)
