"""The training app in-process: trajectories, run statuses, summaries, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import run_cli

from normlab.config import compose_config
from normlab.train import run


def _run(overrides: list[str], run_dir: Path):
    return run(compose_config(overrides), run_dir, overrides)


def _losses(run_dir: Path) -> pd.Series:
    m = pd.read_csv(run_dir / "metrics.csv")
    return m[m.metric == "train/loss"].set_index("step").value


@pytest.mark.parametrize("norm", ["batch", "none"])
def test_activation_probe_does_not_change_training(norm: str, tiny_overrides, tmp_path) -> None:
    common = [
        *tiny_overrides,
        f"norm={norm}",
        "trainer.max_steps=30",
        "trainer.log_every_n_steps=1",
    ]
    on = _run([*common, "probe.activations.every_n_steps=1"], tmp_path / "on")
    off = _run([*common, "probe=none"], tmp_path / "off")
    assert on.status == off.status == "finished"
    assert "act/layer3/unit0/p50" in set(pd.read_csv(tmp_path / "on" / "metrics.csv").metric)
    assert not (tmp_path / "off" / "act_hist.csv").exists()
    loss_on, loss_off = _losses(tmp_path / "on"), _losses(tmp_path / "off")
    assert len(loss_on) == 30 and loss_on.index.tolist() == list(range(30))
    assert loss_on.tolist() == loss_off.tolist()  # bit for bit
    state_on, state_off = on.module.state_dict(), off.module.state_dict()
    assert state_on.keys() == state_off.keys()
    if norm == "batch":
        assert any("running_var" in k for k in state_on)
    for key in state_on:
        assert torch.equal(state_on[key], state_off[key]), key


def test_finished_run_writes_summary_metrics_and_histograms(tiny_overrides, tmp_path) -> None:
    result = _run([*tiny_overrides, "norm=batch", "seed=3"], tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "finished" == result.status
    assert summary["step"] == summary["max_steps"] == 40
    assert summary["seed"] == 3 and summary["config"]["norm"]["name"] == "batch"
    assert summary["experiment"] == "ioffe2015/fig1_mnist"
    assert {"torch", "lightning", "python"} <= set(summary["versions"])
    assert summary["wall_time_s"] > 0 and summary["device"] == "cpu"
    assert 0 <= summary["final_metrics"]["test/acc"] <= 1
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    assert sorted(metrics[metrics.metric == "test/acc"].step) == [20, 40]
    probe_steps = sorted(metrics[metrics.metric == "act/layer3/unit0/p50"].step)
    assert probe_steps == [0]  # the preset probes every 250 steps; 40 steps -> step 0 only
    hist = pd.read_csv(tmp_path / "act_hist.csv")
    assert set(hist.layer) == {1, 2, 3}
    # every probe example (the 500-example synthetic test set) x 100 units lands in a bin
    assert (hist.groupby(["step", "layer"])["count"].sum() == 500 * 100).all()


def test_diverged_run_stops_cleanly(tiny_overrides, tmp_path) -> None:
    result = _run([*tiny_overrides, "optim.lr=1e38", "model.init_std=10"], tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert result.status == summary["status"] == "diverged"
    step = summary["diverged_at_step"]
    assert step is not None and 0 <= step < 40
    # Training stopped right there: the step with the non-finite loss is the last one counted.
    assert step < summary["step"] <= step + 1 < 40
    losses = _losses(tmp_path)
    assert losses[losses.index < step].map(float).notna().all()


def test_failed_run_records_the_error_and_reraises(tiny_overrides, tmp_path) -> None:
    with pytest.raises(RuntimeError):
        _run([*tiny_overrides, "model.in_features=100"], tmp_path)  # 784 pixels in, 100 expected
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "failed"
    assert summary["error"].startswith("RuntimeError")


def test_bad_probe_layer_fails_at_start_naming_the_valid_range(tiny_overrides, tmp_path) -> None:
    with pytest.raises(SystemExit, match=r"layer 7 .* valid layers: 1\.\.3"):
        _run([*tiny_overrides, "probe.activations.layers=[1,7]"], tmp_path)
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "failed"


def test_missing_mnist_offline_fails_in_one_line(tmp_path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = run_cli(
        [
            "data=mnist",
            f"data.root={empty}",
            "data.download=false",
            "logger=none",
            f"paths.runs_dir={tmp_path / 'runs'}",
            f"paths.data_dir={tmp_path / 'cache'}",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("normlab: error: MNIST not found in data.root=") and str(empty) in last
    assert "data.root" in last and "Traceback" not in proc.stderr
    (summary,) = (tmp_path / "runs").rglob("summary.json")
    assert json.loads(summary.read_text())["status"] == "failed"


def test_download_failure_names_the_root(tmp_path, monkeypatch) -> None:
    import normlab.data.mnist as mnist
    from normlab.errors import DataNotFoundError

    def offline(download_dir):
        raise OSError("network unreachable")

    monkeypatch.setattr(mnist, "download_mnist", offline)
    dm = mnist.MNISTDataModule(root=str(tmp_path / "ro"), download_dir=str(tmp_path / "cache"))
    with pytest.raises(
        DataNotFoundError, match=r"data.root=.*ro .*downloading it into .*cache failed"
    ):
        dm.prepare_data()


@pytest.mark.skipif(
    not (Path(__file__).parents[2] / "shared/data/MNIST/raw").is_dir(), reason="no local MNIST"
)
def test_mnist_reads_the_read_only_shared_copy_in_place() -> None:
    from conftest import SHARED_DATA

    from normlab.data import MNISTDataModule

    dm = MNISTDataModule(root=str(SHARED_DATA), download_dir="/nonexistent", download=False)
    dm.setup()
    assert dm.train_x.shape == (60000, 28, 28) and dm.test_x.shape == (10000, 28, 28)
    assert torch.bincount(dm.test_y).tolist() == [
        980,
        1135,
        1032,
        1010,
        982,
        892,
        958,
        1028,
        974,
        1009,
    ]
    assert not (Path("/nonexistent")).exists()
