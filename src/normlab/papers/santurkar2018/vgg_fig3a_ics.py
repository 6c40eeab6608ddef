"""Santurkar et al. 2018, Fig. 3(a): the internal covariate shift of VGG-16's layers #5 and #10
on CIFAR-10, the standard net vs BN at lr 0.1 and 0.01: per rate, the training accuracy, the l2
distance ||G - G'||_2 and the cosine cos(G, G') between a layer's gradient before and after the
layers below it take their step (App. A.2.1).

Claims: BN does not reduce ICS: its mean cosine is not higher and its mean l2 distance not
smaller than the standard net's, at both rates and layers.
"""

from __future__ import annotations

import pandas as pd

from normlab.papers.santurkar2018.protocol import (
    STANDARD_BN,
    VGG_ICS_LAYERS,
    VGG_LR,
    VGG_LR_SLOW,
    VGG_STEPS,
    VGG_SUITE,
)
from normlab.papers.santurkar2018.vgg import (
    ACC_TRAIN,
    SEEDS,
    STATUSES,
    WHOLE,
    norm_lines,
    ratio,
)
from normlab.report.claims import Claim, Measurement, per_seed, provisional, seeds_mean
from normlab.report.runs import model_text
from normlab.report.spec import FigureSpec, Panel

ID = "santurkar2018/vgg_fig3a_ics"
LRS = (VGG_LR, VGG_LR_SLOW)
POINTS = [(lr, layer) for lr in LRS for layer in VGG_ICS_LAYERS]
STYLES = ("-", "--")  # one per layer
STATS = (  # metric suffix, panel title, y label, y scale
    ("l2", "ICS l2", "||G - G'||_2", "log"),
    ("cos", "ICS cosine", "cos(G, G')", "linear"),
)


def _panels(lr: float) -> list[Panel]:
    """At `lr`: the training accuracy, then each ICS statistic of both layers."""
    panels = [
        Panel(
            f"lr {lr:g}: training accuracy",
            "train accuracy",
            norm_lines(ACC_TRAIN, STANDARD_BN, lr),
        )
    ]
    for stat, title, ylabel, yscale in STATS:
        lines = tuple(
            line
            for layer, style in zip(VGG_ICS_LAYERS, STYLES, strict=True)
            for line in norm_lines(
                f"ics/layer{layer}/{stat}", STANDARD_BN, lr, style, f", layer #{layer}"
            )
        )
        panels.append(Panel(f"lr {lr:g}: {title}", ylabel, lines, yscale=yscale))
    return panels


def _ics_runs(table: pd.DataFrame, claim: Claim, stat: str) -> dict[tuple, dict[int, float]]:
    """(lr, layer, norm) -> per seed, the mean of `ics/layer<i>/<stat>` over the window."""
    return {
        (lr, layer, v): per_seed(table, claim, v, lr, f"ics/layer{layer}/{stat}")
        for lr, layer in POINTS
        for v in STANDARD_BN
    }


def _means(runs: dict[tuple, dict[int, float]]) -> dict[tuple, float]:
    """(lr, layer, norm) -> the seed-mean of `_ics_runs`' values."""
    return {key: seeds_mean(values) for key, values in runs.items()}


@provisional
def measure_bn_cos_not_higher(table: pd.DataFrame, claim: Claim) -> Measurement:
    """The largest BN - standard gap of mean cos(G, G'); passed iff at most the threshold. Per
    seed: that seed's gap at the (lr, layer) of the largest."""
    runs = _ics_runs(table, claim, "cos")
    m = _means(runs)
    gaps = {(lr, i): m[(lr, i, "batch")] - m[(lr, i, "none")] for lr, i in POINTS}
    detail = "; ".join(
        f"lr {lr:g} #{i}: BN {m[(lr, i, 'batch')]:.3f}, standard {m[(lr, i, 'none')]:.3f}"
        for lr, i in POINTS
    )
    worst = max(gaps.values())
    # Per seed, the gap at the deciding (lr, layer), `worst`'s: `worst` is their mean.
    lr, i = max(gaps, key=gaps.__getitem__)
    per = {s: runs[(lr, i, "batch")][s] - runs[(lr, i, "none")][s] for s in claim.seeds}
    return Measurement(
        worst, f"mean cos(G, G') {detail}", bool(worst <= claim.threshold), per_seed=per
    )


@provisional
def measure_bn_l2_not_smaller(table: pd.DataFrame, claim: Claim) -> Measurement:
    """The smallest BN / standard ratio of mean ||G - G'||_2; passed iff at least the threshold.
    Per seed: that seed's ratio at the (lr, layer) of the smallest."""
    runs = _ics_runs(table, claim, "l2")
    m = _means(runs)
    # A standard net's mean of 0 reads as `step_ratios` does (`ratio`): 0 / 0 is 1, x / 0 is inf.
    ratios = {(lr, i): ratio(m[(lr, i, "batch")], m[(lr, i, "none")]) for lr, i in POINTS}
    detail = "; ".join(f"lr {lr:g} #{i}: x{r:.3g}" for (lr, i), r in ratios.items())
    worst = min(ratios.values())
    # Per seed, the ratio at the deciding (lr, layer), `worst`'s: `worst`, the ratio of their
    # means, lies among them.
    lr, i = min(ratios, key=ratios.__getitem__)
    per = {s: ratio(runs[(lr, i, "batch")][s], runs[(lr, i, "none")][s]) for s in claim.seeds}
    return Measurement(
        worst,
        f"BN / standard mean ||G - G'||_2: {detail}",
        bool(worst >= claim.threshold),
        per_seed=per,
    )


CLAIMS = (
    Claim(
        id="santurkar2018/vgg_fig3a_bn_cos_not_higher",
        figure=ID,
        claim="BN does not make G and G' more aligned: BN's mean cos(G, G') is at most the "
        "standard net's + 0.02 at both rates and layers",
        paper_says="Sec. 2.2, Fig. 3(a): BN nets show similar or lower cosine (BN does not "
        "reduce ICS)",
        metric="ics/layer*/cos",
        window=WHOLE,
        threshold=0.02,
        seeds=SEEDS,
        measure=measure_bn_cos_not_higher,
        paper_steps=VGG_STEPS,
    ),
    Claim(
        id="santurkar2018/vgg_fig3a_bn_l2_not_smaller",
        figure=ID,
        claim="BN does not shrink ||G - G'||_2: BN's mean is at least 0.8x the standard net's at "
        "both rates and layers",
        paper_says="Sec. 2.2, Fig. 3(a): BN nets show similar or larger l2 difference",
        metric="ics/layer*/l2",
        window=WHOLE,
        threshold=0.8,
        seeds=SEEDS,
        measure=measure_bn_l2_not_smaller,
        paper_steps=VGG_STEPS,
    ),
)

FIGURE = FigureSpec(
    id=ID,
    title="Santurkar 2018 Fig. 3(a): internal covariate shift of VGG layers "
    + " and ".join(f"#{i}" for i in VGG_ICS_LAYERS),
    variants=STANDARD_BN,
    lrs=LRS,
    panels=tuple(panel for lr in LRS for panel in _panels(lr)),
    claims=CLAIMS,
    ncols=3,
    suite=VGG_SUITE,
    statuses=STATUSES,
    describe=model_text,
)
