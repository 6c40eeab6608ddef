"""Santurkar et al. 2018, Fig. 2: VGG-16 on CIFAR-10 at lr 0.1, the standard net vs BN vs "noisy"
BN (App. A.2.1: time-varying noise after every BN layer): training and test accuracy, test loss,
and the 15th, 50th and 85th percentiles of the activations of layers #2, #9
and #13 over training.
Noisy BN trains as well as BN with less stable inputs.

Claim: noisy BN ends with a training accuracy within 5 points of BN's.
"""

from __future__ import annotations

import pandas as pd

from normlab.papers.santurkar2018.protocol import (
    NOISY,
    VGG_LR,
    VGG_NOISY_LAYERS,
    VGG_STEPS,
    VGG_SUITE,
)
from normlab.papers.santurkar2018.vgg import (
    ACC_TRAIN,
    FINAL,
    SEEDS,
    STATUSES,
    acc_panels,
    gap_to_bn,
    layer_percentile_panels,
    norm_lines,
)
from normlab.report.claims import Claim, Measurement, provisional
from normlab.report.runs import model_text
from normlab.report.spec import FigureSpec, Panel

ID = "santurkar2018/vgg_fig2_noisy"


@provisional
def measure_noisy_like_bn(table: pd.DataFrame, claim: Claim) -> Measurement:
    """Noisy BN's mean training accuracy over the window minus BN's; passed iff above minus the
    threshold."""
    return gap_to_bn(table, claim, ("noisy_batch",), NOISY, "train acc")


CLAIMS = (
    Claim(
        id="santurkar2018/vgg_fig2_noisy_trains_like_bn",
        figure=ID,
        claim="Noisy BN ends with a training accuracy within 5 points of BN's",
        paper_says="Sec. 2.1, Fig. 2: noisy BN trains about as well as BN",
        metric=ACC_TRAIN,
        window=FINAL,
        threshold=0.05,
        seeds=SEEDS,
        measure=measure_noisy_like_bn,
        paper_steps=VGG_STEPS,
    ),
)

FIGURE = FigureSpec(
    id=ID,
    title=f'Santurkar 2018 Fig. 2: standard vs BN vs "noisy" BN, lr {VGG_LR:g}',
    variants=NOISY,
    lrs=(VGG_LR,),
    panels=(
        *acc_panels(NOISY),
        Panel("test loss", "test loss", norm_lines("test/loss", NOISY), yscale="log"),
        *layer_percentile_panels(VGG_NOISY_LAYERS, NOISY),
    ),
    claims=CLAIMS,
    ncols=3,
    suite=VGG_SUITE,
    statuses=STATUSES,
    describe=model_text,
)
