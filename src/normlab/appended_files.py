"""The files a run appends to, kept in step with its checkpoints.

A run appends rows to `metrics.csv` (`MetricsCSVLogger`, which buffers them) and to its probes'
files (`act_hist.csv`, `landscape.csv`, ...: each probe declares its `files`). A resume starts from
a checkpoint, so those files must then hold exactly the rows logged up to that checkpoint: rows
still in a buffer when the process was killed are lost for good, and rows written after the
checkpoint would be logged a second time by the resumed run. So when a checkpoint is saved, every
logger is flushed and each file's length in bytes is stored in the checkpoint; when a run resumes
from it, each file is cut back to that length (a file made after the checkpoint is removed), before
training goes on. Rank 0 alone writes these files, and alone cuts them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import lightning as L

from normlab.errors import NormlabError

# Where a checkpoint holds the files' lengths: {file name: bytes}.
CHECKPOINT_KEY = "normlab_appended_files"


class AppendedFilesAtCheckpoint(L.Callback):
    """Flush at each checkpoint and record the lengths of `files` (names under `run_dir`); cut
    them back to those lengths when the run resumes from the checkpoint (see the module)."""

    def __init__(self, run_dir: str | Path, files: Iterable[str]) -> None:
        self.run_dir = Path(run_dir)
        self.files = tuple(dict.fromkeys(files))

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        for logger in trainer.loggers:
            logger.save()
        checkpoint[CHECKPOINT_KEY] = {
            name: (self.run_dir / name).stat().st_size
            for name in self.files
            if (self.run_dir / name).exists()
        }

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        lengths = checkpoint.get(CHECKPOINT_KEY)
        if lengths is None:
            return  # a checkpoint from before normlab recorded them: the files stay as they are
        names = dict.fromkeys([*self.files, *lengths])  # a file of a probe now off is cut too
        paths = {name: self.run_dir / name for name in names}
        if not any(p.exists() for p in paths.values()):
            return  # resumed into a fresh directory: nothing logged there to cut back
        # Checked on every rank (the files are the same for all), so that all stop together.
        for name, path in paths.items():
            size = path.stat().st_size if path.exists() else 0
            if size < lengths.get(name, 0):
                raise NormlabError(
                    f"cannot resume into {self.run_dir}: {name} has {size} bytes, fewer than the "
                    f"{lengths[name]} the checkpoint was saved with (was it edited, replaced or "
                    "removed? resume into the run's own directory, hydra.run.dir=<run dir>)"
                )
        if trainer.global_rank != 0:
            return
        for name, path in paths.items():
            if name not in lengths:
                path.unlink(missing_ok=True)  # begun after the checkpoint: written again
            else:
                os.truncate(path, lengths[name])
