"""Santurkar 2018, App. A.1: the deep linear network's data. x ~ N(0, I_d), target y = A x with A
a d x d matrix of i.i.d. standard Gaussian entries; 1000 training points, full-batch descent."""

from __future__ import annotations

import torch
from torch import Tensor

from normlab.data.base import InMemoryDataModule


class GaussianLinearDataModule(InMemoryDataModule):
    """Drawn from `data_seed`, its own seed, so the problem (A and the points) stays fixed while
    the init seed varies. The held-out set is a fresh draw from the same distribution (the paper
    reports training loss only; `test/loss` is extra)."""

    def __init__(
        self,
        dim: int = 10,
        num_train: int = 1000,
        num_test: int = 1000,
        data_seed: int = 0,
        batch_size: int = 1000,
        eval_batch_size: int = 1000,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, seed)
        self.dim, self.num_train, self.num_test, self.data_seed = (
            dim,
            num_train,
            num_test,
            data_seed,
        )

    def load(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        g = torch.Generator().manual_seed(self.data_seed)
        self.A = torch.randn(self.dim, self.dim, generator=g)
        train_x = torch.randn(self.num_train, self.dim, generator=g)
        test_x = torch.randn(self.num_test, self.dim, generator=g)
        return train_x, train_x @ self.A.T, test_x, test_x @ self.A.T
