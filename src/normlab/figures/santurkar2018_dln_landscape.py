"""Santurkar et al. 2018, Fig. 10 and Fig. 13: the DLN's loss landscape along the gradient.

At every probed step t (every 100 steps) the landscape probe walks w_t - eta g_t over a grid of
step sizes eta in [1/100, 30] x lr on the step's own batch (Sec. 3.2, App. A.2.2) and logs:

- the loss band: `landscape/loss_min` .. `landscape/loss_max`, min and max over eta of the loss;
- gradient predictiveness: `landscape/grad_diff_min` .. `landscape/grad_diff_max`, min and max
  over eta of ||grad L(w_t - eta g_t) - g_t||_2;
- effective beta-smoothness: `landscape/beta_eff`, the max over eta of that change / ||eta g_t||.

Fig. 10 (Fig. 4 for the DLN), lr 1e-6, Standard vs BN: (a) the loss band, (b) the
gradient-predictiveness band, (c) beta_eff. Fig. 13 (Sec. 3.3), lr 1e-6, Standard, BN, l1, l2,
l_inf: (a) the training loss, then the same three panels as (b), (c), (d). All y axes are
logarithmic. Each band panel shades, per norm, from the mean over seeds of the min to the mean
over seeds of the max (edges drawn thin); the beta_eff and training-loss panels draw the mean over
seeds with a min..max band over seeds.

`plot_data` gives the plotted numbers (`normlab.figures.DATA_COLUMNS`): in a band panel, series
`"<norm>, min"` and `"<norm>, max"` whose `mean` are the shaded band's edges (their `min`/`max`
columns are the spread over seeds, written, not drawn); in the other panels series `"<norm>"`.
Non-finite values (a walk that blew up at a large eta) are left out of the means (`n` counts the
finite ones); the claims count them as blown up (+inf) and say how many there were.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from normlab.claims import Claim, InsufficientData, Measurement, window_note
from normlab.figures import DATA_COLUMNS, FigureSpec, new_figure, plot_band
from normlab.figures.santurkar2018_common import (
    COLORS,
    LABELS,
    LP_VARIANTS,
    LR,
    STANDARD_BN,
    VARIANT,
    blown_up_as_inf,
    metric_band,
    ratio,
    select_claim_runs,
    select_dln_runs,
    suptitle,
    tidy,
)

FIG10_ID = "santurkar2018/dln_fig10_landscape"
FIG13_ID = "santurkar2018/dln_fig13_lp_landscape"
FIG13_VARIANTS = ("none", "batch", *LP_VARIANTS)
LOSS = "train/loss"
LANDSCAPE_GLOB = "landscape/*"
# Quantity -> (panel title, y label, metrics: (min, max) for a band, (metric,) for a line).
QUANTITIES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "train_loss": ("training loss", "training loss", (LOSS,)),
    "loss_band": (
        "loss landscape",
        "loss along the gradient",
        ("landscape/loss_min", "landscape/loss_max"),
    ),
    "grad_band": (
        "gradient predictiveness",
        "l2 change of the gradient",
        ("landscape/grad_diff_min", "landscape/grad_diff_max"),
    ),
    "beta_eff": ("effective beta-smoothness", "effective beta", ("landscape/beta_eff",)),
}
FIG10_PANELS = {"loss_band": "a", "grad_band": "b", "beta_eff": "c"}
FIG13_PANELS = {"train_loss": "a", "loss_band": "b", "grad_band": "c", "beta_eff": "d"}


def _landscape_data(
    table: pd.DataFrame, figure_id: str, variants: Sequence[str], panels: dict[str, str]
) -> pd.DataFrame:
    """The plotted numbers of a landscape figure: for each quantity's panel and each variant, one
    series per metric (band edges `"<norm>, min"`/`"<norm>, max"`, or the line `"<norm>"`)."""
    runs = select_dln_runs(table, figure_id, variants, lrs=(LR,))
    frames = []
    for quantity, panel in panels.items():
        metrics = QUANTITIES[quantity][2]
        for variant in variants:
            group = runs[runs[VARIANT] == variant]
            for metric in metrics:
                series = LABELS[variant]
                if len(metrics) == 2:
                    series += ", min" if metric.endswith("_min") else ", max"
                band = metric_band(group, metric, f"{figure_id} ({variant})")
                frames.append(band.assign(panel=panel, series=series))
    return tidy(frames, DATA_COLUMNS)


def _shade_band(ax: Axes, lo: pd.DataFrame, hi: pd.DataFrame, label: str, color: str) -> None:
    """Shade between two curves (`step`, `mean`) at the steps both have; thin edges."""
    both = lo[["step", "mean"]].merge(hi[["step", "mean"]], on="step", suffixes=("_lo", "_hi"))
    ax.fill_between(
        both["step"], both["mean_lo"], both["mean_hi"], color=color, alpha=0.25, lw=0, label=label
    )
    for edge in (lo, hi):
        ax.plot(edge["step"], edge["mean"], color=color, lw=0.7)


def _draw_landscape(
    table: pd.DataFrame,
    figure_id: str,
    variants: Sequence[str],
    panels: dict[str, str],
    data: pd.DataFrame,
    title: str,
) -> Figure:
    runs = select_dln_runs(table, figure_id, variants, lrs=(LR,))
    # Three panels side by side (Fig. 10, as Fig. 4); four in two rows (Fig. 13).
    ncols = len(panels) if len(panels) <= 3 else 2
    nrows = -(-len(panels) // ncols)
    fig = new_figure(figsize=(4.3 * ncols, 3.6 * nrows + 0.6), layout="constrained")
    axes = fig.subplots(nrows, ncols, sharex=True, squeeze=False).flatten()
    for ax, (quantity, panel) in zip(axes, panels.items(), strict=True):
        name, ylabel, metrics = QUANTITIES[quantity]
        rows = data[data["panel"] == panel]
        for variant in variants:
            label, color = LABELS[variant], COLORS[variant]
            if len(metrics) == 2:
                lo = rows[rows["series"] == f"{label}, min"]
                hi = rows[rows["series"] == f"{label}, max"]
                _shade_band(ax, lo, hi, label, color)
            else:
                plot_band(ax, rows[rows["series"] == label], label, color)
        ax.set(title=f"({panel}) {name}", ylabel=ylabel, yscale="log")
        if ax.get_subplotspec().is_last_row():
            ax.set_xlabel("training step")
        ax.legend(fontsize=7)
    bands = [f"({p})" for q, p in panels.items() if len(QUANTITIES[q][2]) == 2]
    lines = [f"({p})" for q, p in panels.items() if len(QUANTITIES[q][2]) == 1]
    suptitle(
        fig,
        title,
        runs,
        band=f"shaded {', '.join(bands)}: min..max over eta, {', '.join(lines)}: min..max over seeds",
    )
    return fig


def fig10_data(table: pd.DataFrame) -> pd.DataFrame:
    """Fig. 10's numbers: panels a (loss band), b (gradient-predictiveness band), c (beta_eff) of
    the standard and the BN net at lr 1e-6. ValueError naming what is missing or mixed."""
    return _landscape_data(table, FIG10_ID, STANDARD_BN, FIG10_PANELS)


def fig10_draw(table: pd.DataFrame) -> Figure:
    """Fig. 10: `fig10_data(table)` in three panels."""
    return _draw_landscape(
        table,
        FIG10_ID,
        STANDARD_BN,
        FIG10_PANELS,
        fig10_data(table),
        "Santurkar et al. 2018, Fig. 10 (Fig. 4 for the DLN), lr 1e-6: landscape along the "
        "gradient, eta in [1/100, 30] x lr",
    )


def fig13_data(table: pd.DataFrame) -> pd.DataFrame:
    """Fig. 13's numbers: panels a (training loss), b (loss band), c (gradient-predictiveness
    band), d (beta_eff) of the standard, BN, l1, l2 and l_inf nets at lr 1e-6."""
    return _landscape_data(table, FIG13_ID, FIG13_VARIANTS, FIG13_PANELS)


def fig13_draw(table: pd.DataFrame) -> Figure:
    """Fig. 13: `fig13_data(table)` in four panels."""
    return _draw_landscape(
        table,
        FIG13_ID,
        FIG13_VARIANTS,
        FIG13_PANELS,
        fig13_data(table),
        "Santurkar et al. 2018, Fig. 13, DLN, lr 1e-6: l_p normalisation, training loss and "
        "landscape along the gradient",
    )


# --- claims ---------------------------------------------------------------------------------------


def _window_mean(rows: pd.DataFrame, quantity: str) -> tuple[float, int]:
    """One run's mean over the probed steps of the window, and how many non-finite values went
    into it (counted as blown up: +inf). The loss band's width is loss_max - loss_min per step."""
    if quantity == "loss_band":
        wide = rows.pivot(index="step", columns="metric", values="value")
        lo_name, hi_name = QUANTITIES["loss_band"][2]
        if lo_name not in wide or hi_name not in wide:
            raise InsufficientData(f"run {rows['run_dir'].iloc[0]} lacks {lo_name} or {hi_name}")
        lo, hi = wide[lo_name].to_numpy(float), wide[hi_name].to_numpy(float)
        bad = int((~np.isfinite(lo)).sum() + (~np.isfinite(hi)).sum())
        width = blown_up_as_inf(np.where(np.isfinite(hi) & np.isfinite(lo), hi - lo, np.inf))
        return float(np.mean(width)), bad
    values = rows["value"].to_numpy(float)
    return float(np.mean(blown_up_as_inf(values))), int((~np.isfinite(values)).sum())


