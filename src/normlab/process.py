"""Which process wrote a record, and whether it still runs.

A run's `summary.json` says `running` from its start until it ends; a run killed with SIGKILL, on
a node that crashed or in a SLURM job that was requeued says so for ever. `process_record`
(written into the summary) and `still_running` tell such a record from a live run: on the same
host by pid, the process's start time and the boot id (a pid is reused, a machine reboots); for a
SLURM job by its job id and restart count (a requeued job runs again with the same id and a
higher `SLURM_RESTART_COUNT`), or by asking `squeue`.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# squeue states of a job that runs or is about to run (again).
SLURM_ALIVE_STATES = (
    "RUNNING",
    "COMPLETING",
    "CONFIGURING",
    "SUSPENDED",
    "PENDING",
    "REQUEUED",
    "REQUEUE_HOLD",
    "REQUEUE_FED",
    "RESIZING",
    "SIGNALING",
    "STAGE_OUT",
    "STOPPED",
)


def process_record() -> dict[str, Any]:
    """This process, as a run's summary records it (`summary.json` `process`): host, pid, start
    time (None where there is no /proc) and boot id, and its SLURM job when it is one."""
    record = process_record_of(os.getpid()) or {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "start_ticks": None,
        "boot_id": _boot_id(),
    }
    if os.environ.get("SLURM_JOB_ID"):
        record["slurm_job_id"] = slurm_job_id()
        record["slurm_restart_count"] = int(os.environ.get("SLURM_RESTART_COUNT", "0"))
    return record


def process_record_of(pid: int | None) -> dict[str, Any] | None:
    """Process `pid` of this machine as `still_running` reads it, or None if there is none."""
    stat = None if pid is None else _stat(pid)
    if stat is None:
        return None
    return {
        "host": socket.gethostname(),
        "pid": pid,
        "start_ticks": int(stat[19]),
        "boot_id": _boot_id(),
    }


def slurm_job_id() -> str:
    """This SLURM job's id as squeue names it: `<array job>_<task>` for an array task."""
    array_job, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array_job}_{task}" if array_job and task else os.environ["SLURM_JOB_ID"]


def still_running(record: Mapping[str, Any] | None) -> bool | None:
    """Whether the process of `record` (`process_record`) still runs: True, False, or None when
    this machine cannot tell (another host, and no SLURM job to ask about)."""
    if not record:
        return None
    job = record.get("slurm_job_id")
    if job and os.environ.get("SLURM_JOB_ID") and job == slurm_job_id():
        restarts = int(os.environ.get("SLURM_RESTART_COUNT", "0"))
        if restarts > int(record.get("slurm_restart_count", 0)):
            return False  # this job, requeued: SLURM ended its earlier run before this one
    if record.get("host") == socket.gethostname():
        if record.get("boot_id") != _boot_id():
            return False  # the machine rebooted since
        if record.get("start_ticks") is None:
            return None
        now = process_record_of(int(record["pid"]))
        return now is not None and now["start_ticks"] == record["start_ticks"]
    if job and shutil.which("squeue"):
        return _slurm_job_alive(str(job))
    return None


def _slurm_job_alive(job: str) -> bool | None:
    try:
        out = subprocess.run(
            ["squeue", "--noheader", "--jobs", job, "--format", "%T"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode == 0:
        return out.stdout.strip() in SLURM_ALIVE_STATES
    return False if "Invalid job id" in out.stderr else None


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command, from field 3 on (index 19: the start
    time in clock ticks since boot), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 2 (the command) is in parentheses and may hold spaces: split after the last ')'.
    return stat.rpartition(")")[2].split()


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None
