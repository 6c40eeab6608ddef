"""A LightningDataModule for data sets that fit in device memory."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from pathlib import Path

import lightning as L
import torch
from torch import Tensor

from normlab.data.loader import Batch, TensorBatchLoader
from normlab.errors import DataNotFoundError, NormlabError


def download_or_explain(
    download: Callable[[Path], object], download_dir: Path, hint: str, fix: str
) -> None:
    """`download(download_dir)`; a failure (offline, a server error) becomes one DataNotFoundError
    line: `hint`, where the download went and why it failed, then `fix`. A NormlabError (the
    download was there but is not the data set) passes as it is."""
    try:
        download(download_dir)
    except NormlabError:
        raise
    except Exception as err:  # torchvision raises RuntimeError/URLError/OSError offline
        reason = (str(err).strip().splitlines() or [""])[-1].strip()[:200]
        raise DataNotFoundError(
            f"{hint} and downloading it into {download_dir} failed "
            f"({type(err).__name__}: {reason}); {fix}"
        ) from err


class InMemoryDataModule(L.LightningDataModule):
    """Loads (train, test) tensors once in `setup()` onto the training device and serves them as
    index slices. `batch_size` is the *global* batch: under DDP each of the W ranks takes
    `batch_size / W` samples a step, so the protocol does not depend on the number of devices.

    The held-out set is the test set (the papers report test-set numbers); it is logged as `test/*`.
    Data is built in `setup()`, not `__init__`, so `ddp_spawn` does not pickle it to every child.
    """

    def __init__(self, batch_size: int, eval_batch_size: int, seed: int) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.seed = seed
        self.train_x: Tensor | None = None

    @abstractmethod
    def load(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Return train_x, train_y, test_x, test_y as CPU tensors (inputs in storage dtype)."""

    def transform(self, x: Tensor) -> Tensor:
        """Turn a stored batch into the model's input (runs on whole batches, on the device)."""
        return x

    def _placement(self) -> tuple[torch.device, int, int]:
        trainer = self.trainer
        if trainer is None:
            return torch.device("cpu"), 0, 1
        return trainer.strategy.root_device, trainer.global_rank, trainer.world_size

    def setup(self, stage: str | None = None) -> None:
        if self.train_x is not None:
            return
        device, _, world_size = self._placement()
        if self.batch_size % world_size:
            raise NormlabError(
                f"data.batch_size={self.batch_size} is the global batch and must divide evenly "
                f"across {world_size} processes"
            )
        train_x, train_y, test_x, test_y = self.load()
        if len(train_x) // world_size < self.batch_size // world_size:
            raise NormlabError(
                f"data.batch_size={self.batch_size} exceeds the {len(train_x)} training examples "
                f"(over {world_size} process(es)): no full batch fits in an epoch"
            )
        self.train_x, self.train_y = train_x.to(device), train_y.to(device)
        self.test_x, self.test_y = test_x.to(device), test_y.to(device)

    def _loader(self, x: Tensor, y: Tensor, batch_size: int, train: bool) -> TensorBatchLoader:
        _, rank, world_size = self._placement()
        return TensorBatchLoader(
            x,
            y,
            batch_size // world_size if train else batch_size,
            shuffle=train,
            drop_last=train,
            seed=self.seed,
            rank=rank,
            world_size=world_size,
            transform=self.transform,
        )

    def train_dataloader(self) -> TensorBatchLoader:
        loader = self._loader(self.train_x, self.train_y, self.batch_size, train=True)
        if self.trainer is not None and self.trainer.global_step and len(loader):
            # Resuming (the checkpoint is restored before the loaders are built): every epoch has
            # len(loader) steps, so the step fixes the epoch (Lightning passes it to set_epoch)
            # and the batch to continue from, and the run sees the order it would have seen.
            # (A checkpoint of a run that *finished* mid-epoch counts, for Lightning, as an epoch
            # end: raising max_steps and resuming it starts a new epoch instead.)
            loader.resume_at(self.trainer.global_step % len(loader))
        return loader

    def val_dataloader(self) -> TensorBatchLoader:
        return self._loader(self.test_x, self.test_y, self.eval_batch_size, train=False)

    def probe_batch(self, size: int, seed: int = 0) -> Batch:
        """A fixed batch of `size` test examples (the same for every call and every norm), for
        probes that measure the net on held-out inputs."""
        if self.train_x is None:
            self.setup()
        size = min(size, len(self.test_x))
        generator = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(self.test_x), generator=generator)[:size].to(self.test_x.device)
        return self.transform(self.test_x[idx]), self.test_y[idx]