# What a claim's measure averages, per quantity (its detail names it).
MEASURED = {
    "loss_band": "loss band width loss_max - loss_min",
    "grad_band": "grad_diff_max",
    "beta_eff": "beta_eff",
}


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def measure_smaller_than_standard(
    quantity: str, variants: Sequence[str]
) -> Callable[[pd.DataFrame, Claim], Measurement]:
    """A measure: per seed and per normalised `variant`, the ratio of the standard net's mean (over
    the window's probed steps) of `quantity` to the variant's; value: the smallest ratio; passed
    iff every ratio reaches the threshold. A walk that blew up counts as +inf (an unbounded
    landscape): the standard net blowing up counts for the claim, the normalised net's against
    it, both blowing up (inf/inf) against it."""

    def measure(table: pd.DataFrame, claim: Claim) -> Measurement:
        sel = select_claim_runs(table, claim, ("none", *variants))
        means = {(v, s): _window_mean(rows, quantity) for (_, v, s), rows in sel.items()}
        ratios = {
            v: [ratio(means[("none", s)][0], means[(v, s)][0]) for s in claim.seeds]
            for v in variants
        }
        parts = [
            f"{MEASURED[quantity]} (mean over probed steps), Standard "
            + "/".join(_fmt(means[("none", s)][0]) for s in claim.seeds)
        ]
        for v in variants:
            parts.append(
                f"{LABELS[v]} {'/'.join(_fmt(means[(v, s)][0]) for s in claim.seeds)}, "
                f"Standard/{LABELS[v]} x{'/'.join(_fmt(r) for r in ratios[v])}"
            )
        parts[-1] += f" (seeds {'/'.join(map(str, claim.seeds))})"
        bad = {v: sum(means[(v, s)][1] for s in claim.seeds) for v in ("none", *variants)}
        if any(bad.values()):
            parts.append(
                "non-finite values counted as blown up (+inf): "
                + ", ".join(f"{LABELS[v]} {n}" for v, n in bad.items())
            )
        parts.append(window_note(claim, sel.values()))
        every = [r for rs in ratios.values() for r in rs]
        worst = float(np.min(every))  # nan (both blew up) propagates: no pass
        passed = all(r >= claim.threshold for r in every)
        return Measurement(value=worst, detail="; ".join(parts), passed=passed)

    return measure


