"""OmegaConf resolvers that normlab's configs use (registered when normlab is imported)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from omegaconf import OmegaConf

from normlab.bookkeeping import bookkeeping_overrides

# File systems limit a path component to 255 bytes; a job with many overrides would exceed it.
MAX_DIRNAME_BYTES = 200


def job_dirname(override_dirname: str, job_num: int) -> str:
    """A multirun job's sub-directory: its overrides (`norm=batch,seed=0`), or `job{N}` if none.
    A group's `/` becomes `.` (`+santurkar2018/dln_point=batch_lr1e-6` ->
    `+santurkar2018.dln_point=batch_lr1e-6`), so a job is one directory, not a tree. Past
    `MAX_DIRNAME_BYTES`, the overrides are cut and a hash of all of them appended, so two jobs
    never share a directory (the full overrides are in the run's summary.json)."""
    if not override_dirname:
        return f"job{job_num}"
    override_dirname = override_dirname.replace("/", ".")
    if len(override_dirname.encode()) <= MAX_DIRNAME_BYTES:
        return override_dirname
    digest = hashlib.sha1(override_dirname.encode()).hexdigest()[:12]
    cut = override_dirname.encode()[: MAX_DIRNAME_BYTES - 16].decode(errors="ignore")
    return f"{cut}...{digest}"


OmegaConf.register_new_resolver("job_dirname", job_dirname, replace=True)
# The overrides a job directory's name leaves out: normlab.bookkeeping's one list.
OmegaConf.register_new_resolver("bookkeeping_overrides", bookkeeping_overrides, replace=True)


def job_record_subdir(output_dir: str) -> str | None:
    """Hydra's `output_subdir` for a job: `.hydra`, or None (write no record) when the directory
    already holds a run. Hydra writes `.hydra/*.yaml` before normlab's code runs; a sweep launched
    again into its own directory, a requeued job or a refused run must not rewrite the record of
    the run there (normlab.resume compares that run's config with the new one)."""
    return None if (Path(output_dir) / "summary.json").exists() else ".hydra"


def job_log_file(output_dir: str) -> str:
    """Where a job's log goes: `train.log` in its directory, appended to by a resumed run; for a
    run already done (a re-launched sweep skips it), nowhere, so that its files stay untouched."""
    from normlab.resume import DONE_STATUSES, read_summary

    summary = read_summary(Path(output_dir)) or {}
    done = summary.get("status") in DONE_STATUSES
    return os.devnull if done else str(Path(output_dir) / "train.log")


OmegaConf.register_new_resolver("job_record_subdir", job_record_subdir, replace=True)
OmegaConf.register_new_resolver("job_log_file", job_log_file, replace=True)
