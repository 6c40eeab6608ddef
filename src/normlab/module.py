"""The LightningModule: loss, metrics and optimizer of a classifier. It knows no probe."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]


def log_to_loggers(trainer: L.Trainer, metrics: Mapping[str, float | Tensor], step: int) -> None:
    """Send `metrics` to every logger at `step` (= trainer/global_step), bypassing `self.log`.

    `self.log` is throttled by `log_every_n_steps` and attaches its own step counter; probes and
    throttled training metrics log with an explicit step instead, so every value lands on the
    step it was measured at. Loggers write on rank 0 only."""
    for logger in trainer.loggers:
        logger.log_metrics(dict(metrics), step=step)


class ClassifierModule(L.LightningModule):
    """Cross-entropy training of `model` with the optimizer built by `optimizer(params)`.

    Logs `train/loss`, `train/acc` every `log_every_n_steps` steps (values of the batch *before*
    that step's update, at step = updates done so far) and `test/loss`, `test/acc` after each
    validation pass over the test set. A non-finite training loss skips the update, records
    `diverged_at_step` and stops training (the run ends `diverged`)."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: OptimizerFactory,
        num_classes: int = 10,
        log_every_n_steps: int = 50,
    ) -> None:
        super().__init__()
        # Manual optimization: one backward and one optimizer step, written out, without the
        # closure machinery of automatic optimization (a third of Lightning's per-step overhead
        # on a small net, scripts/bench.py). Optimizer hooks (on_before_optimizer_step, ...) run.
        self.automatic_optimization = False
        self.model = model
        self.optimizer_factory = optimizer
        self.log_every_n_steps = log_every_n_steps
        self.test_loss = MeanMetric()
        self.test_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.diverged_at_step: int | None = None

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor | None:
        x, y = batch
        logits = self.model(x)
        loss = F.cross_entropy(logits, y)
        step = self.global_step
        if not self._all_finite(loss):
            self.diverged_at_step = step
            self.trainer.should_stop = True
            return None  # no backward, no update
        if step % self.log_every_n_steps == 0:
            acc = (logits.argmax(dim=1) == y).float().mean()
            log_to_loggers(self.trainer, {"train/loss": loss.item(), "train/acc": acc.item()}, step)
        optimizer = self.optimizers()
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        optimizer.step()
        return loss.detach()

    def _all_finite(self, loss: Tensor) -> bool:
        finite = bool(torch.isfinite(loss))
        if self.trainer.world_size > 1:  # every rank must stop together, or DDP hangs
            finite = self.trainer.strategy.reduce_boolean_decision(finite, all=True)
        return finite

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

    def on_train_end(self) -> None:
        # `callback_metrics` is what Lightning sends back from `ddp_spawn` workers to the launching
        # process, whose own trainer and module never trained: report where the run ended there.
        self.trainer.callback_metrics["run/global_step"] = torch.tensor(self.global_step)
        if self.diverged_at_step is not None:
            self.trainer.callback_metrics["run/diverged_at_step"] = torch.tensor(
                self.diverged_at_step
            )

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer_factory(self.model.parameters())
