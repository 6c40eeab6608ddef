"""normlab.results: finding runs, leaving out unfinished ones (and saying so), flattening configs,
the long metrics table, telling one setting from several, and finding the newest sweep."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fakeruns import base_config, write_csv, write_run

from normlab.results import (
    check_one_setting,
    config_columns,
    config_differences,
    find_runs,
    load_metrics,
    load_run_files,
    load_summaries,
    newest_multirun,
)


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


def test_a_job_that_died_before_its_summary_is_counted_not_skipped(mixed_sweep: Path) -> None:
    # Hydra writes .hydra/ before normlab's code runs: a job killed then has no summary.json
    (mixed_sweep / "norm=none,seed=9" / ".hydra").mkdir(parents=True)
    (mixed_sweep / "norm=none,seed=9" / ".hydra" / "config.yaml").write_text("seed: 9\n")
    assert (mixed_sweep / "norm=none,seed=9").resolve() in find_runs([mixed_sweep])
    df = load_summaries([mixed_sweep])
    assert df.attrs["left_out"]["unreadable"] == 2  # the torn summary and this one


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


def _sweep(root: Path, config=base_config, seeds=(0, 1, 2), norms=("none", "batch")) -> Path:
    for norm in norms:
        for seed in seeds:
            write_run(
                root / f"norm={norm},seed={seed}",
                seed=seed,
                norm=norm,
                config=config(norm, seed),
                curves={"test/acc": {0: 0.1, 10: 0.5}},
            )
    return root


def test_config_columns_are_the_flattened_config(tmp_path: Path) -> None:
    _sweep(tmp_path)
    for table in (load_summaries([tmp_path]), load_metrics([tmp_path])):
        columns = config_columns(table)
        assert {"norm.name", "optim.lr", "model.hidden", "data.seed", "paths.runs_dir"} <= set(
            columns
        )
        assert not {"run_dir", "seed", "status", "step", "last_step", "metric", "value"} & set(
            columns
        )
        assert not [c for c in columns if c.startswith("final/")]


def test_one_setting_apart_from_what_is_meant_to_vary(tmp_path: Path) -> None:
    """A real sweep's runs differ in seed, data.seed (= seed), norm.* and W&B tags."""
    table = load_metrics([_sweep(tmp_path)])
    assert config_differences(table, vary=("seed", "norm.*")) == {}
    check_one_setting(table, vary=("seed", "norm.*"))
    # The norm is not free to vary unless said so; norm.eps/momentum exist for batch only.
    differences = config_differences(table)
    assert set(differences) == {"norm.name", "norm.eps", "norm.momentum"}
    runs = sorted(load_summaries([tmp_path])["run_dir"])
    assert differences["norm.name"] == {"'batch'": runs[:3], "'none'": runs[3:]}
    assert differences["norm.eps"] == {"1e-05": runs[:3], "unset": runs[3:]}
    with pytest.raises(ValueError, match="differ in norm.name, norm.eps, norm.momentum:"):
        check_one_setting(table)


def test_a_differing_key_is_named_with_its_values_and_runs(tmp_path: Path) -> None:
    def config(norm, seed):
        c = base_config(norm, seed, lr=0.1 if seed == 2 else 0.5)
        c["model"]["hidden"] = [100, 100] if (norm, seed) == ("none", 0) else [100, 100, 100]
        c["data"]["seed"] = 0  # the same for every run: not a difference
        return c

    table = load_summaries([_sweep(tmp_path, config=config)])
    with pytest.raises(ValueError) as err:
        check_one_setting(table, vary=("seed", "norm.*"), what="fig")
    assert str(err.value) == (
        "fig: the runs mix settings, they differ in model.hidden, optim.lr: "
        "model.hidden = [100, 100, 100] (5 runs) / [100, 100] (norm=none,seed=0); "
        "optim.lr = 0.5 (4 runs) / 0.1 (norm=batch,seed=2, norm=none,seed=2); "
        "use one sweep (one setting) at a time"
    )


