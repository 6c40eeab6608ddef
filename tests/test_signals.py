"""SIGTERM and SIGINT sent to `python -m normlab.train` end it with the signal's exit code (143,
130) and leave the run `interrupted`, the signal named: in training, and before it (normlab.signals).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ARGS = [
    "experiment=ioffe2015/fig1_mnist",
    "debug=smoke",
    "data=synthetic",
    "norm=batch",
    "seed=0",
    "logger=none",
    "trainer.enable_progress_bar=false",
    "trainer.max_steps=1000000",  # stopped by the signal long before
    "trainer.val_check_interval=100",
]


def _start(run_dir: Path, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "normlab.train", *ARGS, f"hydra.run.dir={run_dir}"],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(condition, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_in_training_interrupts_the_run_with_its_exit_code(signum, code, tmp_path):
    run_dir = tmp_path / "run"
    proc = _start(run_dir, tmp_path)
    # in training: the first metrics are on disk (the first validation at step 100 flushed them)
    _wait_for(lambda: (run_dir / "metrics.csv").exists(), proc)
    proc.send_signal(signum)
    assert proc.wait(timeout=120) == code, proc.stderr.read()[-3000:]
    summary = _summary(run_dir)
    assert summary["status"] == "interrupted" and summary["error"] == signum.name
    assert 0 < summary["step"] < summary["max_steps"]


def test_a_sigterm_before_training_interrupts_the_run(tmp_path):
    run_dir = tmp_path / "run"
    proc = _start(run_dir, tmp_path)
    # the run's record exists (Hydra made the directory, normlab wrote `running`) but no step ran
    _wait_for(lambda: (run_dir / "summary.json").exists(), proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 143, proc.stderr.read()[-3000:]
    summary = _summary(run_dir)
    assert summary["status"] == "interrupted" and summary["error"] == "SIGTERM"
