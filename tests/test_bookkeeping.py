"""The bookkeeping keys (`normlab.bookkeeping`): each is shown to change no logged value, and the
one list names job directories and decides what `normlab.results` treats as one setting."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from fakeruns import fig1_sweep
from test_train import _StopAt

from normlab.bookkeeping import BOOKKEEPING_KEYS, bookkeeping_overrides, is_bookkeeping
from normlab.config import compose_config
from normlab.results import check_one_setting, load_summaries
from normlab.train import run

# Each bookkeeping key and the test that shows changing it changes no logged value.
SHOWN = {
    "paths.*": "test_where_and_how_a_run_is_kept_changes_no_logged_value",
    "data.root": "test_the_data_read_from_another_folder_changes_no_logged_value",
    "data.download_dir": "test_the_data_read_from_another_folder_changes_no_logged_value",
    "logger.*": "test_where_and_how_a_run_is_kept_changes_no_logged_value",
    "resources.*": "test_where_and_how_a_run_is_kept_changes_no_logged_value",
    "trainer.enable_progress_bar": "test_where_and_how_a_run_is_kept_changes_no_logged_value",
    "trainer.enable_checkpointing": "test_where_and_how_a_run_is_kept_changes_no_logged_value",
    "resume": "test_a_resumed_run_logs_what_the_uninterrupted_run_logs",
    "module.finite_check_every_n_steps": (
        "tests/test_train.py: test_a_deferred_finite_check_records_the_same_divergence_step"
    ),
}


def test_every_bookkeeping_key_is_shown_to_change_nothing() -> None:
    assert set(SHOWN) == set(BOOKKEEPING_KEYS)
    tests = Path(__file__).parent
    for where in SHOWN.values():  # each names a test that exists
        path, name = where.split(": ") if ": " in where else (Path(__file__).name, where)
        assert f"def {name}(" in (tests / Path(path).name).read_text(), where


def _metrics(run_dir: Path) -> pd.Series:
    return pd.read_csv(run_dir / "metrics.csv").set_index(["step", "metric"])["value"]


def test_where_and_how_a_run_is_kept_changes_no_logged_value(tiny_overrides, tmp_path) -> None:
    # The activation probe on (a functional call of its own) and BN's running statistics in play.
    common = [*tiny_overrides, "norm=batch", "probe.activations.every_n_steps=10"]
    base = run(compose_config(common), tmp_path / "base", common)
    changed = [
        *common,
        f"paths.runs_dir={tmp_path / 'elsewhere'}",
        f"paths.data_dir={tmp_path / 'data2'}",
        "trainer.enable_progress_bar=true",
        "trainer.enable_checkpointing=true",
        "logger=wandb",
        "logger.wandb.mode=disabled",
        "resources.gpus_per_node=1",
        "resources.cpus_per_task=7",
        "resources.mem_gb=99",
    ]
    other = run(compose_config(changed), tmp_path / "other", changed)
    assert base.status == other.status == "finished"
    assert (tmp_path / "other" / "checkpoints" / "last.ckpt").exists()  # it did checkpoint
    pd.testing.assert_series_equal(_metrics(tmp_path / "other"), _metrics(tmp_path / "base"))


SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.mark.skipif(not (SHARED_DATA / "MNIST").is_dir(), reason="no ../shared/data/MNIST")
def test_the_data_read_from_another_folder_changes_no_logged_value(tmp_path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(SHARED_DATA / "MNIST", copy / "MNIST")
    common = ["experiment=ioffe2015/fig1_mnist", "debug=smoke", "trainer.max_steps=20"]
    runs = {}
    for name, root in (("shared", SHARED_DATA), ("copy", copy)):
        overrides = [
            *common,
            f"data.root={root}",
            f"data.download_dir={tmp_path / name / 'downloads'}",
            f"paths.runs_dir={tmp_path / name}",
        ]
        assert run(compose_config(overrides), tmp_path / name / "run", overrides).status == (
            "finished"
        )
        runs[name] = _metrics(tmp_path / name / "run")
    pd.testing.assert_series_equal(runs["copy"], runs["shared"])


def test_a_resumed_run_logs_what_the_uninterrupted_run_logs(tiny_overrides, tmp_path) -> None:
    common = [*tiny_overrides, "trainer.enable_checkpointing=true", "norm=batch"]
    full = run(compose_config(common), tmp_path / "full", common)
    with pytest.raises(SystemExit):  # stopped at step 27; last.ckpt is from step 20
        run(compose_config(common), tmp_path / "part", callbacks=[_StopAt(27, KeyboardInterrupt)])
    ckpt = tmp_path / "part" / "checkpoints" / "last.ckpt"
    resumed_overrides = [*common, f"resume={ckpt}"]
    resumed = run(compose_config(resumed_overrides), tmp_path / "part", resumed_overrides)
    for key, value in full.module.state_dict().items():
        assert torch.equal(resumed.module.state_dict()[key], value), key
    # Every value is logged once and bit-equal to the uninterrupted run's (normlab.appended_files
    # cut back what the interrupted run logged after the checkpoint).
    pd.testing.assert_series_equal(_metrics(tmp_path / "part"), _metrics(tmp_path / "full"))


def test_job_directories_leave_out_the_bookkeeping_overrides_only() -> None:
    task = [
        "experiment=santurkar2018/dln_fig3b_ics",
        "+santurkar2018/dln_point=none_lr1e-6",
        "seed=1",
        "logger=none",
        "logger.wandb.project=x",
        "paths.runs_dir=/scratch/runs",
        "trainer.enable_progress_bar=false",
        "resume=/scratch/runs/a/checkpoints/last.ckpt",
        "hydra/launcher=slurm",
        "threads=1",  # changes a conv net's float32 sums: part of what a run is
        "probe.ics.every_n_steps=50",  # decides which evaluations exist
        "compile.enabled=true",  # inductor reorders float32 sums (tests/test_compile.py)
    ]
    assert bookkeeping_overrides(task) == [
        "experiment",
        "logger",
        "logger.wandb.project",
        "paths.runs_dir",
        "trainer.enable_progress_bar",
        "resume",
        "hydra/launcher",
    ]
    for key in ("threads", "probe.ics.every_n_steps", "compile.enabled", "trainer.accelerator"):
        assert not is_bookkeeping(key), key


def test_a_multirun_job_is_named_without_its_bookkeeping(tiny_overrides, tmp_path) -> None:
    from normlab.config import _compose_with_hydra

    cfg = _compose_with_hydra([*tiny_overrides, "seed=3", "logger=none", "threads=1"])
    exclude = list(cfg.hydra.job.config.override_dirname.exclude_keys)
    assert "logger" in exclude and "paths.runs_dir" in exclude and "experiment" in exclude
    assert "seed" not in exclude and "threads" not in exclude


def test_runs_that_differ_only_in_bookkeeping_are_one_setting(tmp_path) -> None:
    """A resumed run is drawn with its sweep (its `resume` differs from the others')."""

    def config(norm: str, seed: int) -> dict:
        from fakeruns import base_config

        cfg = base_config(norm, seed, resume="runs/x/checkpoints/last.ckpt" if seed == 1 else None)
        cfg["paths"]["runs_dir"] = f"/scratch/{seed}"
        return cfg

    table = load_summaries([fig1_sweep(tmp_path / "s", config=config)])
    check_one_setting(table, vary=("seed", "norm.*"))
    with pytest.raises(ValueError, match="threads"):
        table.loc[table["seed"] == 2, "threads"] = 2
        check_one_setting(table, vary=("seed", "norm.*"))
