"""Santurkar et al. 2018, Fig. 6: histograms of layer #11's activations (the ReLU's input, after
the norm) of the standard net, BN, l_1, l_2 and l_inf normalisation, VGG-16 on CIFAR-10 at lr 0.1.

One panel per norm (`normlab.report.hist.Histograms`); in each, the histogram (as a density) of
all of the layer's values on the activation probe's fixed batch at three probe steps: the first
(step 0), the one nearest the middle of training and the last, from `act_hist.csv`. Each panel
shows one run, the lowest seed of its norm (its title says which): histograms of different seeds
have different bins; the other seeds' are in their own `act_hist.csv`. The standard net's
activations start as a narrow spike: its panel's y range is the later steps' (the panel says how
high step 0 peaks). Drawn from the figure's own sweep (the same runs as `vgg_fig5a_lp`) or from
`vgg_suite`.

Claim: the l_p nets' layer #11 per-unit means and variances drift from step 0 at least as much as
the standard net's: l_p normalisation gives no distributional stability.
"""

from __future__ import annotations

import pandas as pd

from normlab.papers.santurkar2018.protocol import (
    ALL_NORMS,
    LP_VARIANTS,
    VGG_HIST_LAYER,
    VGG_LR,
    VGG_STEPS,
    VGG_SUITE,
)
from normlab.papers.santurkar2018.vgg import DRIFTS, SEEDS, STATUSES, WHOLE, drift_ratios
from normlab.report.claims import Claim, Measurement, provisional
from normlab.report.hist import Histograms
from normlab.report.runs import COLORS, LABELS, model_text
from normlab.report.spec import FigureSpec

ID = "santurkar2018/vgg_fig6_hist"


@provisional
def measure_lp_not_stable(table: pd.DataFrame, claim: Claim) -> Measurement:
    """Each l_p net's drift from step 0 over the standard net's, the smallest of them."""
    return drift_ratios(table, claim, LP_VARIANTS, (VGG_HIST_LAYER,), DRIFTS)


CLAIMS = (
    Claim(
        id="santurkar2018/vgg_fig6_lp_not_stable",
        figure=ID,
        claim=f"The l_p nets' layer #{VGG_HIST_LAYER} per-unit means and variances drift from "
        "step 0 at least as much as the standard net's (mean over probes)",
        paper_says="Sec. 3.3, Fig. 6: l_p normalisations give no distributional stability "
        "(larger shift than the standard net)",
        metric=f"act/layer{VGG_HIST_LAYER}/*_drift",
        window=WHOLE,
        threshold=1.0,
        seeds=SEEDS,
        measure=measure_lp_not_stable,
        paper_steps=VGG_STEPS,
    ),
)

FIGURE = FigureSpec(
    id=ID,
    title=f"Santurkar 2018 Fig. 6: layer #{VGG_HIST_LAYER} activation histograms, lr "
    f"{VGG_LR:g}, standard / BN / l_p",
    variants=ALL_NORMS,
    lrs=(VGG_LR,),
    panels=tuple(
        Histograms(
            LABELS[v],
            v,
            VGG_HIST_LAYER,
            COLORS[v],
            VGG_LR,
            title=f"{LABELS[v]}, layer #{VGG_HIST_LAYER}",
            zoom_later=v == "none",
        )
        for v in ALL_NORMS
    ),
    claims=CLAIMS,
    ncols=3,
    suite=VGG_SUITE,
    statuses=STATUSES,
    files=("act_hist.csv",),
    describe=model_text,
    # Histograms of different seeds have different bins: nothing is averaged over seeds.
    seeds_line=lambda seeds: (
        f"one run per norm (seed {min(seeds)}), on the probe's fixed test batch"
    ),
)
