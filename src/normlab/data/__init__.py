"""Data modules: the whole set on the device, batches as index slices."""

from normlab.data.base import InMemoryDataModule
from normlab.data.cifar10 import AugmentedBatchLoader, CIFAR10DataModule, CIFARShapedDataModule
from normlab.data.gaussian_linear import GaussianLinearDataModule
from normlab.data.loader import EpochShardSampler, TensorBatchLoader
from normlab.data.mnist import MNISTDataModule
from normlab.data.synthetic import SyntheticDataModule
from normlab.data.synthetic_cifar import SyntheticCIFARDataModule

__all__ = [
    "AugmentedBatchLoader",
    "CIFAR10DataModule",
    "CIFARShapedDataModule",
    "EpochShardSampler",
    "GaussianLinearDataModule",
    "InMemoryDataModule",
    "MNISTDataModule",
    "SyntheticCIFARDataModule",
    "SyntheticDataModule",
    "TensorBatchLoader",
]
