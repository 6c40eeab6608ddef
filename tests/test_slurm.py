"""Sweeps through a real SLURM (`hydra/launcher=slurm`): a single-node cluster of this test
session's own (scripts/slurm_local.sh: munged, slurmctld, slurmd), started and stopped here.

`pytest -m slurm` (deselected by default; `.ci/run` runs it after the suite). The tests submit a
preset's tiny sweep as a submitit job array; a job preempted (`scontrol requeue`) and a job that
reaches its time limit are requeued and finish with the metrics of an uninterrupted run. SLURM's
time limits are whole minutes and slurmctld looks at them about every 30 s, so its warning signal
comes up to that much before the delay asked for: the time-limit test gives its job a 3-minute
limit and a signal 60 s before it, which comes 90-120 s into each attempt.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO, checkpointed_job

from normlab.config import compose_config
from normlab.train import run

pytestmark = pytest.mark.slurm

SCRIPT = REPO / "scripts" / "slurm_local.sh"


@pytest.fixture(scope="module")
def slurm() -> dict[str, str]:
    """The environment of a running single-node cluster (SLURM_CONF), stopped at the end."""
    # A directory right under /tmp (not $TMPDIR, nor pytest's): munged refuses a socket below a
    # directory that not everyone may enter, as pytest's temporary directories are.
    state = Path(tempfile.mkdtemp(prefix="normlab-slurm.", dir="/tmp"))
    state.chmod(0o755)
    start = subprocess.run(
        ["bash", str(SCRIPT), "start", str(state)], capture_output=True, text=True, timeout=900
    )
    if start.returncode == 3:
        shutil.rmtree(state, ignore_errors=True)
        pytest.skip(f"no SLURM on this machine: {start.stderr.strip()}")
    assert start.returncode == 0, start.stderr[-4000:]
    key, _, conf = start.stdout.strip().splitlines()[-1].partition("=")
    assert key == "SLURM_CONF" and Path(conf).is_file(), start.stdout
    env = {**os.environ, "SLURM_CONF": conf, "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1"}
    yield env
    stop = subprocess.run(
        ["bash", str(SCRIPT), "stop", str(state)], capture_output=True, text=True, timeout=120
    )
    assert stop.returncode == 0, stop.stderr[-4000:]
    shutil.rmtree(state, ignore_errors=True)


def _submit(env: dict[str, str], sweep: Path, args: list[str]) -> subprocess.Popen:
    """`python -m normlab.train -m ... hydra/launcher=slurm`: it waits for its jobs."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "normlab.train",
            "-m",
            *args,
            "hydra/launcher=slurm",
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=sweep.parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(proc: subprocess.Popen, timeout: float) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-5000:]
    return out


def _summaries(sweep: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sweep.glob("*/summary.json")}


def _rows(job: Path) -> pd.DataFrame:
    rows = pd.read_csv(job / "metrics.csv", dtype=str)
    return rows.sort_values(["step", "metric"]).reset_index(drop=True)


def _wait_for_training(sweep: Path, proc: subprocess.Popen, timeout: float = 300) -> dict:
    """The summary of the sweep's job once it has written its first checkpoint."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read()[-5000:] if proc.stdout else ""
        for name, summary in _summaries(sweep).items():
            checkpoint = sweep / name / "checkpoints" / "last.ckpt"
            if summary["status"] == "running" and checkpoint.exists():
                return summary
        time.sleep(0.2)
    raise AssertionError("the job did not start training")


def _steps_per_second(tmp_path: Path) -> float:
    """How fast this machine trains the tests' job: 2,000 steps, timed."""
    overrides = checkpointed_job(tmp_path / "timing", max_steps=2000, val_every=1000)
    started = time.perf_counter()
    assert run(compose_config(overrides), tmp_path / "timing", overrides).status == "finished"
    return 2000 / (time.perf_counter() - started)


def _uninterrupted(tmp_path: Path, overrides: list[str]) -> pd.DataFrame:
    whole = run(compose_config(overrides), tmp_path / "whole", overrides)
    assert whole.status == "finished"
    return _rows(tmp_path / "whole")


def test_a_sweep_runs_as_a_job_array_asking_for_what_its_preset_needs(slurm, tmp_path) -> None:
    sweep = tmp_path / "sweep"
    args = [*checkpointed_job(tmp_path, max_steps=40, val_every=20), "norm=none,batch"]
    args.remove("resources.cpus_per_task=1")  # the preset's own
    _finish(_submit(slurm, sweep, args), timeout=600)
    summaries = _summaries(sweep)
    assert len(summaries) == 2 and {s["status"] for s in summaries.values()} == {"finished"}
    assert all(s["process"]["slurm_job_id"].count("_") == 1 for s in summaries.values())
    # what the MNIST preset asks for (`resources`): a CPU job, no GPU; requeue on SIGUSR2
    (script,) = {p.read_text() for p in (sweep / ".submitit").glob("*/*submission.sh")}
    asked = {line.removeprefix("#SBATCH ") for line in script.splitlines() if "#SBATCH" in line}
    assert asked >= {
        "--gpus-per-node=0",
        "--cpus-per-task=2",
        "--mem=4GB",
        "--time=60",
        "--signal=USR2@120",
        "--array=0-1%2",
    }, asked


def test_a_preempted_job_is_requeued_and_finishes_as_if_never_stopped(slurm, tmp_path) -> None:
    overrides = checkpointed_job(tmp_path, max_steps=6000)
    sweep = tmp_path / "sweep"
    proc = _submit(slurm, sweep, overrides)
    summary = _wait_for_training(sweep, proc)
    job_id = summary["process"]["slurm_job_id"]
    requeue = subprocess.run(
        ["scontrol", "requeue", job_id], env=slurm, capture_output=True, text=True, timeout=60
    )
    assert requeue.returncode == 0, requeue.stderr
    expected = _uninterrupted(tmp_path, overrides)  # meanwhile, on the other core
    _finish(proc, timeout=900)
    ((name, summary),) = _summaries(sweep).items()
    assert summary["status"] == "finished" and summary["step"] == 6000
    # SLURM stopped it with SIGTERM; the requeued job resumed in its own directory
    assert [(a["status"], a["error"]) for a in summary["attempts"]] == [("interrupted", "SIGTERM")]
    assert summary["process"]["slurm_job_id"] == job_id
    pd.testing.assert_frame_equal(_rows(sweep / name), expected)


def test_a_job_at_its_time_limit_is_requeued_and_finishes_as_if_never_stopped(
    slurm, tmp_path
) -> None:
    # ~250 s of training on this machine, whatever its speed: each attempt gets 80-110 s of it
    # before its signal, so it takes 3-4 attempts
    max_steps = 1000 * round(_steps_per_second(tmp_path) * 250 / 1000)
    overrides = checkpointed_job(tmp_path, max_steps=max_steps, val_every=1000)
    sweep = tmp_path / "sweep"
    limits = [
        "hydra.launcher.timeout_min=3",
        "hydra.launcher.signal_delay_s=60",
        "hydra.launcher.max_num_timeout=6",
    ]
    proc = _submit(slurm, sweep, [*overrides, *limits])
    expected = _uninterrupted(tmp_path, overrides)
    _finish(proc, timeout=2400)
    ((name, summary),) = _summaries(sweep).items()
    assert summary["status"] == "finished" and summary["step"] == max_steps
    attempts = summary["attempts"]
    assert attempts and all(a["error"] == "SIGUSR2" for a in attempts), attempts
    pd.testing.assert_frame_equal(_rows(sweep / name), expected)
