"""Run directories on disk -> tidy pandas tables. The only code that reads run directories.

The format read here is documented in docs/run-directory.md. Two tables come out:

- `load_summaries`: one row per run (its `summary.json`, config flattened to dotted columns);
- `load_metrics`: one row per logged value (`metrics.csv`), joined with the run's summary row.

Runs whose status is not wanted (by default anything but `finished`) are left out, and the loader
says so: a warning on the `normlab.results` logger and the counts in `df.attrs["left_out"]`.
"""

from __future__ import annotations

import fnmatch
import json
import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

log = logging.getLogger("normlab.results")

SUMMARY_FILE = "summary.json"
METRICS_FILE = "metrics.csv"

# Status given to a run whose summary.json cannot be parsed (it is not one the trainer writes).
UNREADABLE = "unreadable"

# Summary fields that become columns as they are (the config and final metrics are flattened).
SUMMARY_FIELDS = (
    "status",
    "experiment",
    "seed",
    "step",
    "max_steps",
    "diverged_at_step",
    "error",
    "wall_time_s",
)

PathLike = str | Path


def find_runs(paths: Iterable[PathLike]) -> list[Path]:
    """Every directory under `paths` (searched recursively, a path itself included) that holds a
    `summary.json`, sorted and without duplicates.

    Raises FileNotFoundError naming a path that does not exist."""
    runs: set[Path] = set()
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise FileNotFoundError(f"no such run or sweep directory: {path}")
        if path.is_file():
            # A summary.json given directly stands for its run directory.
            if path.name == SUMMARY_FILE:
                runs.add(path.parent.resolve())
            continue
        runs.update(p.parent.resolve() for p in path.rglob(SUMMARY_FILE) if p.is_file())
    return sorted(runs)


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> one dict with dotted keys (`{"norm": {"name": "batch"}}` ->
    `{"norm.name": "batch"}`). Lists and other values are kept as they are."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, prefix=f"{name}."))
        else:
            flat[name] = value
    return flat


def _read_summary(run_dir: Path) -> dict[str, Any]:
    """One run's row: summary fields, flattened config and `final/<metric>` columns.

    A summary.json that cannot be parsed gives a row with status "unreadable"."""
    row: dict[str, Any] = {"run_dir": str(run_dir)}
    try:
        data = json.loads((run_dir / SUMMARY_FILE).read_text())
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    except (OSError, ValueError) as err:  # json.JSONDecodeError is a ValueError
        log.debug("unreadable %s: %s", run_dir / SUMMARY_FILE, err)
        return {**row, "status": UNREADABLE, "error": f"{type(err).__name__}: {err}"}
    for field in SUMMARY_FIELDS:
        row[field] = data.get(field)
    # The summary's own fields win over a config key of the same name (`seed` is in both).
    for key, value in flatten(data.get("config") or {}).items():
        row.setdefault(key, value)
    for key, value in (data.get("final_metrics") or {}).items():
        row[f"final/{key}"] = value
    return row


def _left_out_message(rows: Sequence[Mapping[str, Any]], left_out: Mapping[str, int]) -> str:
    parts = ", ".join(f"{n} {status}" for status, n in sorted(left_out.items()))
    message = f"left out {sum(left_out.values())} of {len(rows)} runs: {parts}"
    unreadable = [row["run_dir"] for row in rows if row["status"] == UNREADABLE]
    if unreadable:
        shown = ", ".join(unreadable[:3]) + (", ..." if len(unreadable) > 3 else "")
        message += f" (unreadable summary.json: {shown})"
    return message


