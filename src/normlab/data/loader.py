"""Batches as index slices of tensors that already sit on the training device.

No per-sample `DataLoader`: the whole set is one tensor and a batch is `x[idx]`. Lightning only
shards real `DataLoader`s under DDP, so the sharding is done here: each rank takes a disjoint,
equal-sized shard of every epoch's permutation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import Tensor

Batch = tuple[Tensor, Tensor]


class EpochShardSampler:
    """The indices one rank sees in one epoch.

    The epoch's permutation is drawn from (seed, epoch) alone, so every rank draws the same one and
    a resumed run sees the same order. Lightning calls `set_epoch` before each epoch (it looks for
    a `sampler` attribute on the loader). With `drop_last`, every rank gets the same number of
    samples (the remainder of the permutation is dropped), so DDP ranks take the same number of
    steps.
    """

    def __init__(
        self,
        num_samples: int,
        *,
        shuffle: bool,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = True,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        self.num_samples = num_samples
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.drop_last = drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_samples // self.world_size
        return len(range(self.rank, self.num_samples, self.world_size))

    def indices(self, device: torch.device | str = "cpu") -> Tensor:
        if self.shuffle:
            generator = torch.Generator().manual_seed(_mix(self.seed, self.epoch))
            order = torch.randperm(self.num_samples, generator=generator)
        else:
            order = torch.arange(self.num_samples)
        if self.drop_last:
            order = order[: len(self) * self.world_size]
        # Strided shards: rank r takes positions r, r + W, r + 2W, ... of the epoch's order.
        return order[self.rank :: self.world_size].to(device)


def _mix(seed: int, epoch: int) -> int:
    """A per-epoch seed from (seed, epoch); distinct pairs give distinct seeds in practice."""
    return (seed * 1_000_003 + epoch * 7_919 + 0x5EED) % (2**63 - 1)


class TensorBatchLoader:
    """Iterates `(transform(x[idx]), y[idx])` over one rank's shard of an epoch, `batch_size` at a
    time. `len()` is the number of batches. With `drop_last` a short final batch is dropped."""

    def __init__(
        self,
        x: Tensor,
        y: Tensor,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = True,
        transform: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        if len(x) != len(y):
            raise ValueError(f"x and y differ in length: {len(x)} vs {len(y)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.transform = transform
        self._start = 0
        # Lightning duck-types loaders: it calls `sampler.set_epoch` and reads `batch_sampler`.
        self.batch_sampler = None
        self.sampler = EpochShardSampler(
            len(x),
            shuffle=shuffle,
            seed=seed,
            rank=rank,
            world_size=world_size,
            drop_last=drop_last,
        )

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def resume_at(self, batch: int) -> None:
        """Start the next epoch's iteration at `batch` (a run resumed mid-epoch)."""
        self._start = batch

    def __iter__(self) -> Iterator[Batch]:
        idx = self.sampler.indices(self.x.device)
        start, self._start = self._start, 0
        for b in range(start, len(self)):
            sel = idx[b * self.batch_size : (b + 1) * self.batch_size]
            x = self.x[sel]
            yield (self.transform(x) if self.transform else x), self.y[sel]
