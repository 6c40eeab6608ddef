"""Run directories on disk -> tidy pandas tables. The only code that reads run directories.

The format read here is documented in docs/run-directory.md. Three tables come out:

- `load_summaries`: one row per run (its `summary.json`, config flattened to dotted columns);
- `load_metrics`: one row per logged value (`metrics.csv`), joined with the run's summary row;
  with `files=`, the rows of per-run files (`landscape.csv`, `act_hist.csv`) in the same long form;
- `load_run_files`: the rows of one per-run file as they are, joined with the run's summary row.

Runs whose status is not wanted (by default anything but `finished`) are left out, and the loader
says so: a warning on the `normlab.results` logger and the counts in `df.attrs["left_out"]`.

`check_one_setting` refuses a table whose runs differ in anything but the keys they are meant to
vary (seed, norm, ...), and `newest_multirun` finds the latest sweep of an experiment.
"""

from __future__ import annotations

import fnmatch
import io
import json
import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from normlab.bookkeeping import BOOKKEEPING_KEYS
from normlab.resume import PREVIOUS_ATTEMPTS

log = logging.getLogger("normlab.results")

SUMMARY_FILE = "summary.json"
METRICS_FILE = "metrics.csv"
MULTIRUN_FILE = "multirun.yaml"  # Hydra writes it at the top of every multirun (sweep) directory
MULTIRUN_PREFIX = "multirun_"  # runs/<name>/multirun_<date>_<time>/

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


# Per-run long files beside metrics.csv (docs/run-directory.md): file name -> (the metric prefix of
# its value columns in a `load_metrics` table, its key columns besides `step`). In that table
# landscape.csv's `grad_diff` is metric `landscape_curve/grad_diff`, its `eta` a column. The key
# columns' names are taken: they are never read as config keys (`config_columns`).
RUN_FILES: dict[str, tuple[str, tuple[str, ...]]] = {
    "landscape.csv": ("landscape_curve", ("eta",)),
    "act_hist.csv": ("act_hist", ("layer", "bin_lo", "bin_hi")),
}

# Columns of a load_summaries / load_metrics table that do not come from the run's config.
_NOT_CONFIG = {
    "run_dir",
    *SUMMARY_FIELDS,
    "last_step",
    "metric",
    "value",
    *(key for _, keys in RUN_FILES.values() for key in keys),
}

PathLike = str | Path


