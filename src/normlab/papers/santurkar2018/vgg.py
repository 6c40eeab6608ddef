"""What the Santurkar et al. 2018 VGG / CIFAR-10 figures share: their panels (accuracies,
activation percentiles, the loss landscape) and the claims' common readings (accuracies in
points, per-seed means, the moment-drift ratios of Fig. 6 and Fig. 8).

Every VGG figure draws from its own preset's sweep or from `santurkar2018/vgg_suite`, at paper
scale or at `scale=cpu` (the title says which: `normlab.report.runs.model_text`), the runs that
finished and those that diverged (the standard net at lr 0.5): a line is the mean over every seed
or nothing, so from the step a seed died on its points have no mean and an 'X' marks the death.

The claims are declared on the paper's 15,000 steps (`VGG_STEPS`: their windows scale with the
runs' length, `normlab.report.claims.scaled`) and need three seeds; on fewer (one seed at
`scale=cpu`) the verdict is "insufficient data" with a provisional reading on the seeds there are
(`normlab.report.claims.provisional`). Thresholds are fixed in the figures' modules, before any run:
- accuracies compare means over the last 1/15 of training (`FINAL`), in accuracy points
  (0.05 = 5 points);
- landscape claims use `landscape.measure_smaller_than_standard` over the first third of
  training (`EARLY`, where the paper reports the gap), at least 10 in every seed ("two orders of
  magnitude" at its peak, read as one for a typical step);
- ICS and activation claims compare means over every probe of the run (`WHOLE`);
- every claim needs every evaluation of its window in every run (the metric's cadence).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from normlab.papers.santurkar2018.landscape import measure_smaller_than_standard
from normlab.papers.santurkar2018.protocol import VGG_ETA_RANGE, VGG_LR, VGG_STEPS
from normlab.report.claims import Claim, Measurement, per_seed, provisional, seeds_mean
from normlab.report.runs import COLORS, LABELS
from normlab.report.spec import Line, Panel

STATUSES = ("finished", "diverged")  # the runs a VGG figure draws
SEEDS = (0, 1, 2)
FINAL = (VGG_STEPS - VGG_STEPS // 15, VGG_STEPS)  # the last 1/15 of training: 14,000-15,000
EARLY = (0, VGG_STEPS // 3)  # the first third (0-5,000): where the paper reports the landscape gap
WHOLE = (0, VGG_STEPS)
ACC_TRAIN = "train/acc"
ACC_TEST = "test/acc"
PERCENTILES = (("p15", "15%", ":"), ("p50", "50%", "-"), ("p85", "85%", "--"))
LEGEND_ROOM = 0.4  # below a percentile panel's lines, as a fraction of their range
# The landscape walk's step sizes, as multiples of the rate (the titles say them).
ETA_TEXT = f"eta in [{VGG_ETA_RANGE[0]:g}, {VGG_ETA_RANGE[1]:g}] x lr"


# --- panels ------------------------------------------------------------------------------------------


def norm_lines(
    metric: str,
    variants: tuple[str, ...],
    lr: float = VGG_LR,
    style: str = "-",
    suffix: str = "",
    legend: str = "label",
) -> tuple[Line, ...]:
    """One line of `metric` per norm variant at `lr`, in the variant's color, labelled by the norm
    (+ `suffix`). Its legend entry: the label (`legend="label"`), the norm alone ("norm"), or
    none ("none")."""
    lines = []
    for v in variants:
        label = f"{LABELS[v]}{suffix}"
        entry = {"label": None, "norm": LABELS[v], "none": f"_{label}"}[legend]
        lines.append(Line(v, metric, label, COLORS[v], lr, style, entry))
    return tuple(lines)


def acc_panels(variants: tuple[str, ...], lrs: tuple[float, ...] = (VGG_LR,)) -> list[Panel]:
    """Training (batch) and test accuracy of each norm at each rate (one line style per rate)."""
    styles = dict(zip(lrs, ("-", "--", ":"), strict=False))

    def lines(metric: str) -> tuple[Line, ...]:
        return tuple(
            line
            for lr in lrs
            for line in norm_lines(
                metric, variants, lr, styles[lr], f", lr {lr:g}" if len(lrs) > 1 else ""
            )
        )

    return [
        Panel("training accuracy", "train accuracy (batch)", lines(ACC_TRAIN)),
        Panel("test accuracy", "test accuracy", lines(ACC_TEST)),
    ]


def room_below(data: pd.DataFrame) -> tuple[float | None, float | None]:
    """A panel's y range from its bands' min to max, with room below for its legend (the three
    percentile lines span the panel: a legend anywhere else hides one). Unchanged (None) where
    no band has a finite value."""
    lo, hi = data["min"].min(), data["max"].max()
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return None, None
    span = (hi - lo) or abs(hi) or 1.0
    return lo - LEGEND_ROOM * span, hi + 0.05 * span


def percentile_panels(
    metric: str, title: str, variants: tuple[str, ...], lr: float = VGG_LR
) -> list[Panel]:
    """Per norm: the 15th, 50th and 85th percentiles of `metric` (`act/layer3`: all the layer's
    activations, every channel and position pooled; `act/layer11/unit0`: one channel), the
    panel named "<norm>, <title>, lr <lr>"."""
    return [
        Panel(
            f"{LABELS[v]}, {title}, lr {lr:g}",
            "activation (ReLU input)",
            tuple(
                Line(v, f"{metric}/{p}", label, COLORS[v], lr, style)
                for p, label, style in PERCENTILES
            ),
            ylim=room_below,
            legend_loc="lower center",
        )
        for v in variants
    ]


def layer_percentile_panels(layers: tuple[int, ...], variants: tuple[str, ...]) -> list[Panel]:
    """Per layer and norm: the percentiles of all the layer's activations, at `VGG_LR`."""
    return [
        panel
        for layer in layers
        for panel in percentile_panels(
            f"act/layer{layer}", f"layer #{layer}, all channels", variants
        )
    ]


