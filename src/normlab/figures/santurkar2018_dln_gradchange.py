"""Santurkar et al. 2018, Fig. 11 (DLN): the l2 change of the gradient against the step size.

At every probed step t the landscape probe walks w_t - eta g_t over a log-spaced grid of step
sizes eta in [1/100, 30] x lr and writes, per grid point, ||grad L(w_t - eta g_t) - g_t||_2 to the
run's `landscape.csv` (`step, eta, loss, grad_diff`). The figure reads that file (`FigureSpec.files`;
in the table its `grad_diff` is metric `landscape_curve/grad_diff` with an `eta` column) and draws,
for the standard net (left) and the BN net (right) at lr 1e-6, the gradient change against eta
(log x, log y), one curve per training step: six steps spread over the probed ones (0..9900),
coloured by step (viridis, colorbar). Each curve is the mean over seeds with a min..max band; the
two panels share the y axis.

`plot_data` gives the plotted numbers with columns `panel, series, step, eta, mean, min, max, n`:
`normlab.figures.DATA_COLUMNS` plus `eta` (the x axis: the absolute step size) after `step`, which
here is the training step the curve was measured at; panel `"Standard"` / `"BN"`, series
`"step 2000"`. Non-finite points (the walk blew up) are left out of the means and of the log plot
(`n` counts the finite ones); the claim counts them as blown up and says how many there were.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from normlab.claims import Claim, InsufficientData, Measurement, window_note
from normlab.figures import DATA_COLUMNS, FigureSpec, new_figure
from normlab.figures.santurkar2018_common import (
    LABELS,
    LR,
    STANDARD_BN,
    VARIANT,
    blown_up_as_inf,
    select_claim_runs,
    select_dln_runs,
    suptitle,
    tidy,
)

FIG11_ID = "santurkar2018/dln_fig11_gradchange"
FILE = "landscape.csv"
CURVE = "landscape_curve/grad_diff"  # landscape.csv's grad_diff (normlab.results.RUN_FILES)
# Read, not plotted: every run logs it, so a run without landscape.csv stays in the table and is
# named as such (a run with no row at all would drop out of the table unseen).
LOSS = "train/loss"
NUM_STEPS = 6  # curves per panel
COLUMNS = [*DATA_COLUMNS[:3], "eta", *DATA_COLUMNS[3:]]
CMAP = "viridis"


def _curve_rows(runs: pd.DataFrame) -> pd.DataFrame:
    """The `landscape_curve/grad_diff` rows of `runs`, one per (run, step, eta): the last written."""
    rows = runs[runs["metric"] == CURVE]
    return rows.drop_duplicates(subset=["run_dir", "step", "eta"], keep="last")


def chosen_steps(runs: pd.DataFrame, num: int = NUM_STEPS) -> list[int]:
    """`num` training steps spread evenly over the steps every run of `runs` probed: the probed
    step nearest to each of `num` evenly spaced targets from the first to the last. ValueError
    naming the runs without `landscape.csv` rows, or when the runs share no probed step."""
    rows = _curve_rows(runs)
    absent = sorted(set(runs["run_dir"]) - set(rows["run_dir"]))
    if absent:
        shown = ", ".join(absent[:3]) + (", ..." if len(absent) > 3 else "")
        raise ValueError(f"{FIG11_ID}: no {FILE} rows in {len(absent)} run(s): {shown}")
    per_run = [set(steps) for _, steps in rows.groupby("run_dir")["step"]]
    common = sorted(set.intersection(*per_run))
    if not common:
        raise ValueError(f"{FIG11_ID}: the runs' {FILE} share no probed step")
    targets = np.linspace(common[0], common[-1], num)
    return sorted({min(common, key=lambda s, t=t: abs(s - t)) for t in targets})


def plot_data(table: pd.DataFrame) -> pd.DataFrame:
    """Fig. 11's numbers, from a table holding `landscape.csv` of standard and BN runs at lr 1e-6
    (`FIG11.load`, or `join_metrics(..., files=("landscape.csv",))`). ValueError naming what is
    missing or mixed otherwise."""
    runs = select_dln_runs(table, FIG11_ID, STANDARD_BN, lrs=(LR,))
    steps = chosen_steps(runs)
    frames = []
    for variant in STANDARD_BN:
        rows = _curve_rows(runs[runs[VARIANT] == variant])
        rows = rows[rows["step"].isin(steps) & np.isfinite(rows["value"])]
        if rows.empty:
            raise ValueError(
                f"{FIG11_ID}: no finite {CURVE} of norm {variant} at steps "
                f"{', '.join(map(str, steps))}"
            )
        stats = rows.groupby(["step", "eta"])["value"].agg(["mean", "min", "max", "count"])
        stats = stats.rename(columns={"count": "n"}).reset_index()
        frames.append(
            stats.assign(panel=LABELS[variant], series=[f"step {s}" for s in stats["step"]])
        )
    return tidy(frames, COLUMNS)


def draw(table: pd.DataFrame) -> Figure:
    """Fig. 11: `plot_data(table)`, one panel per norm, one curve per chosen step."""
    data = plot_data(table)
    runs = select_dln_runs(table, FIG11_ID, STANDARD_BN, lrs=(LR,))
    steps = chosen_steps(runs)
    cmap, norm = colormaps[CMAP], Normalize(vmin=0, vmax=max(steps[-1], 1))
    fig = new_figure(figsize=(10, 4.2), layout="constrained")
    axes = fig.subplots(1, len(STANDARD_BN), sharex=True, sharey=True)
    for ax, variant, letter in zip(axes, STANDARD_BN, "ab", strict=True):
        panel = data[data["panel"] == LABELS[variant]]
        for step in steps:
            curve = panel[panel["step"] == step].sort_values("eta")
            color = cmap(norm(step))
            ax.plot(curve["eta"], curve["mean"], color=color, lw=1.3, label=f"step {step}")
            ax.fill_between(curve["eta"], curve["min"], curve["max"], color=color, alpha=0.2, lw=0)
        ax.set(
            xscale="log",
            yscale="log",
            title=f"({letter}) {LABELS[variant]}",
            xlabel="step size eta (along -g_t)",
        )
    axes[0].set_ylabel("gradient change ||grad L(w_t - eta g_t) - g_t||_2")
    bar = fig.colorbar(
        ScalarMappable(norm=norm, cmap=cmap), ax=list(axes), ticks=steps, label="training step t"
    )
    bar.ax.tick_params(labelsize=7)
    suptitle(
        fig,
        "Santurkar et al. 2018, Fig. 11, DLN, lr 1e-6: gradient change vs step size, "
        "one curve per training step",
        runs,
    )
    return fig


# --- claim ----------------------------------------------------------------------------------------


def measure_bn_smaller_grad_change(table: pd.DataFrame, claim: Claim) -> Measurement:
    """Per seed: the fraction of (step, eta) points, paired between the standard and the BN run of
    that seed, where BN's gradient change is below the standard net's (no mean over seeds). A
    non-finite point counts as blown up (+inf): BN below a blown-up standard point counts for the
    claim, a blown-up BN point against it. value: the smallest fraction; passed iff every seed's
    fraction reaches the threshold."""
    sel = select_claim_runs(table, claim, STANDARD_BN)
    fractions, points, bad = [], [], {"none": 0, "batch": 0}
    for seed in claim.seeds:
        std = _curve_rows(sel[(LR, "none", seed)])[["step", "eta", "value"]]
        bn = _curve_rows(sel[(LR, "batch", seed)])[["step", "eta", "value"]]
        paired = std.merge(bn, on=["step", "eta"], suffixes=("_std", "_bn"))
        if paired.empty:
            raise InsufficientData(f"seed {seed}: no (step, eta) point in both runs' {FILE}")
        for variant, column in (("none", "value_std"), ("batch", "value_bn")):
            bad[variant] += int((~np.isfinite(paired[column].to_numpy(float))).sum())
        below = blown_up_as_inf(paired["value_bn"]) < blown_up_as_inf(paired["value_std"])
        fractions.append(float(below.mean()))
        points.append(len(paired))
    detail = (
        f"BN's gradient change below the standard net's at {np.mean(fractions):.1%} of (step, "
        f"eta) points (seeds {'/'.join(map(str, claim.seeds))}: "
        f"{'/'.join(f'{f:.1%}' for f in fractions)}; {'/'.join(map(str, points))} points)"
    )
    if any(bad.values()):
        detail += (
            f"; non-finite points counted as blown up: Standard {bad['none']}, BN {bad['batch']}"
        )
    detail += f"; {window_note(claim, sel.values())}"
    worst = min(fractions)
    return Measurement(value=worst, detail=detail, passed=worst >= claim.threshold)


CLAIMS = [
    # Headline claim 4, Fig. 11: BN's gradient changes less along the gradient, at every step size
    # and training step the paper plots. Per seed, not averaged, so that the verdict holds run by
    # run. 0.9, not 1: a few points near eta -> 0, where both changes vanish and round-off decides
    # the order, should not overturn a curve-wide gap.
    Claim(
        id="santurkar2018/fig11_bn_smaller_grad_change",
        figure=FIG11_ID,
        claim="At (nearly) every training step and step size, BN's gradient changes less along "
        "the gradient than the standard net's",
        paper_says=(
            "Sec. 3.2, Fig. 11: the l2 change of the gradient along the gradient direction, vs "
            "step size, is far smaller with BN throughout training (DLN: steps up to 10,000)"
        ),
        metric=CURVE,
        window=(0, 9900),
        threshold=0.9,
        seeds=(0, 1, 2),
        measure=measure_bn_smaller_grad_change,
    ),
]

FIG11 = FigureSpec(
    id=FIG11_ID,
    title="Santurkar et al. 2018, Fig. 11 (DLN, gradient change vs step size)",
    metrics=(LOSS,),
    data=plot_data,
    draw=draw,
    claims=CLAIMS,
    files=(FILE,),
)
