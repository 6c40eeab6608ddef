"""Santurkar et al. 2018, Fig. 3(b): internal covariate shift (ICS, Def. 2.1) in the DLN.

Rows: lr 1e-6 and lr 1e-7. Columns: the training loss (log y), the ICS as the l2 difference
||G - G'||_2 (log y) and as the cosine of G and G', for layers #9 and #17 (`ics/layer{9,17}/l2`,
`ics/layer{9,17}/cos`, measured every 100 steps). G is a layer's gradient at step t, G' the same
layer's gradient once every earlier layer took step t's update (Sec. 2.2). Lines: Standard (black)
and BN (red); layer #9 solid, layer #17 dashed. Each line is the mean over seeds, its band min..max.

`plot_data` gives the plotted numbers: panel `"lr 1e-6: training loss"`, `"lr 1e-6: ICS l2"`,
`"lr 1e-6: ICS cosine"` (and the same for lr 1e-7); series `"Standard"`, `"BN"` in the loss
panels, `"Standard, layer #9"`, ..., `"BN, layer #17"` in the ICS panels; columns
`normlab.figures.DATA_COLUMNS` and `n_nonfinite`. A point where some seed logged inf or nan (a nan
cosine: G or G' zero) has no mean (NaN, counted in `n_nonfinite`) and is marked by a '^' at the
top of the panel. Drawn from the figure's own sweep or from `santurkar2018/dln_suite`.

Claims (headline claim 3): BN does not reduce ICS; the standard DLN has almost none (cosine near 1)
while BN's G and G' are nearly uncorrelated. Measured on every probe of the window, each finite:
a run missing one, or with a nan cosine, leaves the claims without a verdict (insufficient data).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from normlab.claims import Claim, InsufficientData, Measurement, window_note
from normlab.figures import FigureSpec, new_figure, plot_band
from normlab.figures.santurkar2018_common import (
    COLORS,
    LABELS,
    LR,
    LR_COLUMN,
    LR_SLOW,
    STANDARD_BN,
    VARIANT,
    legend_nonfinite,
    lr_text,
    mark_nonfinite,
    metric_band,
    needed_evals,
    nonfinite_x,
    select_claim_runs,
    select_figure_runs,
    suptitle,
    tidy,
)

FIG3B_ID = "santurkar2018/dln_fig3b_ics"
LRS = (LR, LR_SLOW)
LAYERS = (9, 17)  # Fig. 3(b): layers #9 and #17
LAYER_STYLES = {9: "-", 17: "--"}
LOSS = "train/loss"
ICS_GLOB = "ics/layer*/*"
COS_GLOB = "ics/layer*/cos"
EVERY = "probe.ics.every_n_steps"  # the ICS probe's cadence (run config)
QUANTITIES = {  # column of the figure -> (panel suffix, y label, metric of a layer or None: loss)
    "loss": ("training loss", "training loss", None),
    "l2": ("ICS l2", "||G - G'||_2", "l2"),
    "cos": ("ICS cosine", "cos(G, G')", "cos"),
}


def panel_name(lr: float, quantity: str) -> str:
    return f"lr {lr_text(lr)}: {QUANTITIES[quantity][0]}"


def ics_metric(layer: int, stat: str) -> str:
    return f"ics/layer{layer}/{stat}"


def plot_data(table: pd.DataFrame) -> pd.DataFrame:
    """Fig. 3(b)'s numbers, from a `load_metrics` table holding `train/loss` and
    `ics/layer{9,17}/l2|cos` of standard and BN runs at lr 1e-6 and 1e-7. ValueError naming what
    is missing or mixed otherwise."""
    runs = select_figure_runs(table, FIG3B_ID, STANDARD_BN, lrs=LRS)
    frames = []
    for lr in LRS:
        for variant in STANDARD_BN:
            group = runs[(runs[LR_COLUMN] == lr) & (runs[VARIANT] == variant)]
            what = f"{FIG3B_ID} ({variant}, lr {lr:g})"
            frames.append(
                metric_band(group, LOSS, what).assign(
                    panel=panel_name(lr, "loss"), series=LABELS[variant]
                )
            )
            for quantity in ("l2", "cos"):
                for layer in LAYERS:
                    band = metric_band(group, ics_metric(layer, quantity), what)
                    frames.append(
                        band.assign(
                            panel=panel_name(lr, quantity),
                            series=f"{LABELS[variant]}, layer #{layer}",
                        )
                    )
    return tidy(frames)


def draw(table: pd.DataFrame) -> Figure:
    """Fig. 3(b): `plot_data(table)` in the paper's 2 x 3 layout."""
    data = plot_data(table)
    runs = select_figure_runs(table, FIG3B_ID, STANDARD_BN, lrs=LRS)
    fig = new_figure(figsize=(13, 7), layout="constrained")
    axes = fig.subplots(len(LRS), len(QUANTITIES), sharex=True, squeeze=False)
    marked = []
    for row, lr in enumerate(LRS):
        for col, (quantity, (_, ylabel, _)) in enumerate(QUANTITIES.items()):
            ax = axes[row][col]
            panel = data[data["panel"] == panel_name(lr, quantity)]
            blown = False
            for series, rows in panel.groupby("series", sort=False):
                variant = "batch" if series.startswith(LABELS["batch"]) else "none"
                plot_band(ax, rows, series, COLORS[variant])
                if quantity != "loss":  # the layer by line style: #9 solid, #17 dashed
                    layer = int(series.rsplit("#", 1)[1])
                    ax.get_lines()[-1].set_linestyle(LAYER_STYLES[layer])
                # A point where a seed logged inf/nan has no mean: a marker at the top instead.
                blown |= mark_nonfinite(ax, nonfinite_x(rows), COLORS[variant], series)
            ax.set(title=panel_name(lr, quantity), ylabel=ylabel)
            if quantity != "cos":
                ax.set_yscale("log")
            if row == len(LRS) - 1:
                ax.set_xlabel("training step")
            ax.legend(fontsize=7)
            if blown:
                marked.append(ax)
    legend_nonfinite(marked, fontsize=7)
    suptitle(fig, "Santurkar et al. 2018, Fig. 3(b), DLN: ICS of layers #9 and #17", runs)
    return fig


