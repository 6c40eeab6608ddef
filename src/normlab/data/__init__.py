"""Data modules: the whole set on the device, batches as index slices."""

from normlab.data.base import InMemoryDataModule
from normlab.data.loader import EpochShardSampler, TensorBatchLoader
from normlab.data.mnist import MNISTDataModule
from normlab.data.synthetic import SyntheticDataModule

__all__ = [
    "EpochShardSampler",
    "InMemoryDataModule",
    "MNISTDataModule",
    "SyntheticDataModule",
    "TensorBatchLoader",
]
