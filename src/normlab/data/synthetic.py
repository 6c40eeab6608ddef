"""A small, learnable, MNIST-shaped data set generated from a seed: for tests and demos offline."""

from __future__ import annotations

import torch
from torch import Tensor

from normlab.data.base import InMemoryDataModule


class SyntheticDataModule(InMemoryDataModule):
    """`num_classes` Gaussian clusters in [0, 1]^(H*W) stored as uint8 images, like MNIST.

    Each class has a random prototype image; a sample is its prototype plus Gaussian noise, clipped
    and quantised to uint8. Generated from `data_seed` (independent of the training seed)."""

    def __init__(
        self,
        num_train: int = 2000,
        num_test: int = 500,
        image_size: int = 28,
        num_classes: int = 10,
        noise: float = 0.35,
        data_seed: int = 1234,
        batch_size: int = 60,
        eval_batch_size: int = 500,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, seed)
        self.num_train, self.num_test = num_train, num_test
        self.image_size, self.num_classes = image_size, num_classes
        self.noise, self.data_seed = noise, data_seed

    def load(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        g = torch.Generator().manual_seed(self.data_seed)
        side = self.image_size
        prototypes = torch.rand(self.num_classes, side, side, generator=g)

        def draw(n: int) -> tuple[Tensor, Tensor]:
            y = torch.randint(self.num_classes, (n,), generator=g)
            x = prototypes[y] + self.noise * torch.randn(n, side, side, generator=g)
            return (x.clamp(0, 1) * 255).round().to(torch.uint8), y

        return *draw(self.num_train), *draw(self.num_test)

    def transform(self, x: Tensor) -> Tensor:
        return x.float().div_(255).flatten(1)