# --- claims ---------------------------------------------------------------------------------------


def _layer_means(
    table: pd.DataFrame, claim: Claim, stat: str
) -> tuple[dict[tuple[float, str, int, int], float], dict]:
    """Per (lr, variant, layer, seed): the mean of `ics/layer{layer}/{stat}` over the claim's
    window, from the runs the claim selects; and the selection (for its window note).

    InsufficientData naming every (lr, variant, layer, seed) that did not log the layer at every
    probed step of the window (`needed_evals`), or logged a non-finite value there (with how many).
    A non-finite cos(G, G') (nan: G or G' zero, or an overflow) is undefined, not small or large:
    read as either it would decide the claim by a convention, and left out, the mean would cover
    part of the window only. So the claim has no verdict on such runs rather than one that fails:
    the ICS did not fail to be what the paper says, it was not measured."""
    sel = select_claim_runs(table, claim, STANDARD_BN, lrs=LRS, every=EVERY)
    lo, hi = claim.window
    means: dict[tuple[float, str, int, int], float] = {}
    missing, nonfinite = [], []
    for (lr, variant, seed), rows in sel.items():
        run = rows["run_dir"].iloc[0]
        # The claim's metric is the cosine; the l2 of the same runs and window comes from the table.
        source = rows if stat == "cos" else table[table["run_dir"] == run]
        need = needed_evals(rows, claim, EVERY)
        for layer in LAYERS:
            metric = ics_metric(layer, stat)
            values = source.loc[
                (source["metric"] == metric) & source["step"].between(lo, hi), "value"
            ].to_numpy(dtype=float)
            where = f"{LABELS[variant]} lr {lr_text(lr)} layer #{layer} seed {seed}"
            if len(values) < need:
                missing.append(f"{where}: {len(values)} of {need} evaluations of {metric}")
                continue
            bad = int((~np.isfinite(values)).sum())
            if bad:
                nonfinite.append(f"{where}: {bad} of {len(values)}")
                continue
            means[(lr, variant, layer, seed)] = float(values.mean())
    if missing or nonfinite:
        parts = missing
        if nonfinite:
            parts = [*parts, f"non-finite {stat} (undefined, no verdict): {', '.join(nonfinite)}"]
        raise InsufficientData("; ".join(parts))
    return means, sel


# What a measured detail says of non-finite cosines (any makes the claim insufficient data).
NO_NONFINITE = "non-finite cos: 0 in every (lr, variant, layer, seed)"


def _per_cell(means: dict, variant: str, seeds) -> str:
    """ "lr 1e-6 #9 0.998, #17 0.997; lr 1e-7 ..." : the mean over seeds of each (lr, layer)."""
    return "; ".join(
        f"lr {lr_text(lr)} "
        + ", ".join(
            f"#{layer} {np.mean([means[(lr, variant, layer, s)] for s in seeds]):.3f}"
            for layer in LAYERS
        )
        for lr in LRS
    )


def _l2_ratio_text(table: pd.DataFrame, claim: Claim) -> str:
    """ "l2 BN/Standard lr 1e-6 #9 x3.1, ...": per (lr, layer), the mean over seeds of the ratio of
    the runs' mean ||G - G'||_2 (the detail only; the verdict is on the cosine)."""
    try:
        l2, _ = _layer_means(table, claim, "l2")
    except InsufficientData as err:
        return f"l2 not available ({err})"
    parts = []
    for lr in LRS:
        for layer in LAYERS:
            ratios = [l2[(lr, "batch", layer, s)] / l2[(lr, "none", layer, s)] for s in claim.seeds]
            parts.append(f"lr {lr_text(lr)} #{layer} x{np.mean(ratios):.3g}")
    return "l2 BN/Standard " + ", ".join(parts)


