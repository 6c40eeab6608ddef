"""CIFAR-10: the archive read in place, its format checked, batches normalised on the device, and
crop + flip augmentation of training batches only, drawn from (seed, epoch, batch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHARED_DATA

from normlab.data import CIFAR10DataModule, SyntheticCIFARDataModule
from normlab.data.cifar10 import CIFAR10_MEAN, CIFAR10_STD, crop_flip
from normlab.errors import DataNotFoundError, NormlabError

SHARED_NPZ = SHARED_DATA / "cifar10.npz"


def _arrays(n_train: int = 64, n_test: int = 20, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "train_images": rng.integers(0, 256, (n_train, 32, 32, 3), dtype=np.uint8),
        "train_labels": (np.arange(n_train) % 10).astype(np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 32, 32, 3), dtype=np.uint8),
        "test_labels": (np.arange(n_test) % 10).astype(np.uint8),
    }


def _write(folder: Path, arrays: dict[str, np.ndarray]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "cifar10.npz", **arrays)
    return folder


def _datamodule(root: Path, **kwargs) -> CIFAR10DataModule:
    kwargs = {"batch_size": 16, "eval_batch_size": 8, "seed": 3, **kwargs}
    return CIFAR10DataModule(
        root=str(root), download_dir=str(root / "no-downloads"), download=False, **kwargs
    )


class _Trainer:
    """What the datamodule reads of a Lightning trainer: the device and the process's rank."""

    def __init__(self, rank: int = 0, world_size: int = 1) -> None:
        self.global_rank, self.world_size, self.global_step = rank, world_size, 0
        self.strategy = type("S", (), {"root_device": torch.device("cpu")})()


def _epoch(dm: CIFAR10DataModule, epoch: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(epoch)
    return list(loader)


@pytest.fixture
def fake_root(tmp_path: Path) -> Path:
    return _write(tmp_path / "fake", _arrays())


# ---------------------------------------------------------------- the real archive, in place


@pytest.mark.skipif(not SHARED_NPZ.is_file(), reason="no shared cifar10.npz")
def test_reads_the_read_only_shared_archive_in_place(tmp_path: Path) -> None:
    def snapshot(root: Path) -> dict:
        return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}

    before = snapshot(SHARED_DATA)
    cache = tmp_path / "cache"
    dm = CIFAR10DataModule(root=str(SHARED_DATA), download_dir=str(cache), download=False)
    dm.prepare_data()
    dm.setup()
    assert snapshot(SHARED_DATA) == before and not cache.exists()  # read in place, nothing written

    assert dm.train_x.shape == (50000, 3, 32, 32) and dm.test_x.shape == (10000, 3, 32, 32)
    assert dm.train_x.dtype == torch.uint8 and dm.train_x.is_contiguous()  # NCHW, stored once
    assert dm.train_y.dtype == dm.test_y.dtype == torch.int64
    assert torch.bincount(dm.train_y).tolist() == [5000] * 10
    assert torch.bincount(dm.test_y).tolist() == [1000] * 10
    with np.load(SHARED_NPZ) as archive:  # the stored test set is the archive's, channels first
        assert torch.equal(dm.test_x, torch.from_numpy(archive["test_images"]).permute(0, 3, 1, 2))

    # The normalised training set has per-channel mean 0 and std 1 (the config's mean and std).
    total = torch.zeros(3, dtype=torch.float64)
    squares = torch.zeros(3, dtype=torch.float64)
    for chunk in dm.train_x.split(10000):
        z = dm.transform(chunk)
        total += z.sum((0, 2, 3), dtype=torch.float64)
        squares += z.square().sum((0, 2, 3), dtype=torch.float64)
    count = dm.train_x.numel() / 3
    mean = total / count
    std = (squares / count - mean.square()).sqrt()
    assert mean.abs().max() < 2e-3 and (std - 1).abs().max() < 2e-3, (mean, std)

    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (128, 3, 32, 32) and x.dtype == torch.float32 and y.shape == (128,)
    assert len(dm.train_dataloader()) == 50000 // 128
    assert [len(b[1]) for b in dm.val_dataloader()] == [1000] * 10


# ---------------------------------------------------------------- the format, checked


