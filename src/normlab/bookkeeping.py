"""The config keys that say where and how a run was kept, not what it computed.

One list, used by the job directories' names (a multirun job is named by its other overrides:
`conf/hydra/default.yaml` asks `bookkeeping_overrides` which to leave out) and by
`normlab.results` (runs that differ only in these keys are one setting: a figure draws them
together). The rule: a key is bookkeeping only if a test shows that changing it changes no logged
value (`tests/test_bookkeeping.py`). A probe's cadence is *not* bookkeeping (it decides which
evaluations exist), nor `threads` (the intra-op thread count changes a conv net's float32 sums:
a tiny VGG's step-1 loss 2.583869218826294 with 1 thread, 2.583869457244873 with 2), nor
`compile.*` (inductor fuses and reorders: tests/test_compile.py compares to 1e-5), nor the
accelerator.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable

BOOKKEEPING_KEYS = (
    "paths.*",  # where runs and data sets are kept
    "data.root",
    "data.download_dir",
    "logger.*",  # W&B on or off, its project and tags
    "resources.*",  # what a job asks a cluster for (hydra/launcher=slurm|local)
    "trainer.enable_progress_bar",
    "trainer.enable_checkpointing",
    # A resumed run continues the same computation (tests/test_train.py, the resume tests).
    "resume",
    # How often the host looks for a non-finite loss: a finished run's numbers and a diverged
    # run's diverged_at_step do not depend on it (tests/test_train.py).
    "module.finite_check_every_n_steps",
)

# Overrides that name the job's place in a sweep rather than its config: kept out of job
# directory names too (the sweep directory already names the experiment).
SWEEP_KEYS = ("experiment", "hydra.*", "hydra/*")


def is_bookkeeping(key: str, globs: Iterable[str] = BOOKKEEPING_KEYS) -> bool:
    """Whether config key `key` (dotted; a config group such as `logger` counts as its keys)
    matches one of `globs`."""
    return any(fnmatch.fnmatchcase(key, g) or fnmatch.fnmatchcase(f"{key}.x", g) for g in globs)


def bookkeeping_overrides(task_overrides: Iterable[str]) -> list[str]:
    """The keys (Hydra's `key_or_group`) of the command-line overrides that a job directory's name
    leaves out: bookkeeping keys and the sweep's own keys."""
    keys = []
    for line in task_overrides:
        key = str(line).split("=", 1)[0].lstrip("+~")
        if is_bookkeeping(key) or is_bookkeeping(key, SWEEP_KEYS):
            keys.append(key)
    return keys
