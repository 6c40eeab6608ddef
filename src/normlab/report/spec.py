"""A paper figure as data: panels of lines over the runs of some norms at some rates, and its claims.

Every figure of normlab is one `FigureSpec`: which runs it draws (`variants` x `lrs`), its panels
(each a `Panel` of `Line`s and `Shade`s, or another `PanelKind`: Fig. 11's curves over the step
size, Fig. 6's histograms), and its `Claim`s. From a `normlab.results.load_metrics` table,
`spec.data(table)` gives the plotted numbers (`normlab.report.bands.COLUMNS`: per panel, series
and step, the mean, min and max over the seeds, `n` and `n_nonfinite`; a panel with another x axis
adds its column after `step`) and `spec.draw(table)` plots exactly those numbers. Both raise
ValueError naming what is missing, or the settings mixed, when the table cannot make them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from normlab.report.bands import (
    DATA_COLUMNS,
    N_NONFINITE,
    death_steps,
    figure_marks_legend,
    mark_top,
    metric_band,
    nonfinite_x,
    plot_band,
    shade_between,
    tidy,
)
from normlab.report.claims import Claim
from normlab.report.runs import LR_COLUMN, VARIANT, seeds_text, select_figure_runs
from normlab.results import PathLike, load_metrics


def new_figure(**kwargs) -> Figure:
    """A matplotlib `Figure` on its own Agg canvas: no pyplot, so no global figure state and no
    GUI backend, whatever backend the process (or a notebook) uses."""
    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


@dataclass(frozen=True)
class Line:
    """One plotted line: `metric` of the runs of norm `variant` at rate `lr` (None: the figure's
    one rate), the mean over seeds with a min..max band. `label` names the series in the plotted
    data; `legend` (default: the label) is its legend entry, where `{n}` becomes the number of
    runs averaged."""

    variant: str
    metric: str
    label: str
    color: str
    lr: float | None = None
    style: str = "-"
    legend: str | None = None


@dataclass(frozen=True)
class Shade:
    """A band between two lines' means (a min and a max over something other than the seeds:
    the loss along the gradient's min..max over eta), drawn shaded with thin edges; its two
    lines are two series of the plotted data."""

    lo: Line
    hi: Line
    label: str
    color: str


@dataclass
class Marks:
    """What a panel marked: a value that blew up ('^'), a run that diverged ('X')."""

    blown: bool = False
    died: bool = False

    def __ior__(self, other: Marks) -> Marks:
        self.blown |= other.blown
        self.died |= other.died
        return self


@dataclass(frozen=True)
class Runs:
    """The runs a figure draws (`select_figure_runs`'s rows) and the figure they are for."""

    table: pd.DataFrame
    figure: FigureSpec

    def group(self, variant: str, lr: float | None) -> pd.DataFrame:
        """The rows of the runs of `variant` at `lr` (None: the figure's one rate)."""
        rows = self.table[self.table[VARIANT] == variant]
        # `select_figure_runs` has set each run's rate to the declared one: compare exactly.
        return rows if lr is None else rows[rows[LR_COLUMN] == lr]

    @property
    def seeds(self) -> list[int]:
        return sorted(int(s) for s in self.table["seed"].dropna().unique())


class PanelKind(Protocol):
    """A panel: its name in the plotted data, its numbers from the runs, and how to draw them."""

    name: str
    x_column: str | None  # the x axis' column of the plotted data when it is not `step`

    def data(self, runs: Runs) -> pd.DataFrame: ...  # `series`, `step`, [x], mean ... n_nonfinite

    def draw(self, ax: Axes, data: pd.DataFrame, runs: Runs) -> Marks: ...


@dataclass(frozen=True)
class Panel:
    """Lines and shaded bands over the training step. `name` is the panel's value in the plotted
    data, `title` its axes title (default: the name); `ylim(data)` may set the y range from the
    panel's plotted data (Ioffe 2015 Fig. 1(a) zooms on the late part of training)."""

    name: str
    ylabel: str
    items: tuple[Line | Shade, ...]
    title: str | None = None
    yscale: str = "linear"
    linthresh: float | None = None  # for yscale="symlog"
    ylim: Callable[[pd.DataFrame], tuple[float, float]] | None = None
    legend_loc: str | None = "best"  # None: no legend (a figure-level one names the lines)
    x_column: str | None = None

    def lines(self) -> list[Line]:
        out: list[Line] = []
        for item in self.items:
            out += [item.lo, item.hi] if isinstance(item, Shade) else [item]
        return out

    def data(self, runs: Runs) -> pd.DataFrame:
        frames = []
        for line in self.lines():
            where = f" ({line.variant}, lr {line.lr:g})" if line.lr is not None else ""
            group = runs.group(line.variant, line.lr)
            what = f"{runs.figure.id}{where or f' ({line.variant})'}"
            band = metric_band(group, line.metric, what)
            frames.append(band.assign(series=line.label))
        return pd.concat(frames, ignore_index=True)

    def draw(self, ax: Axes, data: pd.DataFrame, runs: Runs) -> Marks:
        marks = Marks()
        for item in self.items:
            if isinstance(item, Shade):
                lo = data[data["series"] == item.lo.label]
                hi = data[data["series"] == item.hi.label]
                marks.blown |= shade_between(ax, lo, hi, item.label, item.color)
                continue
            band = data[data["series"] == item.label]
            group = runs.group(item.variant, item.lr)
            legend = (item.legend or item.label).replace("{n}", str(group["run_dir"].nunique()))
            plot_band(ax, band, legend, item.color, item.style)
            died = death_steps(group)
            # '^' where a living run logged inf/nan; the steps after a death are not marked.
            blown = nonfinite_x(band)
            if died:
                blown = blown[blown < min(died)]
            marks.blown |= mark_top(ax, blown, item.color, legend)
            marks.died |= mark_top(ax, died, item.color, legend, marker="X")
        ax.set(title=self.title or self.name, ylabel=self.ylabel)
        if self.yscale == "symlog":
            ax.set_yscale("symlog", linthresh=self.linthresh)
        elif self.yscale == "log":  # a 0 (a drift from step 0, at step 0) left out, not -inf
            ax.set_yscale("log", nonpositive="mask")
        else:
            ax.set_yscale(self.yscale)
        if self.ylim is not None:
            ax.set_ylim(*self.ylim(data))
        if self.legend_loc is not None:
            ax.legend(fontsize=7, loc=self.legend_loc)
        return marks


@dataclass(frozen=True)
class FigureSpec:
    """One paper figure: the runs it draws, its panels (in a grid `ncols` wide), its claims.

    `variants` and `lrs` choose the runs (`lrs` None: the runs' one rate); `statuses` the run
    statuses drawn (`normlab.results.load_summaries`: the VGG figures draw diverged runs, marked
    where they died); `files` the per-run files read besides metrics.csv
    (`normlab.results.RUN_FILES`: `landscape.csv`, `act_hist.csv`); `derive(table)` may add rows
    computed from the logged ones before anything is selected (Santurkar 2018's Thm 4.2 terms);
    `describe(runs)` ends the title's first line (the model and its scale); `band_text` says what
    the shading shows; `shared_y` names groups of panels drawn on one y axis; `suite` the preset
    whose sweep feeds this figure and others (`santurkar2018/dln_suite`)."""

    id: str
    title: str
    variants: tuple[str, ...]
    panels: tuple[PanelKind, ...]
    claims: Sequence[Claim] = ()
    lrs: tuple[float, ...] | None = None
    ncols: int | None = None
    panel_size: tuple[float, float] = (4.3, 3.5)
    suite: str | None = None
    statuses: tuple[str, ...] = ("finished",)
    files: tuple[str, ...] = ()
    extra_metrics: tuple[str, ...] = ()
    derive: Callable[[pd.DataFrame], pd.DataFrame] | None = None
    describe: Callable[[pd.DataFrame], str] | None = None
    band_text: str = "band min..max over seeds"
    shared_y: tuple[tuple[str, ...], ...] = ()
    # The title's second line, from the runs' seeds, where no line averages seeds (Fig. 6).
    seeds_line: Callable[[list[int]], str] | None = None

    # --- what the figure reads ---------------------------------------------------------------

    @property
    def metrics(self) -> tuple[str, ...]:
        """The metric names/globs the panels read."""
        names = [line.metric for p in self.panels if isinstance(p, Panel) for line in p.lines()]
        for p in self.panels:
            names += list(getattr(p, "metrics", ()))
        return tuple(dict.fromkeys([*names, *self.extra_metrics]))

    def needed_metrics(self) -> list[str]:
        """The metric names/globs the figure and its claims read."""
        return list(dict.fromkeys([*self.metrics, *(c.metric for c in self.claims)]))

    def load(self, paths: Iterable[PathLike]) -> pd.DataFrame:
        """The `load_metrics` table of the runs under `paths` with the figure's `statuses`,
        limited to what this figure reads (its metrics, and the rows of its per-run `files`)."""
        return load_metrics(
            paths, statuses=self.statuses, metrics=self.needed_metrics(), files=self.files
        )

    # --- the plotted numbers and the drawing ---------------------------------------------------

    def __post_init__(self) -> None:
        # A line without a rate stands for the figure's one rate: in a figure of several rates
        # it would average them.
        if self.lrs is not None and len(self.lrs) > 1:
            vague = [
                line.label
                for p in self.panels
                if isinstance(p, Panel)
                for line in p.lines()
                if line.lr is None
            ]
            if vague:
                raise ValueError(f"{self.id}: lines without a rate in a figure of several: {vague}")

    def runs(self, table: pd.DataFrame) -> Runs:
        if self.derive is not None:
            table = self.derive(table)
        return Runs(select_figure_runs(table, self.id, self.variants, self.lrs), self)

    def columns(self) -> list[str]:
        x = [c for c in dict.fromkeys(p.x_column for p in self.panels) if c]
        return [*DATA_COLUMNS[:3], *x, *DATA_COLUMNS[3:], N_NONFINITE]

    def _data(self, runs: Runs) -> pd.DataFrame:
        frames = [p.data(runs).assign(panel=p.name) for p in self.panels]
        return tidy(frames, self.columns())

    def data(self, table: pd.DataFrame) -> pd.DataFrame:
        """The plotted numbers: per panel and series, per point, the mean, min and max over
        seeds, `n` and `n_nonfinite`. ValueError naming what is missing or mixed."""
        return self._data(self.runs(table))

    def draw(self, table: pd.DataFrame) -> Figure:
        """The figure: `data(table)`, plotted panel by panel."""
        runs = self.runs(table)
        data = self._data(runs)
        ncols = self.ncols or len(self.panels)
        nrows = -(-len(self.panels) // ncols)
        width, height = self.panel_size
        fig = new_figure(figsize=(width * ncols, height * nrows + 0.8), layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        marks = Marks()
        by_name = {}
        for ax, panel in zip(axes, self.panels, strict=False):
            marks |= panel.draw(ax, data[data["panel"] == panel.name], runs)
            if panel.x_column is None:
                ax.set_xlabel("training step")
            by_name[panel.name] = ax
        for ax in axes[len(self.panels) :]:
            ax.set_visible(False)
        for names in self.shared_y:
            first, *rest = (by_name[n] for n in names)
            for ax in rest:
                ax.sharey(first)
                if not ax.get_subplotspec().is_first_col():  # a panel to the first one's right
                    ax.tick_params(axis="y", which="both", labelleft=False)
            # Each panel fixed its own limits while drawn: refit the shared range to all of them
            # (a `Panel.ylim` zoom stays: set_ylim turned autoscaling off).
            first.autoscale_view(scalex=False)
        figure_marks_legend(fig, marks.blown, marks.died)
        fig.suptitle(self.suptitle(runs), fontsize=10)
        return fig

    def suptitle(self, runs: Runs) -> str:
        """The title, the model and scale the runs trained (`describe`), then which seeds each
        line averages and what its shading shows (one seed: no spread to shade)."""
        first = self.title + (f" ({self.describe(runs.table)})" if self.describe else "")
        seeds = runs.seeds
        if self.seeds_line is not None:
            return f"{first}\n{self.seeds_line(seeds)}"
        if len(seeds) == 1:  # no spread over seeds to shade
            bands = self.band_text.replace("min..max over seeds", "one run")
            return f"{first}\nseed {seeds[0]} alone: {bands}"
        return f"{first}\nmean over seeds {seeds_text(seeds)}, {self.band_text}"
