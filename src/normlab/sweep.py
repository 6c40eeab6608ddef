"""A multirun as a whole: each launch's record kept, the jobs' outcomes listed at the end, and no
job left running when the launcher that started it dies.

A sweep directory can be launched into again (normlab.resume: done jobs are skipped, interrupted
ones resume), so it may see several launches: Hydra writes `multirun.yaml` at each, and
`KeepLaunchRecords` renames the previous one `multirun.<n>.yaml` first (n = 1 for the first
launch). At the end, `report_sweeps` lists the jobs that did not end done, and the command exits
non-zero if there are any (Hydra stops at the first failed job's exception, with no list).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from normlab.errors import NormlabError
from normlab.process import process_record, still_running
from normlab.resume import DONE_STATUSES, PREVIOUS_ATTEMPTS, read_summary

log = logging.getLogger("normlab.sweep")

# The launching process's record (normlab.process), in the environment its jobs inherit.
LAUNCHER_ENV = "NORMLAB_LAUNCHER"
# The sweep directories launched by this process (`KeepLaunchRecords`), for `report_sweeps`.
launched: list[Path] = []


class KeepLaunchRecords(Callback):
    """Hydra callback (conf/hydra/default.yaml): keep each launch's `multirun.yaml`."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        launched.append(sweep_dir)
        # The launcher, for its local jobs to watch (`watch_launcher`): they inherit this.
        os.environ[LAUNCHER_ENV] = json.dumps(process_record())
        record = sweep_dir / "multirun.yaml"
        if record.exists():
            n = 1
            while (sweep_dir / f"multirun.{n}.yaml").exists():
                n += 1
            record.rename(sweep_dir / f"multirun.{n}.yaml")
            log.info(
                "%s holds earlier launches: their records are multirun.1..%d.yaml", sweep_dir, n
            )


def job_outcomes(sweep_dir: Path) -> dict[str, list[tuple[str, str | None]]]:
    """{status: [(job directory, error or None), ...]} for the job directories of a sweep (those
    holding a summary.json, or only Hydra's record: `never started`)."""
    outcomes: dict[str, list[tuple[str, str | None]]] = {}
    for job in sorted(p for p in sweep_dir.iterdir() if p.is_dir() and p.name != PREVIOUS_ATTEMPTS):
        summary = read_summary(job)
        if summary is None and not (job / ".hydra").is_dir():
            continue
        status = "never started" if summary is None else str(summary.get("status"))
        error = None if summary is None else summary.get("error")
        outcomes.setdefault(status, []).append((job.name, error))
    return outcomes


def report_sweeps() -> bool:
    """Log, for each sweep this process launched, how its jobs ended and which did not end done;
    False if any did not."""
    # Hydra's basic launcher leaves the last job's train.log attached: this is the sweep's, not its.
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, logging.FileHandler)]:
        root.removeHandler(handler)
        handler.close()
    all_done = True
    for sweep_dir in launched:
        if not sweep_dir.is_dir():
            continue
        outcomes = job_outcomes(sweep_dir)
        counts = ", ".join(f"{len(jobs)} {status}" for status, jobs in sorted(outcomes.items()))
        log.info("sweep %s: %s", sweep_dir, counts or "no jobs")
        for status, jobs in sorted(outcomes.items()):
            if status in DONE_STATUSES:
                continue
            all_done = False
            for name, error in jobs:
                log.error("  %s: %s%s", status, name, f" ({error})" if error else "")
    return all_done


def check_slurm_launch(argv: Sequence[str]) -> None:
    """`hydra/launcher=slurm` without `hydra.launcher.partition=`: the cluster must have a default
    partition (sbatch would refuse every job of the sweep, one by one). NormlabError otherwise,
    listing the partitions; also when SLURM's commands are not on this machine."""
    if "hydra/launcher=slurm" not in argv:
        return
    if any(a.startswith("hydra.launcher.partition=") for a in argv):
        return
    if shutil.which("sinfo") is None:
        raise NormlabError(
            "hydra/launcher=slurm needs SLURM's commands (sinfo, sbatch) on this machine: run "
            "the sweep from a login node of the cluster, or use hydra/launcher=local"
        )
    try:
        out = subprocess.run(
            ["sinfo", "--noheader", "--format=%P"], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.SubprocessError) as err:
        raise NormlabError(f"hydra/launcher=slurm: sinfo failed: {err}") from err
    if out.returncode != 0:
        raise NormlabError(f"hydra/launcher=slurm: sinfo failed: {out.stderr.strip()}")
    partitions = sorted({p.strip() for p in out.stdout.split()})
    if not any(p.endswith("*") for p in partitions):
        raise NormlabError(
            "hydra/launcher=slurm: this cluster has no default partition; set "
            f"hydra.launcher.partition=<name>, one of {partitions}"
        )


def check_one_job_shape(
    overrides: Sequence[str], points: Sequence[Sequence[str]], resources: Sequence[Any]
) -> None:
    """A submitit launcher (`hydra/launcher=slurm|local`) submits a sweep as one job array, which
    asks the cluster for the `resources` of the sweep's base point for every job: a sweep whose
    jobs ask for different ones (over `scale=`, or `resources.*`) is refused, naming them."""
    if not any(o in ("hydra/launcher=slurm", "hydra/launcher=local") for o in overrides):
        return
    shapes: dict[str, list[str]] = {}
    for point, asked in zip(points, resources, strict=True):
        shapes.setdefault(str(dict(asked)), []).append(" ".join(point))
    if len(shapes) > 1:
        listed = "; ".join(f"{shape} for {jobs[0]!r}" for shape, jobs in shapes.items())
        raise NormlabError(
            "a submitit launcher submits a sweep as one job array with one set of resources, "
            f"and this sweep's jobs ask for {len(shapes)}: {listed}; launch each as its own sweep"
        )


def watch_launcher(poll_s: float = 2.0) -> None:
    """In a job of `hydra/launcher=local` (submitit's local executor: launcher -> job controller
    -> this job), stop this job with SIGTERM when the launcher that started it is gone (`kill
    -9`): the controller outlives its launcher by design and would let the job run on, unowned.
    The launcher is the process that `KeepLaunchRecords` recorded in the environment it passed
    down. Does nothing in other processes."""
    if os.environ.get("SUBMITIT_EXECUTOR") != "local" or LAUNCHER_ENV not in os.environ:
        return
    launcher = json.loads(os.environ[LAUNCHER_ENV])

    def watch() -> None:
        while still_running(launcher):
            time.sleep(poll_s)
        log.error("the launcher (pid %s) is gone: stopping this job", launcher["pid"])
        os.kill(os.getpid(), signal.SIGTERM)  # normlab.signals: the run ends interrupted

    threading.Thread(target=watch, name="normlab-launcher-watch", daemon=True).start()
