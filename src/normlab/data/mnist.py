"""MNIST from the four canonical IDX files, read in place (the root may be read-only)."""

from __future__ import annotations

import gzip
import hashlib
import logging
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from normlab.data.base import InMemoryDataModule, download_or_explain
from normlab.errors import DataNotFoundError, NormlabError

log = logging.getLogger(__name__)

# torchvision's layout and the canonical MD5s of the .gz files.
FILES = {
    "train_images": ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    "train_labels": ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
    "test_images": ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
    "test_labels": ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
}
SUBDIR = Path("MNIST") / "raw"


def find_mnist(*roots: Path) -> Path | None:
    """The first `<root>/MNIST/raw` that holds all four files."""
    for root in roots:
        raw = Path(root) / SUBDIR
        if all((raw / name).is_file() for name, _ in FILES.values()):
            return raw
    return None


def download_mnist(download_dir: Path) -> Path:
    """Download through torchvision into `download_dir/MNIST/raw` (never into `data.root`)."""
    from torchvision.datasets import MNIST

    MNIST(str(download_dir), train=True, download=True)
    return Path(download_dir) / SUBDIR


def read_idx(path: Path, md5: str | None = None) -> np.ndarray:
    """Read a gzipped IDX file (verifying its MD5 when given) into a uint8 array."""
    data = path.read_bytes()
    if md5 is not None and hashlib.md5(data).hexdigest() != md5:
        raise NormlabError(
            f"{path} is corrupt: its MD5 is not the canonical {md5}; replace it with a fresh copy "
            "(or delete it to download again)"
        )
    raw = gzip.decompress(data)
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


class MNISTDataModule(InMemoryDataModule):
    """MNIST: 60k train / 10k test, 28x28 uint8 images, served as floats in [0, 1] (or {0, 1} with
    `binarize`, since Ioffe 2015 describes the inputs as binary).

    Looks for `MNIST/raw/*.gz` under `root`, then under `download_dir`; if neither has them and
    `download` is on, downloads into `download_dir`."""

    def __init__(
        self,
        root: str,
        download_dir: str,
        download: bool = True,
        binarize: bool = False,
        batch_size: int = 60,
        eval_batch_size: int = 10000,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, seed)
        self.root = Path(root).expanduser().resolve()
        self.download_dir = Path(download_dir).expanduser().resolve()
        self.download = download
        self.binarize = binarize

    def prepare_data(self) -> None:
        # Lightning calls this once per node before setup(): the one place that may download.
        if find_mnist(self.root, self.download_dir) is not None:
            return
        hint = (
            f"MNIST not found in data.root={self.root} (expected {SUBDIR}/"
            f"{{train,t10k}}-{{images-idx3,labels-idx1}}-ubyte.gz)"
        )
        fix = "point data.root at a folder holding MNIST/raw/*.gz (e.g. make reproduce DATA=../shared/data)"
        if not self.download:
            raise DataNotFoundError(f"{hint}; download is off: {fix}")
        download_or_explain(download_mnist, self.download_dir, hint, fix)

    def load(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        raw = find_mnist(self.root, self.download_dir)
        if raw is None:
            self.prepare_data()
            raw = find_mnist(self.root, self.download_dir)
        log.info("reading MNIST from %s", raw)
        arrays = {key: read_idx(raw / name, md5) for key, (name, md5) in FILES.items()}
        as_tensor = lambda a: torch.from_numpy(a.copy())  # noqa: E731
        return (
            as_tensor(arrays["train_images"]),
            as_tensor(arrays["train_labels"]).long(),
            as_tensor(arrays["test_images"]),
            as_tensor(arrays["test_labels"]).long(),
        )

    def transform(self, x: Tensor) -> Tensor:
        x = x.flatten(1)
        return (x > 127).float() if self.binarize else x.float().div_(255)
