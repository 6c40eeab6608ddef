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
from types import FrameType

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
    """Handle SIGTERM and SIGINT in this process as the module says."""
    received.clear()
    for signum in HANDLED:
        signal.signal(signum, _handler)


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
    when a signal ended it, else None (keep `err`'s own)."""
    signum = ending_signal(err)
    return None if signum is None else 128 + int(signum)
