"""Santurkar et al. 2018, Fig. 8: the change of each unit's mean and variance of VGG-16's layers
#2, #9 and #13 on CIFAR-10 at lr 0.1, the standard net vs BN vs noisy BN: between consecutive
probes and from step 0, each the mean over the layer's units of |change|.

Claims: noisy BN's per-unit means and variances drift from step 0, and change between probes, at
least as much as the standard net's (mean over probes and layers): its activations are less
stable.
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
    CHANGES,
    DRIFTS,
    SEEDS,
    STATUSES,
    WHOLE,
    drift_ratios,
    norm_lines,
)
from normlab.report.claims import Claim, Measurement, provisional
from normlab.report.runs import model_text
from normlab.report.spec import FigureSpec, Panel

ID = "santurkar2018/vgg_fig8_moments"
LAYERS_TEXT = ", ".join(f"#{i}" for i in VGG_NOISY_LAYERS)
QUANTITIES = (
    ("mean_change", "mean change between probes"),
    ("var_change", "variance change between probes"),
    ("mean_drift", "mean change from step 0"),
    ("var_drift", "variance change from step 0"),
)


@provisional
def measure_noisy_less_stable(table: pd.DataFrame, claim: Claim) -> Measurement:
    """Noisy BN's drift from step 0 over the standard net's, the smaller of mean and variance."""
    return drift_ratios(table, claim, ("noisy_batch",), VGG_NOISY_LAYERS, DRIFTS)


@provisional
def measure_noisy_moves_more(table: pd.DataFrame, claim: Claim) -> Measurement:
    """Noisy BN's change between probes over the standard net's, the smaller of the two."""
    return drift_ratios(table, claim, ("noisy_batch",), VGG_NOISY_LAYERS, CHANGES)


CLAIMS = (
    Claim(
        id="santurkar2018/vgg_fig8_noisy_less_stable",
        figure=ID,
        claim="Noisy BN's per-unit means and variances drift from step 0 at least as much as the "
        f"standard net's (layers {LAYERS_TEXT}, mean over probes)",
        paper_says="Sec. 2.1, Fig. 8: noisy BN's activations are less stable than the standard "
        "net's",
        metric="act/layer*/*_drift",
        window=WHOLE,
        threshold=1.0,
        seeds=SEEDS,
        measure=measure_noisy_less_stable,
        paper_steps=VGG_STEPS,
    ),
    # Added after seeing the CPU-scale Fig. 8 (docs/findings.md): the noise is bounded, so noisy BN's drift
    # from step 0 stays put while the standard net's grows; its change from one probe to the next
    # is the other half of the figure and of "less stable".
    Claim(
        id="santurkar2018/vgg_fig8_noisy_moves_more_between_probes",
        figure=ID,
        claim="Noisy BN's per-unit means and variances change between consecutive probes at "
        f"least as much as the standard net's (layers {LAYERS_TEXT}, mean over probes)",
        paper_says="Sec. 2.1, Fig. 8: noisy BN's activations are less stable than the standard "
        "net's",
        metric="act/layer*/*_change",
        window=WHOLE,
        threshold=1.0,
        seeds=SEEDS,
        measure=measure_noisy_moves_more,
        paper_steps=VGG_STEPS,
    ),
)

FIGURE = FigureSpec(
    id=ID,
    title="Santurkar 2018 Fig. 8: per-unit mean and variance shift, standard / BN / noisy BN",
    variants=NOISY,
    lrs=(VGG_LR,),
    panels=tuple(
        Panel(
            f"layer #{layer}: {title}",
            "mean over units of |change|",
            norm_lines(f"act/layer{layer}/{q}", NOISY),
            yscale="log",
        )
        for layer in VGG_NOISY_LAYERS
        for q, title in QUANTITIES
    ),
    claims=CLAIMS,
    ncols=4,
    suite=VGG_SUITE,
    statuses=STATUSES,
    describe=model_text,
)
