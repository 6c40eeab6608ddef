"""OmegaConf resolvers that normlab's configs use (registered when normlab is imported)."""

from __future__ import annotations

from omegaconf import OmegaConf

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