def test_bookkeeping_keys_are_not_compared(tmp_path: Path) -> None:
    def config(norm, seed):
        c = base_config(norm, seed, resume=f"/r/{seed}/checkpoints/last.ckpt" if seed else None)
        c["paths"] = {"runs_dir": f"/r/{seed}", "data_dir": f"/d/{seed}", "root_dir": "/"}
        c["data"] |= {"root": f"/d/{seed}/mnist", "download_dir": f"/dl/{seed}"}
        c["logger"] = {"wandb": {"mode": "offline", "group": str(seed)}} if seed else {}
        c["trainer"] |= {"enable_progress_bar": seed == 0, "enable_checkpointing": seed == 1}
        return c

    table = load_summaries([_sweep(tmp_path, config=config, norms=("none",))])
    assert config_differences(table) == {}
    # ... unless asked to be.
    assert set(config_differences(table, ignore=())) >= {
        "resume",
        "paths.runs_dir",
        "paths.data_dir",
        "data.root",
        "data.download_dir",
        "trainer.enable_progress_bar",
        "trainer.enable_checkpointing",
    }


def test_a_key_that_follows_the_seed_varies_with_it(tmp_path: Path) -> None:
    table = load_summaries([_sweep(tmp_path, norms=("none",))])
    assert config_differences(table) == {}  # data.seed is 0/1/2 with the seed
    # Once one run's data.seed is not its seed, the key is compared like any other.
    config = base_config("none", 1)
    config["data"]["seed"] = 0
    write_run(tmp_path / "norm=none,seed=1", seed=1, config=config)
    differences = config_differences(load_summaries([tmp_path]))
    assert list(differences) == ["data.seed"]
    assert sorted(differences["data.seed"]) == ["0", "2"]


def _finished_sweep(
    path: Path, mtime: float, status: str = "finished", marker: bool = True
) -> Path:
    write_run(path / "norm=none,seed=0", status=status)
    if marker:
        (path / "multirun.yaml").write_text("hydra: {}\n")
    os.utime(path, (mtime, mtime))
    return path


def test_newest_multirun_holds_finished_runs(tmp_path: Path) -> None:
    root = tmp_path / "runs" / "ioffe2015" / "fig1_mnist"
    old = _finished_sweep(root / "reproduction", 1_000)  # multirun.yaml, any name
    named = _finished_sweep(root / "multirun_2026-01-02_00-00-00", 2_000, marker=False)
    assert newest_multirun(root) == named
    newer = _finished_sweep(root / "multirun_2026-01-03_00-00-00", 3_000)
    assert newest_multirun(str(root)) == newer
    # Newer, but nothing finished in it: a failed sweep, one still running.
    _finished_sweep(root / "multirun_2026-01-04_00-00-00", 4_000, status="failed")
    _finished_sweep(root / "multirun_2026-01-05_00-00-00", 5_000, status="running")
    # Newer, finished, but a single run, not a sweep.
    single = write_run(root / "2026-01-06_00-00-00")
    os.utime(single, (6_000, 6_000))
    assert newest_multirun(root) == newer
    # A job finishing in a sweep makes it the newest.
    os.utime(old, (7_000, 7_000))
    assert newest_multirun(root) == old


