"""CIFAR-10 from one NumPy archive, `cifar10.npz`, read in place (its folder may be read-only).

The archive (the format of `../shared/data/cifar10.npz`, and the only format read here):
`train_images` uint8 [50000, 32, 32, 3] (HWC, RGB), `train_labels` uint8 [50000],
`test_images` uint8 [10000, 32, 32, 3], `test_labels` uint8 [10000]. When no archive is found and
`download` is on, it is prepared once from a torchvision download into `download_dir` (never into
`data.root`); after that only the archive is read. Any number of images is accepted (a slice of
the set is a valid archive); the per-image shape, the dtypes and the label range are checked.

On the device, the training set is one uint8 tensor stored NCHW (permuted once at load), so a
batch is an index slice that needs no permute. `transform` turns a stored batch into the model's
input (float32, per-channel normalised). With `augment`, training batches (never evaluation or
probe batches) are first randomly cropped (zero padding of `crop_padding` pixels) and flipped
horizontally, in uint8 on the device, by `AugmentedBatchLoader`: see there for where its
randomness comes from.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from normlab.data.base import InMemoryDataModule, download_or_explain
from normlab.data.loader import Batch, TensorBatchLoader
from normlab.errors import DataNotFoundError, NormlabError

log = logging.getLogger(__name__)

FILENAME = "cifar10.npz"
IMAGE_HWC = (32, 32, 3)
NUM_CLASSES = 10
# Per-channel mean and std of the 50,000 training images, pixels scaled to [0, 1].
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
FORMAT = (
    "train_images uint8 [N, 32, 32, 3] (HWC, RGB), train_labels uint8 [N] in 0..9, "
    "test_images uint8 [M, 32, 32, 3], test_labels uint8 [M] in 0..9"
)
KEYS = ("train_images", "train_labels", "test_images", "test_labels")


def find_cifar10(*roots: Path) -> Path | None:
    """The first `<root>/cifar10.npz` that exists."""
    for root in roots:
        path = Path(root) / FILENAME
        if path.is_file():
            return path
    return None


def _describe(a: np.ndarray) -> str:
    return f"{a.dtype} [{', '.join(str(n) for n in a.shape)}]"


def check_cifar10_arrays(arrays: Mapping[str, np.ndarray], source: Path | str) -> None:
    """Raise a one-line NormlabError listing every array of `arrays` that is not in the format:
    the key, what was expected and what was found."""
    problems = []
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != IMAGE_HWC:
            hint = " (channels first? the format is HWC)" if images.shape[1:] == (3, 32, 32) else ""
            problems.append(
                f"{split}_images is {_describe(images)}, expected uint8 [N, 32, 32, 3]{hint}"
            )
        if labels.dtype != np.uint8 or labels.shape != images.shape[:1]:
            problems.append(
                f"{split}_labels is {_describe(labels)}, expected uint8 [{images.shape[0]}] "
                f"(one label per image of {split}_images)"
            )
        elif len(labels) and labels.max() >= NUM_CLASSES:
            problems.append(f"{split}_labels holds {labels.max()}, expected labels in 0..9")
        if images.shape[:1] == (0,):
            problems.append(f"{split}_images is empty")
    if problems:
        raise NormlabError(f"{source} is not a CIFAR-10 archive: {'; '.join(problems)}")


def read_cifar10_npz(path: Path) -> dict[str, np.ndarray]:
    """The four arrays of a `cifar10.npz`, checked against the format."""
    try:
        archive = np.load(path, allow_pickle=False)
    except Exception as err:
        raise NormlabError(
            f"cannot read {path} as a NumPy archive ({type(err).__name__}: {err}); "
            f"expected an .npz holding {FORMAT}"
        ) from err
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise NormlabError(
            f"{path} holds a single {_describe(archive)} array, expected an .npz holding {FORMAT}"
        )
    with archive:
        missing = [key for key in KEYS if key not in archive.files]
        if missing:
            raise NormlabError(
                f"{path} is not a CIFAR-10 archive: missing key(s) {', '.join(missing)} "
                f"(found: {', '.join(archive.files) or 'none'}); expected {FORMAT}"
            )
        try:
            # Each read decompresses one array into a fresh buffer: no further copy is made here.
            arrays = {key: archive[key] for key in KEYS}
        except Exception as err:
            raise NormlabError(f"cannot read {path} ({type(err).__name__}: {err})") from err
    check_cifar10_arrays(arrays, path)
    return arrays


def write_npz_atomically(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write an uncompressed .npz through a temporary file in the same folder and `os.replace`,
    so that a reader (or a crash) never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def download_cifar10(download_dir: Path) -> Path:
    """Download CIFAR-10 through torchvision into `download_dir` and convert it, once, into
    `download_dir/cifar10.npz` (torchvision's own files stay beside it)."""
    from torchvision.datasets import CIFAR10

    download_dir = Path(download_dir)
    download_dir.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split, train in (("train", True), ("test", False)):
        ds = CIFAR10(str(download_dir), train=train, download=True)
        arrays[f"{split}_images"] = np.ascontiguousarray(ds.data, dtype=np.uint8)
        arrays[f"{split}_labels"] = np.asarray(ds.targets, dtype=np.uint8)
    path = download_dir / FILENAME
    check_cifar10_arrays(arrays, f"the CIFAR-10 download in {download_dir}")
    write_npz_atomically(path, arrays)
    log.info("prepared %s from torchvision's CIFAR-10 download", path)
    return path


def crop_flip(x: Tensor, dy: Tensor, dx: Tensor, flip: Tensor, padding: int) -> Tensor:
    """Crop each image of `x` [N, C, H, W] from its zero-padded copy at offset (dy, dx) in
    [0, 2 * padding], then mirror it left-right where `flip`: one gather over the flattened padded
    images (several times faster than 4-d fancy indexing on a CPU), any dtype, on x's device.
    dy = dx = padding with no flip is the identity."""
    n, c, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding)) if padding else x
    ar_h = torch.arange(h, device=x.device)
    ar_w = torch.arange(w, device=x.device)
    rows = dy.view(n, 1) + ar_h  # [N, H]
    cols = dx.view(n, 1) + torch.where(flip.view(n, 1), w - 1 - ar_w, ar_w)  # [N, W]
    src = rows.view(n, h, 1) * padded.shape[-1] + cols.view(n, 1, w)  # [N, H, W] flat positions
    src = src.view(n, 1, h * w).expand(n, c, h * w)
    return padded.reshape(n, c, -1).gather(2, src).view(n, c, h, w)