def landscape_panels(variants: tuple[str, ...]) -> list[Panel]:
    """Fig. 4 / 12: along the gradient (eta over `VGG_ETA_RANGE` x lr), at `VGG_LR`: (a) the loss's
    max and min, (b) the gradient's change's max and min, (c) the effective beta-smoothness. The
    legend names each norm once: its max line solid, its min dashed (the title says so)."""

    def two(metric: str) -> tuple[Line, ...]:
        return (
            *norm_lines(f"landscape/{metric}_max", variants, suffix=" max", legend="norm"),
            *norm_lines(
                f"landscape/{metric}_min", variants, style="--", suffix=" min", legend="none"
            ),
        )

    band = " (solid max, dashed min)"
    return [
        Panel(
            "(a) loss landscape",
            "loss along the gradient",
            two("loss"),
            title=f"(a) loss landscape{band}",
            yscale="log",
        ),
        Panel(
            "(b) gradient predictiveness",
            "||grad(w(eta)) - g||_2",
            two("grad_diff"),
            title=f"(b) gradient predictiveness{band}",
            yscale="log",
        ),
        Panel(
            "(c) effective beta-smoothness",
            "max ||grad(w(eta)) - g|| / ||eta g||",
            norm_lines("landscape/beta_eff", variants),
            yscale="log",
        ),
    ]


# --- the claims' readings -----------------------------------------------------------------------------


def pct(x: float) -> str:
    """An accuracy as a percentage; a mean over seeds of which one diverged is -inf."""
    return "diverged (at least one seed)" if x == -np.inf else f"{100 * x:.1f}%"


def seed_mean(
    table: pd.DataFrame, claim: Claim, variant: str, lr: float = VGG_LR, metric: str | None = None
) -> float:
    """The mean over the claim's seeds of `per_seed`: `metric` (default: the claim's) of
    `variant`'s runs at `lr` over the claim's window."""
    return seeds_mean(per_seed(table, claim, variant, lr, metric))


def ratio(x: float, standard: float) -> float:
    """x / standard, a zero standard read as `normlab.report.claims.step_ratios` reads it: 0 / 0
    is 1 (equal values), x / 0 is +inf for x > 0 (-inf for x < 0), where Python's division would
    raise ZeroDivisionError out of `evaluate_claims`. Any other value divides as before."""
    if standard == 0:
        return 1.0 if x == 0 else float(np.sign(x) * np.inf)
    return x / standard


