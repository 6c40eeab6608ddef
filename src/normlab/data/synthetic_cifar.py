"""A small, learnable, CIFAR-shaped data set generated from a seed: for tests and demos offline."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from normlab.data.cifar10 import CIFAR10_MEAN, CIFAR10_STD, CIFARShapedDataModule


class SyntheticCIFARDataModule(CIFARShapedDataModule):
    """`num_classes` noisy colour patterns stored as uint8 [N, 3, 32, 32] images, like CIFAR-10.

    Each class has a smooth random prototype (a `grid` x `grid` RGB pattern upsampled to 32x32, so
    that a few pixels of crop shift keep the class recognisable); a sample is its prototype plus
    Gaussian pixel noise, clipped and quantised to uint8. Generated from `data_seed` (independent
    of the training seed). Batches take the same path as CIFAR-10's: the same normalisation and
    the same optional crop + flip of training batches."""

    def __init__(
        self,
        num_train: int = 2000,
        num_test: int = 500,
        num_classes: int = 10,
        grid: int = 4,
        noise: float = 0.35,
        data_seed: int = 1234,
        augment: bool = False,
        crop_padding: int = 4,
        mean: Sequence[float] = CIFAR10_MEAN,
        std: Sequence[float] = CIFAR10_STD,
        batch_size: int = 128,
        eval_batch_size: int = 500,
        seed: int = 0,
    ) -> None:
        super().__init__(
            augment=augment,
            crop_padding=crop_padding,
            mean=mean,
            std=std,
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            seed=seed,
        )
        self.num_train, self.num_test, self.num_classes = num_train, num_test, num_classes
        self.grid, self.noise, self.data_seed = grid, noise, data_seed

    def load(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        g = torch.Generator().manual_seed(self.data_seed)
        coarse = torch.rand(self.num_classes, 3, self.grid, self.grid, generator=g)
        prototypes = F.interpolate(coarse, size=(32, 32), mode="bilinear", align_corners=False)

        def draw(n: int) -> tuple[Tensor, Tensor]:
            y = torch.randint(self.num_classes, (n,), generator=g)
            x = prototypes[y] + self.noise * torch.randn(n, 3, 32, 32, generator=g)
            return (x.clamp(0, 1) * 255).round().to(torch.uint8), y

        return *draw(self.num_train), *draw(self.num_test)
