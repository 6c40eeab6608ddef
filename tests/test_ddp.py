"""The training app under DDP: 2 CPU processes (gloo, ddp_spawn) on one global batch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from lightning.pytorch import Callback

from normlab.config import compose_config
from normlab.train import run

pytestmark = pytest.mark.ddp


def _run_on_two_ranks(common: list[str], run_dir, max_steps: int, callbacks=()):
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
    return run(compose_config(overrides), run_dir, overrides, callbacks=callbacks)


class WeightRecorder(Callback):
    """Saves the weights at the start and the end of training to `<out>/{start,end}_rank<r>.pt`
    (under ddp_spawn the callback lives in the child processes: files are how it reports back, at
    full precision; the weights ddp_spawn hands back to the parent are cast to its float32 model)."""

    def __init__(self, out: Path) -> None:
        self.out = out

    def _save(self, trainer, pl_module, when: str) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().clone().cpu() for k, v in pl_module.state_dict().items()}
        torch.save(state, self.out / f"{when}_rank{trainer.global_rank}.pt")

    def on_train_start(self, trainer, pl_module) -> None:
        self._save(trainer, pl_module, "start")

    def on_train_end(self, trainer, pl_module) -> None:
        self._save(trainer, pl_module, "end")


def _assert_same_updates(weights_one: Path, weights_two: Path, rtol: float) -> None:
    """Both runs started from the same weights and moved them by the same amount. Comparing the
    updates (not the weights, which the start dominates) makes a step off by a factor of 2, the
    mark of a wrong reduction, fail by far."""
    start, start_two = (torch.load(d / "start_rank0.pt") for d in (weights_one, weights_two))
    end_one, end_two = (torch.load(d / "end_rank0.pt") for d in (weights_one, weights_two))
    assert start.keys() == start_two.keys() == end_one.keys() == end_two.keys()
    for name, w0 in start.items():
        assert torch.equal(start_two[name], w0), name
        moved_one, moved_two = end_one[name] - w0, end_two[name] - w0
        assert moved_one.abs().max() > 1e3 * rtol * w0.abs().max(), f"{name} barely moved"
        torch.testing.assert_close(moved_two, moved_one, rtol=rtol, atol=0.0, msg=name)


# The comparisons below run in float64 at rates where round-off cannot grow from step to step,
# so they hold on any machine, whatever its summation order (2 ranks vs 1, its SIMD path): at the
# DLN's paper rate the net trains at the edge of stability (lr * lambda_max ~ 2, 24 at step 0)
# and a 1e-7 difference grows past any tolerance within 20 steps. A wrong reduction across ranks
# (a step x2 or /2) still fails them by orders of magnitude.
FLOAT64 = "trainer.precision=64-true"


def test_ddp_two_ranks_train_like_one_process_on_the_global_batch(tiny_overrides, tmp_path) -> None:
    # norm=none: with the global batch split 30/30 and gradients averaged, two ranks take exactly
    # the steps one process takes on the batch of 60 (up to float summation order).
    common = [
        *tiny_overrides,
        "norm=none",
        FLOAT64,
        "trainer.max_steps=30",
        "trainer.val_check_interval=10",
    ]
    run(
        compose_config(common),
        tmp_path / "one",
        common,
        callbacks=[WeightRecorder(tmp_path / "w1")],
    )
    _run_on_two_ranks(
        common, tmp_path / "two", max_steps=30, callbacks=[WeightRecorder(tmp_path / "w2")]
    )
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
    _assert_same_updates(tmp_path / "w1", tmp_path / "w2", rtol=1e-8)


def test_ddp_summed_loss_steps_like_one_process(tmp_path) -> None:
    # The DLN's loss is summed over the batch: DDP's gradient averaging would divide its step by
    # the number of ranks unless the module scales it back. lr 1e-8: lr * lambda_max ~ 0.25 at
    # the start, a stable rate (curvature.md of the project's docs: 24.6 at lr 1e-6).
    common = [
        "experiment=santurkar2018/dln_fig5b_lp",
        "debug=smoke",
        "norm=none",
        "optim.lr=1e-8",
        FLOAT64,
        "trainer.max_steps=20",
        "trainer.val_check_interval=10",
        f"paths.runs_dir={tmp_path / 'runs'}",
    ]
    run(
        compose_config(common),
        tmp_path / "one",
        common,
        callbacks=[WeightRecorder(tmp_path / "w1")],
    )
    two = _run_on_two_ranks(
        common, tmp_path / "two", max_steps=20, callbacks=[WeightRecorder(tmp_path / "w2")]
    )
    assert two.status == "finished"
    loss = {
        name: pd.read_csv(tmp_path / name / "metrics.csv")
        .query("metric == 'train/loss'")
        .set_index("step")
        .value
        for name in ("one", "two")
    }
    # the logged loss is the global batch's sum, not rank 0's half of it
    np.testing.assert_allclose(loss["two"].loc[[0, 5, 15]], loss["one"].loc[[0, 5, 15]], rtol=1e-10)
    _assert_same_updates(tmp_path / "w1", tmp_path / "w2", rtol=1e-8)


class ShardRecorder(Callback):
    """Saves the inputs each rank trains on at step 0 to `<out>/rank<r>.pt` (under ddp_spawn the
    callback lives in the child processes: files are how it reports back)."""

    def __init__(self, out: Path) -> None:
        self.out = out

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == 0:
            self.out.mkdir(parents=True, exist_ok=True)
            torch.save(batch[0].cpu(), self.out / f"rank{trainer.global_rank}.pt")


def _probe_values(run_dir: Path) -> pd.Series:
    metrics = pd.read_csv(run_dir / "metrics.csv")
    probed = metrics[metrics.metric.str.match(r"(ics|landscape)/")]
    return probed.set_index(["step", "metric"]).value.sort_index()


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_ddp_probes_give_the_numbers_of_one_process_on_the_global_batch(reduction, tmp_path):
    # norm=none (no batch statistics, so the ranks' shards make exactly the global batch's loss):
    # each rank computes G, G' and the landscape walk on its shard, reduced once across ranks
    # (summed for a summed loss, averaged for a mean one).
    common = [
        "experiment=santurkar2018/dln_fig5b_lp",
        f"module.reduction={reduction}",
        # the same step either way (the summed loss is 1000x the mean): updates large enough
        # that G' differs from G by more than round-off
        f"optim.lr={1e-6 if reduction == 'sum' else 1e-3}",
        "debug=smoke",
        "norm=none",
        "model.depth=6",
        FLOAT64,  # 1 - cos(G, G') ~ 1e-4 carries 1e-3 of relative round-off in float32
        "probe=[ics,landscape]",
        "probe.ics.layers=[2,5]",
        "probe.ics.every_n_steps=5",
        "probe.landscape.every_n_steps=5",
        "trainer.max_steps=10",
        "trainer.val_check_interval=10",
        f"paths.runs_dir={tmp_path / 'runs'}",
    ]
    one = run(
        compose_config(common), tmp_path / "one", common, callbacks=[ShardRecorder(tmp_path / "x1")]
    )
    two = _run_on_two_ranks(
        common, tmp_path / "two", max_steps=10, callbacks=[ShardRecorder(tmp_path / "x2")]
    )
    assert one.status == two.status == "finished"
    values_one, values_two = _probe_values(tmp_path / "one"), _probe_values(tmp_path / "two")
    assert len(values_one) == 2 * (4 + 6)  # steps 0 and 5: 2 layers x (l2, cos) + 6 landscape
    assert values_two.index.equals(values_one.index)
    # cosines near 1 are compared through 1 - cos, where a wrong reduction would show
    is_cos = values_one.index.get_level_values("metric").str.endswith("/cos")
    values_one[is_cos], values_two[is_cos] = 1 - values_one[is_cos], 1 - values_two[is_cos]
    # float64 over 5 steps: 1e-11 apart on this CPU; a wrong reduction is off by a factor ~2
    np.testing.assert_allclose(values_two, values_one, rtol=1e-7, atol=1e-12)
    curves = [pd.read_csv(tmp_path / d / "landscape.csv") for d in ("one", "two")]
    assert len(curves[0]) == len(curves[1]) == 20  # written once (rank 0), 10 etas x 2 steps
    np.testing.assert_allclose(curves[1].to_numpy(), curves[0].to_numpy(), rtol=1e-7)
    # the two ranks trained on disjoint halves that together make the global batch
    global_batch = torch.load(tmp_path / "x1" / "rank0.pt")
    shards = [torch.load(tmp_path / "x2" / f"rank{r}.pt") for r in (0, 1)]
    assert [len(s) for s in shards] == [len(global_batch) // 2] * 2
    rows = [{tuple(row.tolist()) for row in s} for s in (global_batch, *shards)]
    assert not rows[1] & rows[2]
    assert rows[1] | rows[2] == rows[0]