# Headline claim 4: "up to two orders of magnitude" early in training. "Up to" names the peak
# gap; a mean over the early window sits below the peak, so the declared threshold is one order
# of magnitude (x10), in every seed. The early window is steps 0..2000, the first fifth of the
# 10,000 steps, where the paper's curves part most.
EARLY = (0, 2000)
FIG10_COMMON = {"figure": FIG10_ID, "window": EARLY, "threshold": 10.0, "seeds": (0, 1, 2)}
FIG10_CLAIMS = [
    Claim(
        id="santurkar2018/fig10_bn_smaller_loss_band",
        claim="BN's loss band along the gradient is at least 10x narrower than the standard net's "
        "early in training",
        paper_says=(
            "Sec. 3.2, Fig. 10 (Fig. 4(a) for the DLN): BN's loss varies far less along the "
            "gradient, by up to two orders of magnitude early in training"
        ),
        metric="landscape/loss_*",
        measure=measure_smaller_than_standard("loss_band", ("batch",)),
        **FIG10_COMMON,
    ),
    Claim(
        id="santurkar2018/fig10_bn_smaller_grad_diff",
        claim="BN's largest gradient change along the gradient is at least 10x smaller than the "
        "standard net's early in training",
        paper_says=(
            "Sec. 3.2, Fig. 10 (Fig. 4(b) for the DLN): BN's gradients are more predictive, the "
            "gap up to two orders of magnitude early in training"
        ),
        metric="landscape/grad_diff_max",
        measure=measure_smaller_than_standard("grad_band", ("batch",)),
        **FIG10_COMMON,
    ),
    Claim(
        id="santurkar2018/fig10_bn_smaller_beta_eff",
        claim="BN's effective beta-smoothness is at least 10x smaller than the standard net's "
        "early in training",
        paper_says=(
            "Sec. 3.2, Fig. 10 (Fig. 4(c) for the DLN): BN's effective beta-smoothness is far "
            "smaller, by up to two orders of magnitude early in training"
        ),
        metric="landscape/beta_eff",
        measure=measure_smaller_than_standard("beta_eff", ("batch",)),
        **FIG10_COMMON,
    ),
]

