"""Santurkar et al. 2018's landscape claims (Sec. 3.2, 3.3), shared by the DLN figures (Fig. 10,
13) and the VGG ones (Fig. 4, 12): the standard net's loss band, gradient predictiveness or
effective beta-smoothness against a normalised net's, as a ratio per probed step and its median
over the window. And the DLN landscape figures' panels (Fig. 10, 13: `landscape_panel`).

At every probed step t the landscape probe walks w_t - eta g_t over a grid of step sizes eta
(Sec. 3.2, App. A.2.2) and logs the loss band `landscape/loss_min` .. `landscape/loss_max` (min
and max over eta of the loss), gradient predictiveness `landscape/grad_diff_min` ..
`landscape/grad_diff_max` (min and max over eta of ||grad L(w_t - eta g_t) - g_t||_2) and the
effective beta-smoothness `landscape/beta_eff` (the max over eta of that change / ||eta g_t||)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from normlab.report.claims import (
    Claim,
    InsufficientData,
    Measurement,
    lower_median,
    needed_evals,
    select_claim_runs,
    step_ratios,
    window_note,
)
from normlab.report.runs import COLORS, LABELS
from normlab.report.spec import Line, Panel, Shade

LOSS_BAND = ("landscape/loss_min", "landscape/loss_max")

# A DLN landscape panel: quantity -> (title, y label, metrics: (min, max) for a band over eta,
# (metric,) for a line over seeds).
PANELS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "train_loss": ("training loss", "training loss", ("train/loss",)),
    "loss_band": ("loss landscape", "loss along the gradient", LOSS_BAND),
    "grad_band": (
        "gradient predictiveness",
        "l2 change of the gradient",
        ("landscape/grad_diff_min", "landscape/grad_diff_max"),
    ),
    "beta_eff": ("effective beta-smoothness", "effective beta", ("landscape/beta_eff",)),
}


def landscape_panel(quantity: str, letter: str, variants: Sequence[str]) -> Panel:
    """Panel `letter` of a DLN landscape figure (log y), per norm of `variants`: a band over eta
    (loss, gradient predictiveness) shaded from the mean over seeds of its min to that of its max,
    series `"<norm>, min"` and `"<norm>, max"`; or a line (training loss, beta_eff), the mean
    over seeds with a min..max band over seeds, series `"<norm>"`."""
    title, ylabel, metrics = PANELS[quantity]
    items: list[Line | Shade] = []
    for v in variants:
        label, color = LABELS[v], COLORS[v]
        if len(metrics) == 2:
            lo, hi = (
                Line(v, m, f"{label}, {end}", color)
                for m, end in zip(metrics, ("min", "max"), strict=True)
            )
            items.append(Shade(lo, hi, label, color))
        else:
            items.append(Line(v, metrics[0], label, color))
    return Panel(letter, ylabel, tuple(items), title=f"({letter}) {title}", yscale="log")


def band_text(panels: dict[str, str]) -> str:
    """What a landscape figure's shading shows, panels by letter (`{quantity: letter}`)."""
    bands = [f"({p})" for q, p in panels.items() if len(PANELS[q][2]) == 2]
    lines = [f"({p})" for q, p in panels.items() if len(PANELS[q][2]) == 1]
    return f"shaded {', '.join(bands)}: min..max over eta, {', '.join(lines)}: min..max over seeds"


def _per_step(rows: pd.DataFrame, quantity: str) -> pd.Series:
    """One run's `quantity` at each probed step of the window (index: step), non-finite where
    the walk blew up. The loss band's width is loss_max - loss_min, inf where either is
    non-finite; a step counts only where both were logged."""
    if quantity != "loss_band":
        return rows.set_index("step")["value"].astype(float).sort_index()
    lo_name, hi_name = LOSS_BAND
    wide = rows[rows["metric"].isin([lo_name, hi_name])].pivot(
        index="step", columns="metric", values="value"
    )
    if lo_name not in wide or hi_name not in wide:
        raise InsufficientData(f"run {rows['run_dir'].iloc[0]} lacks {lo_name} or {hi_name}")
    logged = rows.groupby("step")["metric"].agg(lambda m: {lo_name, hi_name} <= set(m))
    wide = wide[logged.reindex(wide.index).to_numpy(dtype=bool)].sort_index()
    lo, hi = wide[lo_name].to_numpy(float), wide[hi_name].to_numpy(float)
    width = np.where(np.isfinite(lo) & np.isfinite(hi), hi - lo, np.inf)
    return pd.Series(width, index=wide.index)


