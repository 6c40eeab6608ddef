"""What a run prints and what its W&B run says: a plain line per evaluation where no terminal
shows a bar, none of the libraries' known noise, normlab's status in the W&B summary."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from lightning.pytorch.callbacks import TQDMProgressBar

from normlab.config import compose_config
from normlab.console import ProgressLines, progress_bar_wanted, silence_library_noise
from normlab.train import run


def _run(overrides: list[str], run_dir: Path):
    return run(compose_config(overrides), run_dir, overrides)


def test_auto_shows_the_bar_only_on_a_terminal(monkeypatch) -> None:
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    assert progress_bar_wanted("auto") is False
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert progress_bar_wanted("auto") is True
    assert progress_bar_wanted(False) is False and progress_bar_wanted(True) is True


def test_off_a_terminal_a_run_logs_one_line_per_evaluation(tiny_overrides, tmp_path, caplog):
    # pytest captures stderr: not a terminal, so `auto` gives no bar
    with caplog.at_level(logging.INFO, logger="normlab.train"):
        result = _run(
            [*tiny_overrides, "trainer.enable_progress_bar=auto", "trainer.max_steps=40"], tmp_path
        )
    assert not any(isinstance(c, TQDMProgressBar) for c in result.trainer.callbacks)
    assert any(isinstance(c, ProgressLines) for c in result.trainer.callbacks)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("step ")]
    assert [line.split()[1] for line in lines] == ["20/40", "40/40"]  # val_check_interval=20
    assert "test/acc=" in lines[-1] and "steps/s" in lines[-1]


def test_the_known_library_noise_is_filtered_and_other_warnings_are_not(caplog) -> None:
    silence_library_noise()
    from lightning.pytorch.utilities.rank_zero import rank_zero_info

    with caplog.at_level(logging.INFO):
        rank_zero_info("💡 Tip: For seamless cloud logging, try installing litlogger")
        rank_zero_info("GPU available: False")
    assert [r.getMessage() for r in caplog.records] == ["GPU available: False"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        silence_library_noise()  # catch_warnings reset the filters
        for message in (
            "`isinstance(treespec, LeafSpec)` is deprecated, use ...",
            "The number of training batches (1) is smaller than the logging interval",
            "something else",
        ):
            warnings.warn(message, UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["something else"]


def _wandb_summary(run_dir: Path) -> dict:
    wandb_cli = Path(sys.executable).parent / "wandb"
    out = subprocess.run(
        [str(wandb_cli), "leet", "inspect", "--summary", "--json", str(run_dir / "wandb")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(out.stdout)


DLN = [
    "experiment=santurkar2018/dln_fig5b_lp",
    "debug=smoke",
    "norm=none",
    "logger=wandb",
    "trainer.max_steps=20",
    "trainer.val_check_interval=10",
]


@pytest.mark.parametrize(
    "lr,status,exit_code,diverged_at", [(1e-3, "diverged", 1, 1), (1e-7, "finished", 0, None)]
)
def test_the_wandb_run_holds_normlabs_status(tmp_path, lr, status, exit_code, diverged_at) -> None:
    # lr 1e-3 on the summed-loss DLN: the loss overflows after the first step
    result = _run([*DLN, f"optim.lr={lr}", f"paths.runs_dir={tmp_path / 'runs'}"], tmp_path / "r")
    assert result.status == status
    state = _wandb_summary(tmp_path / "r")
    assert state["summary"]["status"] == status
    assert state["summary"].get("diverged_at_step") == diverged_at
    assert state["exit_code"] == exit_code
    # the console is not copied into the W&B run (train.log holds the job's log)
    assert state["console_lines"] == 0