FIG13_CLAIMS = [
    # Headline claim 5: l_p normalisations smooth the landscape as BN does. Held to Fig. 10's
    # bar for BN (x10 on beta_eff over steps 0..2000, every seed), for each of l1, l2 and l_inf.
    Claim(
        id="santurkar2018/fig13_lp_smooths_like_bn",
        figure=FIG13_ID,
        claim="Each l_p normalisation (l1, l2, l_inf) makes the DLN's effective beta-smoothness at "
        "least 10x smaller than the standard net's early in training, as BN does",
        paper_says=("Sec. 3.3, Fig. 13: l_p normalisations smooth the DLN's landscape as BN does"),
        metric="landscape/beta_eff",
        window=EARLY,
        threshold=10.0,
        seeds=(0, 1, 2),
        measure=measure_smaller_than_standard("beta_eff", LP_VARIANTS),
    ),
]

FIG10 = FigureSpec(
    id=FIG10_ID,
    title="Santurkar et al. 2018, Fig. 10 (DLN, loss landscape: Fig. 4 for the DLN)",
    metrics=(LANDSCAPE_GLOB,),
    data=fig10_data,
    draw=fig10_draw,
    claims=FIG10_CLAIMS,
)

FIG13 = FigureSpec(
    id=FIG13_ID,
    title="Santurkar et al. 2018, Fig. 13 (DLN, l_p normalisation: loss and landscape)",
    metrics=(LOSS, LANDSCAPE_GLOB),
    data=fig13_data,
    draw=fig13_draw,
    claims=FIG13_CLAIMS,
)
