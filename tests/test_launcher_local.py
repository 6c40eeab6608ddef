"""`hydra/launcher=local` (submitit's local executor, the SLURM code path on one machine): a job
asked to requeue (SIGUSR2, what SLURM sends before the time limit) checkpoints at that step, is
requeued and resumes to the numbers of an uninterrupted run; a job whose launcher is killed stops
instead of running on unowned."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import checkpointed_job

from normlab.config import compose_config
from normlab.train import run


def _launch(sweep: Path, overrides: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "normlab.train",
            "-m",
            *overrides,
            "hydra/launcher=local",
            f"hydra.sweep.dir={sweep}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "WANDB_MODE": "offline"},
    )


def _training_job(sweep: Path, proc: subprocess.Popen, timeout: float = 300) -> tuple[Path, dict]:
    """(job directory, summary) once the job has written its first checkpoint."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        for path in sweep.glob("*/summary.json"):
            summary = json.loads(path.read_text())
            if (path.parent / "checkpoints" / "last.ckpt").exists() and summary[
                "status"
            ] == "running":
                return path.parent, summary
        time.sleep(0.05)
    raise AssertionError(
        f"no job started training: {proc.stderr.read()[-3000:] if proc.stderr else ''}"
    )


def _rows(job: Path) -> pd.DataFrame:
    rows = pd.read_csv(job / "metrics.csv", dtype=str)
    return rows.sort_values(["step", "metric"]).reset_index(drop=True)


# ~50 s; `make test-slurm` shows the same path through SLURM's own time-limit signal.
@pytest.mark.slow
def test_a_job_asked_to_requeue_checkpoints_resumes_and_loses_nothing(tmp_path) -> None:
    overrides = checkpointed_job(tmp_path, max_steps=3000)
    sweep = tmp_path / "sweep"
    proc = _launch(sweep, overrides)
    job, summary = _training_job(sweep, proc)
    os.kill(
        summary["process"]["pid"], signal.SIGUSR2
    )  # as SLURM does signal_delay_s before the limit
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    summary = json.loads((job / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["step"] == 3000
    (first,) = summary["attempts"]
    assert first["status"] == "interrupted" and first["error"] == "SIGUSR2"
    # it stopped at the end of the step it was signalled in, saved there, and resumed from there
    assert 100 <= first["step"] < 3000
    assert f"from {job / 'checkpoints' / 'last.ckpt'}" in (job / "train.log").read_text()
    whole = run(compose_config(overrides), tmp_path / "whole", overrides)
    assert whole.status == "finished"
    pd.testing.assert_frame_equal(_rows(job), _rows(tmp_path / "whole"))


def test_a_job_whose_launcher_is_killed_stops(tmp_path) -> None:
    sweep = tmp_path / "sweep"
    proc = _launch(sweep, checkpointed_job(tmp_path, max_steps=10**6))
    job, summary = _training_job(sweep, proc)
    proc.kill()  # SIGKILL: the launcher cannot stop its jobs itself
    proc.wait()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        summary = json.loads((job / "summary.json").read_text())
        if summary["status"] != "running":
            break
        time.sleep(0.2)
    assert summary["status"] == "interrupted" and summary["error"] == "SIGTERM", summary
    pid = summary["process"]["pid"]
    for _ in range(100):  # the process itself ends too
        if not Path(f"/proc/{pid}").exists():
            break
        time.sleep(0.1)
    assert not Path(f"/proc/{pid}").exists()
