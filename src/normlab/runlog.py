"""What a run writes about itself into its directory: `metrics.csv` and `summary.json`.

The format is documented in docs/run-directory.md; `normlab.results` reads it back.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import json
import os
import platform
import subprocess
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only

# `fast_dev_run`: a check of the code path (debug=fast_dev_run: one training and one validation
# batch), never a result.
STATUSES = ("running", "finished", "diverged", "failed", "interrupted", "fast_dev_run")


class MetricsCSVLogger(Logger):
    """Appends every logged value to `<run_dir>/metrics.csv` as `step,metric,value` rows.

    Long format: new metrics never force a rewrite, and a run that dies keeps what it flushed.
    `step` is trainer/global_step."""

    FILE = "metrics.csv"

    def __init__(self, run_dir: str | Path, flush_every: int = 200) -> None:
        super().__init__()
        self.path = Path(run_dir) / self.FILE
        self.flush_every = flush_every
        self._rows: list[tuple[int, str, float]] = []
        # The last value of each metric, for the progress lines (normlab.console).
        self.latest: dict[str, float] = {}

    @property
    def name(self) -> str:
        return "metrics_csv"

    @property
    def version(self) -> str:
        return ""

    @property
    def save_dir(self) -> str:
        return str(self.path.parent)

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """The resolved config lives in summary.json and .hydra/; nothing to do here."""

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        step = -1 if step is None else int(step)
        for key, value in metrics.items():
            value = float(value.item() if isinstance(value, torch.Tensor) else value)
            self._rows.append((step, key, value))
            self.latest[key] = value
        if len(self._rows) >= self.flush_every:
            self.save()

    @rank_zero_only
    def save(self) -> None:
        if not self._rows:
            return
        append_rows(
            self.path, ("step", "metric", "value"), ((s, k, repr(v)) for s, k, v in self._rows)
        )
        self._rows.clear()

    @rank_zero_only
    def finalize(self, status: str) -> None:
        self.save()


def append_rows(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Append `rows` to the long-format CSV at `path`, writing `header` first if it is new."""
    new = not path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", newline="") as f:
        writer = csv.writer(f)
        if new:
            writer.writerow(header)
        writer.writerows(rows)


def last_values(path: Path) -> dict[str, float]:
    """The last logged value of every metric in a metrics.csv (empty if there is none). A row cut
    short (a process killed while writing it) is skipped."""
    if not path.exists():
        return {}
    with path.open(newline="") as f:
        rows = csv.DictReader(f)
        return {row["metric"]: float(row["value"]) for row in rows if row.get("value")}


def write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    """Write JSON so that a reader sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, default=_jsonable, allow_nan=True)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, Path):
        return str(value)
    return str(value)


def git_state(repo: Path) -> dict[str, Any]:
    """The code's git revision and whether the tracked files differ from it."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", *args], cwd=repo, capture_output=True, text=True, timeout=10, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip()

    revision = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"revision": revision, "dirty": None if status is None else bool(status)}


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": platform.python_version()}
    for package in ("torch", "lightning", "hydra-core", "wandb", "torchmetrics", "numpy"):
        with contextlib.suppress(PackageNotFoundError):
            versions[package] = version(package)
    return versions


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class RunSummary:
    """`summary.json`: the run's status and identity, rewritten atomically at each change."""

    FILE = "summary.json"

    def __init__(self, run_dir: str | Path, **fields: Any) -> None:
        self.path = Path(run_dir) / self.FILE
        self.data: dict[str, Any] = {
            "status": "running",
            "experiment": None,
            "overrides": [],
            "seed": None,
            "step": 0,
            "max_steps": None,
            "diverged_at_step": None,
            "error": None,
            "final_metrics": {},
            "config": {},
            "git": git_state(Path(__file__).resolve().parent),
            "versions": library_versions(),
            "device": None,
            "threads": torch.get_num_threads(),
            "started_at": now(),
            "ended_at": None,
            "wall_time_s": None,
        }
        self.data.update(fields)
        self._t0 = dt.datetime.now(dt.UTC)
        self._earlier_wall_s = 0.0

    @classmethod
    def continued(cls, run_dir: str | Path, **fields: Any) -> RunSummary:
        """The summary of a run resumed in its own directory: `fields` as for a new one, the
        first attempt's start kept (`first_started_at`), each earlier attempt's ending listed in
        `attempts`, and `wall_time_s` counting every attempt that ended (a killed one recorded
        no time)."""
        summary = cls(run_dir, **fields)
        earlier = json.loads(summary.path.read_text())
        ending = ("started_at", "ended_at", "status", "step", "error", "process")
        before = float(earlier.get("earlier_wall_time_s") or 0.0)
        ended = earlier.get("wall_time_s")  # the earlier attempts' and its own, if it ended
        summary._earlier_wall_s = before if ended is None else float(ended)
        attempt = {k: earlier.get(k) for k in ending}
        attempt["wall_time_s"] = None if ended is None else round(float(ended) - before, 3)
        summary.data.update(
            attempts=[*earlier.get("attempts", []), attempt],
            first_started_at=earlier.get("first_started_at") or earlier.get("started_at"),
            earlier_wall_time_s=summary._earlier_wall_s,
        )
        return summary

    def write(self, **fields: Any) -> None:
        """Update fields and rewrite the file (on rank 0 only: every DDP rank holds a summary)."""
        if "status" in fields and fields["status"] not in STATUSES:
            raise ValueError(f"unknown status {fields['status']!r}; valid: {STATUSES}")
        self.data.update(fields)
        if rank_zero_only.rank == 0:
            write_json_atomic(self.path, self.data)

    def end(self, status: str, **fields: Any) -> None:
        elapsed = (dt.datetime.now(dt.UTC) - self._t0).total_seconds() + self._earlier_wall_s
        self.write(status=status, ended_at=now(), wall_time_s=round(elapsed, 3), **fields)