def augment_seed(seed: int, epoch: int, batch: int) -> int:
    """The seed of training batch `batch` of `epoch`: a hash of (seed, epoch, batch), apart from
    the epoch permutations' seeds."""
    key = f"normlab.augment:{seed}:{epoch}:{batch}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1


class AugmentedBatchLoader(TensorBatchLoader):
    """Training batches, randomly cropped and flipped (uint8, on the device) before `transform`.

    Randomness: batch `b` of epoch `e` draws from a private `torch.Generator` on the data's device,
    re-seeded with `augment_seed(seed, e, b)` before the batch. So the global RNG is never read or
    advanced (probes and other code cannot shift the augmentation, nor it them), a run resumed
    mid-epoch redraws exactly the crops it would have drawn, and the crops depend on nothing but
    (seed, epoch, batch). The draws are made for the whole *global* batch and rank r keeps draws
    r, r + W, ... (the positions of its samples in the global batch, see `EpochShardSampler`), so a
    sample gets the same crop at the same step whatever the number of processes. The streams of a
    CPU and a CUDA generator differ: the crops are reproducible per device type.
    """

    def __init__(
        self,
        x: Tensor,
        y: Tensor,
        batch_size: int,
        *,
        padding: int,
        transform: Callable[[Tensor], Tensor],
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        super().__init__(
            x,
            y,
            batch_size,
            shuffle=True,
            seed=seed,
            rank=rank,
            world_size=world_size,
            drop_last=True,  # keeps every rank's batch at its fixed place in the global batch
            transform=None,  # the base yields stored batches; `__iter__` augments, then transforms
        )
        self.seed = seed
        self.padding = padding
        self.finish = transform
        self._generator = torch.Generator(device=x.device)

    def augment(self, x: Tensor, epoch: int, batch: int) -> Tensor:
        """Crop and flip one stored batch (this rank's part of global batch `batch` of `epoch`)."""
        rank, world_size = self.sampler.rank, self.sampler.world_size
        g = self._generator.manual_seed(augment_seed(self.seed, epoch, batch))
        n = len(x) * world_size
        shift = torch.randint(0, 2 * self.padding + 1, (n, 2), generator=g, device=x.device)
        flip = torch.randint(0, 2, (n,), generator=g, device=x.device).bool()
        shift, flip = shift[rank::world_size], flip[rank::world_size]
        return crop_flip(x, shift[:, 0], shift[:, 1], flip, self.padding)

    def __iter__(self) -> Iterator[Batch]:
        # Read before the base iterator starts (it consumes the resume point).
        epoch, start = self.sampler.epoch, self._start
        for b, (x, y) in enumerate(super().__iter__(), start):
            yield self.finish(self.augment(x, epoch, b)), y


class CIFARShapedDataModule(InMemoryDataModule):
    """The part shared by CIFAR-shaped sets: uint8 NCHW images on the device, per-channel
    normalisation on whole batches, and optional crop + flip of training batches only."""

    def __init__(
        self,
        *,
        augment: bool = False,
        crop_padding: int = 4,
        mean: Sequence[float] = CIFAR10_MEAN,
        std: Sequence[float] = CIFAR10_STD,
        batch_size: int = 128,
        eval_batch_size: int = 1000,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, seed)
        mean, std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise NormlabError(
                f"data.mean and data.std need 3 values each (RGB) and std > 0, got mean={list(mean)} "
                f"std={list(std)}"
            )
        if crop_padding < 0:
            raise NormlabError(f"data.crop_padding must be >= 0, got {crop_padding}")
        self.augment = bool(augment)
        self.crop_padding = int(crop_padding)
        self.mean, self.std = mean, std
        self._affine: dict[torch.device, tuple[Tensor, Tensor]] = {}

    def transform(self, x: Tensor) -> Tensor:
        """uint8 [N, 3, H, W] -> float32 (x / 255 - mean) / std, per channel, on x's device."""
        if x.device not in self._affine:
            std = torch.tensor(self.std, device=x.device).view(3, 1, 1)
            mean = torch.tensor(self.mean, device=x.device).view(3, 1, 1)
            self._affine[x.device] = (1 / (255 * std), mean / std)
        scale, shift = self._affine[x.device]
        return x.to(torch.float32, copy=True).mul_(scale).sub_(shift)

    def _loader(self, x: Tensor, y: Tensor, batch_size: int, train: bool) -> TensorBatchLoader:
        if not (train and self.augment):
            return super()._loader(x, y, batch_size, train)
        _, rank, world_size = self._placement()
        return AugmentedBatchLoader(
            x,
            y,
            batch_size // world_size,
            padding=self.crop_padding,
            transform=self.transform,
            seed=self.seed,
            rank=rank,
            world_size=world_size,
        )


class CIFAR10DataModule(CIFARShapedDataModule):
    """CIFAR-10: 50k train / 10k test 32x32 RGB images in 10 classes, from `cifar10.npz`.

    Looks for `cifar10.npz` in `root`, then in `download_dir`; if neither holds it and `download`
    is on, prepares it in `download_dir` from a torchvision download. `root` is only read."""

    def __init__(
        self,
        root: str,
        download_dir: str,
        download: bool = True,
        augment: bool = False,
        crop_padding: int = 4,
        mean: Sequence[float] = CIFAR10_MEAN,
        std: Sequence[float] = CIFAR10_STD,
        batch_size: int = 128,
        eval_batch_size: int = 1000,
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
        self.root = Path(root).expanduser().resolve()
        self.download_dir = Path(download_dir).expanduser().resolve()
        self.download = download

    def prepare_data(self) -> None:
        # Lightning calls this once per node before setup(): the one place that may download.
        if find_cifar10(self.root, self.download_dir) is not None:
            return
        where = f"data.root={self.root}"
        if self.download_dir != self.root:
            where += f" or data.download_dir={self.download_dir}"
        hint = f"CIFAR-10 not found: no {FILENAME} in {where}"
        fix = f"point data.root at a folder holding {FILENAME} (e.g. data.root=../shared/data)"
        if not self.download:
            raise DataNotFoundError(f"{hint}; download is off: {fix}, or set data.download=true")
        download_or_explain(download_cifar10, self.download_dir, hint, fix)

    def load(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        path = find_cifar10(self.root, self.download_dir)
        if path is None:
            self.prepare_data()
            path = find_cifar10(self.root, self.download_dir)
        log.info("reading CIFAR-10 from %s", path)
        arrays = read_cifar10_npz(path)

        def images(a: np.ndarray) -> Tensor:
            # HWC -> NCHW: the one copy made of the images (from_numpy shares the array's memory).
            return torch.from_numpy(a).permute(0, 3, 1, 2).contiguous()

        return (
            images(arrays.pop("train_images")),
            torch.from_numpy(arrays.pop("train_labels")).long(),
            images(arrays.pop("test_images")),
            torch.from_numpy(arrays.pop("test_labels")).long(),
        )
