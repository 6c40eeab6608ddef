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

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from omegaconf import DictConfig, OmegaConf

from normlab.bookkeeping import BOOKKEEPING_KEYS, is_bookkeeping
from normlab.errors import NormlabError
from normlab.process import still_running

SUMMARY_FILE = "summary.json"  # normlab.runlog.RunSummary.FILE
# Where normlab.train saves a run's last checkpoint (its ModelCheckpoint), relative to the run.
CHECKPOINT = Path("checkpoints") / "last.ckpt"
# Where a job run again keeps its earlier attempt's files (normlab.results never reads them).
PREVIOUS_ATTEMPTS = ".previous-attempts"
# Kept in place when a job runs again: its Hydra record (the same job: `plan_job` compared the
# configs) and its log, which the new attempt appends to.
KEPT_ON_RERUN = (".hydra", "train.log", PREVIOUS_ATTEMPTS)
# Outcomes: running the job again gives the same numbers.
DONE_STATUSES = ("finished", "diverged", "fast_dev_run")


# ---------------------------------------------------------------------------------------------
# What a job directory of a re-launched sweep needs.


@dataclass(frozen=True)
class JobPlan:
    """What to do with a job directory: `fresh` (nothing there), `skip` (done), `resume` (from
    `checkpoint`), `rerun` (start over, the old attempt set aside); `reason` says why."""

    action: Literal["fresh", "skip", "resume", "rerun"]
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


def plan_job(
    run_dir: str | Path, cfg: DictConfig | Mapping[str, Any], check_alive: bool = True
) -> JobPlan:
    """What a re-launched job does with `run_dir`, whose config is now `cfg` (see the module).
    Raises NormlabError when the directory holds a different job (its recorded config differs
    from `cfg` in a key that changes the computation) or a run that still runs. `check_alive`
    False reads a `running` record as interrupted: a DDP rank > 0, whose rank 0 is that run."""
    run_dir = Path(run_dir)
    summary = read_summary(run_dir)
    if summary is None:
        return JobPlan("fresh", "no run here yet")
    status = summary.get("status")
    if status == "unreadable":
        return JobPlan("rerun", "its summary.json cannot be read", summary=summary)
    if not summary.get("config"):  # refused at its start (normlab.schema): nothing ran
        return JobPlan("rerun", f"it was {status} before it started", summary=summary)
    differences = config_differences(summary.get("config") or {}, _container(cfg))
    if differences:
        raise NormlabError(
            f"{run_dir} holds a run of another config ({_show_differences(differences)}); "
            "re-launch the sweep with the overrides it was launched with, or choose another "
            "hydra.sweep.dir"
        )
    if status == "running" and check_alive:
        alive = still_running(summary.get("process"))
        if alive is not False:
            raise NormlabError(running_message(run_dir, summary, alive))
    checkpoint = run_dir / CHECKPOINT
    if status == "running":
        status = "interrupted"
    if status in DONE_STATUSES:
        return JobPlan("skip", f"already {status} at step {summary.get('step')}", summary=summary)
    if status == "interrupted" and checkpoint.is_file():
        return JobPlan("resume", "interrupted", checkpoint=checkpoint, summary=summary)
    why = "interrupted with no checkpoint" if status == "interrupted" else f"it was {status}"
    return JobPlan("rerun", why, summary=summary)


def running_message(run_dir: Path, summary: Mapping[str, Any], alive: bool | None) -> str:
    """Why a run recorded `running` is refused: it runs now (`alive`), or this machine cannot
    tell (None)."""
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
    numbers = [int(p.name) for p in attempts.iterdir() if p.name.isdigit()]
    target = attempts / str(1 + max(numbers, default=0))
    target.mkdir()
    for entry in run_dir.iterdir():
        if entry.name not in KEPT_ON_RERUN:
            entry.rename(target / entry.name)
    return target


# ---------------------------------------------------------------------------------------------
# `resume=<run dir>` on the command line.


def resume_target(value: str) -> Path | None:
    """The run directory that `resume=<value>` names: the directory itself, or the run directory
    of its `checkpoints/last.ckpt` (the older form); None for a checkpoint file of no run (a new
    run starts from it, as `resume=<file>` did before). NormlabError if it names nothing."""
    path = Path(value).expanduser()
    if path.is_file():
        in_a_run = (
            path.parent.name == "checkpoints" and (path.parent.parent / SUMMARY_FILE).is_file()
        )
        return path.parent.parent.resolve() if in_a_run else None
    if not path.is_dir():
        raise NormlabError(
            f"resume={value}: no such run directory or checkpoint file; resume takes the "
            "directory of a run that normlab.train wrote"
        )
    if not (path / SUMMARY_FILE).is_file():
        raise NormlabError(
            f"resume={value}: {path} holds no run (no summary.json); resume takes the directory "
            "of a run that normlab.train wrote"
        )
    return path.resolve()


