"""Santurkar et al. 2018, Fig. 10 (Fig. 4 for the DLN): the DLN's loss landscape along the
gradient, standard vs BN net at lr 1e-6.

At every probed step t (every 100 steps) the landscape probe walks w_t - eta g_t over a grid of
step sizes eta in [1/100, 30] x lr on the step's own batch (`normlab.papers.santurkar2018.
landscape`). Panels (log y): (a) the loss band, (b) the gradient-predictiveness band, each shaded
per norm from the mean over seeds of the min over eta to the mean over seeds of the max (series
`"<norm>, min"`, `"<norm>, max"`; their `min`/`max` columns are the spread over seeds, written,
not drawn); (c) beta_eff, the mean over seeds with a min..max band (series `"<norm>"`). A point
where some seed's walk blew up (inf or nan at a large eta: the standard net early in training)
has no mean, min or max (NaN; `n_nonfinite` counts the seeds): a gap, and a '^' at the top of
the panel in the norm's colour. Drawn from the figure's own sweep or from the DLN suite's.

Claims (headline claim 4): per seed, the ratio Standard / BN of each quantity at each probed
step of the early window, and the median of those ratios over the window
(`measure_smaller_than_standard`).
"""

from __future__ import annotations

from normlab.papers.santurkar2018.landscape import (
    band_text,
    landscape_panel,
    measure_smaller_than_standard,
)
from normlab.papers.santurkar2018.protocol import DLN_LR, DLN_STEPS, DLN_SUITE, STANDARD_BN
from normlab.report import Claim, FigureSpec
from normlab.report.runs import lr_text, model_text

ID = "santurkar2018/dln_fig10_landscape"
PANELS = {"loss_band": "a", "grad_band": "b", "beta_eff": "c"}

# Headline claim 4: "up to two orders of magnitude" early in training. "Up to" names the peak
# gap; a typical step of the early window sits below the peak, so the declared threshold is one
# order of magnitude (x10), in every seed. The early window is the first fifth of the 10,000
# steps (0..2000), where the paper's curves part most. The measure, per seed: the ratio
# Standard / BN at each probed step of the window (21 at the presets' cadence of 100 steps: every
# one is needed), then the median of those ratios. The median, not the mean of each net's values:
# the standard net's walk overflows (inf) at its largest step sizes early in training, and one
# overflowed step would make a mean inf and decide the claim alone; a median of x10 needs more
# than half the window's steps to show the gap (robust to a few overflows either way). A step
# where the standard net blew up counts as a large ratio (+inf), one where the normalised net
# blew up as 0, and one where both did as 0 (it compares nothing: not counted for the claim).
EARLY = (0, DLN_STEPS // 5)
COMMON = {"figure": ID, "window": EARLY, "threshold": 10.0, "seeds": (0, 1, 2)}

CLAIMS = [
    Claim(
        id="santurkar2018/fig10_bn_smaller_loss_band",
        claim="BN's loss band along the gradient is at least 10x narrower than the standard net's "
        "early in training",
        paper_says=(
            "Sec. 3.2, Fig. 10 (Fig. 4(a) for the DLN): BN's loss varies far less along the "
            "gradient, by up to two orders of magnitude early in training"
        ),
        metric="landscape/loss_*",
        measure=measure_smaller_than_standard("loss_band", ("batch",), DLN_LR),
        **COMMON,
    ),
    Claim(
        id="santurkar2018/fig10_bn_smaller_grad_diff",
        claim="BN's largest gradient change along the gradient is at least 10x smaller than the "
        "standard net's early in training",
        paper_says=(
            "Sec. 3.2, Fig. 10 (Fig. 4(b) for the DLN): BN's gradients are more predictive, the "
            "gap up to two orders of magnitude early in training"
        ),
        metric="landscape/grad_diff_max",
        measure=measure_smaller_than_standard("grad_band", ("batch",), DLN_LR),
        **COMMON,
    ),
    Claim(
        id="santurkar2018/fig10_bn_smaller_beta_eff",
        claim="BN's effective beta-smoothness is at least 10x smaller than the standard net's "
        "early in training",
        paper_says=(
            "Sec. 3.2, Fig. 10 (Fig. 4(c) for the DLN): BN's effective beta-smoothness is far "
            "smaller, by up to two orders of magnitude early in training"
        ),
        metric="landscape/beta_eff",
        measure=measure_smaller_than_standard("beta_eff", ("batch",), DLN_LR),
        **COMMON,
    ),
]

FIGURE = FigureSpec(
    id=ID,
    title=f"Santurkar et al. 2018, Fig. 10 (Fig. 4 for the DLN), lr {lr_text(DLN_LR)}: landscape "
    "along the gradient, eta in [1/100, 30] x lr",
    variants=STANDARD_BN,
    lrs=(DLN_LR,),
    panels=tuple(landscape_panel(q, letter, STANDARD_BN) for q, letter in PANELS.items()),
    claims=CLAIMS,
    suite=DLN_SUITE,
    describe=model_text,
    band_text=band_text(PANELS),
)
