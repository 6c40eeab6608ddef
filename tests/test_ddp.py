"""The training app under DDP: 2 CPU processes (gloo, ddp_spawn) on one global batch."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from normlab.config import compose_config
from normlab.train import run

pytestmark = pytest.mark.ddp


def _run_on_two_ranks(common: list[str], run_dir, max_steps: int):
    """`common` under `trainer=ddp_cpu` (which resets the trainer group, so re-apply the steps)."""
    overrides = [
        *common,
        "trainer=ddp_cpu",
        f"trainer.max_steps={max_steps}",
        "trainer.val_check_interval=10",
        "trainer.enable_progress_bar=false",
        "trainer.enable_checkpointing=false",
        "trainer.log_every_n_steps=5",
    ]
    return run(compose_config(overrides), run_dir, overrides)


def test_ddp_two_ranks_train_like_one_process_on_the_global_batch(tiny_overrides, tmp_path) -> None:
    # norm=none: with the global batch split 30/30 and gradients averaged, two ranks take exactly
    # the steps one process takes on the batch of 60 (up to float summation order).
    common = [*tiny_overrides, "norm=none", "trainer.max_steps=30", "trainer.val_check_interval=10"]
    one = run(compose_config(common), tmp_path / "one", common)
    two = _run_on_two_ranks(common, tmp_path / "two", max_steps=30)
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["step"] == 30
    assert "test/acc" in summary["final_metrics"]
    metrics = pd.read_csv(tmp_path / "two" / "metrics.csv")
    assert sorted(metrics[metrics.metric == "test/acc"].step) == [10, 20, 30]
    # test/acc covers the whole test set across both ranks (torchmetrics reduces sums and counts)
    acc_one = pd.read_csv(tmp_path / "one" / "metrics.csv").query("metric == 'test/acc'").value
    assert metrics[metrics.metric == "test/acc"].value.tolist() == pytest.approx(
        acc_one.tolist(), abs=1e-3
    )
    # ddp_spawn hands rank 0's weights back to this process
    for (name, a), b in zip(
        one.module.state_dict().items(), two.module.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)


def test_ddp_summed_loss_steps_like_one_process(tmp_path) -> None:
    # The DLN's loss is summed over the batch: DDP's gradient averaging would divide its step by
    # the number of ranks unless the module scales it back.
    common = [
        "experiment=santurkar2018/dln_fig5b_lp",
        "debug=smoke",
        "norm=none",
        "trainer.max_steps=20",
        "trainer.val_check_interval=10",
        f"paths.runs_dir={tmp_path / 'runs'}",
    ]
    one = run(compose_config(common), tmp_path / "one", common)
    two = _run_on_two_ranks(common, tmp_path / "two", max_steps=20)
    assert two.status == "finished"
    loss = {
        name: pd.read_csv(tmp_path / name / "metrics.csv")
        .query("metric == 'train/loss'")
        .set_index("step")
        .value
        for name in ("one", "two")
    }
    # the logged loss is the global batch's sum, not rank 0's half of it
    np.testing.assert_allclose(loss["two"].loc[[0, 5]], loss["one"].loc[[0, 5]], rtol=1e-4)
    for (name, a), b in zip(
        one.module.state_dict().items(), two.module.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=name)
