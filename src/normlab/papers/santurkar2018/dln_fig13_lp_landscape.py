"""Santurkar et al. 2018, Fig. 13 (Sec. 3.3): the DLN with l_1, l_2 and l_inf normalisation next
to the standard and the BN net at lr 1e-6, its training loss and its landscape along the gradient.

Panels (log y): (a) the training loss, the mean over seeds with a min..max band; (b) the loss
band and (c) the gradient-predictiveness band along the gradient, each shaded per norm from the
mean over seeds of the min over eta to the mean over seeds of the max (series `"<norm>, min"`,
`"<norm>, max"`); (d) beta_eff, the mean over seeds with a min..max band
(`normlab.papers.santurkar2018.landscape`). A point where some seed's walk blew up has no mean
(NaN, counted in `n_nonfinite`) and is marked '^' at the top of the panel in the norm's colour.
Drawn from the figure's own sweep or from the DLN suite's.

Claim (headline claim 5): each l_p normalisation makes beta_eff at least 10x smaller than the
standard net's early in training, per seed, as the median over the window of the per-step ratio
(`measure_smaller_than_standard`).
"""

from __future__ import annotations

from normlab.papers.santurkar2018.landscape import (
    band_text,
    landscape_panel,
    measure_smaller_than_standard,
)
from normlab.papers.santurkar2018.protocol import (
    ALL_NORMS,
    DLN_LR,
    DLN_STEPS,
    DLN_SUITE,
    LP_VARIANTS,
)
from normlab.report import Claim, FigureSpec
from normlab.report.runs import lr_text, model_text

ID = "santurkar2018/dln_fig13_lp_landscape"
PANELS = {"train_loss": "a", "loss_band": "b", "grad_band": "c", "beta_eff": "d"}

CLAIMS = [
    # Headline claim 5: l_p normalisations smooth the landscape as BN does. Held to Fig. 10's
    # bar for BN, for each of l1, l2 and l_inf: per seed, the median over the probed steps of
    # steps 0..2000 (the first fifth of training) of the per-step ratio Standard / l_p of
    # beta_eff at least x10 (the median, so that one overflowed walk does not decide; blown-up
    # walks read as in Fig. 10's claims).
    Claim(
        id="santurkar2018/fig13_lp_smooths_like_bn",
        figure=ID,
        claim="Each l_p normalisation (l1, l2, l_inf) makes the DLN's effective beta-smoothness at "
        "least 10x smaller than the standard net's early in training, as BN does",
        paper_says="Sec. 3.3, Fig. 13: l_p normalisations smooth the DLN's landscape as BN does",
        metric="landscape/beta_eff",
        window=(0, DLN_STEPS // 5),
        threshold=10.0,
        seeds=(0, 1, 2),
        measure=measure_smaller_than_standard("beta_eff", LP_VARIANTS, DLN_LR),
    ),
]

FIGURE = FigureSpec(
    id=ID,
    title=f"Santurkar et al. 2018, Fig. 13, lr {lr_text(DLN_LR)}: l_p-normalised DLN, loss and "
    "landscape",
    variants=ALL_NORMS,
    lrs=(DLN_LR,),
    panels=tuple(landscape_panel(q, letter, ALL_NORMS) for q, letter in PANELS.items()),
    claims=CLAIMS,
    ncols=2,
    suite=DLN_SUITE,
    describe=model_text,
    band_text=band_text(PANELS),
)
