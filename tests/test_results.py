"""normlab.results: finding runs, leaving out unfinished ones (and saying so), flattening configs,
and the long metrics table."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import pytest
from fakeruns import base_config, write_run

from normlab.results import find_runs, load_metrics, load_summaries


@pytest.fixture
def mixed_sweep(tmp_path: Path) -> Path:
    """Two finished runs and one of every other fate, nested at different depths."""
    sweep = tmp_path / "sweep"
    curves = {"test/acc": {0: 0.1, 500: 0.9}}
    write_run(sweep / "norm=none,seed=0", seed=0, curves=curves)
    write_run(sweep / "norm=batch,seed=0", seed=0, norm="batch", curves=curves)
    write_run(sweep / "deep" / "er" / "failed", status="failed", error="RuntimeError: boom", step=7)
    write_run(sweep / "diverged", status="diverged", diverged_at_step=120, step=120)
    write_run(sweep / "running", status="running", step=40)
    write_run(sweep / "torn", corrupt_summary=True)
    (sweep / "not_a_run").mkdir()
    return sweep


def test_find_runs_recursive_sorted_and_deduplicated(mixed_sweep: Path) -> None:
    runs = find_runs([mixed_sweep, mixed_sweep / "deep", mixed_sweep / "torn" / "summary.json"])
    assert len(runs) == 6
    assert runs == sorted(runs)
    assert (mixed_sweep / "deep" / "er" / "failed").resolve() in runs
    assert (mixed_sweep / "not_a_run").resolve() not in runs


def test_find_runs_missing_path_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no_such_sweep"):
        find_runs([tmp_path, tmp_path / "no_such_sweep"])


def test_left_out_runs_are_counted_and_reported(
    mixed_sweep: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="normlab.results"):
        df = load_summaries([mixed_sweep])
    assert sorted(df["norm.name"]) == ["batch", "none"]
    assert set(df["status"]) == {"finished"}
    assert df.attrs["left_out"] == {"failed": 1, "diverged": 1, "running": 1, "unreadable": 1}
    warnings = [r.getMessage() for r in caplog.records if r.name == "normlab.results"]
    assert len(warnings) == 1
    message = warnings[0]
    assert message.startswith("left out 4 of 6 runs:")
    for part in ("1 failed", "1 diverged", "1 running", "1 unreadable", "torn"):
        assert part in message


def test_statuses_choose_what_is_kept(mixed_sweep: Path) -> None:
    df = load_summaries([mixed_sweep], statuses=("finished", "diverged", "failed"))
    assert sorted(df["status"]) == ["diverged", "failed", "finished", "finished"]
    assert df.attrs["left_out"] == {"running": 1, "unreadable": 1}
    diverged = df[df["status"] == "diverged"].iloc[0]
    assert diverged["diverged_at_step"] == 120 and diverged["step"] == 120
    assert df[df["status"] == "failed"].iloc[0]["error"] == "RuntimeError: boom"


def test_nothing_left_out_means_no_warning(tmp_path: Path, caplog) -> None:
    write_run(tmp_path / "a")
    with caplog.at_level(logging.WARNING, logger="normlab.results"):
        df = load_summaries([tmp_path])
    assert len(df) == 1 and df.attrs["left_out"] == {}
    assert not [r for r in caplog.records if r.name == "normlab.results"]


def test_config_is_flattened_to_dotted_columns(tmp_path: Path) -> None:
    config = base_config("batch", seed=3, lr=0.25)
    config["seed"] = 99  # the summary's own seed wins over the config's
    config["probe"] = {"activations": {"layers": [1, 2, 3], "unit": {"layer": 3, "index": 7}}}
    write_run(tmp_path / "r", seed=3, norm="batch", config=config, curves={"test/acc": {10: 0.5}})
    row = load_summaries([tmp_path]).iloc[0]
    assert row["norm.name"] == "batch"
    assert row["norm.eps"] == pytest.approx(1e-5)
    assert row["optim.lr"] == 0.25
    assert row["model.init_std"] == 0.1
    assert row["data.batch_size"] == 60
    assert row["model.hidden"] == [100, 100, 100]  # lists stay objects
    assert row["probe.activations.layers"] == [1, 2, 3]
    assert row["probe.activations.unit.index"] == 7
    assert row["seed"] == 3
    assert row["final/test/acc"] == 0.5
    assert row["experiment"] == "ioffe2015/fig1_mnist"
    assert row["run_dir"] == str((tmp_path / "r").resolve())
    for column in ("status", "max_steps", "diverged_at_step", "error", "wall_time_s"):
        assert column in row.index


def test_no_runs_gives_an_empty_table_with_the_documented_columns(tmp_path: Path) -> None:
    df = load_summaries([tmp_path])
    assert df.empty and {"run_dir", "status", "seed", "experiment"} <= set(df.columns)
    long = load_metrics([tmp_path])
    assert long.empty and {"run_dir", "step", "metric", "value"} <= set(long.columns)


def test_metrics_long_table_joined_with_summary(mixed_sweep: Path) -> None:
    df = load_metrics([mixed_sweep])
    assert list(df.columns[:4]) == ["run_dir", "step", "metric", "value"]
    assert len(df) == 4  # 2 finished runs x 2 values
    assert df.attrs["left_out"]["failed"] == 1
    assert df["step"].dtype == "int64" and df["value"].dtype == "float64"
    # The summary's last step is renamed: `step` is the logged value's step.
    assert set(df["last_step"]) == {50000}
    batch = df[df["norm.name"] == "batch"].sort_values("step")
    assert batch["value"].tolist() == [0.1, 0.9]
    assert set(batch["optim.lr"]) == {0.5}


def test_duplicate_step_metric_keeps_the_last_value(tmp_path: Path) -> None:
    rows = [
        (0, "test/acc", 0.1),
        (500, "test/acc", 0.5),
        (500, "train/loss", 1.0),
        (500, "test/acc", 0.7),  # logged again at the same step (a resumed run)
        (1000, "test/acc", 0.8),
    ]
    write_run(tmp_path / "r", rows=rows)
    df = load_metrics([tmp_path])
    acc = df[df["metric"] == "test/acc"].set_index("step")["value"]
    assert acc.to_dict() == {0: 0.1, 500: 0.7, 1000: 0.8}
    assert len(df) == 4


def test_metric_filter_exact_and_glob(tmp_path: Path) -> None:
    curves = {
        name: {0: 1.0, 10: 2.0}
        for name in (
            "test/acc",
            "test/loss",
            "act/layer3/unit7/p15",
            "act/layer3/unit7/p85",
            "act/layer3/p15",
            "act/layer2/unit7/p15",
        )
    }
    write_run(tmp_path / "r", curves=curves)
    glob = load_metrics([tmp_path], metrics=["act/layer3/unit*/p*"])
    assert set(glob["metric"]) == {"act/layer3/unit7/p15", "act/layer3/unit7/p85"}
    both = load_metrics([tmp_path], metrics=["test/acc", "act/layer3/unit*/p*"])
    assert set(both["metric"]) == {"test/acc", "act/layer3/unit7/p15", "act/layer3/unit7/p85"}
    # A bare string is one name, not a sequence of characters.
    assert set(load_metrics([tmp_path], metrics="test/acc")["metric"]) == {"test/acc"}
    assert load_metrics([tmp_path], metrics=["nothing/*"]).empty


def test_torn_last_metrics_line_is_dropped(tmp_path: Path) -> None:
    run = write_run(
        tmp_path / "r", status="running", rows=[(0, "test/acc", 0.1), (20, "test/acc", 0.2)]
    )
    with (run / "metrics.csv").open("a") as f:
        f.write("4")  # a run killed mid-append
    empty = write_run(tmp_path / "empty", status="running")
    (empty / "metrics.csv").write_text("")  # created, nothing flushed yet
    df = load_metrics([tmp_path], statuses=("running",))
    assert df["step"].tolist() == [0, 20]


def test_nan_values_are_kept(tmp_path: Path) -> None:
    write_run(
        tmp_path / "r",
        status="diverged",
        rows=[(0, "train/loss", 2.3), (5, "train/loss", float("nan"))],
    )
    df = load_metrics([tmp_path], statuses=("diverged",))
    assert len(df) == 2 and pd.isna(df.sort_values("step")["value"].iloc[1])
