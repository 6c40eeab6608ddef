"""Santurkar et al. 2018, Fig. 5(a): l_p normalisation on VGG-16 / CIFAR-10 at lr 0.1: training
and test accuracy of the standard net, BN, l_1, l_2 and l_inf.

Claim: l_1, l_2 and l_inf each end with a test accuracy within 5 points of BN's.
"""

from __future__ import annotations

import pandas as pd

from normlab.papers.santurkar2018.protocol import (
    ALL_NORMS,
    LP_VARIANTS,
    VGG_LR,
    VGG_STEPS,
    VGG_SUITE,
)
from normlab.papers.santurkar2018.vgg import (
    ACC_TEST,
    FINAL,
    SEEDS,
    STATUSES,
    acc_panels,
    gap_to_bn,
)
from normlab.report.claims import Claim, Measurement, provisional
from normlab.report.runs import model_text
from normlab.report.spec import FigureSpec

ID = "santurkar2018/vgg_fig5a_lp"


@provisional
def measure_lp_like_bn(table: pd.DataFrame, claim: Claim) -> Measurement:
    """The worst l_p net's mean test accuracy over the window minus BN's; passed iff above minus
    the threshold."""
    return gap_to_bn(table, claim, LP_VARIANTS, ("batch", *LP_VARIANTS), "test acc")


CLAIMS = (
    Claim(
        id="santurkar2018/vgg_fig5a_lp_trains_like_bn",
        figure=ID,
        claim="l_1, l_2 and l_inf each end with a test accuracy within 5 points of BN's",
        paper_says="Sec. 3.3, Fig. 5(a): l_p normalisation performs as well as or better than BN",
        metric=ACC_TEST,
        window=FINAL,
        threshold=0.05,
        seeds=SEEDS,
        measure=measure_lp_like_bn,
        paper_steps=VGG_STEPS,
    ),
)

FIGURE = FigureSpec(
    id=ID,
    title=f"Santurkar 2018 Fig. 5(a): l_p normalisation on VGG, lr {VGG_LR:g}",
    variants=ALL_NORMS,
    lrs=(VGG_LR,),
    panels=tuple(acc_panels(ALL_NORMS)),
    claims=CLAIMS,
    ncols=2,
    suite=VGG_SUITE,
    statuses=STATUSES,
    describe=model_text,
)
