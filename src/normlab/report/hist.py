"""Histograms as a panel kind (`normlab.report.spec.PanelKind`): one run's distribution of one
layer's activations at the first probe step, the one nearest the middle of training and the last,
from the activation probe's per-run `act_hist.csv` (a `load_metrics` table read with
`files=("act_hist.csv",)`: metric `act_hist/count`, columns `layer`, `bin_lo`, `bin_hi`).

Histograms of different seeds have different bins (each probe call bins its own range), so a panel
shows one run: the lowest seed of its norm (its title says which). Its plotted data: series
"step N", `step`, `activation` (the bin's centre), `mean` = `min` = `max` the density there,
`n` = 1, `n_nonfinite` = 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.ticker import MaxNLocator

from normlab.report.bands import N_NONFINITE
from normlab.report.spec import Marks, Runs

COUNT = "act_hist/count"
SHADES = {3: (0.35, 0.65, 1.0), 2: (0.35, 1.0), 1: (1.0,)}  # first .. last step: light to full
# `zoom_later`: the y range is the later steps' when the first step's peak is this many times
# higher (a net whose activations start as a narrow spike: the standard VGG at step 0).
ZOOM_ABOVE = 2.0
HEADROOM = 1.15  # the y range's top over the highest density it shows


def chosen_steps(steps: np.ndarray) -> list[int]:
    """The first probe step, the one nearest the middle, and the last."""
    steps = np.sort(steps)
    middle = steps[np.argmin(np.abs(steps - (steps[0] + steps[-1]) / 2))]
    return sorted({int(steps[0]), int(middle), int(steps[-1])})


@dataclass(frozen=True)
class Histograms:
    """Layer `layer`'s activation histograms (densities) of the lowest-seed run of norm `variant`
    at rate `lr` (None: the figure's one rate), at `chosen_steps`, light (first) to full (last)
    `color`. `title` (default: the name) gets ", seed N". `zoom_later`: when the first step's peak
    is over `ZOOM_ABOVE` times the later steps', the y range shows the later steps and the panel
    says how high the first step's peak is."""

    name: str
    variant: str
    layer: int
    color: str
    lr: float | None = None
    title: str | None = None
    zoom_later: bool = False
    x_column: str = "activation"

    def _run(self, runs: Runs) -> tuple[int, pd.DataFrame]:
        """The lowest seed of the panel's runs and that run's rows."""
        group = runs.group(self.variant, self.lr)
        seed = int(group["seed"].min())
        return seed, group[group["seed"] == seed]

    def data(self, runs: Runs) -> pd.DataFrame:
        seed, run = self._run(runs)
        has_layer = "layer" in run.columns
        rows = (
            run[(run["metric"] == COUNT) & (run["layer"] == self.layer)] if has_layer else run[:0]
        )
        if rows.empty:
            raise ValueError(
                f"{runs.figure.id} ({self.variant}, seed {seed}): no layer #{self.layer} histogram "
                f"in act_hist.csv of {run['run_dir'].iloc[0]} (probe.activations.layers must hold "
                f"{self.layer})"
            )
        frames = []
        for step in chosen_steps(rows["step"].unique()):
            hist = rows[rows["step"] == step].sort_values("bin_lo")
            widths = (hist["bin_hi"] - hist["bin_lo"]).to_numpy(dtype=float)
            counts = hist["value"].to_numpy(dtype=float)
            density = counts / (counts.sum() * widths)
            frames.append(
                pd.DataFrame(
                    {
                        "series": f"step {step}",
                        "step": step,
                        self.x_column: ((hist["bin_lo"] + hist["bin_hi"]) / 2).to_numpy(float),
                        "mean": density,
                        "min": density,
                        "max": density,
                        "n": 1,
                        N_NONFINITE: 0,
                    }
                )
            )
        return pd.concat(frames, ignore_index=True)

    def draw(self, ax: Axes, data: pd.DataFrame, runs: Runs) -> Marks:
        steps = data.groupby("step", sort=True)
        for shade, (step, rows) in zip(SHADES[steps.ngroups], steps, strict=True):
            ax.plot(
                rows[self.x_column],
                rows["mean"],
                color=self.color,
                alpha=shade,
                lw=1.4,
                label=f"step {step}",
            )
        seed, _ = self._run(runs)
        ax.set(title=f"{self.title or self.name}, seed {seed}", xlabel=self.x_column)
        ax.set_ylabel("density")
        ax.xaxis.set_major_locator(MaxNLocator(6))  # small activations' long tick labels
        if self.zoom_later:
            self._zoom(ax, data)
        ax.legend(fontsize=8, loc="upper right")
        return Marks()

    def _zoom(self, ax: Axes, data: pd.DataFrame) -> None:
        """The y range of the later steps when the first step's peak would flatten them."""
        first = data["step"].min()
        later = data.loc[data["step"] != first, "mean"].max()
        peak = data.loc[data["step"] == first, "mean"].max()
        if not later > 0 or not peak > ZOOM_ABOVE * later:
            return
        ax.set_ylim(0, HEADROOM * later)
        ax.text(
            0.02,
            0.97,
            f"step {first}: peak {peak:.3g},\noff the scale",
            transform=ax.transAxes,
            va="top",
            fontsize=8,
            color=self.color,
        )
