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


# The command line, with the step before the trainer exists (building the probes) held until a
# file appears: a window before `fit` that a signal can be sent into for sure.
HELD_BEFORE_FIT = """
import sys, time
from pathlib import Path
import normlab.train as train

held, go = Path(sys.argv[1]), Path(sys.argv[2])
build_probes = train.build_probes

def held_build_probes(cfg):
    held.touch()
    while not go.exists():
        time.sleep(0.01)
    return build_probes(cfg)

train.build_probes = held_build_probes
sys.argv = ["normlab.train", *sys.argv[3:]]
train.main()
"""


def _start(run_dir: Path, cwd: Path, held: tuple[Path, Path] | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    entry = ["-m", "normlab.train"] if held is None else ["-c", HELD_BEFORE_FIT, *map(str, held)]
    return subprocess.Popen(
        [sys.executable, *entry, *ARGS, f"hydra.run.dir={run_dir}"],
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


@pytest.mark.parametrize(
    ("signum", "code"),
    [(signal.SIGTERM, 143), pytest.param(signal.SIGINT, 130, marks=pytest.mark.slow)],
)
def test_a_signal_in_training_interrupts_the_run_with_its_exit_code(signum, code, tmp_path):
    run_dir = tmp_path / "run"
    proc = _start(run_dir, tmp_path)
    # in training: the first 200 metric rows are on disk
    _wait_for(lambda: (run_dir / "metrics.csv").exists(), proc)
    proc.send_signal(signum)
    assert proc.wait(timeout=120) == code, proc.stderr.read()[-3000:]
    summary = _summary(run_dir)
    assert summary["status"] == "interrupted" and summary["error"] == signum.name
    assert 0 < summary["step"] < summary["max_steps"]


def test_a_sigterm_before_training_interrupts_the_run(tmp_path):
    run_dir, held, go = tmp_path / "run", tmp_path / "held", tmp_path / "go"
    proc = _start(run_dir, tmp_path, held=(held, go))
    # held before the trainer exists: the run is `running`, Lightning's handler not yet in place
    _wait_for(held.exists, proc)
    assert _summary(run_dir)["status"] == "running"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 143, proc.stderr.read()[-3000:]
    summary = _summary(run_dir)
    assert summary["status"] == "interrupted" and summary["error"] == "SIGTERM"
    assert summary["step"] == 0


def test_lightnings_sigterm_exception_is_a_sigterm_without_normlabs_handlers(
    tiny_overrides, tmp_path
) -> None:
    # A process that did not install normlab.signals (a submitit job): Lightning caught the SIGTERM
    # in `fit` and raised its SIGTERMException, a SystemExit with no code (exit 0).
    import lightning as L
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from normlab.config import compose_config
    from normlab.train import run

    class SigtermAt(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            if trainer.global_step == 5:
                raise SIGTERMException

    with pytest.raises(SystemExit) as stopped:
        run(compose_config(tiny_overrides), tmp_path / "run", callbacks=[SigtermAt()])
    assert stopped.value.code == 143
    summary = _summary(tmp_path / "run")
    assert summary["status"] == "interrupted" and summary["error"] == "SIGTERM"
    assert summary["step"] == 5


def _signalled_at(step: int):
    """A callback sending this process SIGUSR2 (SLURM's warning before the time limit) at a step."""
    import lightning as L

    class SignalledAt(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            if trainer.global_step == step:
                os.kill(os.getpid(), signal.SIGUSR2)

    return SignalledAt()


@pytest.fixture
def submitit_job(monkeypatch):
    """This process as a submitit job whose requeue handler is `requeue(signum, frame)`: set it in
    the returned dict (normlab.signals finds submitit's handler at `install()`)."""
    from normlab import signals

    job: dict = {}
    monkeypatch.setattr(signals, "received", [])
    monkeypatch.setattr(signals, "_submitit_requeue", lambda s, f: job["requeue"](s, f))
    yield job
    signal.signal(signal.SIGUSR2, signal.SIG_DFL)


@pytest.mark.parametrize("requeued", [True, False], ids=["requeued", "not_requeued"])
def test_sigusr2_in_a_submitit_job_checkpoints_at_that_step_then_lets_submitit_act(
    requeued, submitit_job, tiny_overrides, tmp_path
) -> None:
    import torch

    from normlab.config import compose_config
    from normlab.train import run

    class NotRequeued(Exception):
        """submitit's UncompletedJobError: max_num_timeout reached."""

    def requeue(signum, frame):
        assert signum == signal.SIGUSR2
        if requeued:
            raise SystemExit(3)  # submitit's local executor: "requeue me"
        raise NotRequeued("Job not requeued because: timed-out too many times.")

    submitit_job["requeue"] = requeue
    overrides = [*tiny_overrides, "trainer.enable_checkpointing=true", "trainer.max_steps=100"]
    with pytest.raises(SystemExit if requeued else NotRequeued) as stopped:
        run(compose_config(overrides), tmp_path / "run", callbacks=[_signalled_at(7)])
    summary = _summary(tmp_path / "run")
    # the step the signal came in was finished, checkpointed, and the run ended there
    assert summary["status"] == "interrupted" and summary["step"] == 8
    checkpoint = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint["global_step"] == 8
    if requeued:
        assert stopped.value.code == 3 and summary["error"] == "SIGUSR2"  # submitit's exit code
    else:  # a re-launched sweep resumes it, not reruns it: it is interrupted, not failed
        assert summary["error"] == (
            "SIGUSR2, not requeued: Job not requeued because: timed-out too many times."
        )
