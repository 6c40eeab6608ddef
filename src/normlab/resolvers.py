"""OmegaConf resolvers that normlab's configs use (registered when normlab is imported)."""

from __future__ import annotations

import hashlib

from omegaconf import OmegaConf

from normlab.bookkeeping import bookkeeping_overrides
from normlab.errors import NormlabError

VGG_TARGET = "normlab.models.VGG"


def vgg_only(value: float, model_target: str) -> float:
    """`value` if the config's model is the VGG; a NormlabError naming the model otherwise.

    `scale=cpu` shrinks the VGG presets' width: other models have no such width (the DLN's
    `model.width` is its layer size), and their presets already run at paper scale on a CPU."""
    if model_target != VGG_TARGET:
        raise NormlabError(
            f"scale=cpu shrinks the VGG presets (model=vgg) only; this config's model is "
            f"{model_target}, whose presets run at scale=paper on a CPU: drop scale=cpu"
        )
    return value


OmegaConf.register_new_resolver("vgg_only", vgg_only, replace=True)


# File systems limit a path component to 255 bytes; a job with many overrides would exceed it.
MAX_DIRNAME_BYTES = 200


def job_dirname(override_dirname: str, job_num: int) -> str:
    """A multirun job's sub-directory: its overrides (`norm=batch,seed=0`), or `job{N}` if none.
    Past `MAX_DIRNAME_BYTES`, the overrides are cut and a hash of all of them appended, so two
    jobs never share a directory (the full overrides are in the run's summary.json)."""
    if not override_dirname:
        return f"job{job_num}"
    if len(override_dirname.encode()) <= MAX_DIRNAME_BYTES:
        return override_dirname
    digest = hashlib.sha1(override_dirname.encode()).hexdigest()[:12]
    cut = override_dirname.encode()[: MAX_DIRNAME_BYTES - 16].decode(errors="ignore")
    return f"{cut}...{digest}"


OmegaConf.register_new_resolver("job_dirname", job_dirname, replace=True)
# The overrides a job directory's name leaves out: normlab.bookkeeping's one list.
OmegaConf.register_new_resolver("bookkeeping_overrides", bookkeeping_overrides, replace=True)