def gap_to_bn(
    table: pd.DataFrame, claim: Claim, variants: tuple[str, ...], shown: tuple[str, ...], what: str
) -> Measurement:
    """The worst of `variants`' mean accuracy (the claim's metric) over the window minus BN's;
    passed iff at least minus the threshold. The detail: `what`, then each of `shown`'s (which
    holds BN and `variants`) accuracy. Per seed: that seed's gap of the deciding variant."""
    runs = {v: per_seed(table, claim, v, VGG_LR) for v in shown}
    acc = {v: seeds_mean(runs[v]) for v in shown}
    gap = min(acc[v] for v in variants) - acc["batch"]
    detail = ", ".join(f"{LABELS[v]} {pct(a)}" for v, a in acc.items())
    # Per seed, the gap of the variant that decides (the lowest mean: `gap`'s), so that `gap`,
    # their mean, lies among them; a diverged seed's -inf accuracy stays -inf (+inf for BN's).
    worst = min(variants, key=lambda v: acc[v])
    gaps = {s: runs[worst][s] - runs["batch"][s] for s in claim.seeds}
    return Measurement(gap, f"{what} {detail}", bool(gap >= -claim.threshold), per_seed=gaps)


DRIFTS = ("mean_drift", "var_drift")  # of the per-unit means and variances, from step 0
CHANGES = ("mean_change", "var_change")  # from the previous probe


def drift_ratios(
    table: pd.DataFrame,
    claim: Claim,
    variants: tuple[str, ...],
    layers: tuple[int, ...],
    quantities: tuple[str, str] = DRIFTS,
) -> Measurement:
    """Each of `variants`' moment shifts (`quantities`, per quantity the mean over `layers` of the
    seed-mean of `act/layer<i>/<quantity>`) over the standard net's; value: the smallest ratio,
    passed iff every ratio reaches the threshold. Per seed: that seed's ratio of the deciding
    (variant, quantity)."""
    runs = {  # (variant, quantity) -> per layer, `per_seed`'s {seed: mean over the window}
        (v, q): [per_seed(table, claim, v, VGG_LR, f"act/layer{i}/{q}") for i in layers]
        for v in ("none", *variants)
        for q in quantities
    }
    d = {
        v: {q: float(np.mean([seeds_mean(r) for r in runs[(v, q)]])) for q in quantities}
        for v in ("none", *variants)
    }
    ratios = [ratio(d[v][q], d["none"][q]) for v in variants for q in quantities]
    layer_text = "/".join(f"#{i}" for i in layers)
    detail = f"layer(s) {layer_text}, mean over probes: " + "; ".join(
        f"{q} " + ", ".join(f"{LABELS[v]} {d[v][q]:.3g}" for v in d) for q in quantities
    )
    worst = min(ratios)
    # Per seed, the ratio of the (variant, quantity) that decides (`worst`'s), each seed's mean
    # over `layers`: `worst`, a ratio of their means over seeds, lies among them.
    at_v, at_q = [(v, q) for v in variants for q in quantities][ratios.index(worst)]

    def seed_d(v: str, s: int) -> float:
        return float(np.mean([r[s] for r in runs[(v, at_q)]]))

    per = {s: ratio(seed_d(at_v, s), seed_d("none", s)) for s in claim.seeds}
    return Measurement(worst, detail, bool(worst >= claim.threshold), per_seed=per)


# The landscape claims of Fig. 4 and Fig. 12: key -> (`measure_smaller_than_standard`'s quantity,
# what the claim compares, its metric).
LANDSCAPE = {
    "loss_band": ("loss_band", "The loss band (max - min along the gradient)", "landscape/loss_*"),
    "grad_pred": ("grad_band", "The gradient-predictiveness band (max)", "landscape/grad_diff_max"),
    "beta": ("beta_eff", "The effective beta-smoothness", "landscape/beta_eff"),
}
LANDSCAPE_THRESHOLD = 10.0


def landscape_claims(
    figure: str, prefix: str, variants: tuple[str, ...], whose: str, paper_says: str
) -> tuple[Claim, ...]:
    """Fig. 4 / 12's claims, one per `LANDSCAPE` key (id `<prefix>_<key>`): the standard net's
    quantity is at least `LANDSCAPE_THRESHOLD` x each of `variants`' (`whose`, in the claim's
    text) over `EARLY`, at `VGG_LR` (`landscape.measure_smaller_than_standard`)."""
    return tuple(
        Claim(
            id=f"{prefix}_{key}",
            figure=figure,
            claim=f"{what} of the standard net is at least {LANDSCAPE_THRESHOLD:g}x {whose} (per "
            "seed, median over the probed steps of the first third of training of the per-step "
            "ratio)",
            paper_says=paper_says,
            metric=metric,
            window=EARLY,
            threshold=LANDSCAPE_THRESHOLD,
            seeds=SEEDS,
            measure=provisional(measure_smaller_than_standard(quantity, variants, lr=VGG_LR)),
            paper_steps=VGG_STEPS,
        )
        for key, (quantity, what, metric) in LANDSCAPE.items()
    )