def _bad(change: str) -> dict[str, np.ndarray]:
    a = _arrays()
    if change == "missing":
        del a["test_labels"]
    elif change == "chw":
        a["train_images"] = np.ascontiguousarray(a["train_images"].transpose(0, 3, 1, 2))
    elif change == "float":
        a["test_images"] = a["test_images"].astype(np.float32) / 255
    elif change == "labels_dtype":
        a["train_labels"] = a["train_labels"].astype(np.int64)
    elif change == "labels_length":
        a["test_labels"] = a["test_labels"][:-1]
    elif change == "labels_range":
        a["train_labels"][5] = 10
    return a


@pytest.mark.parametrize(
    "change,message",
    [
        (
            "missing",
            r"missing key\(s\) test_labels \(found: train_images, train_labels, test_images\)",
        ),
        ("chw", r"train_images is uint8 \[64, 3, 32, 32\], expected uint8 \[N, 32, 32, 3\] \(chan"),
        ("float", r"test_images is float32 \[20, 32, 32, 3\], expected uint8 \[N, 32, 32, 3\]"),
        ("labels_dtype", r"train_labels is int64 \[64\], expected uint8 \[64\]"),
        ("labels_length", r"test_labels is uint8 \[19\], expected uint8 \[20\]"),
        ("labels_range", r"train_labels holds 10, expected labels in 0\.\.9"),
    ],
)
def test_a_malformed_archive_says_what_was_expected_and_found(
    change: str, message: str, tmp_path: Path
) -> None:
    root = _write(tmp_path / "bad", _bad(change))
    with pytest.raises(NormlabError, match=message) as err:
        _datamodule(root).setup()
    assert str(root / "cifar10.npz") in str(err.value) and "\n" not in str(err.value)


def test_a_file_that_is_no_archive_fails_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "cifar10.npz").write_bytes(b"not a zip")
    with pytest.raises(NormlabError, match=r"cannot read .*cifar10.npz as a NumPy archive"):
        _datamodule(tmp_path).setup()


# ---------------------------------------------------------------- missing data, downloads


def test_missing_archive_offline_fails_in_one_line(tmp_path: Path) -> None:
    from normlab.config import compose_config
    from normlab.train import run

    empty = tmp_path / "empty"
    empty.mkdir()
    overrides = [
        "data=cifar10",
        f"data.root={empty}",
        "data.download=false",
        "logger=none",
        f"paths.runs_dir={tmp_path / 'runs'}",
        f"paths.data_dir={tmp_path / 'cache'}",
    ]
    with pytest.raises(DataNotFoundError) as err:
        run(compose_config(overrides), tmp_path / "run", overrides)
    message = str(err.value)
    assert message.startswith(f"CIFAR-10 not found: no cifar10.npz in data.root={empty} or ")
    assert "download is off" in message and "data.root=" in message and "\n" not in message


def test_a_failed_download_names_where_it_looked(tmp_path: Path, monkeypatch) -> None:
    import torchvision.datasets

    class Offline:
        def __init__(self, *args, **kwargs) -> None:
            raise RuntimeError("Error downloading cifar-10-python.tar.gz:\nnetwork unreachable")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", Offline)
    dm = CIFAR10DataModule(root=str(tmp_path / "ro"), download_dir=str(tmp_path / "cache"))
    with pytest.raises(
        DataNotFoundError, match=r"data.root=.*ro or .*downloading it into .*cache failed"
    ) as err:
        dm.prepare_data()
    assert "network unreachable" in str(err.value) and "\n" not in str(err.value)


def test_a_download_is_prepared_once_into_the_archive_format(tmp_path: Path, monkeypatch) -> None:
    import torchvision.datasets

    fake = _arrays(n_train=30, n_test=10, seed=1)
    calls = []

    class FakeCIFAR10:  # torchvision's attributes: data uint8 [N, 32, 32, 3], targets list[int]
        def __init__(self, root: str, train: bool, download: bool) -> None:
            calls.append((root, train, download))
            split = "train" if train else "test"
            self.data = fake[f"{split}_images"]
            self.targets = fake[f"{split}_labels"].tolist()

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR10)
    root, cache = tmp_path / "root", tmp_path / "cache"
    root.mkdir()
    dm = CIFAR10DataModule(root=str(root), download_dir=str(cache), batch_size=10)
    dm.prepare_data()
    assert [p.name for p in cache.iterdir()] == ["cifar10.npz"]  # no temporary file left
    assert not any(root.iterdir())  # data.root is never written
    with np.load(cache / "cifar10.npz") as archive:
        assert {k: (v.dtype, v.shape) for k, v in archive.items()} == {
            k: (v.dtype, v.shape) for k, v in fake.items()
        }
    dm.setup()
    assert torch.equal(dm.train_x, torch.from_numpy(fake["train_images"]).permute(0, 3, 1, 2))
    assert dm.train_y.tolist() == fake["train_labels"].tolist()
    CIFAR10DataModule(root=str(root), download_dir=str(cache)).prepare_data()
    assert len(calls) == 2  # train and test, once: the archive is found the second time


