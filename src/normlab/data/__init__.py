"""Data modules: the whole set on the device, batches as index slices."""

from normlab.data.base import InMemoryDataModule
from normlab.data.gaussian_linear import GaussianLinearDataModule
from normlab.data.loader import EpochShardSampler, TensorBatchLoader
from normlab.data.mnist import MNISTDataModule
from normlab.data.synthetic import SyntheticDataModule

__all__ = [
    "EpochShardSampler",
    "GaussianLinearDataModule",
    "InMemoryDataModule",
    "MNISTDataModule",
    "SyntheticDataModule",
    "TensorBatchLoader",
]
