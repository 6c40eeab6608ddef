"""Santurkar et al. 2018, Fig. 9: the distribution of the DLN's activations over training.

Columns: layers #1, #11 and #24; rows: the standard net (top) and the BN net (bottom), lr 1e-6.
The activation probe logs, every 100 steps, the 15th, 50th and 85th percentiles over all units of
a layer on the fixed held-out batch (`act/layer{i}/p15|p50|p85`, the input of the next layer after
the norm). Each panel shows the median (solid line) and the 15..85 percentile band (shaded, edges
dotted); each of the three curves is the mean over seeds. A column shares its y axis, so that
the two nets' shifts compare at a glance.

`plot_data` gives the plotted numbers: panel `"Standard, layer #1"`, ..., `"BN, layer #24"`;
series `"15%"`, `"50%"`, `"85%"`; columns `normlab.figures.DATA_COLUMNS` and `n_nonfinite`, where
`mean` is the plotted curve and `min`/`max` the spread over seeds (written, not drawn: the shading
is the percentile band). A point where some seed logged inf or nan has no mean (NaN, counted in
`n_nonfinite`) and is marked by a '^' at the top of the panel. Drawn from the figure's own sweep
or from `santurkar2018/dln_suite`. No claim: the paper shows these distributions without a
statement to test beyond Fig. 3's.
"""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from normlab.figures import N_NONFINITE, FigureSpec, new_figure
from normlab.figures.santurkar2018_common import (
    COLORS,
    LABELS,
    LR,
    STANDARD_BN,
    VARIANT,
    legend_nonfinite,
    mark_nonfinite,
    metric_band,
    select_figure_runs,
    suptitle,
    tidy,
)

FIG9_ID = "santurkar2018/dln_fig9_activations"
LAYERS = (1, 11, 24)  # Fig. 9
PERCENTILES = {"p15": "15%", "p50": "50%", "p85": "85%"}
ACT_GLOB = "act/layer*/p*"


def panel_name(variant: str, layer: int) -> str:
    return f"{LABELS[variant]}, layer #{layer}"


def plot_data(table: pd.DataFrame) -> pd.DataFrame:
    """Fig. 9's numbers, from a `load_metrics` table holding `act/layer{1,11,24}/p15|p50|p85` of
    standard and BN runs at lr 1e-6. ValueError naming what is missing or mixed otherwise."""
    runs = select_figure_runs(table, FIG9_ID, STANDARD_BN, lrs=(LR,))
    frames = []
    for variant in STANDARD_BN:
        group = runs[runs[VARIANT] == variant]
        for layer in LAYERS:
            for p, label in PERCENTILES.items():
                band = metric_band(group, f"act/layer{layer}/{p}", f"{FIG9_ID} ({variant})")
                frames.append(band.assign(panel=panel_name(variant, layer), series=label))
    return tidy(frames)


def draw(table: pd.DataFrame) -> Figure:
    """Fig. 9: `plot_data(table)`, two rows (Standard, BN) by three layers."""
    data = plot_data(table)
    runs = select_figure_runs(table, FIG9_ID, STANDARD_BN, lrs=(LR,))
    fig = new_figure(figsize=(13, 6.5), layout="constrained")
    axes = fig.subplots(len(STANDARD_BN), len(LAYERS), sharex=True, sharey="col", squeeze=False)
    marked = []
    for row, variant in enumerate(STANDARD_BN):
        color = COLORS[variant]
        for col, layer in enumerate(LAYERS):
            ax = axes[row][col]
            panel = data[data["panel"] == panel_name(variant, layer)]
            curves = {p: panel[panel["series"] == label] for p, label in PERCENTILES.items()}
            steps = curves["p50"]["step"].to_numpy()
            lo = curves["p15"].set_index("step")["mean"].reindex(steps).to_numpy()
            hi = curves["p85"].set_index("step")["mean"].reindex(steps).to_numpy()
            ax.fill_between(steps, lo, hi, color=color, alpha=0.2, lw=0, label="15..85%")
            for p in ("p15", "p85"):
                curve = curves[p]
                ax.plot(curve["step"], curve["mean"], color=color, lw=0.6, ls=":", label=None)
            ax.plot(steps, curves["p50"]["mean"], color=color, lw=1.4, label="median")
            # A step where some seed logged inf/nan in a percentile has no mean: marked instead.
            blown = panel.loc[panel[N_NONFINITE] > 0, "step"].unique()
            if mark_nonfinite(ax, blown, color, panel_name(variant, layer)):
                marked.append(ax)
            ax.set_title(panel_name(variant, layer))
            if col == 0:
                ax.set_ylabel(f"{LABELS[variant]}: activation")
                ax.legend(fontsize=7, loc="upper left")
            if row == len(STANDARD_BN) - 1:
                ax.set_xlabel("training step")
    legend_nonfinite(marked, fontsize=7, loc="upper left")
    suptitle(
        fig,
        "Santurkar et al. 2018, Fig. 9, DLN, lr 1e-6: activations of layers #1, #11, #24 "
        "(median, 15..85 percentiles)",
        runs,
        band="shaded 15..85 percentiles",
    )
    return fig


FIG9 = FigureSpec(
    id=FIG9_ID,
    title="Santurkar et al. 2018, Fig. 9 (DLN, activation distributions)",
    metrics=(ACT_GLOB,),
    data=plot_data,
    draw=draw,
    claims=[],
)
