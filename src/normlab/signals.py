"""SIGTERM and SIGINT end a run as interrupted, with the signal's exit code (143, 130).

A scheduler stops a job with SIGTERM (SLURM at preemption and at the time limit) and a user with
Ctrl-C (SIGINT). Lightning handles both only inside `Trainer.fit`, and not the way a scheduler
reads: SIGTERM ends `fit` with its `SIGTERMException`, a `SystemExit` whose code is None (exit 0,
"success"), Ctrl-C with `sys.exit(1)`; before `fit` (composing the config, loading the data) a
SIGTERM kills the process on the spot, its run left `running`. `install()`, called first thing by
the command line, handles both from the start: a signal is recorded (`received`), SIGINT raises
KeyboardInterrupt, and SIGTERM raises `SystemExit(143)` unless Lightning's handler is in place (in
`fit`, which then stops the run at the end of the step and calls this handler too). The run then
writes its summary (`interrupted`, the signal named) and `exit_code` turns what ended it into the
signal's code.
"""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

# The signals received since `install()`, in order.
received: list[int] = []
HANDLED = (signal.SIGTERM, signal.SIGINT)


def _handler(signum: int, frame: FrameType | None) -> None:
    received.append(signum)
    if len(received) > 1:
        return  # the run is already stopping (writing its summary): let it finish
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    if signal.getsignal(signal.SIGTERM) is _handler:  # not inside Lightning's `fit`
        raise SystemExit(128 + signum)


def install() -> None:
    """Handle SIGTERM and SIGINT in this process as the module says; in a submitit job, record
    its requeue signal (SIGUSR2) too before submitit's handler acts on it."""
    global _submitit_requeue
    received.clear()
    for signum in HANDLED:
        signal.signal(signum, _handler)
    handler = signal.getsignal(signal.SIGUSR2)
    if type(getattr(handler, "__self__", None)).__module__.startswith("submitit."):
        _submitit_requeue = handler
        signal.signal(signal.SIGUSR2, _requeue_before_fit)


def ending_signal(err: BaseException) -> signal.Signals | None:
    """The signal that ended a run with `err`: the first one received since `install()`, or
    SIGTERM for Lightning's `SIGTERMException` (a process that did not install these handlers,
    e.g. a submitit job, whose SIGTERM Lightning caught in `fit`); None for anything else."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    if not isinstance(err, (KeyboardInterrupt, SystemExit)):
        return None
    if received:
        return signal.Signals(received[0])
    return signal.SIGTERM if isinstance(err, SIGTERMException) else None


def exit_code(err: BaseException) -> int | None:
    """The exit code a run ended by `err` should end its process with: 128 + the signal's number
    when SIGTERM or SIGINT ended it, else None (keep `err`'s own: submitit's requeue after SIGUSR2
    exits with the code its launcher reads)."""
    signum = ending_signal(err)
    return None if signum not in HANDLED else 128 + int(signum)


# submitit's handler of its requeue signal (SIGUSR2) in this process, found by `install()`.
_submitit_requeue: Any = None


def requeue_handler() -> Any:
    """The handler of submitit's requeue signal in this process, or None outside a submitit job.

    A SLURM job of `hydra/launcher=slurm` gets SIGUSR2 from SLURM `signal_delay_s` before its time
    limit (and at preemption when the cluster is set up so); submitit's handler then resubmits the
    same Hydra job (the job requeued in place, `max_num_timeout` times at most) and exits. The job
    runs again in its directory and resumes from its checkpoint (normlab.resume)."""
    return _submitit_requeue


def _requeue_before_fit(signum: int, frame: FrameType | None) -> None:
    received.append(signum)  # the run then names SIGUSR2 as what ended it
    _submitit_requeue(signum, frame)


class CheckpointBeforeRequeue(Callback):
    """In a submitit job, SIGUSR2 (the job is about to be requeued) first saves the run's
    checkpoint at the end of the current step (or evaluation), so that the requeued job loses no
    step, and then lets submitit requeue it: the run ends `interrupted`, `error` SIGUSR2 (also when
    submitit does not requeue it any more, `max_num_timeout` reached).

    Requeue has one owner: submitit. Lightning's own SLURM requeue (`SLURMEnvironment(
    auto_requeue=True)`, on SIGUSR1) is turned off by normlab.train, since it would requeue the job
    a second time and restore its `hpc_ckpt_*` files outside normlab's resume."""

    def __init__(self, checkpoint: Path) -> None:
        self.checkpoint = checkpoint
        self._asked = False

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        signal.signal(signal.SIGUSR2, self._ask)

    def _ask(self, signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        self._asked = True  # acted on at the end of the step: a checkpoint needs a whole step

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self._requeue_if_asked(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._requeue_if_asked(trainer)

    def _requeue_if_asked(self, trainer: L.Trainer) -> None:
        if not self._asked:
            return
        trainer.save_checkpoint(self.checkpoint)
        signal.signal(signal.SIGUSR2, _submitit_requeue)
        _submitit_requeue(signal.SIGUSR2, None)  # requeues, then exits with its own code

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if not self._asked:
            signal.signal(signal.SIGUSR2, _requeue_before_fit)