def load_summaries(
    paths: Iterable[PathLike], statuses: Sequence[str] = ("finished",)
) -> pd.DataFrame:
    """One row per run under `paths` whose status is in `statuses`.

    Columns: `run_dir`, `status`, `experiment`, `seed`, `step`, `max_steps`, `diverged_at_step`,
    `error`, `wall_time_s`; the resolved config flattened to dotted columns (`norm.name`,
    `optim.lr`, ...; lists stay as Python lists); `final/<metric>` for each final metric.

    Runs left out are counted by status in `df.attrs["left_out"]` and reported in one warning on
    the `normlab.results` logger. A summary.json that is not valid JSON counts as status
    "unreadable"."""
    rows = [_read_summary(run_dir) for run_dir in find_runs(paths)]
    kept = [row for row in rows if row["status"] in statuses]
    left_out = dict(Counter(row["status"] for row in rows if row["status"] not in statuses))
    if left_out:
        log.warning(_left_out_message(rows, left_out))
    columns = ["run_dir", *SUMMARY_FIELDS]
    df = pd.DataFrame(kept)
    # Keep the documented columns first (and present even when no run is kept).
    df = df.reindex(columns=[*columns, *(c for c in df.columns if c not in columns)])
    df.attrs["left_out"] = left_out
    return df


def _read_metrics(run_dir: Path, metrics: Sequence[str] | None) -> pd.DataFrame:
    """One run's metrics.csv as `step, metric, value`, filtered, last value per (step, metric)."""
    path = run_dir / METRICS_FILE
    if not path.exists():
        log.warning("run %s has no %s", run_dir, METRICS_FILE)
        return pd.DataFrame({"step": [], "metric": [], "value": []})
    try:
        df = pd.read_csv(path, dtype={"metric": str}, usecols=["step", "metric", "value"])
    except pd.errors.EmptyDataError:  # created, nothing flushed yet
        return pd.DataFrame({"step": [], "metric": [], "value": []})
    # A run that died mid-append may leave a torn last line: drop rows that do not parse.
    df["step"] = pd.to_numeric(df["step"], errors="coerce")
    df["value"] = pd.to_numeric(df["value"], errors="coerce")
    df = df.dropna(subset=["step", "metric"])
    df["step"] = df["step"].astype("int64")
    if metrics is not None:
        names = df["metric"].unique()
        wanted = {n for n in names if any(fnmatch.fnmatchcase(n, pat) for pat in metrics)}
        df = df[df["metric"].isin(wanted)]
    # A value logged twice at one step (e.g. a resumed run) counts once: the last one written.
    df = df.drop_duplicates(subset=["step", "metric"], keep="last")
    return df.sort_values(["metric", "step"], kind="stable")


def load_metrics(
    paths: Iterable[PathLike],
    statuses: Sequence[str] = ("finished",),
    metrics: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Every logged value of the runs under `paths`: a long table `run_dir, step, metric, value`
    joined with the run's `load_summaries` row.

    The summary's own `step` (the last step the run reached) is renamed `last_step`, since `step`
    here is the step of the logged value. `metrics` keeps only metric names that equal one of its
    entries or match it as a shell-style glob (`act/layer3/unit*/p*`). A (step, metric) pair
    logged twice in a run keeps the last value. Left-out runs are reported as in
    `load_summaries` (and in `df.attrs["left_out"]`)."""
    return join_metrics(load_summaries(paths, statuses=statuses), metrics=metrics)


def join_metrics(summaries: pd.DataFrame, metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """`load_metrics` for runs already loaded by `load_summaries` (read once, report once)."""
    if isinstance(metrics, str):
        metrics = [metrics]
    tables = []
    for run_dir in summaries["run_dir"]:
        df = _read_metrics(Path(run_dir), metrics)
        df.insert(0, "run_dir", run_dir)
        tables.append(df)
    long = (
        pd.concat(tables, ignore_index=True)
        if tables
        else pd.DataFrame({"run_dir": [], "step": [], "metric": [], "value": []})
    )
    long = long.astype({"step": "int64", "value": "float64"})
    table = long.merge(summaries.rename(columns={"step": "last_step"}), on="run_dir", how="left")
    table.attrs["left_out"] = dict(summaries.attrs.get("left_out", {}))
    return table
