"""Santurkar et al. 2018, Fig. 4: VGG-16's loss landscape on CIFAR-10 along the gradient, eta in
[0.5, 4] x lr (App. A.2.2), the standard net vs BN at lr 0.1: (a) the loss's max and min over
eta, (b) gradient predictiveness, the max and min of ||grad(w(eta)) - g||_2, (c) the effective
beta-smoothness, max ||grad(w(eta)) - g|| / ||eta g||.

Claims: the standard net's loss band, gradient-predictiveness band and effective beta-smoothness
are each at least 10x BN's (per seed, the median over the probed steps of the first third of
training of the per-step ratio: `landscape.measure_smaller_than_standard`).
"""

from __future__ import annotations

from normlab.papers.santurkar2018.protocol import STANDARD_BN, VGG_LR, VGG_SUITE
from normlab.papers.santurkar2018.vgg import (
    ETA_TEXT,
    STATUSES,
    landscape_claims,
    landscape_panels,
)
from normlab.report.runs import model_text
from normlab.report.spec import FigureSpec

ID = "santurkar2018/vgg_fig4_landscape"

CLAIMS = landscape_claims(
    ID,
    "santurkar2018/vgg_fig4_bn_smoother",
    ("batch",),
    "BN's",
    "Sec. 3.2, Fig. 4: BN's landscape is far smoother, close to 100x early in training",
)

FIGURE = FigureSpec(
    id=ID,
    title=f"Santurkar 2018 Fig. 4: VGG loss landscape along the gradient, {ETA_TEXT}",
    variants=STANDARD_BN,
    lrs=(VGG_LR,),
    panels=tuple(landscape_panels(STANDARD_BN)),
    claims=CLAIMS,
    ncols=3,
    suite=VGG_SUITE,
    statuses=STATUSES,
    describe=model_text,
)