# ---------------------------------------------------------------- batches and augmentation


def test_transform_normalises_per_channel_and_augmentation_is_off_by_default(fake_root) -> None:
    dm = _datamodule(fake_root)
    dm.setup()
    assert dm.augment is False
    hwc = _arrays()["train_images"]
    expected = (torch.from_numpy(hwc).float() / 255 - torch.tensor(CIFAR10_MEAN)) / torch.tensor(
        CIFAR10_STD
    )
    assert torch.allclose(dm.transform(dm.train_x), expected.permute(0, 3, 1, 2), atol=1e-5)
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(2)
    idx = loader.sampler.indices()
    for b, (x, y) in enumerate(loader):  # training batches are the stored images, normalised
        sel = idx[b * 16 : (b + 1) * 16]
        assert torch.equal(x, dm.transform(dm.train_x[sel])) and torch.equal(y, dm.train_y[sel])


def test_crop_flip_with_centred_offsets_is_the_identity() -> None:
    x = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    centre = torch.full((5,), 4)
    keep, mirror = torch.zeros(5, dtype=torch.bool), torch.ones(5, dtype=torch.bool)
    assert torch.equal(crop_flip(x, centre, centre, keep, 4), x)
    assert torch.equal(crop_flip(x, centre, centre, mirror, 4), x.flip(-1))
    up = crop_flip(x, torch.zeros(5, dtype=torch.long), centre, keep, 4)  # window 4 rows higher
    assert (up[:, :, :4] == 0).all() and torch.equal(up[:, :, 4:], x[:, :, :28])
    left = crop_flip(x, centre, torch.full((5,), 8), keep, 4)  # window 4 columns to the right
    assert (left[..., 28:] == 0).all() and torch.equal(left[..., :28], x[..., 4:])
    assert torch.equal(crop_flip(x, centre * 0, centre * 0, mirror, 0), x.flip(-1))


def _crops(stored: torch.Tensor, padding: int = 4) -> tuple[torch.Tensor, list]:
    """Every crop and mirrored crop of each stored image: [K, N, C, H, W] and the K offsets."""
    n = len(stored)
    offsets = [
        (dy, dx, f)
        for dy in range(2 * padding + 1)
        for dx in range(2 * padding + 1)
        for f in (0, 1)
    ]
    crops = [
        crop_flip(
            stored, torch.full((n,), dy), torch.full((n,), dx), torch.full((n,), f).bool(), padding
        )
        for dy, dx, f in offsets
    ]
    return torch.stack(crops), offsets


def test_augmentation_crops_and_flips_training_batches_only(fake_root) -> None:
    plain, aug = _fresh(fake_root), _fresh(fake_root, augment=True)
    plain.train_y = aug.train_y = torch.arange(len(aug.train_y))  # label = index of the sample
    used = set()
    for (xp, yp), (xa, ya) in zip(_epoch(plain, 1), _epoch(aug, 1), strict=True):
        assert torch.equal(yp, ya)  # the same samples in the same order...
        assert not torch.equal(xp, xa)  # ...each a random crop or mirrored crop of its image
        stored = aug.train_x[ya]
        crops, offsets = _crops(stored)
        match = (aug.transform(crops.flatten(0, 1)).view_as(crops) == xa).flatten(2).all(2)
        assert match.any(0).all()  # [K, N]: every augmented image is one of its crops
        used |= {offsets[k] for k in match.int().argmax(0).tolist()}
    assert {f for *_, f in used} == {0, 1} and len(used) > 20  # flips and many shifts drawn

    # Test and probe batches are never augmented.
    for (xv, _), (xw, _) in zip(aug.val_dataloader(), plain.val_dataloader(), strict=True):
        assert torch.equal(xv, xw)
    assert torch.equal(aug.probe_batch(10)[0], plain.probe_batch(10)[0])


