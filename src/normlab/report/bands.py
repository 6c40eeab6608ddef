"""One rule for a line over seeds, and the marks a figure draws where it has no value.

A plotted point is the mean over *every* run (seed) that logged it, with its min..max, or nothing:
where one of those runs logged inf or nan (a landscape walk that overflowed), or had diverged
before that step, the point's mean, min and max are NaN, `n_nonfinite` counts those runs, and the
figure draws a marker at the top of the panel instead ('^' for a value that blew up, 'X' at the
step a run diverged at). A mean over the finite runs alone would stand for fewer seeds than the
rest of its line. A step some runs never logged (a missing evaluation) averages the runs that did:
`n` says how many.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.lines import Line2D

# The columns of a figure's plotted data (`FigureSpec.data`): one row per plotted point. A panel
# whose x axis is not the training step adds its x column after `step` (Fig. 11 of Santurkar
# 2018: `eta`; `step` is then the training step the curve was measured at).
DATA_COLUMNS = ["panel", "series", "step", "mean", "min", "max", "n"]
# Last column: how many of the point's `n` runs logged inf or nan there, or had diverged.
N_NONFINITE = "n_nonfinite"
COLUMNS = [*DATA_COLUMNS, N_NONFINITE]

NONFINITE_LABEL = "blew up (inf)"
DIVERGED_LABEL = "run diverged"
MARKER_Y = 0.97  # where the markers sit, as a fraction of the axes' height


def seed_band(rows: pd.DataFrame, keys: Sequence[str] = ("step",)) -> pd.DataFrame:
    """Per point (the values of `keys`), over the runs in `rows` (`run_dir`, `keys`, `value`: one
    row per run and point): `n`, the runs that logged the point; `n_nonfinite`, those of them
    whose value is inf or nan; and `mean`, `min`, `max` over the `n` runs where all are finite,
    NaN where one is not. Columns: `keys`, then `mean, min, max, n, n_nonfinite`, sorted by
    `keys`. ValueError when a run has two rows at a point."""
    keys = list(keys)
    values = rows["value"].to_numpy(dtype=float)
    frame = rows[[*keys, "run_dir"]].assign(value=values, nonfinite=~np.isfinite(values))
    if frame.duplicated([*keys, "run_dir"]).any():
        raise ValueError(f"several values of one run at one point ({', '.join(keys)})")
    grouped = frame.groupby(keys, sort=True)
    band = grouped["value"].agg(["mean", "min", "max"])
    band["n"] = grouped.size()
    band[N_NONFINITE] = grouped["nonfinite"].sum()
    band.loc[band[N_NONFINITE] > 0, ["mean", "min", "max"]] = np.nan
    return band.reset_index()


def died_padded(group: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """`rows` (`run_dir, step, value` of one metric of the runs in `group`) with each diverged
    run's missing points as inf: every step from the one it died at on that another run of the
    group logged. A line's mean then never stands for fewer seeds than it has. ValueError for a
    diverged run without `diverged_at_step`."""
    if "status" not in group.columns:
        return rows[["run_dir", "step", "value"]]
    runs = group.drop_duplicates("run_dir").set_index("run_dir")
    steps = np.sort(rows["step"].unique())
    extra = []
    for run_dir, run in runs[runs["status"] == "diverged"].iterrows():
        if pd.isna(run.get("diverged_at_step")):
            raise ValueError(f"run {run_dir} diverged but its summary has no diverged_at_step")
        died = int(run["diverged_at_step"])
        logged = set(rows.loc[rows["run_dir"] == run_dir, "step"])
        missing = sorted(set(steps[steps >= died]) - logged)
        extra.append(pd.DataFrame({"run_dir": run_dir, "step": missing, "value": np.inf}))
    return pd.concat([rows[["run_dir", "step", "value"]], *extra], ignore_index=True)


def death_steps(group: pd.DataFrame) -> list[int]:
    """The steps the diverged runs of `group` died at."""
    if "status" not in group.columns:
        return []
    runs = group.drop_duplicates("run_dir")
    died = runs.loc[runs["status"] == "diverged", "diverged_at_step"].dropna()
    return sorted(int(s) for s in died)


def metric_band(group: pd.DataFrame, metric: str, what: str) -> pd.DataFrame:
    """`seed_band` of `metric` over the runs in `group` (one line's runs), per step, diverged runs
    padded (`died_padded`). ValueError naming the living runs that never logged `metric`."""
    rows = group[group["metric"] == metric]
    alive = group.loc[group.get("status", pd.Series("finished", group.index)) != "diverged"]
    absent = sorted(set(alive["run_dir"]) - set(rows["run_dir"]))
    if absent:
        shown = ", ".join(absent[:3]) + (", ..." if len(absent) > 3 else "")
        raise ValueError(f"{what}: no {metric} logged in {shown}")
    if rows.empty:
        raise ValueError(f"{what}: no {metric} logged (every run diverged first)")
    return seed_band(died_padded(group, rows))


def tidy(frames: list[pd.DataFrame], columns: Sequence[str] = COLUMNS) -> pd.DataFrame:
    """The frames of one figure's plotted data as one table with `columns`, `step`, `n` and
    `n_nonfinite` ints."""
    return pd.concat(frames, ignore_index=True)[list(columns)].astype(
        {"step": "int64", "n": "int64", N_NONFINITE: "int64"}
    )


# --- drawing --------------------------------------------------------------------------------------


def plot_band(ax: Axes, band: pd.DataFrame, label: str, color: str, style: str = "-") -> None:
    """A line at `band["mean"]` over `band["step"]`, shaded from `min` to `max` (gaps at NaN)."""
    steps = band["step"].to_numpy()
    mean = band["mean"].to_numpy()
    # A line of one point (a run of a few steps) would draw nothing: mark the point.
    marker = "o" if np.isfinite(mean).sum() == 1 else None
    ax.plot(steps, mean, color=color, label=label, lw=1.2, ls=style, marker=marker, ms=3)
    ax.fill_between(
        steps, band["min"].to_numpy(), band["max"].to_numpy(), color=color, alpha=0.2, lw=0
    )


def mark_top(
    ax: Axes, x: Sequence[float] | np.ndarray, color: str, label: str, marker: str = "^"
) -> bool:
    """A `marker` at the top of `ax` at each x ('^': some run logged inf or nan there; 'X': a run
    diverged at that step), in `color`, kept out of the axes' legend (`figure_marks_legend` adds
    one entry per figure). Whether there was anything to mark."""
    x = np.asarray(x, dtype=float)
    if not len(x):
        return False
    what = "diverged" if marker == "X" else "blew up"
    ax.plot(
        x,
        np.full(len(x), MARKER_Y),
        transform=ax.get_xaxis_transform(),  # x in data, y in axes coordinates
        ls="none",
        marker=marker,
        ms=6 if marker == "^" else 8,
        color=color,
        clip_on=False,
        label=f"_{label}: {what}",
    )
    return True


def nonfinite_x(band: pd.DataFrame, x: str = "step") -> np.ndarray:
    """The `x` of the points of `band` (plotted data) with a non-finite value in some run."""
    return band.loc[band[N_NONFINITE] > 0, x].to_numpy(dtype=float)


def shade_between(ax: Axes, lo: pd.DataFrame, hi: pd.DataFrame, label: str, color: str) -> bool:
    """Shade between two curves' means (`step`, `mean`), thin edges; a gap where either edge is
    NaN, marked '^' at the top. Whether any point was marked."""
    both = lo[["step", "mean", N_NONFINITE]].merge(
        hi[["step", "mean", N_NONFINITE]], on="step", how="outer", suffixes=("_lo", "_hi")
    )
    both = both.sort_values("step")
    ax.fill_between(
        both["step"], both["mean_lo"], both["mean_hi"], color=color, alpha=0.25, lw=0, label=label
    )
    for edge in (lo, hi):
        ax.plot(edge["step"], edge["mean"], color=color, lw=0.7)
    blown = (both[f"{N_NONFINITE}_lo"].fillna(0) > 0) | (both[f"{N_NONFINITE}_hi"].fillna(0) > 0)
    return mark_top(ax, both.loc[blown, "step"], color, label)


def figure_marks_legend(fig, blown: bool, died: bool) -> None:
    """One legend below the panels for the markers the figure drew ('X' diverged, '^' blew up)."""
    handles = []
    if died:
        handles.append(Line2D([], [], ls="none", marker="X", color="0.35", label=DIVERGED_LABEL))
    if blown:
        handles.append(Line2D([], [], ls="none", marker="^", color="0.35", label=NONFINITE_LABEL))
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=8)
