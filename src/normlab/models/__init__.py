"""Models of the papers, each built with `normlab.norms.make_norm`."""

from normlab.models.dln import DLN
from normlab.models.mlp import MLP
from normlab.models.vgg import VGG

__all__ = ["DLN", "MLP", "VGG"]
