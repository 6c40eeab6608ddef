"""Longer checks on the real MNIST (`make test-slow`): minutes, not seconds."""

from __future__ import annotations

import pytest
from conftest import SHARED_DATA

from normlab.config import compose_config
from normlab.train import run

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (SHARED_DATA / "MNIST" / "raw").is_dir(), reason="no local MNIST"),
]


@pytest.mark.parametrize("norm", ["none", "batch"])
def test_fig1_preset_learns_mnist_in_3000_steps(norm: str, tmp_path) -> None:
    overrides = [
        "experiment=ioffe2015/fig1_mnist",
        f"norm={norm}",
        f"data.root={SHARED_DATA}",
        "logger=none",
        "trainer.max_steps=3000",
        "trainer.enable_progress_bar=false",
    ]
    result = run(compose_config(overrides), tmp_path, overrides)
    assert result.status == "finished"
    final = result.summary["final_metrics"]
    assert final["test/acc"] > 0.93, (
        final
    )  # Fig. 1(a): both nets pass 93% within the first 5k steps
    assert (tmp_path / "checkpoints" / "last.ckpt").exists()
