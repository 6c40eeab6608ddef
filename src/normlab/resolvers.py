"""OmegaConf resolvers that normlab's configs use (registered when normlab is imported)."""

from __future__ import annotations

import hashlib

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
