"""Continuing runs in their own directories: `resume=<run dir>`, and sweeps that repair themselves.

Two ways a run continues (docs/usage.md, "Resume and repair"):

- `python -m normlab.train resume=<run dir>` continues one run from its own record: the resolved
  config in its `summary.json` and its `checkpoints/last.ckpt`, into that directory, whatever the
  directory's name. Nothing is composed again, so nothing needs retyping and Hydra rewrites
  nothing; an override on that command line may change only where and how the run is kept
  (`normlab.bookkeeping`), anything else is refused with a line naming it.
- A multirun launched again into its own sweep directory (`hydra.sweep.dir=<sweep dir>`), and a
  SLURM job requeued after preemption or its time limit (it runs its Hydra job again in the same
  directory), look at what each job directory holds (`plan_job`): a finished or diverged job is
  skipped without touching its files, an interrupted one resumes from its checkpoint, a failed,
  never-started or checkpoint-less one runs again (the old attempt's files moved under
  `.previous-attempts/`), and a job still running elsewhere is refused. A `running` record whose
  process is gone (same host, and that pid is not the process that wrote it; or a SLURM job that no
  longer runs) counts as interrupted.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from normlab.bookkeeping import is_bookkeeping
from normlab.errors import NormlabError

SUMMARY_FILE = "summary.json"
CHECKPOINT = Path("checkpoints") / "last.ckpt"
# Where a job run again keeps its earlier attempt's files (normlab.results never reads them).
PREVIOUS_ATTEMPTS = ".previous-attempts"
# Kept in place when a job runs again: its Hydra record (the same job: `plan_job` compared the
# configs) and its log, which the new attempt appends to.
KEPT_ON_RERUN = (".hydra", "train.log", PREVIOUS_ATTEMPTS)
# Outcomes: running the job again gives the same numbers.
DONE_STATUSES = ("finished", "diverged", "fast_dev_run")


# ---------------------------------------------------------------------------------------------
# Which process wrote a record, and whether it still runs.


def process_record() -> dict[str, Any]:
    """This process, as a run's summary records it (`summary.json` `process`): host, pid, start
    time and boot id, and its SLURM job when it is one."""
    record = process_record_of(os.getpid())
    assert record is not None  # this process runs
    if os.environ.get("SLURM_JOB_ID"):
        record["slurm_job_id"] = _slurm_job_id()
    return record


def process_record_of(pid: int | None) -> dict[str, Any] | None:
    """Process `pid` of this machine as `still_running` reads it, or None if there is none."""
    ticks = None if pid is None else _start_ticks(pid)
    if ticks is None:
        return None
    return {"host": socket.gethostname(), "pid": pid, "start_ticks": ticks, "boot_id": _boot_id()}


def _slurm_job_id() -> str:
    # An array task is its own job: `<array job>_<task>` names it in squeue.
    array_job, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array_job}_{task}" if array_job and task else os.environ["SLURM_JOB_ID"]


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (/proc/<pid>/stat field 22): with the
    boot id, it tells a pid reused by another process from the one that wrote the record."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 2 (the command) is in parentheses and may hold spaces: count from the last ')'.
    return int(stat.rpartition(")")[2].split()[19])


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def still_running(record: Mapping[str, Any] | None) -> bool | None:
    """Whether the process of `record` (`process_record`) still runs: True, False, or None when
    this machine cannot tell (another host, no SLURM job to ask about)."""
    if not record:
        return None
    slurm_job = record.get("slurm_job_id")
    if slurm_job and os.environ.get("SLURM_JOB_ID") and slurm_job == _slurm_job_id():
        return False  # this job, requeued: SLURM ended its earlier run before starting this one
    if record.get("host") == socket.gethostname():
        if record.get("boot_id") != _boot_id():
            return False  # the machine rebooted since
        ticks = _start_ticks(int(record["pid"]))
        return ticks is not None and ticks == record.get("start_ticks")
    if slurm_job and shutil.which("squeue"):
        try:
            out = subprocess.run(
                ["squeue", "--noheader", "--jobs", str(slurm_job), "--format", "%T"],
                capture_output=True,
                text=True,
                timeout=30,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        if out.returncode == 0:
            return out.stdout.strip() in ("RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED")
        if "Invalid job id" in out.stderr:
            return False
    return None


# ---------------------------------------------------------------------------------------------
# What a job directory of a re-launched sweep needs.


@dataclass(frozen=True)
class JobPlan:
    """What to do with a job directory: `fresh` (nothing there), `skip` (done), `resume` (from
    `checkpoint`), `rerun` (start over, the old attempt set aside); `reason` says why."""

    action: str
    reason: str
    checkpoint: Path | None = None
    summary: Mapping[str, Any] | None = None


def read_summary(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / SUMMARY_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {"status": "unreadable"}


def plan_job(run_dir: str | Path, cfg: DictConfig | Mapping[str, Any]) -> JobPlan:
    """What a re-launched job does with `run_dir`, whose config is now `cfg` (see the module).
    Raises NormlabError when the directory holds a different job (its recorded config differs
    from `cfg` in a key that changes the computation) or a run that still runs."""
    run_dir = Path(run_dir)
    summary = read_summary(run_dir)
    if summary is None:
        return JobPlan("fresh", "no run here yet")
    status = summary.get("status")
    if status == "unreadable":
        return JobPlan("rerun", "its summary.json cannot be read", summary=summary)
    differences = config_differences(summary.get("config") or {}, _container(cfg))
    if differences:
        raise NormlabError(
            f"{run_dir} holds a run of another config ({_show_differences(differences)}); "
            "re-launch the sweep with the overrides it was launched with, or choose another "
            "hydra.sweep.dir"
        )
    if status == "running":
        alive = still_running(summary.get("process"))
        if alive is not False:
            raise NormlabError(_running_message(run_dir, summary, alive))
        status = "interrupted"
    checkpoint = run_dir / CHECKPOINT
    if status in DONE_STATUSES:
        return JobPlan("skip", f"already {status} at step {summary.get('step')}", summary=summary)
    if status == "interrupted" and checkpoint.is_file():
        return JobPlan("resume", "interrupted", checkpoint=checkpoint, summary=summary)
    why = "interrupted with no checkpoint" if status == "interrupted" else f"it was {status}"
    return JobPlan("rerun", why, summary=summary)


def _running_message(run_dir: Path, summary: Mapping[str, Any], alive: bool | None) -> str:
    process = summary.get("process") or {}
    where = f"process {process.get('pid')} on {process.get('host')}"
    if process.get("slurm_job_id"):
        where += f", SLURM job {process['slurm_job_id']}"
    if alive:
        return f"{run_dir} is running now ({where}); wait for it or stop it first"
    return (
        f"{run_dir} says it is running ({where}) and this machine cannot tell whether that "
        f"process is gone; if it is, continue it with `python -m normlab.train resume={run_dir}`"
    )


def set_aside(run_dir: Path) -> Path:
    """Move the files of `run_dir`'s earlier attempt (all but `KEPT_ON_RERUN`) into
    `.previous-attempts/<n>/`, so that the job starts over with nothing of it mixed in."""
    attempts = run_dir / PREVIOUS_ATTEMPTS
    attempts.mkdir(exist_ok=True)
    target = attempts / str(1 + sum(1 for _ in attempts.iterdir()))
    target.mkdir()
    for entry in run_dir.iterdir():
        if entry.name not in KEPT_ON_RERUN:
            entry.rename(target / entry.name)
    return target


# ---------------------------------------------------------------------------------------------
# `resume=<run dir>` on the command line.


def resume_target(value: str) -> Path:
    """The run directory that `resume=<value>` names: the directory itself, or the run directory
    of a `checkpoints/last.ckpt` given in the older form. NormlabError if it names no run."""
    path = Path(value).expanduser()
    if path.is_file() and path.parent.name == "checkpoints":
        path = path.parent.parent
    if not path.is_dir():
        raise NormlabError(f"resume={value}: no such run directory")
    if not (path / SUMMARY_FILE).is_file():
        raise NormlabError(
            f"resume={value}: {path} holds no run (no summary.json); resume takes a run directory "
            "that normlab.train wrote"
        )
    return path.resolve()


def resumed_config(run_dir: Path, overrides: Sequence[str]) -> DictConfig:
    """The config that continues the run of `run_dir`: its recorded resolved config with
    `resume` set to its checkpoint, and `overrides` applied if each is a bookkeeping key (where
    and how the run is kept, `normlab.bookkeeping`). NormlabError names whatever else."""
    summary = read_summary(run_dir) or {}
    status = summary.get("status")
    if status in DONE_STATUSES:
        raise NormlabError(f"{run_dir} is already {status} at step {summary.get('step')}")
    if status == "running" and still_running(summary.get("process")):
        raise NormlabError(_running_message(run_dir, summary, True))
    checkpoint = run_dir / CHECKPOINT
    if not checkpoint.is_file():
        raise NormlabError(
            f"{run_dir} has no checkpoint ({CHECKPOINT}): it ran with checkpointing off "
            "(trainer.enable_checkpointing=false) or stopped before its first evaluation; "
            "run it again instead"
        )
    if not summary.get("config"):
        raise NormlabError(f"{run_dir}/summary.json records no config: it cannot be resumed")
    cfg = OmegaConf.create(summary["config"])
    changing = [o for o in overrides if not is_bookkeeping(_override_key(o))]
    if changing:
        raise NormlabError(
            f"resume continues the run's own config; these overrides would change what it "
            f"computes: {changing} (allowed: where and how it is kept, e.g. logger.wandb.mode=, "
            "trainer.enable_progress_bar=)"
        )
    for line in overrides:
        key, _, value = line.lstrip("+").partition("=")
        if "=" not in line or OmegaConf.select(cfg, key, default=_MISSING) is _MISSING:
            raise NormlabError(f"resume: {line!r} must be key=value for a key of the run's config")
        OmegaConf.update(cfg, key, yaml.safe_load(value) if value else None)
    cfg.resume = str(checkpoint)
    return cfg


_MISSING = object()


def _override_key(line: str) -> str:
    return line.split("=", 1)[0].lstrip("+~")


# ---------------------------------------------------------------------------------------------
# Comparing a recorded config with a new one.


def _container(cfg: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    return dict(cfg)


def config_differences(recorded: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, tuple]:
    """{dotted key: (recorded value, new value)} for every key that changes the computation
    (bookkeeping keys are not compared)."""
    from normlab.results import flatten

    a, b = flatten(recorded), flatten(new)
    return {
        key: (a.get(key, "unset"), b.get(key, "unset"))
        for key in sorted(set(a) | set(b))
        if not is_bookkeeping(key) and a.get(key, "unset") != b.get(key, "unset")
    }


def _show_differences(differences: Mapping[str, tuple], most: int = 4) -> str:
    shown = [f"{k}: {a!r} there, {b!r} now" for k, (a, b) in list(differences.items())[:most]]
    more = len(differences) - most
    return "; ".join(shown) + (f"; and {more} more" if more > 0 else "")
