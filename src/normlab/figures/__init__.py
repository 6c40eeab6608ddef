"""Paper figures: a `load_metrics` table in; the plotted data, a matplotlib figure and a claims
report out.

`FIGURES` maps a figure id, which is the name of the experiment preset whose runs it draws
(`ioffe2015/fig1_mnist`), to its `FigureSpec`. `SUITES` maps a preset whose sweep feeds several
figures (`santurkar2018/dln_suite`) to those figures' ids. Figures never train and never read run
directories themselves: they go through `normlab.results`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from normlab.claims import Claim, claims_markdown, evaluate_claims
from normlab.results import PathLike, load_metrics

# The columns of a figure's plotted data (`FigureSpec.data`): one row per plotted point. A figure
# whose x axis is not the training step adds its x column after `step` (Fig. 11 of Santurkar 2018:
# `eta`, the step size; `step` is then the training step the curve was measured at).
DATA_COLUMNS = ["panel", "series", "step", "mean", "min", "max", "n"]
# An extra column, last, of every figure whose logged values can be non-finite (every Santurkar
# 2018 DLN figure; Ioffe 2015 Fig. 1 does not write it): how many of the point's `n` runs logged
# inf or nan there (a landscape walk that overflowed), 0 where none did. Where it is above 0 the
# point's `mean`, `min` and `max` are empty (NaN): a mean over the finite runs alone would stand
# for fewer seeds than the rest of the line, so the figure marks such a point instead of drawing
# a value.
N_NONFINITE = "n_nonfinite"


@dataclass(frozen=True)
class FigureSpec:
    """One paper figure: the metrics (names or globs) it reads, its plotted data, how to draw it,
    and its claims.

    `files` names the per-run files (`normlab.results.RUN_FILES`: `landscape.csv`, ...) the figure
    or its claims read besides metrics.csv; their rows join the table as metrics
    (`landscape_curve/grad_diff`, with an `eta` column), see `normlab.results.join_metrics`.

    `data(table)` gives the numbers the figure plots, a tidy frame with `DATA_COLUMNS`: for each
    `panel` and `series` (a line), per `step`, the `mean`, `min` and `max` over the `n` runs that
    logged that step (and, where values can be non-finite, `N_NONFINITE`: how many of those runs
    logged inf or nan; the point's mean, min and max are then NaN). `draw(table)` plots exactly
    those numbers (it calls `data`). Both raise
    ValueError naming what is missing, or the settings mixed, when the table cannot make them."""

    id: str
    title: str
    metrics: tuple[str, ...]
    data: Callable[[pd.DataFrame], pd.DataFrame]
    draw: Callable[[pd.DataFrame], Figure]
    claims: list[Claim] = field(default_factory=list)
    files: tuple[str, ...] = ()
    # The run statuses the figure draws (`normlab.results.load_summaries`): the VGG figures draw
    # diverged runs too, marked where they died.
    statuses: tuple[str, ...] = ("finished",)

    def needed_metrics(self) -> list[str]:
        """The metric names/globs the figure and its claims read."""
        return list(dict.fromkeys([*self.metrics, *(c.metric for c in self.claims)]))

    def load(self, paths: Iterable[PathLike]) -> pd.DataFrame:
        """The `load_metrics` table of the runs under `paths` with the figure's `statuses`,
        limited to what this figure reads (its metrics, and the rows of its per-run `files`)."""
        return load_metrics(
            paths, statuses=self.statuses, metrics=self.needed_metrics(), files=self.files
        )


def infer_figure_id(table: pd.DataFrame) -> str:
    """The figure id of the runs in `table` (a `load_summaries` or `load_metrics` table), read from
    their `experiment` column. ValueError, listing what was found and the registered ids, when the
    runs belong to no registered figure or to several, or to a suite (`SUITES`) that feeds several
    figures: the message then names those."""
    registered = ", ".join(sorted(FIGURES))
    found = sorted(str(e) for e in table["experiment"].dropna().unique()) if len(table) else []
    if len(found) == 1 and found[0] in FIGURES:
        return found[0]
    if not found:
        raise ValueError(f"no runs to infer the figure from; registered figures: {registered}")
    if len(found) == 1 and found[0] in SUITES:
        raise ValueError(
            f"runs of {found[0]} feed several figures; name one: {', '.join(SUITES[found[0]])}"
        )
    if len(found) > 1:
        problem = f"the runs come from several experiments ({', '.join(found)})"
    else:
        problem = f"experiment {found[0]!r} has no registered figure"
    raise ValueError(f"cannot infer the figure: {problem}; registered figures: {registered}")


def band_over_runs(rows: pd.DataFrame) -> pd.DataFrame:
    """Per step, over the runs in `rows` (`run_dir, step, value` of one metric): `mean`, `min`,
    `max` and `n`, the number of runs that logged that step (NaN-skipping, so a step logged by only
    some runs averages those). Index: step."""
    wide = rows.pivot(index="step", columns="run_dir", values="value").sort_index()
    return pd.DataFrame(
        {
            "mean": wide.mean(axis=1),
            "min": wide.min(axis=1),
            "max": wide.max(axis=1),
            "n": wide.notna().sum(axis=1),
        }
    )


def plot_band(ax: Axes, band: pd.DataFrame, label: str, color: str) -> None:
    """A line at `band["mean"]` over `band["step"]`, shaded from `min` to `max`."""
    steps = band["step"].to_numpy()
    ax.plot(steps, band["mean"].to_numpy(), color=color, label=label, lw=1.2)
    ax.fill_between(
        steps, band["min"].to_numpy(), band["max"].to_numpy(), color=color, alpha=0.2, lw=0
    )


def new_figure(**kwargs) -> Figure:
    """A matplotlib `Figure` on its own Agg canvas: no pyplot, so no global figure state and no
    GUI backend, whatever backend the process (or a notebook) uses."""
    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def write_claims(
    spec: FigureSpec, table: pd.DataFrame, out_dir: PathLike
) -> tuple[list[Path], pd.DataFrame]:
    """Evaluate `spec`'s claims on `table`; write `<out_dir>/<id>_claims.md` and `_claims.csv`.

    Returns the paths written and the claims table."""
    base = Path(out_dir) / spec.id
    base.parent.mkdir(parents=True, exist_ok=True)
    claims = evaluate_claims(spec.claims, table)
    md = base.with_name(f"{base.name}_claims.md")
    md.write_text(f"# {spec.title}: claims\n\n{claims_markdown(claims)}")
    csv = base.with_name(f"{base.name}_claims.csv")
    claims.to_csv(csv, index=False)
    return [md, csv], claims


def write_plot(
    spec: FigureSpec,
    table: pd.DataFrame,
    out_dir: PathLike,
    formats: Sequence[str] = ("png", "pdf"),
) -> list[Path]:
    """Draw `spec` from `table` to `<out_dir>/<id>.<format>` for each format, and write the
    plotted data (`spec.data`) to `<out_dir>/<id>_data.csv`; the paths written.

    Raises the figure's ValueError, writing nothing, when the table cannot make it."""
    base = Path(out_dir) / spec.id
    data = spec.data(table)
    fig = spec.draw(table)
    base.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        path = base.with_name(f"{base.name}.{fmt}")
        fig.savefig(path, dpi=150)
        written.append(path)
    csv = base.with_name(f"{base.name}_data.csv")
    data.to_csv(csv, index=False)
    written.append(csv)
    return written


# The registry; figure modules import FigureSpec from here, hence the import at the bottom.
from normlab.figures import (  # noqa: E402
    ioffe2015_fig1,
    santurkar2018_common,
    santurkar2018_dln,
    santurkar2018_dln_activations,
    santurkar2018_dln_gradchange,
    santurkar2018_dln_ics,
    santurkar2018_dln_landscape,
    santurkar2018_theory,
    santurkar2018_vgg,
    santurkar2018_vgg_common,
    santurkar2018_vgg_hist,
)

_DLN_FIGURES = (
    santurkar2018_dln_ics.FIG3B,
    santurkar2018_dln.FIG5B,
    santurkar2018_dln_activations.FIG9,
    santurkar2018_dln_landscape.FIG10,
    santurkar2018_dln_gradchange.FIG11,
    santurkar2018_dln_landscape.FIG13,
)

_VGG_FIGURES = (*santurkar2018_vgg.SPECS, santurkar2018_vgg_hist.FIG6)

FIGURES: dict[str, FigureSpec] = {
    spec.id: spec
    for spec in (ioffe2015_fig1.FIGURE, *_DLN_FIGURES, *_VGG_FIGURES, santurkar2018_theory.THEORY)
}

# A suite's runs are the union of its figures' sweeps (conf/experiment/santurkar2018/dln_suite.yaml,
# vgg_suite.yaml): each of those figures draws from it, so its runs name no one figure.
SUITES: dict[str, tuple[str, ...]] = {
    santurkar2018_common.SUITE_ID: tuple(spec.id for spec in _DLN_FIGURES),
    santurkar2018_vgg_common.SUITE_ID: tuple(sorted(spec.id for spec in _VGG_FIGURES)),
}

__all__ = [
    "DATA_COLUMNS",
    "FIGURES",
    "N_NONFINITE",
    "SUITES",
    "FigureSpec",
    "infer_figure_id",
    "new_figure",
    "write_claims",
    "write_plot",
]
