"""Santurkar et al. 2018, Fig. 1: VGG-16 on CIFAR-10, the standard net vs BN at lr 0.1 and 0.5:
(a, b) training and test accuracy over training, (c) the 15th, 50th and 85th percentiles of the
activations (the ReLU's input, after the norm) of layers #3 and #11, every channel pooled, and of
one activation (channel 0 of layer #11), at lr 0.1.

Claims: BN ends with a higher test accuracy and trains faster at lr 0.1, and tolerates lr 0.5
(within 5 points of its lr 0.1's, above the standard net, which does worse or diverges).
"""

from __future__ import annotations

import pandas as pd

from normlab.papers.santurkar2018.protocol import (
    STANDARD_BN,
    VGG_FIG1_LAYERS,
    VGG_LR,
    VGG_LR_FAST,
    VGG_STEPS,
    VGG_SUITE,
    VGG_UNIT,
)
from normlab.papers.santurkar2018.vgg import (
    ACC_TEST,
    ACC_TRAIN,
    EARLY,
    FINAL,
    SEEDS,
    STATUSES,
    acc_panels,
    layer_percentile_panels,
    pct,
    percentile_panels,
    seed_mean,
)
from normlab.report.claims import Claim, Measurement, per_seed, provisional, seeds_mean
from normlab.report.runs import model_text
from normlab.report.spec import FigureSpec

ID = "santurkar2018/vgg_fig1_lr"
LAYERS = VGG_FIG1_LAYERS  # Fig. 1(c)
UNIT_LAYER, UNIT = VGG_UNIT


@provisional
def measure_bn_higher(table: pd.DataFrame, claim: Claim) -> Measurement:
    """BN's mean of the claim's accuracy over its window minus the standard net's, at `VGG_LR`;
    per seed, that seed's difference."""
    bn_runs = per_seed(table, claim, "batch", VGG_LR)
    std_runs = per_seed(table, claim, "none", VGG_LR)
    bn, std = seeds_mean(bn_runs), seeds_mean(std_runs)
    detail = f"{claim.metric} BN {pct(bn)} vs standard {pct(std)}"
    diffs = {s: bn_runs[s] - std_runs[s] for s in claim.seeds}  # their mean is `bn - std`
    return Measurement(bn - std, detail, bool(bn - std > claim.threshold), per_seed=diffs)


@provisional
def measure_bn_tolerates_lr05(table: pd.DataFrame, claim: Claim) -> Measurement:
    """At `VGG_LR_FAST`, BN's test accuracy minus the standard net's; passed iff BN's is the higher
    and within the threshold of BN's own at `VGG_LR`. Per seed: that seed's BN - standard gap at
    `VGG_LR_FAST` (the value's quantity)."""
    bn05_runs = per_seed(table, claim, "batch", VGG_LR_FAST)
    std05_runs = per_seed(table, claim, "none", VGG_LR_FAST)
    bn05, std05 = seeds_mean(bn05_runs), seeds_mean(std05_runs)
    bn01 = seed_mean(table, claim, "batch", VGG_LR)
    detail = (
        f"test acc at lr {VGG_LR_FAST:g}: BN {pct(bn05)}, standard {pct(std05)}; "
        f"BN at lr {VGG_LR:g} {pct(bn01)}"
    )
    passed = bn05 > std05 and bn05 >= bn01 - claim.threshold
    # Per seed, the value's BN - standard gap at lr 0.5 (+inf where the standard net diverged).
    diffs = {s: bn05_runs[s] - std05_runs[s] for s in claim.seeds}
    return Measurement(bn05 - std05, detail, bool(passed), per_seed=diffs)


CLAIMS = (
    Claim(
        id="santurkar2018/vgg_fig1_bn_higher_test_acc",
        figure=ID,
        claim=f"At lr {VGG_LR:g} the BN net ends with a higher test accuracy than the standard net",
        paper_says="App. A.1, Fig. 1: test accuracy 83% with BN, 80% without",
        metric=ACC_TEST,
        window=FINAL,
        threshold=0.0,
        seeds=SEEDS,
        measure=measure_bn_higher,
        paper_steps=VGG_STEPS,
    ),
    Claim(
        id="santurkar2018/vgg_fig1_bn_trains_faster",
        figure=ID,
        claim=f"At lr {VGG_LR:g} the BN net's training accuracy over the first third of training "
        "is higher than the standard net's",
        paper_says="Sec. 1, Fig. 1(a): BN nets train faster",
        metric=ACC_TRAIN,
        window=EARLY,
        threshold=0.0,
        seeds=SEEDS,
        measure=measure_bn_higher,
        paper_steps=VGG_STEPS,
    ),
    Claim(
        id="santurkar2018/vgg_fig1_bn_tolerates_lr05",
        figure=ID,
        claim=f"At lr {VGG_LR_FAST:g} BN trains (test accuracy within 5 points of its lr "
        f"{VGG_LR:g}'s) and beats the standard net, which does worse or diverges",
        paper_says=f"Sec. 1, Fig. 1: BN nets tolerate lr {VGG_LR_FAST:g}; the standard net does "
        "worse or diverges",
        metric=ACC_TEST,
        window=FINAL,
        threshold=0.05,
        seeds=SEEDS,
        measure=measure_bn_tolerates_lr05,
        paper_steps=VGG_STEPS,
    ),
)

FIGURE = FigureSpec(
    id=ID,
    title=f"Santurkar 2018 Fig. 1: VGG on CIFAR-10, standard vs BN at lr {VGG_LR:g} and "
    f"{VGG_LR_FAST:g}",
    variants=STANDARD_BN,
    lrs=(VGG_LR, VGG_LR_FAST),
    panels=(
        *acc_panels(STANDARD_BN, (VGG_LR, VGG_LR_FAST)),
        *layer_percentile_panels(LAYERS, STANDARD_BN),
        *percentile_panels(
            f"act/layer{UNIT_LAYER}/unit{UNIT}",
            f"layer #{UNIT_LAYER}, channel {UNIT}",
            STANDARD_BN,
        ),
    ),
    claims=CLAIMS,
    ncols=2,
    suite=VGG_SUITE,
    statuses=STATUSES,
    describe=model_text,
)
