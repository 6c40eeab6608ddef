"""Releasing the process group of a DDP rank before its interpreter shuts down.

Under gloo nothing destroys the process group before the interpreter shuts down (Lightning's exit
handler is registered for nccl only), and even `destroy_process_group` leaves the `ProcessGroup`
object alive while something references it: the `DistributedDataParallel` wrapper and its reducer
sit in reference cycles that only the garbage collector frees, and at exit that collection happens
inside `Py_FinalizeEx`. The group's destructor waits for its worker threads; a worker still dropping the
work of the last collective (the divergence check's `all_gather` in `on_train_end`) must take the
GIL to release a tensor's Python object, and during finalisation `take_gil` ends that thread with
`pthread_exit`, whose unwinding through C++ calls `std::terminate`: the rank dies with SIGABRT
after its run has finished ("terminate called without an active exception"). Collecting the group
while the interpreter is still whole lets the workers finish their work, and the rank exits
cleanly: on a busy 2-core machine, 1 of 13 two-rank runs of tests/test_ddp.py's probe config died
so without this, none of 70 with it.
"""

from __future__ import annotations

import atexit
import gc

import lightning as L
import torch.distributed as dist

_registered = False


def release_process_group() -> None:
    """Destroy the default process group (if any) and collect the cycles that hold it."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    gc.collect()


class ReleaseProcessGroupAtExit(L.Callback):
    """On a rank of a multi-process run, release the process group at exit (see the module).

    Registered in `setup`, which runs in the rank's own process (a child under `ddp_spawn`), after
    the process group exists; `atexit` handlers run before the interpreter is torn down."""

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        global _registered
        if trainer.world_size > 1 and not _registered:
            atexit.register(release_process_group)
            _registered = True
