"""Santurkar et al. 2018, Fig. 3(b): internal covariate shift (ICS, Def. 2.1) in the DLN.

Rows: lr 1e-6 and lr 1e-7. Columns: the training loss (log y), the ICS as the l2 difference
||G - G'||_2 (log y) and as the cosine of G and G', for layers #9 and #17 (`ics/layer{9,17}/l2`,
`ics/layer{9,17}/cos`, measured every 100 steps). G is a layer's gradient at step t, G' the same
layer's gradient once every earlier layer took step t's update (Sec. 2.2). Lines: Standard (black)
and BN (red), as the loss panels' legends say; layer #9 solid, layer #17 dashed, as the ICS
panels' legends say. Each line is the mean over seeds, its band min..max.

The plotted data: panel `"lr 1e-6: training loss"`, `"lr 1e-6: ICS l2"`, `"lr 1e-6: ICS cosine"`
(and the same for lr 1e-7); series `"Standard"`, `"BN"` in the loss panels, `"Standard, layer #9"`,
..., `"BN, layer #17"` in the ICS panels. A point where some seed logged inf or nan (a nan cosine:
G or G' zero) has no mean (NaN, counted in `n_nonfinite`) and is marked by a '^' at the top of the
panel. Drawn from the figure's own sweep or from `santurkar2018/dln_suite`.

Claims (headline claim 3): BN does not reduce ICS; the standard DLN has almost none (cosine near 1)
while BN's G and G' are nearly uncorrelated. Measured on every probe of the window, each finite:
a run missing one, or with a nan cosine, leaves the claims without a verdict (insufficient data).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from normlab.papers.santurkar2018.protocol import (
    DLN_ICS_LAYERS,
    DLN_LR,
    DLN_LR_SLOW,
    DLN_STEPS,
    DLN_SUITE,
    STANDARD_BN,
)
from normlab.report import Claim, FigureSpec, InsufficientData, Line, Measurement, Panel
from normlab.report.claims import needed_evals, select_claim_runs, window_note
from normlab.report.runs import COLORS, LABELS, lr_text, model_text

ID = "santurkar2018/dln_fig3b_ics"
LRS = (DLN_LR, DLN_LR_SLOW)
LAYER_STYLES = dict(zip(DLN_ICS_LAYERS, ("-", "--"), strict=True))
LOSS = "train/loss"
COS_GLOB = "ics/layer*/cos"


def ics_metric(layer: int, stat: str) -> str:
    return f"ics/layer{layer}/{stat}"


def _loss_panel(lr: float) -> Panel:
    lines = tuple(Line(v, LOSS, LABELS[v], COLORS[v], lr=lr) for v in STANDARD_BN)
    return Panel(f"lr {lr_text(lr)}: training loss", "training loss", lines, yscale="log")


def _ics_panel(lr: float, stat: str, quantity: str, ylabel: str, yscale: str) -> Panel:
    """The ICS of both layers, both norms. Its legend names the layers by line style (on the
    standard net's lines); the loss panel's names the norms by colour: two entries each, not
    four, so that a legend covers little of the curves."""
    lines = tuple(
        Line(
            v,
            ics_metric(layer, stat),
            f"{LABELS[v]}, layer #{layer}",
            COLORS[v],
            lr=lr,
            style=LAYER_STYLES[layer],
            legend=f"layer #{layer}" if v == "none" else f"_{LABELS[v]}, layer #{layer}",
        )
        for v in STANDARD_BN
        for layer in DLN_ICS_LAYERS
    )
    return Panel(f"lr {lr_text(lr)}: {quantity}", ylabel, lines, yscale=yscale)


def _panels(lr: float) -> tuple[Panel, ...]:
    return (
        _loss_panel(lr),
        _ics_panel(lr, "l2", "ICS l2", "||G - G'||_2", "log"),
        _ics_panel(lr, "cos", "ICS cosine", "cos(G, G')", "linear"),
    )


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
    sel = select_claim_runs(table, claim, STANDARD_BN, lrs=LRS)
    lo, hi = claim.window
    means: dict[tuple[float, str, int, int], float] = {}
    missing, nonfinite = [], []
    for (lr, variant, seed), rows in sel.items():
        run = rows["run_dir"].iloc[0]
        # The claim's metric is the cosine; the l2 of the same runs and window comes from the table.
        source = rows if stat == "cos" else table[table["run_dir"] == run]
        need = needed_evals(rows, claim)
        for layer in DLN_ICS_LAYERS:
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
            for layer in DLN_ICS_LAYERS
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
        for layer in DLN_ICS_LAYERS:
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
        for layer in DLN_ICS_LAYERS
        for s in claim.seeds
    ]
    detail = (
        f"mean cos(G, G'), Standard: {_per_cell(means, 'none', claim.seeds)}; "
        f"BN: {_per_cell(means, 'batch', claim.seeds)}; BN below Standard in "
        f"{sum(d < claim.threshold for d in diffs)} of {len(diffs)} (lr, layer, seed); "
        f"{_l2_ratio_text(table, claim)}; {NO_NONFINITE}; {window_note(claim, sel.values())}"
    )
    worst = max(diffs)
    per_seed = {  # each seed's largest difference over (lr, layer), as `worst` is over all
        s: max(
            means[(lr, "batch", layer, s)] - means[(lr, "none", layer, s)]
            for lr in LRS
            for layer in DLN_ICS_LAYERS
        )
        for s in claim.seeds
    }
    return Measurement(
        value=worst, detail=detail, passed=worst < claim.threshold, per_seed=per_seed
    )


def measure_cos_bound(variant: str, at_least: bool):
    """A measure: `variant`'s mean cosine at least (or at most) the threshold in every (lr,
    layer, seed); value: the worst mean."""

    def measure(table: pd.DataFrame, claim: Claim) -> Measurement:
        means, sel = _layer_means(table, claim, "cos")
        values = [
            means[(lr, variant, layer, s)]
            for lr in LRS
            for layer in DLN_ICS_LAYERS
            for s in claim.seeds
        ]
        worst = min(values) if at_least else max(values)
        passed = worst >= claim.threshold if at_least else worst <= claim.threshold
        detail = (
            f"{LABELS[variant]} mean cos(G, G') {_per_cell(means, variant, claim.seeds)} "
            f"(mean over seeds {'/'.join(map(str, claim.seeds))}); "
            f"{'lowest' if at_least else 'highest'} per (lr, layer, seed) {worst:.3f}; "
            f"{NO_NONFINITE}; {window_note(claim, sel.values())}"
        )
        pick = min if at_least else max  # each seed's worst (lr, layer), as `worst` is
        per_seed = {
            s: pick(means[(lr, variant, layer, s)] for lr in LRS for layer in DLN_ICS_LAYERS)
            for s in claim.seeds
        }
        return Measurement(value=worst, detail=detail, passed=passed, per_seed=per_seed)

    return measure


COMMON = {
    "figure": ID,
    "metric": COS_GLOB,
    # Every probe of the run (steps 0..9900: the last probe of 10,000 steps at the ICS probe's
    # 100): the paper's curves span all of training. Each run must hold all of them (100 at the
    # presets' cadence, `probe.ics.every_n_steps`), each finite: a run with fewer, or with a nan
    # cosine, is insufficient data (`_layer_means`).
    "window": (0, DLN_STEPS - 100),
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
        measure=measure_cos_bound("none", at_least=True),
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
        measure=measure_cos_bound("batch", at_least=False),
        **COMMON,
    ),
]

FIGURE = FigureSpec(
    id=ID,
    title="Santurkar et al. 2018, Fig. 3(b), DLN: ICS of layers "
    + " and ".join(f"#{layer}" for layer in DLN_ICS_LAYERS),
    variants=STANDARD_BN,
    lrs=LRS,
    panels=(*_panels(DLN_LR), *_panels(DLN_LR_SLOW)),
    claims=CLAIMS,
    ncols=3,
    suite=DLN_SUITE,
    describe=model_text,
)
