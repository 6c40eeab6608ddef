"""A panel of curves over another x axis than the training step: a per-run file's metric against
one of its key columns (landscape.csv's `grad_diff` against the step size `eta`), one curve per
chosen training step, coloured by step with a colour bar (Santurkar 2018 Fig. 11).

The plotted data (`normlab.report.bands.COLUMNS` with the x column after `step`): per chosen
step and x, the mean, min and max over seeds (`seed_band`; a point where some seed logged inf or
nan has no mean and is marked '^' at the top of the panel), series `"step <t>"`, `step` the
training step the curve was measured at.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.ticker import MaxNLocator

from normlab.report.bands import mark_top, nonfinite_x, seed_band
from normlab.report.spec import Marks, Runs


def curve_rows(rows: pd.DataFrame, metric: str, x: str) -> pd.DataFrame:
    """The `metric` rows of `rows`, one per (run, step, x): the last written."""
    rows = rows[rows["metric"] == metric]
    return rows.drop_duplicates(subset=["run_dir", "step", x], keep="last")


def chosen_steps(rows: pd.DataFrame, num: int) -> list[int]:
    """`num` training steps spread evenly over the steps every run of `rows` logged: the logged
    step nearest to each of `num` evenly spaced targets from the first to the last (fewer when
    two targets share their nearest step). ValueError when the runs share no step."""
    per_run = [set(steps) for _, steps in rows.groupby("run_dir")["step"]]
    common = sorted(set.intersection(*per_run)) if per_run else []
    if not common:
        raise ValueError("the runs share no logged step")
    targets = np.linspace(common[0], common[-1], num)
    return sorted({min(common, key=lambda s, t=t: abs(s - t)) for t in targets})


def _row(ax: Axes) -> list[Axes]:
    """The panels of `ax`'s row of the figure's grid, left to right (colour bars left out)."""
    rows = ax.get_subplotspec().rowspan
    grid = [(a, a.get_subplotspec()) for a in ax.figure.axes]
    row = [(s.colspan.start, a) for a, s in grid if s is not None and s.rowspan == rows]
    return [a for _, a in sorted(row, key=lambda item: item[0])]


@dataclass(frozen=True)
class StepCurves:
    """Curves of `metric` (a per-run file's metric, `normlab.results.RUN_FILES`: its rows carry
    the column `x_column`) of the runs of `variant` at `lr` (None: the figure's one rate), one per
    training step: `num_steps` steps spread over those every run of the figure logged, the same in
    every panel of the figure, so that a colour is one step throughout. `file` names the per-run
    file in the errors. `colorbar`: draw the step colour bar at the end of the panel's row (give
    it to one panel of a row)."""

    name: str
    variant: str
    metric: str
    file: str
    title: str
    xlabel: str
    ylabel: str = ""
    x_column: str = "eta"
    lr: float | None = None
    num_steps: int = 6
    xscale: str = "log"
    yscale: str = "log"
    cmap: str = "viridis"
    colorbar: bool = False
    colorbar_label: str = "training step t"

    @property
    def metrics(self) -> tuple[str, ...]:
        return (self.metric,)

    def steps(self, runs: Runs) -> list[int]:
        """The training steps drawn: spread over those every run of the figure logged.
        ValueError naming the runs without the file's rows."""
        rows = curve_rows(runs.table, self.metric, self.x_column)
        absent = sorted(set(runs.table["run_dir"]) - set(rows["run_dir"]))
        if absent:
            shown = ", ".join(absent[:3]) + (", ..." if len(absent) > 3 else "")
            raise ValueError(
                f"{runs.figure.id}: no {self.file} rows in {len(absent)} run(s): {shown}"
            )
        try:
            return chosen_steps(rows, self.num_steps)
        except ValueError:
            raise ValueError(
                f"{runs.figure.id}: the runs' {self.file} share no probed step"
            ) from None

    def data(self, runs: Runs) -> pd.DataFrame:
        steps = self.steps(runs)
        rows = curve_rows(runs.group(self.variant, self.lr), self.metric, self.x_column)
        band = seed_band(rows[rows["step"].isin(steps)], keys=("step", self.x_column))
        return band.assign(series=[f"step {s}" for s in band["step"]])

    def draw(self, ax: Axes, data: pd.DataFrame, runs: Runs) -> Marks:
        steps = self.steps(runs)
        cmap, norm = colormaps[self.cmap], Normalize(vmin=0, vmax=max(steps[-1], 1))
        marks = Marks()
        for step in steps:
            curve = data[data["step"] == step].sort_values(self.x_column)
            color, label = cmap(norm(step)), f"step {step}"
            x = curve[self.x_column]
            ax.plot(x, curve["mean"], color=color, lw=1.3, label=label)
            ax.fill_between(x, curve["min"], curve["max"], color=color, alpha=0.2, lw=0)
            marks.blown |= mark_top(ax, nonfinite_x(curve, self.x_column), color, label)
        ax.set(xscale=self.xscale, yscale=self.yscale, title=self.title, xlabel=self.xlabel)
        ax.set_ylabel(self.ylabel)
        if self.colorbar:
            bar = ax.figure.colorbar(
                ScalarMappable(norm=norm, cmap=cmap), ax=_row(ax), label=self.colorbar_label
            )
            # Round steps on the bar (the curves' own steps need not be: 5900, 7900).
            bar.locator = MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10], integer=True)
            bar.update_ticks()
            bar.ax.tick_params(labelsize=8)
        return marks
