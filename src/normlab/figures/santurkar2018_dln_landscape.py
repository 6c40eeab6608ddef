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

`plot_data` gives the plotted numbers (`normlab.figures.DATA_COLUMNS`, then `n_nonfinite`): in a
band panel, series `"<norm>, min"` and `"<norm>, max"` whose `mean` are the shaded band's edges
(their `min`/`max` columns are the spread over seeds, written, not drawn); in the other panels
series `"<norm>"`. A point where some seed's walk blew up (inf or nan at a large eta: the standard
net early in training) has no mean, min or max (NaN; `n_nonfinite` counts the seeds): the line and
the band leave a gap there and a '^' at the top of the panel, in the norm's colour, marks it
(legend: "blew up (inf)"). No point averages fewer seeds than the others.

Claims: per seed, the ratio Standard / normalised of a quantity at each probed step of the early
window, and the median of those ratios over the window (`measure_smaller_than_standard`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from normlab.claims import Claim, InsufficientData, Measurement, window_note
from normlab.figures import N_NONFINITE, FigureSpec, new_figure
from normlab.figures.santurkar2018_common import (
    COLORS,
    LABELS,
    LP_VARIANTS,
    LR,
    STANDARD_BN,
    VARIANT,
    legend_nonfinite,
    lower_median,
    mark_nonfinite,
    metric_band,
    needed_evals,
    plot_band_marked,
    select_claim_runs,
    select_figure_runs,
    step_ratios,
    suptitle,
    tidy,
)

FIG10_ID = "santurkar2018/dln_fig10_landscape"
FIG13_ID = "santurkar2018/dln_fig13_lp_landscape"
FIG13_VARIANTS = ("none", "batch", *LP_VARIANTS)
LOSS = "train/loss"
LANDSCAPE_GLOB = "landscape/*"
EVERY = "probe.landscape.every_n_steps"  # the landscape probe's cadence (run config)
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
    runs = select_figure_runs(table, figure_id, variants, lrs=(LR,))
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
    return tidy(frames)


def _shade_band(ax: Axes, lo: pd.DataFrame, hi: pd.DataFrame, label: str, color: str) -> bool:
    """Shade between two curves (`step`, `mean`), thin edges; a gap where either edge is NaN (a
    seed blew up there), marked at the top of the axes (`mark_nonfinite`). Whether any was."""
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
    return mark_nonfinite(ax, both.loc[blown, "step"], color, label)


def _draw_landscape(
    table: pd.DataFrame,
    figure_id: str,
    variants: Sequence[str],
    panels: dict[str, str],
    data: pd.DataFrame,
    title: str,
) -> Figure:
    runs = select_figure_runs(table, figure_id, variants, lrs=(LR,))
    # Three panels side by side (Fig. 10, as Fig. 4); four in two rows (Fig. 13).
    ncols = len(panels) if len(panels) <= 3 else 2
    nrows = -(-len(panels) // ncols)
    fig = new_figure(figsize=(4.3 * ncols, 3.6 * nrows + 0.6), layout="constrained")
    axes = fig.subplots(nrows, ncols, sharex=True, squeeze=False).flatten()
    marked = []
    for ax, (quantity, panel) in zip(axes, panels.items(), strict=True):
        name, ylabel, metrics = QUANTITIES[quantity]
        rows = data[data["panel"] == panel]
        blown = False
        for variant in variants:
            label, color = LABELS[variant], COLORS[variant]
            if len(metrics) == 2:
                lo = rows[rows["series"] == f"{label}, min"]
                hi = rows[rows["series"] == f"{label}, max"]
                blown |= _shade_band(ax, lo, hi, label, color)
            else:
                blown |= plot_band_marked(ax, rows[rows["series"] == label], label, color)
        ax.set(title=f"({panel}) {name}", ylabel=ylabel, yscale="log")
        if ax.get_subplotspec().is_last_row():
            ax.set_xlabel("training step")
        ax.legend(fontsize=7)
        if blown:
            marked.append(ax)
    legend_nonfinite(marked, fontsize=7)
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


def _per_step(rows: pd.DataFrame, quantity: str) -> pd.Series:
    """One run's `quantity` at each probed step of the window (index: step), non-finite where
    the walk blew up. The loss band's width is loss_max - loss_min, inf where either is
    non-finite; a step counts only where both were logged."""
    if quantity != "loss_band":
        return rows.set_index("step")["value"].astype(float).sort_index()
    lo_name, hi_name = QUANTITIES["loss_band"][2]
    wide = rows[rows["metric"].isin([lo_name, hi_name])].pivot(
        index="step", columns="metric", values="value"
    )
    if lo_name not in wide or hi_name not in wide:
        raise InsufficientData(f"run {rows['run_dir'].iloc[0]} lacks {lo_name} or {hi_name}")
    logged = rows.groupby("step")["metric"].agg(lambda m: {lo_name, hi_name} <= set(m))
    wide = wide[logged.reindex(wide.index).to_numpy(dtype=bool)].sort_index()
    lo, hi = wide[lo_name].to_numpy(float), wide[hi_name].to_numpy(float)
    width = np.where(np.isfinite(lo) & np.isfinite(hi), hi - lo, np.inf)
    return pd.Series(width, index=wide.index)


# What a claim's measure compares, per quantity (its detail names it).
MEASURED = {
    "loss_band": "loss band width loss_max - loss_min",
    "grad_band": "grad_diff_max",
    "beta_eff": "beta_eff",
}


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def measure_smaller_than_standard(
    quantity: str, variants: Sequence[str], lr: float = LR
) -> Callable[[pd.DataFrame, Claim], Measurement]:
    """A measure on the runs at rate `lr` (the DLN's 1e-6 by default; the VGG figures use it at
    0.1): per seed and normalised `variant`, the ratio Standard / variant of `quantity`
    at each probed step of the window (`step_ratios`: a walk that blew up is +inf for the standard
    net, 0 for the normalised one, and 0 when both did), then the median of those ratios over the
    window (`lower_median`); value: the smallest median; passed iff every median reaches the
    threshold. The detail gives the medians per seed and how many walks blew up per norm.
    InsufficientData when a run lacks a probed step of the window (`needed_evals`)."""

    def measure(table: pd.DataFrame, claim: Claim) -> Measurement:
        sel = select_claim_runs(table, claim, ("none", *variants), lrs=(lr,), every=EVERY)
        per_step = {(v, s): _per_step(rows, quantity) for (_, v, s), rows in sel.items()}
        medians: dict[str, list[float]] = {v: [] for v in variants}
        both_blown = dict.fromkeys(variants, 0)
        short = []
        for v in variants:
            for s in claim.seeds:
                paired = pd.concat(
                    {"std": per_step[("none", s)], "norm": per_step[(v, s)]}, axis=1, join="inner"
                )
                need = max(needed_evals(sel[(lr, n, s)], claim, EVERY) for n in ("none", v))
                if len(paired) < need:
                    short.append(
                        f"{LABELS[v]} seed {s}: {MEASURED[quantity]} at {len(paired)} probed "
                        f"step(s) of both runs in steps {claim.window[0]}-{claim.window[1]}, "
                        f"need {need}"
                    )
                    continue
                std, norm = paired["std"].to_numpy(), paired["norm"].to_numpy()
                medians[v].append(lower_median(step_ratios(std, norm)))
                both_blown[v] += int((~np.isfinite(std) & ~np.isfinite(norm)).sum())
        if short:
            raise InsufficientData("; ".join(short))
        blown = {
            v: sum(int((~np.isfinite(per_step[(v, s)].to_numpy())).sum()) for s in claim.seeds)
            for v in ("none", *variants)
        }
        parts = [
            f"ratio Standard/normalised of {MEASURED[quantity]} per probed step, median over the "
            f"window (seeds {'/'.join(map(str, claim.seeds))}): "
            + ", ".join(
                f"Standard/{LABELS[v]} x{'/'.join(_fmt(m) for m in medians[v])}" for v in variants
            ),
            "walks that blew up (non-finite; Standard's count as +inf, a normalised net's as 0): "
            + ", ".join(f"{LABELS[v]} {n}" for v, n in blown.items()),
        ]
        if any(both_blown.values()):
            parts.append(
                "steps where both blew up (not comparable, counted against): "
                + ", ".join(f"{LABELS[v]} {n}" for v, n in both_blown.items())
            )
        parts.append(window_note(claim, sel.values()))
        every = [m for ms in medians.values() for m in ms]
        worst = float(np.min(every))
        passed = all(m >= claim.threshold for m in every)
        return Measurement(value=worst, detail="; ".join(parts), passed=passed)

    return measure


# Headline claim 4: "up to two orders of magnitude" early in training. "Up to" names the peak
# gap; a typical step of the early window sits below the peak, so the declared threshold is one
# order of magnitude (x10), in every seed. The early window is steps 0..2000, the first fifth of
# the 10,000 steps, where the paper's curves part most. The measure, per seed: the ratio
# Standard / BN at each probed step of the window (21 at the presets' cadence of 100 steps: every
# one is needed), then the median of those ratios. The median, not the mean of each net's values:
# the standard net's walk overflows (inf) at its largest step sizes early in training, and one
# overflowed step would make a mean inf and decide the claim alone; a median of x10 needs more
# than half the window's steps to show the gap (robust to a few overflows either way). A step where the standard net blew up counts as a large ratio
# (+inf), one where the normalised net blew up as 0, and one where both did as 0 (it compares
# nothing: not counted for the claim).
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
    # bar for BN, for each of l1, l2 and l_inf: per seed, the median over the probed steps of
    # steps 0..2000 of the per-step ratio Standard / l_p of beta_eff at least x10 (the median, so
    # that one overflowed walk does not decide; blown-up walks read as in Fig. 10's claims).
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
