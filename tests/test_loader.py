"""The in-memory loader: epoch order from (seed, epoch), disjoint equal DDP shards."""

from __future__ import annotations

import pytest
import torch

from normlab.data import EpochShardSampler, SyntheticDataModule, TensorBatchLoader
from normlab.errors import NormlabError


def _epoch_samples(loader: TensorBatchLoader) -> list[list[int]]:
    return [batch_y.tolist() for _, batch_y in loader]


@pytest.mark.parametrize("num_samples", [1000, 1003])
def test_two_rank_shards_are_disjoint_with_equal_batch_counts(num_samples: int) -> None:
    x = torch.arange(num_samples).float().unsqueeze(1)
    y = torch.arange(num_samples)  # the label is the sample's index
    loaders = [
        TensorBatchLoader(x, y, 30, shuffle=True, seed=7, rank=r, world_size=2, drop_last=True)
        for r in range(2)
    ]
    for epoch in range(3):
        for loader in loaders:
            loader.sampler.set_epoch(epoch)
        seen = [[i for batch in _epoch_samples(loader) for i in batch] for loader in loaders]
        assert len(loaders[0]) == len(loaders[1]) == (num_samples // 2) // 30
        assert len(seen[0]) == len(seen[1])
        assert not set(seen[0]) & set(seen[1])
        # Together the ranks see a prefix of one permutation: nothing repeated, nothing invented.
        both = seen[0] + seen[1]
        assert len(set(both)) == len(both) and set(both) <= set(range(num_samples))


def test_epoch_order_depends_only_on_seed_and_epoch() -> None:
    sampler = EpochShardSampler(500, shuffle=True, seed=3)
    sampler.set_epoch(4)
    a = sampler.indices()
    resumed = EpochShardSampler(500, shuffle=True, seed=3)
    resumed.set_epoch(4)
    assert torch.equal(a, resumed.indices())
    resumed.set_epoch(5)
    assert not torch.equal(a, resumed.indices())
    other_seed = EpochShardSampler(500, shuffle=True, seed=4)
    other_seed.set_epoch(4)
    assert not torch.equal(a, other_seed.indices())
    assert sorted(a.tolist()) == list(range(500))


def test_eval_loader_covers_every_sample_once_across_ranks() -> None:
    n = 1001
    x, y = torch.zeros(n, 1), torch.arange(n)
    seen = []
    for rank in range(2):
        loader = TensorBatchLoader(
            x, y, 100, shuffle=False, drop_last=False, rank=rank, world_size=2
        )
        seen += [i for batch in _epoch_samples(loader) for i in batch]
    assert sorted(seen) == list(range(n))


def test_datamodule_splits_the_global_batch_and_rejects_uneven_splits() -> None:
    dm = SyntheticDataModule(num_train=200, num_test=50, batch_size=60)
    dm.setup()
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (60, 784) and x.dtype == torch.float32 and x.min() >= 0 and x.max() <= 1
    assert len(dm.train_dataloader()) == 200 // 60

    class TwoRanks:
        global_rank, world_size = 0, 2
        strategy = type("S", (), {"root_device": torch.device("cpu")})()

    odd = SyntheticDataModule(num_train=200, num_test=50, batch_size=61)
    odd.trainer = TwoRanks()
    with pytest.raises(NormlabError, match=r"batch_size=61 .* 2 processes"):
        odd.setup()


def test_probe_batch_is_fixed_and_held_out() -> None:
    dm = SyntheticDataModule(num_train=100, num_test=80)
    x1, y1 = dm.probe_batch(30)
    x2, y2 = dm.probe_batch(30)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    test = dm.transform(dm.test_x)
    assert all((test == row).all(1).any() for row in x1)  # every probe example is a test example