def measure_bn_lower_cosine(table: pd.DataFrame, claim: Claim) -> Measurement:
    """Per (lr, layer, seed): mean cos(BN) - mean cos(Standard); value: the largest difference;
    passed iff below the threshold (0: BN's cosine is the lower one) in every cell."""
    means, sel = _layer_means(table, claim, "cos")
    diffs = [
        means[(lr, "batch", layer, s)] - means[(lr, "none", layer, s)]
        for lr in LRS
        for layer in LAYERS
        for s in claim.seeds
    ]
    detail = (
        f"mean cos(G, G'), Standard: {_per_cell(means, 'none', claim.seeds)}; "
        f"BN: {_per_cell(means, 'batch', claim.seeds)}; BN below Standard in "
        f"{sum(d < claim.threshold for d in diffs)} of {len(diffs)} (lr, layer, seed); "
        f"{_l2_ratio_text(table, claim)}; {NO_NONFINITE}; {window_note(claim, sel.values())}"
    )
    worst = max(diffs)
    return Measurement(value=worst, detail=detail, passed=worst < claim.threshold)


def _measure_bound(variant: str, at_least: bool):
    """A measure: `variant`'s mean cosine at least (or at most) the threshold in every (lr,
    layer, seed); value: the worst mean."""

    def measure(table: pd.DataFrame, claim: Claim) -> Measurement:
        means, sel = _layer_means(table, claim, "cos")
        values = [
            means[(lr, variant, layer, s)] for lr in LRS for layer in LAYERS for s in claim.seeds
        ]
        worst = min(values) if at_least else max(values)
        passed = worst >= claim.threshold if at_least else worst <= claim.threshold
        detail = (
            f"{LABELS[variant]} mean cos(G, G') {_per_cell(means, variant, claim.seeds)} "
            f"(mean over seeds {'/'.join(map(str, claim.seeds))}); "
            f"{'lowest' if at_least else 'highest'} per (lr, layer, seed) {worst:.3f}; "
            f"{NO_NONFINITE}; {window_note(claim, sel.values())}"
        )
        return Measurement(value=worst, detail=detail, passed=passed)

    return measure


COMMON = {
    "figure": FIG3B_ID,
    "metric": COS_GLOB,
    # Every probe of the run (steps 0..9900, every 100): the paper's curves span all of training.
    # Each run must hold all of them (100 at the presets' cadence, `probe.ics.every_n_steps`),
    # each finite: a run with fewer, or with a nan cosine, is insufficient data (`_layer_means`).
    "window": (0, 9900),
    "seeds": (0, 1, 2),
}

CLAIMS = [
    # Headline claim 3, Fig. 3(b): BN's G and G' are less aligned than the standard net's. The
    # paper states the direction, not a margin: threshold 0 on cos(BN) - cos(Standard), in every
    # (lr, layer, seed), so that no single lucky seed or layer decides.
    Claim(
        id="santurkar2018/fig3b_bn_lower_ics_cosine",
        claim="BN does not reduce ICS: BN's cos(G, G') is below the standard net's",
        paper_says=(
            "Sec. 2.2, Fig. 3(b): BN nets show similar or larger ICS; for the DLN, cos(G, G') "
            "of the BN net is below the standard net's at lr 1e-6 and 1e-7, layers #9 and #17"
        ),
        threshold=0.0,
        measure=measure_bn_lower_cosine,
        **COMMON,
    ),
    # "Almost no ICS": the standard net's G and G' nearly coincide. The paper's curves sit near 1;
    # 0.9 (an angle under 26 degrees) is read as "almost none", with room for seed noise.
    Claim(
        id="santurkar2018/fig3b_dln_standard_ics_near_zero",
        claim="The standard DLN has almost no ICS: its mean cos(G, G') is at least 0.9",
        paper_says="Sec. 2.2, Fig. 3(b): in the DLN the standard network has almost no ICS",
        threshold=0.9,
        measure=_measure_bound("none", at_least=True),
        **COMMON,
    ),
    # "Nearly uncorrelated": cos near 0. 0.5 (60 degrees) is halfway between uncorrelated and
    # aligned: any mean at or below it is far from the standard net's >= 0.9.
    Claim(
        id="santurkar2018/fig3b_dln_bn_gradients_uncorrelated",
        claim="With BN, G and G' of the DLN are nearly uncorrelated: mean cos(G, G') at most 0.5",
        paper_says=(
            "Sec. 2.2, Fig. 3(b): in the DLN, G and G' of the BN network are nearly uncorrelated"
        ),
        threshold=0.5,
        measure=_measure_bound("batch", at_least=False),
        **COMMON,
    ),
]

FIG3B = FigureSpec(
    id=FIG3B_ID,
    title="Santurkar et al. 2018, Fig. 3(b) (DLN, internal covariate shift)",
    metrics=(LOSS, ICS_GLOB),
    data=plot_data,
    draw=draw,
    claims=CLAIMS,
)
