"""Santurkar et al. 2018, Fig. 12: the loss landscape of l_p-normalised VGG-16 on CIFAR-10 at
lr 0.1 (standard, BN, l_1, l_2, l_inf): the training accuracy, then Fig. 4's three panels
(the loss along the gradient, gradient predictiveness, effective beta-smoothness).

Claims: the standard net's loss band, gradient-predictiveness band and effective beta-smoothness
are each at least 10x each l_p net's (per seed, the median over the probed steps of the first
third of training of the per-step ratio: `landscape.measure_smaller_than_standard`).
"""

from __future__ import annotations

from normlab.papers.santurkar2018.protocol import ALL_NORMS, LP_VARIANTS, VGG_LR, VGG_SUITE
from normlab.papers.santurkar2018.vgg import (
    STATUSES,
    acc_panels,
    landscape_claims,
    landscape_panels,
)
from normlab.report.runs import model_text
from normlab.report.spec import FigureSpec

ID = "santurkar2018/vgg_fig12_lp_landscape"

CLAIMS = landscape_claims(
    ID,
    "santurkar2018/vgg_fig12_lp_smoother",
    LP_VARIANTS,
    "each l_p net's",
    "Sec. 3.3, Fig. 12: l_p normalisations smooth the landscape as BN does",
)

FIGURE = FigureSpec(
    id=ID,
    title=f"Santurkar 2018 Fig. 12: landscape of l_p-normalised VGG, lr {VGG_LR:g}",
    variants=ALL_NORMS,
    lrs=(VGG_LR,),
    panels=(acc_panels(ALL_NORMS)[0], *landscape_panels(ALL_NORMS)),
    claims=CLAIMS,
    ncols=2,
    suite=VGG_SUITE,
    statuses=STATUSES,
    describe=model_text,
)
