"""Models of the papers, each built with `normlab.norms.make_norm`."""

from normlab.models.mlp import MLP

__all__ = ["MLP"]