def find_runs(paths: Iterable[PathLike]) -> list[Path]:
    """Every directory under `paths` (searched recursively, a path itself included) that holds a
    `summary.json`, or Hydra's `.hydra/config.yaml` (a job that died before normlab wrote its
    summary: it is then counted as unreadable, never skipped in silence), sorted and without
    duplicates; not an earlier attempt a job set aside to run again (`.previous-attempts/`).

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
        found = [p.parent for p in path.rglob(SUMMARY_FILE) if p.is_file()]
        found += [p.parent.parent for p in path.rglob(".hydra/config.yaml")]
        # A job run again keeps its earlier attempt's files apart (normlab.resume): not a run.
        runs.update(p.resolve() for p in found if PREVIOUS_ATTEMPTS not in p.parts)
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
    files: Sequence[str] = (),
) -> pd.DataFrame:
    """Every logged value of the runs under `paths`: a long table `run_dir, step, metric, value`
    joined with the run's `load_summaries` row.

    The summary's own `step` (the last step the run reached) is renamed `last_step`, since `step`
    here is the step of the logged value. `metrics` keeps only metric names that equal one of its
    entries or match it as a shell-style glob (`act/layer3/unit*/p*`). A (step, metric) pair
    logged twice in a run keeps the last value. Left-out runs are reported as in
    `load_summaries` (and in `df.attrs["left_out"]`). `files` adds per-run files, see
    `join_metrics`."""
    return join_metrics(load_summaries(paths, statuses=statuses), metrics=metrics, files=files)


def join_metrics(
    summaries: pd.DataFrame, metrics: Sequence[str] | None = None, files: Sequence[str] = ()
) -> pd.DataFrame:
    """`load_metrics` for runs already loaded by `load_summaries` (read once, report once).

    Each per-run file named in `files` (a key of `RUN_FILES`) adds its rows in the same long form:
    every value column becomes a metric `<prefix>/<column>` (landscape.csv's `grad_diff`:
    `landscape_curve/grad_diff`) and its key columns stay columns (`eta`; NaN on the other rows).
    `metrics` does not filter these. Runs without such a file are reported as in
    `load_run_files` (`df.attrs["without_file"]`)."""
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
    without_file: dict[str, list[str]] = {}
    for filename in files:
        rows = _long_file_rows(summaries, filename)
        without_file[filename] = rows.attrs["without_file"][filename]
        long = pd.concat([long, rows], ignore_index=True)
    table = long.merge(summaries.rename(columns={"step": "last_step"}), on="run_dir", how="left")
    table.attrs["left_out"] = dict(summaries.attrs.get("left_out", {}))
    if files:
        table.attrs["without_file"] = without_file
    return table


# --- per-run files --------------------------------------------------------------------------------


def _read_run_file(path: Path) -> pd.DataFrame | None:
    """One per-run CSV file (a header, then numbers), or None if the run has none.

    A run that died mid-append may leave a torn last line (no line end): it is dropped, as are
    rows whose step does not parse. Every column is read as numbers; `nan`/`inf` (a probe's walk
    that blew up) stay as they are."""
    if not path.is_file():
        return None
    text = path.read_text()
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    try:
        df = pd.read_csv(io.StringIO(text))
    except pd.errors.EmptyDataError:  # created, nothing flushed yet
        return pd.DataFrame({"step": []})
    df = df.apply(pd.to_numeric, errors="coerce")
    df = df.dropna(subset=["step"])
    return df.astype({"step": "int64"})


def load_run_files(
    paths_or_summaries: Iterable[PathLike] | pd.DataFrame,
    filename: str,
    statuses: Sequence[str] = ("finished",),
) -> pd.DataFrame:
    """The rows of each run's per-run file `filename` (`landscape.csv`: `step, eta, loss,
    grad_diff`), as the file has them, joined with the run's `load_summaries` row (its `step`
    renamed `last_step`, as in `load_metrics`).

    `paths_or_summaries`: run/sweep directories (runs kept by `statuses`, the others reported as
    in `load_summaries`), or a `load_summaries` table (`statuses` then unused). A kept run without
    the file is not skipped silently: one warning on the `normlab.results` logger names it, and
    `df.attrs["without_file"]` = {filename: [run_dir, ...]}. Rows are kept as written: a step
    that a resumed run wrote twice appears twice (the figures keep the last)."""
    summaries = (
        paths_or_summaries
        if isinstance(paths_or_summaries, pd.DataFrame)
        else load_summaries(paths_or_summaries, statuses=statuses)
    )
    tables, without = [], []
    for run_dir in summaries["run_dir"]:
        df = _read_run_file(Path(run_dir) / filename)
        if df is None:
            without.append(str(run_dir))
            continue
        df.insert(0, "run_dir", run_dir)
        tables.append(df)
    if without:
        shown = ", ".join(without[:3]) + (", ..." if len(without) > 3 else "")
        log.warning(f"{len(without)} of {len(summaries)} runs have no {filename}: {shown}")
    rows = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame({"run_dir": []})
    rows = rows.reindex(
        columns=["run_dir", "step", *(c for c in rows if c not in ("run_dir", "step"))]
    )
    rows = rows.astype({"step": "int64"})
    table = rows.merge(summaries.rename(columns={"step": "last_step"}), on="run_dir", how="left")
    table.attrs["left_out"] = dict(summaries.attrs.get("left_out", {}))
    table.attrs["without_file"] = {filename: without}
    return table


def _long_file_rows(summaries: pd.DataFrame, filename: str) -> pd.DataFrame:
    """`run_dir, step, metric, value, <key columns>` of a per-run file of `RUN_FILES`."""
    if filename not in RUN_FILES:
        raise ValueError(f"unknown per-run file {filename!r}; known: {', '.join(RUN_FILES)}")
    prefix, keys = RUN_FILES[filename]
    rows = load_run_files(summaries[["run_dir"]], filename)
    rows = rows.reindex(columns=[*rows.columns, *(k for k in keys if k not in rows.columns)])
    values = [c for c in rows.columns if c not in ("run_dir", "step", *keys)]
    long = rows.melt(
        id_vars=["run_dir", "step", *keys], value_vars=values, var_name="metric", value_name="value"
    )
    long["metric"] = prefix + "/" + long["metric"]
    long = long.astype({"step": "int64", "value": "float64"})
    long = long[["run_dir", "step", "metric", "value", *keys]]
    long.attrs["without_file"] = rows.attrs["without_file"]
    return long


# --- one setting ----------------------------------------------------------------------------------


def config_columns(table: pd.DataFrame) -> list[str]:
    """The columns of a `load_summaries` or `load_metrics` table that hold the runs' flattened
    config (`norm.name`, `optim.lr`, ...): all but the summary fields, `run_dir`, `last_step`,
    the logged values (`step`, `metric`, `value`) and the `final/<metric>` columns. `seed` is a
    summary field (it equals the config's)."""
    return [c for c in table.columns if c not in _NOT_CONFIG and not c.startswith("final/")]


def _value_text(value: Any) -> str:
    """A config value as it is compared and shown: repr, with a missing key/null as "unset"."""
    if hasattr(value, "item") and not isinstance(value, (list, dict)):
        value = value.item()  # numpy scalar -> Python
    if value is None or (isinstance(value, float) and value != value):
        return "unset"
    return repr(value)


def _matches(key: str, patterns: Iterable[str]) -> bool:
    """`key` matches a shell-style glob of `patterns`; "group.*" matches "group" itself too (an
    empty group, `logger: {}`, flattens to that key)."""
    return any(
        fnmatch.fnmatchcase(key, pat) or (pat.endswith(".*") and key == pat[:-2])
        for pat in patterns
    )


# The protocol's scale and its declared scales: what a scale sets (`model.width`,
# `trainer.max_steps`) is compared itself, and runs from before the scale was recorded have none.
SCALE_KEYS = ("scale", "scales.*")


def config_differences(
    table: pd.DataFrame,
    vary: Sequence[str] = ("seed",),
    ignore: Sequence[str] = BOOKKEEPING_KEYS,
) -> dict[str, dict[str, list[str]]]:
    """The config keys whose value is not the same in every run of `table` (a `load_summaries` or
    `load_metrics` table): {key: {value (repr, or "unset"): [run_dir, ...]}}.

    Keys matching a glob of `vary` (what the runs are meant to differ in: `seed`, `norm.*`) or of
    `ignore` (where they wrote and how they logged) are not compared, nor a key whose value equals
    its run's seed in every run (`data.seed: ${seed}`): it varies with the seed."""
    runs = table.drop_duplicates("run_dir").set_index("run_dir")
    seeds = runs["seed"] if "seed" in runs.columns else None
    differences: dict[str, dict[str, list[str]]] = {}
    for key in config_columns(table):
        if _matches(key, vary) or _matches(key, ignore) or _matches(key, SCALE_KEYS):
            continue
        values = runs[key]
        if seeds is not None and all(
            _value_text(v) != "unset" and v == s for v, s in zip(values, seeds, strict=True)
        ):
            continue
        by_value: dict[str, list[str]] = {}
        for run_dir, value in values.items():
            by_value.setdefault(_value_text(value), []).append(str(run_dir))
        if len(by_value) > 1:
            differences[key] = by_value
    return differences


def _runs_short(run_dirs: Sequence[str]) -> str:
    """A few run directories by their last part (`norm=none,seed=1`), or just how many."""
    if len(run_dirs) > 3:
        return f"{len(run_dirs)} runs"
    return ", ".join(Path(r).name for r in run_dirs)


def check_one_setting(
    table: pd.DataFrame,
    vary: Sequence[str] = ("seed",),
    ignore: Sequence[str] = BOOKKEEPING_KEYS,
    what: str = "runs",
) -> None:
    """ValueError unless the runs of `table` are one setting: the same config apart from `vary`,
    `ignore` and seed-valued keys (see `config_differences`). The message names every differing
    key and its values, each with the runs that hold it."""
    differences = config_differences(table, vary=vary, ignore=ignore)
    if not differences:
        return
    parts = [
        f"{key} = " + " / ".join(f"{v} ({_runs_short(r)})" for v, r in by_value.items())
        for key, by_value in differences.items()
    ]
    raise ValueError(
        f"{what}: the runs mix settings, they differ in {', '.join(differences)}: "
        f"{'; '.join(parts)}; use one sweep (one setting) at a time"
    )


# --- finding a sweep ------------------------------------------------------------------------------


def _is_multirun(path: Path) -> bool:
    return path.is_dir() and (
        (path / MULTIRUN_FILE).is_file() or path.name.startswith(MULTIRUN_PREFIX)
    )


def _has_finished_run(sweep: Path) -> bool:
    return any(_read_summary(run)["status"] == "finished" for run in find_runs([sweep]))


def newest_multirun(root: PathLike) -> Path:
    """The newest multirun directory directly under `root` (`runs/ioffe2015/fig1_mnist`) that
    holds at least one finished run. A multirun directory holds Hydra's `multirun.yaml` or is
    named `multirun_<date>_<time>`; newest is by the directory's modification time (a new job
    directory updates it), then by name. Single runs (`<date>_<time>/`) are not sweeps.

    FileNotFoundError, saying what was found, when there is none."""
    root = Path(root)
    sweeps = sorted(p for p in root.iterdir() if _is_multirun(p)) if root.is_dir() else []
    finished = [p for p in sweeps if _has_finished_run(p)]
    if not finished:
        found = (
            f"{len(sweeps)} multirun director{'y' if len(sweeps) == 1 else 'ies'}, none with a "
            "finished run"
            if sweeps
            else "no multirun directory"
        )
        raise FileNotFoundError(f"no finished sweep under {root} ({found})")
    return max(finished, key=lambda p: (p.stat().st_mtime, p.name))
