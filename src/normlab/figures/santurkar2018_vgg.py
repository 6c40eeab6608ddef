"""Santurkar et al. 2018 on VGG / CIFAR-10: Fig. 1, 2, 3(a), 4, 5(a), 8 and 12 (Fig. 6, the
histograms: `santurkar2018_vgg_hist`), with their claims.

Every figure is a `PanelFigure` (`santurkar2018_vgg_common`): panels of lines, each line one metric
of the runs of one norm at one rate, the mean over seeds with a min..max band; a run that diverged
ends its line where it died, marked 'X'. Every figure draws from its own preset's sweep or from
`santurkar2018/vgg_suite`, at paper scale or at `scale=cpu` (the title says which). The plotted
numbers (`FigureSpec.data`): panel = the panel's title, series = the line's label, then
`normlab.figures.DATA_COLUMNS` and `n_nonfinite`.

The claims are declared on the paper's 15,000 steps; their windows scale with the runs' length
(`santurkar2018_vgg_common.scaled`). Thresholds are fixed here, before any run:
- accuracies compare means over the last 1/15 of training (steps 14,000-15,000), in accuracy
  points (0.05 = 5 points);
- landscape claims use the DLN figures' measure (`santurkar2018_dln_landscape.
  measure_smaller_than_standard`): per seed, the ratio standard / normalised at each probed step,
  its (lower) median over the first third of training (steps 0-5,000, where the paper reports the
  gap), at least 10 in every seed ("two orders of magnitude" at its peak, read as one for a typical
  step);
- ICS and activation claims compare means over every probe of the run;
- every claim needs every evaluation of its window in every run (the metric's cadence).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from normlab.claims import Claim, Measurement
from normlab.figures import FigureSpec
from normlab.figures.santurkar2018_common import COLORS, LABELS, LP_VARIANTS, STANDARD_BN
from normlab.figures.santurkar2018_dln_landscape import measure_smaller_than_standard
from normlab.figures.santurkar2018_vgg_common import (
    ACC_TEST,
    ACC_TRAIN,
    LR,
    LR_FAST,
    LR_SLOW,
    STATUSES,
    Line,
    Panel,
    PanelFigure,
    norm_lines,
    per_seed,
    provisional,
    seeds_mean,
)

SEEDS = (0, 1, 2)
NOISY = ("none", "batch", "noisy_batch")
ALL_NORMS = ("none", "batch", *LP_VARIANTS)
FINAL = (14_000, 15_000)  # the last 1/15 of training
EARLY = (0, 5_000)  # the first third: where the paper reports the landscape gap
WHOLE = (0, 15_000)
PERCENTILES = (("p15", "15%", ":"), ("p50", "50%", "-"), ("p85", "85%", "--"))


def _percentile_panels(layers: tuple[int, ...], variants: tuple[str, ...]) -> list[Panel]:
    """Per layer and norm: the 15th, 50th and 85th percentiles of all the layer's activations (every
    channel and position pooled), at lr 0.1."""
    return [
        Panel(
            f"{LABELS[v]}, layer #{layer}, all channels, lr {LR:g}",
            "activation (ReLU input)",
            tuple(
                Line(v, LR, f"act/layer{layer}/{p}", label, COLORS[v], style)
                for p, label, style in PERCENTILES
            ),
        )
        for layer in layers
        for v in variants
    ]


def _unit_panels(layer: int, unit: int, variants: tuple[str, ...]) -> list[Panel]:
    """Fig. 1(c): one activation (a channel: its values over the batch and positions) of a layer,
    its 15th, 50th and 85th percentiles (the activation probe's `unit`)."""
    return [
        Panel(
            f"{LABELS[v]}, layer #{layer}, channel {unit}, lr {LR:g}",
            "activation (ReLU input)",
            tuple(
                Line(v, LR, f"act/layer{layer}/unit{unit}/{p}", label, COLORS[v], style)
                for p, label, style in PERCENTILES
            ),
        )
        for v in variants
    ]


def _acc_panels(variants: tuple[str, ...], lrs: tuple[float, ...] = (LR,)) -> list[Panel]:
    styles = dict(zip(lrs, ("-", "--", ":"), strict=False))
    lines = {
        metric: tuple(
            line
            for lr in lrs
            for line in norm_lines(
                metric, variants, lr, styles[lr], f", lr {lr:g}" if len(lrs) > 1 else ""
            )
        )
        for metric in (ACC_TRAIN, ACC_TEST)
    }
    return [
        Panel("training accuracy", "train accuracy (batch)", lines[ACC_TRAIN]),
        Panel("test accuracy", "test accuracy", lines[ACC_TEST]),
    ]


def _landscape_panels(variants: tuple[str, ...]) -> list[Panel]:
    def two(metric: str) -> tuple[Line, ...]:
        return (
            *norm_lines(f"landscape/{metric}_max", variants, suffix=" max"),
            *norm_lines(f"landscape/{metric}_min", variants, style="--", suffix=" min"),
        )

    return [
        Panel("(a) loss landscape", "loss along the gradient", two("loss"), "log"),
        Panel("(b) gradient predictiveness", "||grad(w(eta)) - g||_2", two("grad_diff"), "log"),
        Panel(
            "(c) effective beta-smoothness",
            "max ||grad(w(eta)) - g|| / ||eta g||",
            norm_lines("landscape/beta_eff", variants),
            "log",
        ),
    ]


def _ics_panels() -> list[Panel]:
    panels = []
    for lr in (LR, LR_SLOW):
        panels.append(
            Panel(
                f"lr {lr:g}: training accuracy",
                "train accuracy",
                norm_lines(ACC_TRAIN, STANDARD_BN, lr),
            )
        )
        for stat, title, ylabel, yscale in (
            ("l2", "ICS l2", "||G - G'||_2", "log"),
            ("cos", "ICS cosine", "cos(G, G')", "linear"),
        ):
            lines = tuple(
                line
                for layer, style in ((5, "-"), (10, "--"))
                for line in norm_lines(
                    f"ics/layer{layer}/{stat}", STANDARD_BN, lr, style, f", layer #{layer}"
                )
            )
            panels.append(Panel(f"lr {lr:g}: {title}", ylabel, lines, yscale))
    return panels


def _moment_panels() -> list[Panel]:
    quantities = (
        ("mean_change", "mean change between probes"),
        ("var_change", "variance change between probes"),
        ("mean_drift", "mean change from step 0"),
        ("var_drift", "variance change from step 0"),
    )
    return [
        Panel(
            f"layer #{layer}: {title}",
            "mean over units of |change|",
            norm_lines(f"act/layer{layer}/{q}", NOISY),
            "log",
        )
        for layer in (2, 9, 13)
        for q, title in quantities
    ]


FIG1 = PanelFigure(
    id="santurkar2018/vgg_fig1_lr",
    title="Santurkar 2018 Fig. 1: VGG on CIFAR-10, standard vs BN at lr 0.1 and 0.5",
    variants=STANDARD_BN,
    lrs=(LR, LR_FAST),
    panels=(
        *_acc_panels(STANDARD_BN, (LR, LR_FAST)),
        *_percentile_panels((3, 11), STANDARD_BN),
        *_unit_panels(11, 0, STANDARD_BN),
    ),
    ncols=2,
)
FIG2 = PanelFigure(
    id="santurkar2018/vgg_fig2_noisy",
    title='Santurkar 2018 Fig. 2: standard vs BN vs "noisy" BN, lr 0.1',
    variants=NOISY,
    lrs=(LR,),
    panels=(
        *_acc_panels(NOISY),
        Panel("test loss", "test loss", norm_lines("test/loss", NOISY), "log"),
        *_percentile_panels((2, 9, 13), NOISY),
    ),
    ncols=3,
)
FIG3A = PanelFigure(
    id="santurkar2018/vgg_fig3a_ics",
    title="Santurkar 2018 Fig. 3(a): internal covariate shift of VGG layers #5 and #10",
    variants=STANDARD_BN,
    lrs=(LR, LR_SLOW),
    panels=tuple(_ics_panels()),
    ncols=3,
)
FIG4 = PanelFigure(
    id="santurkar2018/vgg_fig4_landscape",
    title="Santurkar 2018 Fig. 4: VGG loss landscape along the gradient, eta in [0.5, 4] x lr",
    variants=STANDARD_BN,
    lrs=(LR,),
    panels=tuple(_landscape_panels(STANDARD_BN)),
    ncols=3,
)
FIG5A = PanelFigure(
    id="santurkar2018/vgg_fig5a_lp",
    title="Santurkar 2018 Fig. 5(a): l_p normalisation on VGG, lr 0.1",
    variants=ALL_NORMS,
    lrs=(LR,),
    panels=tuple(_acc_panels(ALL_NORMS)),
    ncols=2,
)
FIG8 = PanelFigure(
    id="santurkar2018/vgg_fig8_moments",
    title="Santurkar 2018 Fig. 8: per-unit mean and variance shift, standard / BN / noisy BN",
    variants=NOISY,
    lrs=(LR,),
    panels=tuple(_moment_panels()),
    ncols=4,
)
FIG12 = PanelFigure(
    id="santurkar2018/vgg_fig12_lp_landscape",
    title="Santurkar 2018 Fig. 12: landscape of l_p-normalised VGG, lr 0.1",
    variants=ALL_NORMS,
    lrs=(LR,),
    panels=(_acc_panels(ALL_NORMS)[0], *_landscape_panels(ALL_NORMS)),
    ncols=2,
)


# --- claims ---------------------------------------------------------------------------------------


def _pct(x: float) -> str:
    """An accuracy as a percentage; a mean over seeds of which one diverged is -inf."""
    return "diverged (at least one seed)" if x == -np.inf else f"{100 * x:.1f}%"


def _mean(
    table: pd.DataFrame, claim: Claim, variant: str, lr: float = LR, metric: str | None = None
) -> float:
    return seeds_mean(per_seed(table, claim, variant, lr, metric))


@provisional
def measure_bn_higher(table: pd.DataFrame, claim: Claim) -> Measurement:
    bn, std = _mean(table, claim, "batch"), _mean(table, claim, "none")
    detail = f"{claim.metric} BN {_pct(bn)} vs standard {_pct(std)}"
    return Measurement(bn - std, detail, bool(bn - std > claim.threshold))


@provisional
def measure_bn_tolerates_lr05(table: pd.DataFrame, claim: Claim) -> Measurement:
    bn05, std05 = _mean(table, claim, "batch", LR_FAST), _mean(table, claim, "none", LR_FAST)
    bn01 = _mean(table, claim, "batch", LR)
    detail = (
        f"test acc at lr 0.5: BN {_pct(bn05)}, standard {_pct(std05)}; BN at lr 0.1 {_pct(bn01)}"
    )
    passed = bn05 > std05 and bn05 >= bn01 - claim.threshold
    return Measurement(bn05 - std05, detail, bool(passed))


@provisional
def measure_noisy_like_bn(table: pd.DataFrame, claim: Claim) -> Measurement:
    acc = {v: _mean(table, claim, v) for v in NOISY}
    detail = ", ".join(f"{LABELS[v]} {_pct(a)}" for v, a in acc.items())
    gap = acc["noisy_batch"] - acc["batch"]
    return Measurement(gap, f"train acc {detail}", bool(gap >= -claim.threshold))


@provisional
def measure_lp_like_bn(table: pd.DataFrame, claim: Claim) -> Measurement:
    acc = {v: _mean(table, claim, v) for v in ("batch", *LP_VARIANTS)}
    gap = min(acc[v] for v in LP_VARIANTS) - acc["batch"]
    detail = ", ".join(f"{LABELS[v]} {_pct(a)}" for v, a in acc.items())
    return Measurement(gap, f"test acc {detail}", bool(gap >= -claim.threshold))


ICS_POINTS = [(lr, layer) for lr in (LR, LR_SLOW) for layer in (5, 10)]  # Fig. 3(a)


def _ics_means(table: pd.DataFrame, claim: Claim, stat: str) -> dict[tuple, float]:
    return {
        (lr, layer, v): _mean(table, claim, v, lr, f"ics/layer{layer}/{stat}")
        for lr, layer in ICS_POINTS
        for v in STANDARD_BN
    }


@provisional
def measure_bn_cos_not_higher(table: pd.DataFrame, claim: Claim) -> Measurement:
    m = _ics_means(table, claim, "cos")
    gaps = {(lr, i): m[(lr, i, "batch")] - m[(lr, i, "none")] for lr, i in ICS_POINTS}
    detail = "; ".join(
        f"lr {lr:g} #{i}: BN {m[(lr, i, 'batch')]:.3f}, standard {m[(lr, i, 'none')]:.3f}"
        for lr, i in ICS_POINTS
    )
    worst = max(gaps.values())
    return Measurement(worst, f"mean cos(G, G') {detail}", bool(worst <= claim.threshold))


@provisional
def measure_bn_l2_not_smaller(table: pd.DataFrame, claim: Claim) -> Measurement:
    m = _ics_means(table, claim, "l2")
    ratios = {(lr, i): m[(lr, i, "batch")] / m[(lr, i, "none")] for lr, i in ICS_POINTS}
    detail = "; ".join(f"lr {lr:g} #{i}: x{r:.3g}" for (lr, i), r in ratios.items())
    worst = min(ratios.values())
    return Measurement(
        worst, f"BN / standard mean ||G - G'||_2: {detail}", bool(worst >= claim.threshold)
    )


DRIFTS = ("mean_drift", "var_drift")  # from the first probe (step 0)
CHANGES = ("mean_change", "var_change")  # from the previous probe


def _moments(
    table: pd.DataFrame,
    claim: Claim,
    variant: str,
    layers: tuple[int, ...],
    quantities: tuple[str, ...],
) -> dict:
    """Per quantity, the mean over `layers` of the seed-mean of act/layer{i}/<quantity>."""
    return {
        q: float(np.mean([_mean(table, claim, variant, LR, f"act/layer{i}/{q}") for i in layers]))
        for q in quantities
    }


def _drift_ratios(
    table: pd.DataFrame,
    claim: Claim,
    variants: tuple[str, ...],
    layers: tuple[int, ...],
    quantities: tuple[str, str] = DRIFTS,
) -> Measurement:
    """Each variant's moment shift (`quantities`: of the per-unit means and variances) over the
    standard net's; passed iff every ratio reaches the threshold."""
    d = {v: _moments(table, claim, v, layers, quantities) for v in ("none", *variants)}
    ratios = [d[v][q] / d["none"][q] for v in variants for q in quantities]
    layer_text = "/".join(f"#{i}" for i in layers)
    detail = f"layer(s) {layer_text}, mean over probes: " + "; ".join(
        f"{q} " + ", ".join(f"{LABELS[v]} {d[v][q]:.3g}" for v in d) for q in quantities
    )
    worst = min(ratios)
    return Measurement(worst, detail, bool(worst >= claim.threshold))


@provisional
def measure_noisy_less_stable(table: pd.DataFrame, claim: Claim) -> Measurement:
    return _drift_ratios(table, claim, ("noisy_batch",), (2, 9, 13))


@provisional
def measure_noisy_moves_more(table: pd.DataFrame, claim: Claim) -> Measurement:
    return _drift_ratios(table, claim, ("noisy_batch",), (2, 9, 13), CHANGES)


@provisional
def measure_lp_not_stable(table: pd.DataFrame, claim: Claim) -> Measurement:
    return _drift_ratios(table, claim, LP_VARIANTS, (11,))


LANDSCAPE = {  # claim key -> (the DLN measure's quantity, claim text, metric)
    "loss_band": ("loss_band", "The loss band (max - min along the gradient)", "landscape/loss_*"),
    "grad_pred": ("grad_band", "The gradient-predictiveness band (max)", "landscape/grad_diff_max"),
    "beta": ("beta_eff", "The effective beta-smoothness", "landscape/beta_eff"),
}


def _claim(
    key: str,
    figure: str,
    claim: str,
    paper: str,
    metric: str,
    window: tuple[int, int],
    threshold: float,
    measure: Callable[[pd.DataFrame, Claim], Measurement],
) -> Claim:
    return Claim(
        id=f"santurkar2018/{key}",
        figure=figure,
        claim=claim,
        paper_says=paper,
        metric=metric,
        window=window,
        threshold=threshold,
        seeds=SEEDS,
        measure=measure,
    )


def _landscape_claims(figure: str, key: str, variants: tuple[str, ...]) -> list[Claim]:
    who = "BN's" if variants == ("batch",) else "each l_p net's"
    paper = "Sec. 3.2, Fig. 4: BN's landscape is far smoother, close to 100x early in training"
    if variants != ("batch",):
        paper = "Sec. 3.3, Fig. 12: l_p normalisations smooth the landscape as BN does"
    return [
        _claim(
            f"{key}_{name}",
            figure,
            f"{what} of the standard net is at least 10x {who} (per seed, median over the probed "
            "steps of the first third of training of the per-step ratio)",
            paper,
            metric,
            EARLY,
            10.0,
            provisional(measure_smaller_than_standard(quantity, variants, lr=LR)),
        )
        for name, (quantity, what, metric) in LANDSCAPE.items()
    ]


CLAIMS_FIG1 = [
    _claim(
        "vgg_fig1_bn_higher_test_acc",
        FIG1.id,
        "At lr 0.1 the BN net ends with a higher test accuracy than the standard net",
        "App. A.1, Fig. 1: test accuracy 83% with BN, 80% without",
        ACC_TEST,
        FINAL,
        0.0,
        measure_bn_higher,
    ),
    _claim(
        "vgg_fig1_bn_trains_faster",
        FIG1.id,
        "At lr 0.1 the BN net's training accuracy over the first third of training is higher "
        "than the standard net's",
        "Sec. 1, Fig. 1(a): BN nets train faster",
        ACC_TRAIN,
        EARLY,
        0.0,
        measure_bn_higher,
    ),
    _claim(
        "vgg_fig1_bn_tolerates_lr05",
        FIG1.id,
        "At lr 0.5 BN trains (test accuracy within 5 points of its lr 0.1's) and beats the "
        "standard net, which does worse or diverges",
        "Sec. 1, Fig. 1: BN nets tolerate lr 0.5; the standard net does worse or diverges",
        ACC_TEST,
        FINAL,
        0.05,
        measure_bn_tolerates_lr05,
    ),
]
CLAIMS_FIG2 = [
    _claim(
        "vgg_fig2_noisy_trains_like_bn",
        FIG2.id,
        "Noisy BN ends with a training accuracy within 5 points of BN's",
        "Sec. 2.1, Fig. 2: noisy BN trains about as well as BN",
        ACC_TRAIN,
        FINAL,
        0.05,
        measure_noisy_like_bn,
    ),
]
CLAIMS_FIG3A = [
    _claim(
        "vgg_fig3a_bn_cos_not_higher",
        FIG3A.id,
        "BN does not make G and G' more aligned: BN's mean cos(G, G') is at most the standard "
        "net's + 0.02 at both rates and layers",
        "Sec. 2.2, Fig. 3(a): BN nets show similar or lower cosine (BN does not reduce ICS)",
        "ics/layer*/cos",
        WHOLE,
        0.02,
        measure_bn_cos_not_higher,
    ),
    _claim(
        "vgg_fig3a_bn_l2_not_smaller",
        FIG3A.id,
        "BN does not shrink ||G - G'||_2: BN's mean is at least 0.8x the standard net's at both "
        "rates and layers",
        "Sec. 2.2, Fig. 3(a): BN nets show similar or larger l2 difference",
        "ics/layer*/l2",
        WHOLE,
        0.8,
        measure_bn_l2_not_smaller,
    ),
]
CLAIMS_FIG4 = _landscape_claims(FIG4.id, "vgg_fig4_bn_smoother", ("batch",))
CLAIMS_FIG5A = [
    _claim(
        "vgg_fig5a_lp_trains_like_bn",
        FIG5A.id,
        "l_1, l_2 and l_inf each end with a test accuracy within 5 points of BN's",
        "Sec. 3.3, Fig. 5(a): l_p normalisation performs as well as or better than BN",
        ACC_TEST,
        FINAL,
        0.05,
        measure_lp_like_bn,
    ),
]
CLAIMS_FIG6 = [
    _claim(
        "vgg_fig6_lp_not_stable",
        "santurkar2018/vgg_fig6_hist",
        "The l_p nets' layer #11 per-unit means and variances drift from step 0 at least as much "
        "as the standard net's (mean over probes)",
        "Sec. 3.3, Fig. 6: l_p normalisations give no distributional stability (larger shift "
        "than the standard net)",
        "act/layer11/*_drift",
        WHOLE,
        1.0,
        measure_lp_not_stable,
    ),
]
CLAIMS_FIG8 = [
    _claim(
        "vgg_fig8_noisy_less_stable",
        FIG8.id,
        "Noisy BN's per-unit means and variances drift from step 0 at least as much as the "
        "standard net's (layers #2, #9, #13, mean over probes)",
        "Sec. 2.1, Fig. 8: noisy BN's activations are less stable than the standard net's",
        "act/layer*/*_drift",
        WHOLE,
        1.0,
        measure_noisy_less_stable,
    ),
    # Added after seeing the CPU-scale Fig. 8 (README): the noise is bounded, so noisy BN's drift
    # from step 0 stays put while the standard net's grows; its change from one probe to the next
    # is the other half of the figure and of "less stable".
    _claim(
        "vgg_fig8_noisy_moves_more_between_probes",
        FIG8.id,
        "Noisy BN's per-unit means and variances change between consecutive probes at least as "
        "much as the standard net's (layers #2, #9, #13, mean over probes)",
        "Sec. 2.1, Fig. 8: noisy BN's activations are less stable than the standard net's",
        "act/layer*/*_change",
        WHOLE,
        1.0,
        measure_noisy_moves_more,
    ),
]
CLAIMS_FIG12 = _landscape_claims(FIG12.id, "vgg_fig12_lp_smoother", LP_VARIANTS)


def _spec(figure: PanelFigure, claims: list[Claim]) -> FigureSpec:
    return FigureSpec(
        id=figure.id,
        title=figure.title,
        metrics=figure.metrics,
        data=figure.plot_data,
        draw=figure.draw,
        claims=claims,
        statuses=STATUSES,
    )


SPECS = [
    _spec(FIG1, CLAIMS_FIG1),
    _spec(FIG2, CLAIMS_FIG2),
    _spec(FIG3A, CLAIMS_FIG3A),
    _spec(FIG4, CLAIMS_FIG4),
    _spec(FIG5A, CLAIMS_FIG5A),
    _spec(FIG8, CLAIMS_FIG8),
    _spec(FIG12, CLAIMS_FIG12),
]