def test_augmentation_comes_from_seed_epoch_and_batch_not_the_global_rng(fake_root) -> None:
    aug = _fresh(fake_root, augment=True)
    state = torch.get_rng_state()
    torch.manual_seed(123)
    first = _epoch(aug, 1)
    torch.manual_seed(456)
    again = _epoch(_fresh(fake_root, augment=True), 1)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, again, strict=True))
    torch.set_rng_state(state)
    _epoch(aug, 4)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG neither read nor advanced

    # The crops of one stored batch depend on (seed, epoch, batch): nothing else.
    x = aug.train_x[:16]
    loader = aug.train_dataloader()
    other = _fresh(fake_root, augment=True, seed=4).train_dataloader()
    assert torch.equal(loader.augment(x, 1, 2), loader.augment(x, 1, 2))
    for changed in (loader.augment(x, 2, 2), loader.augment(x, 1, 3), other.augment(x, 1, 2)):
        assert not torch.equal(changed, loader.augment(x, 1, 2))

    # A run resumed mid-epoch redraws the crops it would have drawn.
    loader.sampler.set_epoch(1)
    loader.resume_at(2)
    resumed = list(loader)
    assert len(resumed) == len(first) - 2
    assert all(torch.equal(a[0], b[0]) for a, b in zip(resumed, first[2:], strict=True))


def _fresh(root: Path, **kwargs) -> CIFAR10DataModule:
    dm = _datamodule(root, **kwargs)
    dm.setup()
    return dm


@pytest.mark.parametrize("augment", [False, True])
def test_two_ranks_take_disjoint_shards_and_the_crops_of_one_process(fake_root, augment) -> None:
    def ranked(rank: int, world_size: int) -> CIFAR10DataModule:
        dm = _datamodule(fake_root, augment=augment)
        dm.trainer = _Trainer(rank, world_size)
        dm.setup()
        dm.train_y = torch.arange(len(dm.train_y))  # label = sample index, to follow samples
        return dm

    single = _epoch(ranked(0, 1), 3)
    shards = [_epoch(ranked(r, 2), 3) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == len(single)
    seen = [torch.cat([y for _, y in shard]).tolist() for shard in shards]
    assert len(seen[0]) == len(seen[1]) and not set(seen[0]) & set(seen[1])
    for b, (x, y) in enumerate(single):  # each step's global batch, and each sample's crop,
        for r in range(2):  # do not depend on the number of processes
            assert torch.equal(shards[r][b][1], y[r::2])
            assert torch.equal(shards[r][b][0], x[r::2])


# ---------------------------------------------------------------- configs


def test_the_configs_compose_and_the_synthetic_set_trains(tmp_path: Path) -> None:
    from hydra.utils import instantiate

    from normlab.config import compose_config
    from normlab.train import run

    cfg = compose_config(["data=cifar10", f"data.root={SHARED_DATA}"])
    assert cfg.data.batch_size == 128 and cfg.data.eval_batch_size == 1000  # App. A.1
    assert cfg.data.augment is False and cfg.data.download is True
    dm = instantiate(cfg.data)
    assert isinstance(dm, CIFAR10DataModule) and dm.root == SHARED_DATA.resolve()
    assert dm.mean == CIFAR10_MEAN and dm.std == CIFAR10_STD

    overrides = [
        "data=synthetic_cifar",
        "data.augment=true",
        "data.num_train=256",
        "data.num_test=64",
        "data.batch_size=32",
        "model.in_features=3072",
        "debug=smoke",
        "trainer.max_steps=12",
        "trainer.val_check_interval=6",
        f"paths.runs_dir={tmp_path / 'runs'}",
        f"paths.data_dir={tmp_path / 'data'}",
    ]
    result = run(compose_config(overrides), tmp_path / "run", overrides)
    assert result.status == "finished"
    dm = result.trainer.datamodule
    assert isinstance(dm, SyntheticCIFARDataModule) and dm.train_x.shape == (256, 3, 32, 32)
    assert dm.train_x.dtype == torch.uint8