def resumed_config(run_dir: Path, overrides: Sequence[str], check_alive: bool = True) -> DictConfig:
    """The config that continues the run of `run_dir`: its recorded resolved config with
    `resume` set to its checkpoint, bookkeeping keys it predates filled from today's defaults,
    relative data paths made absolute against the run's working directory, and `overrides`
    applied if each sets a bookkeeping key (where and how the run is kept, normlab.bookkeeping;
    the run's own overrides may be repeated). NormlabError names whatever else. `check_alive`
    False skips the check that the run is not running now (a DDP rank > 0: rank 0 runs it)."""
    summary = read_summary(run_dir) or {}
    status = summary.get("status")
    if status in DONE_STATUSES:
        raise NormlabError(f"{run_dir} is already {status} at step {summary.get('step')}")
    if check_alive and status == "running" and still_running(summary.get("process")):
        raise NormlabError(running_message(run_dir, summary, True))
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
    _fill_bookkeeping_defaults(cfg)
    _absolute_data_paths(cfg)
    recorded = set(summary.get("overrides") or [])
    for override in _parse([o for o in overrides if o not in recorded]):
        key, value = override.key_or_group, override.value()
        line = override.input_line
        if override.is_add() or override.is_delete() or override.is_sweep_override():
            raise NormlabError(f"resume: {line!r}: resume takes key=value for the run's own keys")
        if not is_bookkeeping(key):
            raise NormlabError(
                f"resume continues the run's own config; {line!r} would change what it computes "
                f"(resume takes only where and how the run is kept: {', '.join(BOOKKEEPING_KEYS)})"
            )
        node = OmegaConf.select(cfg, key, default=_MISSING)
        if node is _MISSING or isinstance(node, DictConfig):
            what = "a config group of the run: set its keys" if node is not _MISSING else "unset"
            raise NormlabError(
                f"resume: {line!r}: {key} is {what} (e.g. logger.wandb.mode=disabled, "
                "trainer.enable_progress_bar=false)"
            )
        OmegaConf.update(cfg, key, value)
    cfg.resume = str(checkpoint)
    return cfg


_MISSING = object()


def _parse(overrides: Sequence[str]) -> list[Any]:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return OverridesParser.create().parse_overrides(list(overrides))
    except Exception as err:  # Hydra's OverrideParseException, in one line
        raise NormlabError(f"resume: {' '.join(str(err).split())}") from err


def _fill_bookkeeping_defaults(cfg: DictConfig) -> None:
    """A bookkeeping block a run recorded before it existed (e.g. `resources`) takes today's
    defaults, so that today's checks pass; it changes nothing the run computes. Only blocks
    missing as a whole: a run's own choices (`logger.wandb: null`) stay."""
    from normlab.results import flatten

    for root, node in _default_config().items():
        if root in cfg:
            continue
        flat = flatten({root: node})
        plain = not any(isinstance(v, str) and "${" in v for v in flat.values())
        if plain and all(is_bookkeeping(key) for key in flat):
            OmegaConf.update(cfg, root, node, force_add=True)


@functools.cache
def _default_config() -> dict[str, Any]:
    from hydra.core.hydra_config import HydraConfig

    from normlab.config import compose_config

    # Composing sets Hydra's global config; a resume runs without Hydra, and Lightning, which
    # starts DDP ranks > 0 with Hydra's run directory when it finds one, must not find it.
    hydra_before = HydraConfig.instance().cfg
    try:
        return OmegaConf.to_container(compose_config([]), resolve=False)  # type: ignore[return-value]
    finally:
        HydraConfig.instance().cfg = hydra_before


def _absolute_data_paths(cfg: DictConfig) -> None:
    """A data folder typed relative (`data.root=../shared/data`) is relative to the working
    directory the run started in (`paths.root_dir`), not to the resume's."""
    root = OmegaConf.select(cfg, "paths.root_dir")
    for key in ("data.root", "data.download_dir"):
        value = OmegaConf.select(cfg, key)
        if root and isinstance(value, str) and value and not Path(value).is_absolute():
            OmegaConf.update(cfg, key, str((Path(root) / value).resolve()))


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
