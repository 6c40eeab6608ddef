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
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    if signal.getsignal(signal.SIGTERM) is _handler:  # not inside Lightning's `fit`
        raise SystemExit(128 + signum)


def install() -> None:
    """Handle SIGTERM and SIGINT in this process as the module says."""
    received.clear()
    for signum in HANDLED:
        signal.signal(signum, _handler)


def last_signal() -> signal.Signals | None:
    """The last signal received since `install()`, or None."""
    return signal.Signals(received[-1]) if received else None


def exit_code(err: BaseException) -> int | None:
    """The exit code a run ended by `err` should end its process with: 128 + the signal's number
    when a signal ended it, else None (keep `err`'s own)."""
    signum = last_signal()
    if signum is None or not isinstance(err, (KeyboardInterrupt, SystemExit)):
        return None
    return 128 + int(signum)