def test_no_finished_multirun_is_an_error_that_says_why(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no multirun directory"):
        newest_multirun(tmp_path / "absent")
    write_run(tmp_path / "2026-01-06_00-00-00")
    with pytest.raises(FileNotFoundError, match="no multirun directory"):
        newest_multirun(tmp_path)
    _finished_sweep(tmp_path / "multirun_x", 1_000, status="diverged")
    with pytest.raises(FileNotFoundError, match="1 multirun directory, none with a finished run"):
        newest_multirun(tmp_path)


# --- per-run files (landscape.csv, act_hist.csv) -------------------------------------------------


def _landscape_run(root: Path, seed: int, rows: list[tuple], **kw) -> Path:
    run = write_run(root / f"seed={seed}", seed=seed, curves={"train/loss": {0: 1.0}}, **kw)
    write_csv(run / "landscape.csv", ("step", "eta", "loss", "grad_diff"), rows)
    return run


def test_run_files_are_joined_with_their_summary_row(tmp_path: Path) -> None:
    _landscape_run(tmp_path, 0, [(0, 1e-8, 5.0, 0.1), (0, 1e-7, 6.0, 0.2), (100, 1e-8, 4.0, 0.1)])
    _landscape_run(tmp_path, 1, [(0, 1e-8, 5.5, 0.3)])
    df = load_run_files([tmp_path], "landscape.csv")
    assert list(df.columns[:5]) == ["run_dir", "step", "eta", "loss", "grad_diff"]
    assert len(df) == 4 and set(df["seed"]) == {0, 1}
    assert df["last_step"].eq(50000).all() and df["norm.name"].eq("none").all()
    assert df.loc[df["seed"] == 1, "grad_diff"].tolist() == [0.3]
    assert df.attrs["without_file"] == {"landscape.csv": []}
    # From a load_summaries table: the same rows.
    same = load_run_files(load_summaries([tmp_path]), "landscape.csv")
    pd.testing.assert_frame_equal(same, df)


def test_a_run_without_the_file_is_reported_and_left_out_runs_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _landscape_run(tmp_path, 0, [(0, 1e-8, 5.0, 0.1)])
    bare = write_run(tmp_path / "seed=1", seed=1, curves={"train/loss": {0: 1.0}})
    write_run(tmp_path / "failed", status="failed", step=3)
    with caplog.at_level(logging.WARNING, logger="normlab.results"):
        df = load_run_files([tmp_path], "landscape.csv")
    assert df.attrs["without_file"] == {"landscape.csv": [str(bare.resolve())]}
    assert df.attrs["left_out"] == {"failed": 1}
    assert "1 of 2 runs have no landscape.csv" in caplog.text and "seed=1" in caplog.text
    assert "left out 1 of 3 runs: 1 failed" in caplog.text


def test_torn_last_line_of_a_run_file_is_dropped_and_non_finite_values_kept(
    tmp_path: Path,
) -> None:
    run = _landscape_run(tmp_path, 0, [(0, 1e-8, 5.0, 0.1), (0, 3e-5, float("inf"), float("nan"))])
    with (run / "landscape.csv").open("a") as f:
        f.write("100,1e-08,4.")  # a run killed mid-append
    df = load_run_files([tmp_path], "landscape.csv")
    assert df["step"].tolist() == [0, 0]
    assert np.isinf(df["loss"].iloc[1]) and np.isnan(df["grad_diff"].iloc[1])
    # A file created but not flushed yet: no rows, and the run is not "without the file".
    (run / "landscape.csv").write_text("step,eta,lo")
    df = load_run_files([tmp_path], "landscape.csv")
    assert df.empty and df.attrs["without_file"] == {"landscape.csv": []}


def test_run_files_join_the_metrics_table_as_metrics(tmp_path: Path) -> None:
    for seed in (0, 1, 2):
        _landscape_run(tmp_path, seed, [(0, 1e-8, 5.0 + seed, 0.1), (0, 1e-7, 6.0, 0.2 * seed)])
    run = write_run(tmp_path / "hist", seed=3, curves={"train/loss": {0: 1.0}})
    write_csv(
        run / "act_hist.csv",
        ("step", "layer", "bin_lo", "bin_hi", "count"),
        [(0, 1, -1.0, 0.0, 4), (0, 1, 0.0, 1.0, 6)],
    )
    table = load_metrics(
        [tmp_path], metrics=["train/loss"], files=("landscape.csv", "act_hist.csv")
    )
    assert set(table["metric"]) == {
        "train/loss",
        "landscape_curve/loss",
        "landscape_curve/grad_diff",
        "act_hist/count",
    }
    curve = table[table["metric"] == "landscape_curve/grad_diff"].sort_values(["seed", "eta"])
    assert curve["eta"].tolist() == [1e-8, 1e-7] * 3
    assert curve["value"].tolist() == [0.1, 0.0, 0.1, 0.2, 0.1, 0.4]
    counts = table[table["metric"] == "act_hist/count"]
    assert counts["value"].tolist() == [4.0, 6.0] and counts["bin_hi"].tolist() == [0.0, 1.0]
    assert table.loc[table["metric"] == "train/loss", "eta"].isna().all()
    # The file's key columns are not config: the runs are still one setting.
    assert not {"eta", "layer", "bin_lo", "bin_hi"} & set(config_columns(table))
    check_one_setting(table)
    assert table.attrs["without_file"]["act_hist.csv"] == [
        str((tmp_path / f"seed={s}").resolve()) for s in (0, 1, 2)
    ]
    with pytest.raises(ValueError, match="unknown per-run file 'nope.csv'"):
        load_metrics([tmp_path], files=("nope.csv",))