# What a claim's measure compares, per quantity (its detail names it).
MEASURED = {
    "loss_band": "loss band width loss_max - loss_min",
    "grad_band": "grad_diff_max",
    "beta_eff": "beta_eff",
}


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def measure_smaller_than_standard(
    quantity: str, variants: Sequence[str], lr: float
) -> Callable[[pd.DataFrame, Claim], Measurement]:
    """A measure on the runs at rate `lr` (the DLN's 1e-6; the VGG figures use it at 0.1): per seed and normalised `variant`, the ratio Standard / variant of `quantity`
    at each probed step of the window (`step_ratios`: a walk that blew up is +inf for the standard
    net, 0 for the normalised one, and 0 when both did), then the median of those ratios over the
    window (`lower_median`); value: the smallest median; passed iff every median reaches the
    threshold; per seed: that seed's smallest median over the normalised variants. The detail gives the medians per seed and how many walks blew up per norm.
    InsufficientData when a run lacks a probed step of the window (`needed_evals`)."""

    def measure(table: pd.DataFrame, claim: Claim) -> Measurement:
        sel = select_claim_runs(table, claim, ("none", *variants), lrs=(lr,))
        per_step = {(v, s): _per_step(rows, quantity) for (_, v, s), rows in sel.items()}
        medians: dict[str, list[float]] = {v: [] for v in variants}
        both_blown = dict.fromkeys(variants, 0)
        short = []
        for v in variants:
            for s in claim.seeds:
                paired = pd.concat(
                    {"std": per_step[("none", s)], "norm": per_step[(v, s)]}, axis=1, join="inner"
                )
                need = max(needed_evals(sel[(lr, n, s)], claim) for n in ("none", v))
                if len(paired) < need:
                    short.append(
                        f"{LABELS[v]} seed {s}: {MEASURED[quantity]} at {len(paired)} probed "
                        f"step(s) of both runs in steps {claim.window[0]}-{claim.window[1]}, "
                        f"need {need}"
                    )
                    continue
                std, norm = paired["std"].to_numpy(), paired["norm"].to_numpy()
                medians[v].append(lower_median(step_ratios(std, norm)))
                both_blown[v] += int((~np.isfinite(std) & ~np.isfinite(norm)).sum())
        if short:
            raise InsufficientData("; ".join(short))
        blown = {
            v: sum(int((~np.isfinite(per_step[(v, s)].to_numpy())).sum()) for s in claim.seeds)
            for v in ("none", *variants)
        }
        parts = [
            f"ratio Standard/normalised of {MEASURED[quantity]} per probed step, median over the "
            f"window (seeds {'/'.join(map(str, claim.seeds))}): "
            + ", ".join(
                f"Standard/{LABELS[v]} x{'/'.join(_fmt(m) for m in medians[v])}" for v in variants
            ),
            "walks that blew up (non-finite; Standard's count as +inf, a normalised net's as 0): "
            + ", ".join(f"{LABELS[v]} {n}" for v, n in blown.items()),
        ]
        if any(both_blown.values()):
            parts.append(
                "steps where both blew up (not comparable, counted against): "
                + ", ".join(f"{LABELS[v]} {n}" for v, n in both_blown.items())
            )
        parts.append(window_note(claim, sel.values()))
        every = [m for ms in medians.values() for m in ms]
        worst = float(np.min(every))
        passed = all(m >= claim.threshold for m in every)
        # Each seed's smallest median over the normalised variants, as `worst` is over all.
        per_seed = {s: min(medians[v][i] for v in variants) for i, s in enumerate(claim.seeds)}
        return Measurement(value=worst, detail="; ".join(parts), passed=passed, per_seed=per_seed)

    return measure
