"""Santurkar et al. 2018, Fig. 9: the distribution of the DLN's activations over training.

Columns: layers #1, #11 and #24; rows: the standard net (top) and the BN net (bottom), lr 1e-6.
The activation probe logs, every 100 steps, the 15th, 50th and 85th percentiles over all units of
a layer on the fixed held-out batch (`act/layer{i}/p15|p50|p85`, the input of the next layer after
the norm). Each panel draws the median (solid) and the 15th and 85th percentiles (dotted), each
the mean over seeds with a min..max band over seeds. Each panel has its own y axis: the core's
`shared_y` would hide the BN row's tick labels (it shares panels side by side, not a column).

The plotted data: panel `"Standard, layer #1"`, ..., `"BN, layer #24"`; series `"15%"`, `"50%"`,
`"85%"`. A point where some seed logged inf or nan has no mean (NaN, counted in `n_nonfinite`)
and is marked by a '^' at the top of the panel. Drawn from the figure's own sweep or from
`santurkar2018/dln_suite`. No claim: the paper shows these distributions without a statement to
test beyond Fig. 3's.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from normlab.papers.santurkar2018.protocol import DLN_ACT_LAYERS, DLN_LR, DLN_SUITE, STANDARD_BN
from normlab.report import FigureSpec, Line, Panel
from normlab.report.runs import COLORS, LABELS, lr_text, model_text

ID = "santurkar2018/dln_fig9_activations"
# Percentile -> (series, line style, legend: one entry for both dotted percentiles).
PERCENTILES = {
    "p15": ("15%", ":", "15%, 85%"),
    "p50": ("50%", "-", "median"),
    "p85": ("85%", ":", "_85%"),
}


def panel_name(variant: str, layer: int) -> str:
    return f"{LABELS[variant]}, layer #{layer}"


def legend_room(data: pd.DataFrame) -> tuple[float, float]:
    """A panel's y range: its curves and bands, and room above them for the legend (the
    percentiles sit above and below the median: no corner of the curves is free)."""
    values = data[["mean", "min", "max"]].to_numpy(dtype=float)
    values = values[np.isfinite(values)]
    lo, hi = (values.min(), values.max()) if len(values) else (-1.0, 1.0)
    span = (hi - lo) or 1.0
    return lo - 0.05 * span, hi + 0.3 * span


def _panel(variant: str, layer: int) -> Panel:
    lines = tuple(
        Line(
            variant,
            f"act/layer{layer}/{p}",
            label,
            COLORS[variant],
            style=style,
            legend=legend,
        )
        for p, (label, style, legend) in PERCENTILES.items()
    )
    ylabel = f"{LABELS[variant]}: activation" if layer == DLN_ACT_LAYERS[0] else ""
    return Panel(
        panel_name(variant, layer), ylabel, lines, ylim=legend_room, legend_loc="upper left"
    )


FIGURE = FigureSpec(
    id=ID,
    title=f"Santurkar et al. 2018, Fig. 9, DLN, lr {lr_text(DLN_LR)}: activations of layers "
    + ", ".join(f"#{layer}" for layer in DLN_ACT_LAYERS)
    + ": median, 15th and 85th percentiles",
    variants=STANDARD_BN,
    lrs=(DLN_LR,),
    panels=tuple(_panel(v, layer) for v in STANDARD_BN for layer in DLN_ACT_LAYERS),
    ncols=len(DLN_ACT_LAYERS),
    suite=DLN_SUITE,
    describe=model_text,
)
