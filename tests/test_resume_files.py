"""A run killed after a checkpoint and resumed from it leaves the files an uninterrupted run leaves:
every row of metrics.csv and of the probes' files exactly once, with the same value, and no other
(normlab.appended_files). The kill is a real SIGKILL of a training process: rows it had buffered
die with it, rows it had written after the checkpoint are on disk."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import run_cli

from normlab.appended_files import CHECKPOINT_KEY
from normlab.config import compose_config
from normlab.errors import NormlabError
from normlab.train import run

FILES = ("metrics.csv", "act_hist.csv")
# Killed at step 27, after the checkpoint of step 20 and the probe rows of step 25 were written;
# metrics.csv's buffer (flushed every 200 rows) then holds the rows of steps 21-27.
KILL_AT = 27
KILLED = """
import os, signal, sys
import lightning as L
from normlab.config import compose_config
from normlab.train import run

class KillAt(L.Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == int(sys.argv[2]):
            os.kill(os.getpid(), signal.SIGKILL)

overrides = sys.argv[3:]
run(compose_config(overrides), sys.argv[1], overrides, callbacks=[KillAt()])
"""


def _common(tiny_overrides: list[str]) -> list[str]:
    return [
        *tiny_overrides,
        "trainer.enable_checkpointing=true",
        "trainer.max_steps=40",
        "trainer.val_check_interval=10",
        "trainer.log_every_n_steps=1",
        "probe.activations.every_n_steps=5",
        "norm=batch",
        "logger=none",
    ]


def _rows(run_dir: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(run_dir / name, dtype=str)


def _killed_run(common: list[str], run_dir: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", KILLED, str(run_dir), str(KILL_AT), *common],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]


@pytest.fixture
def killed(tiny_overrides, tmp_path) -> tuple[list[str], Path]:
    """(overrides, run directory) of a run killed by SIGKILL at step 27."""
    common = _common(tiny_overrides)
    part = tmp_path / "part"
    _killed_run(common, part)
    return common, part


def test_a_killed_and_resumed_run_logs_every_row_once(killed, tmp_path) -> None:
    common, part = killed
    # the checkpoint records each file's length when it was saved, after flushing the logger
    ckpt = part / "checkpoints" / "last.ckpt"
    saved = torch.load(ckpt, weights_only=False)
    assert saved["global_step"] == 20 and set(saved[CHECKPOINT_KEY]) == set(FILES)
    assert saved[CHECKPOINT_KEY]["metrics.csv"] == (part / "metrics.csv").stat().st_size
    assert saved[CHECKPOINT_KEY]["act_hist.csv"] < (part / "act_hist.csv").stat().st_size
    # what the kill left: the probe rows of step 25 written, the metrics after step 20 lost
    assert _rows(part, "act_hist.csv")["step"].astype(int).max() == 25
    assert _rows(part, "metrics.csv")["step"].astype(int).max() == 20
    # a copy whose metrics.csv lost rows the checkpoint counts: refused, naming both lengths
    shutil.copytree(part, tmp_path / "damaged")
    os.truncate(tmp_path / "damaged" / "metrics.csv", 100)
    damaged = [*common, f"resume={tmp_path / 'damaged' / 'checkpoints' / 'last.ckpt'}"]
    with pytest.raises(NormlabError, match=r"metrics.csv has 100 bytes, fewer than the \d+"):
        run(compose_config(damaged), tmp_path / "damaged", damaged)
    # `resume=<run dir>` from the command line: the run's own config and checkpoint, nothing
    # retyped; it cuts act_hist.csv back and logs again what the kill lost
    resumed = run_cli([f"resume={part}"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = json.loads((part / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["step"] == 40
    assert summary["overrides"] == common and summary["attempts"][0]["status"] == "running"
    full = run(compose_config(common), tmp_path / "full", common)
    for name in FILES:
        pd.testing.assert_frame_equal(_rows(part, name), _rows(tmp_path / "full", name))
    final = torch.load(ckpt, weights_only=False)
    assert final["global_step"] == 40
    for key, value in full.module.state_dict().items():
        assert torch.equal(final["state_dict"][key], value), key
