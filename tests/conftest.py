from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# Never reach for the network or a W&B account from the tests.
os.environ["WANDB_MODE"] = "offline"
os.environ.setdefault("WANDB_SILENT", "true")


def run_cli(args: Sequence[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """`python -m normlab.train ARGS` in a subprocess (a user's command line)."""
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "normlab.train", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def tiny_overrides(tmp_path: Path) -> list[str]:
    """A few steps of fig1 on the synthetic set, W&B off, writing under tmp_path."""
    return [
        "experiment=ioffe2015/fig1_mnist",
        "debug=smoke",
        "data=synthetic",
        f"paths.runs_dir={tmp_path / 'runs'}",
        f"paths.data_dir={tmp_path / 'data'}",
    ]


def checkpointed_job(tmp_path: Path, max_steps: int, val_every: int = 100) -> list[str]:
    """One MNIST-preset job on the synthetic set (batch norm, seed 0, one thread, W&B off) that
    checkpoints every `val_every` steps: the job the launcher and SLURM tests stop and requeue. It
    asks a cluster for one core (its thread), so that an uninterrupted run of the same job can run
    on the other core of a 2-core machine meanwhile."""
    return [
        "experiment=ioffe2015/fig1_mnist",
        "debug=smoke",
        "data=synthetic",
        "norm=batch",
        "seed=0",
        "threads=1",
        "logger=none",
        "trainer.enable_checkpointing=true",
        f"trainer.max_steps={max_steps}",
        f"trainer.val_check_interval={val_every}",
        "trainer.log_every_n_steps=50",
        "resources.cpus_per_task=1",
        f"paths.runs_dir={tmp_path / 'runs'}",
        f"paths.data_dir={tmp_path / 'data'}",
    ]


# One tiny multirun through the CLI, shared by the end-to-end, figure and notebook tests.
E2E_ARGS = [
    "-m",
    "experiment=ioffe2015/fig1_mnist",
    "debug=smoke",
    "data=synthetic",
    "logger=wandb",
    "trainer.max_steps=60",
    "trainer.val_check_interval=20",
    "probe.activations.every_n_steps=10",
]


@pytest.fixture(scope="session")
def e2e_sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    root = tmp_path_factory.mktemp("e2e")
    sweep = root / "sweep"
    proc = run_cli(
        [*E2E_ARGS, f"hydra.sweep.dir={sweep}", f"paths.data_dir={root / 'data'}"],
        cwd=root,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return sweep, proc
