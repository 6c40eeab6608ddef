"""What a run prints: Lightning's progress bar on a terminal, one plain line per evaluation
elsewhere (a log file, a SLURM job), and none of the libraries' known noise.

A progress bar redraws itself in place; written to a file it is ~1 MB per 6,000 steps of
carriage-return frames. `trainer.enable_progress_bar: auto` (the default) shows the bar only when
stderr is a terminal; otherwise `ProgressLines` logs a line at each evaluation.
"""

from __future__ import annotations

import logging
import sys
import time
import warnings
from typing import Any

import lightning as L

log = logging.getLogger("normlab.train")

# Messages of the stack that say nothing about a normlab run, each with why it is noise here.
# Matched by their text, so that any other warning of the same libraries still shows.
_LIGHTNING_INFO_NOISE = (
    # An advertisement printed by every Trainer.
    "💡 Tip: For seamless cloud logging",
)
_WARNING_NOISE = (
    # lightning 2.6 calls a torch.utils._pytree API that torch 2.14 deprecates; nothing to act on.
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    # normlab logs every value with an explicit step (module.log_to_loggers), so Lightning's
    # per-epoch logging interval, which this compares against an epoch's length, is never used.
    r"The number of training batches \(\d+\) is smaller than the logging interval",
)


class _DropMessages(logging.Filter):
    def __init__(self, prefixes: tuple[str, ...]) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefixes)


_filtered = False


def silence_library_noise() -> None:
    """Filter the messages listed above (idempotent; call before the Trainer is built)."""
    global _filtered
    for pattern in _WARNING_NOISE:
        warnings.filterwarnings("ignore", message=pattern)
    if _filtered:
        return
    _filtered = True
    drop = _DropMessages(_LIGHTNING_INFO_NOISE)
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).addFilter(drop)


def progress_bar_wanted(setting: Any) -> bool:
    """`trainer.enable_progress_bar`: `auto` -> whether stderr is a terminal; true/false as is."""
    if setting == "auto":
        return sys.stderr.isatty()
    return bool(setting)


class ProgressLines(L.Callback):
    """One log line after each evaluation of the test set: step, rate, the latest metrics."""

    KEYS = ("train/loss", "train/acc", "test/loss", "test/acc")

    def __init__(self, max_steps: int) -> None:
        self.max_steps = max_steps
        self._t0 = time.monotonic()
        self._step0 = 0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0, self._step0 = time.monotonic(), trainer.global_step

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        step = trainer.global_step
        elapsed = time.monotonic() - self._t0
        rate = (step - self._step0) / elapsed if elapsed > 0 else float("nan")
        latest = _latest_metrics(trainer)
        values = " ".join(f"{k}={latest[k]:.4g}" for k in self.KEYS if k in latest)
        log.info(
            "step %d/%d (%.1f steps/s, %.0f s) %s", step, self.max_steps, rate, elapsed, values
        )


def _latest_metrics(trainer: L.Trainer) -> dict[str, float]:
    """The last values the run's metrics.csv logger holds or wrote (it is always the first)."""
    from normlab.runlog import MetricsCSVLogger

    for logger in trainer.loggers:
        if isinstance(logger, MetricsCSVLogger):
            return logger.latest
    return {}
