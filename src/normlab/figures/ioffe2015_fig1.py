"""Ioffe & Szegedy 2015, Fig. 1: MNIST, 3 hidden layers of 100 sigmoid units, with and without BN.

(a) test accuracy against training step; (b) without BN and (c) with BN: the 15th, 50th and 85th
percentiles of one sigmoid input of the last hidden layer over training. Each line is the mean over
seeds of the logged values (no smoothing), the band spans min..max over seeds.

`plot_data` gives those numbers (panel "a": series "Without BN" / "With BN"; panels "b" (without
BN) and "c" (with BN): series "15%" / "50%" / "85%"), and `draw` plots them. Both refuse runs that
are not one setting: the same config apart from the seed, `norm.*` and bookkeeping keys, one run
per norm and seed, and the same seeds for both norms.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from normlab.claims import Claim, InsufficientData, Measurement, select_runs, window_note
from normlab.figures import DATA_COLUMNS, FigureSpec, band_over_runs, new_figure, plot_band
from normlab.results import check_one_setting

FIGURE_ID = "ioffe2015/fig1_mnist"
NORM_COLUMN = "norm.name"
NORMS = {"none": "Without BN", "batch": "With BN"}
NORM_COLORS = {"none": "tab:blue", "batch": "tab:red"}
NORM_PANELS = {"none": "b", "batch": "c"}  # the percentile panel of each norm
VARY = ("seed", "norm.*")  # what the runs of the figure may differ in (bookkeeping keys aside)
ACC = "test/acc"
LAST_HIDDEN = 3  # the MLP's hidden layers are weight layers 1..3
UNIT_GLOB = f"act/layer{LAST_HIDDEN}/unit*/p*"
UNIT_RE = re.compile(rf"^act/layer{LAST_HIDDEN}/unit(\d+)/(p15|p50|p85)$")
PERCENTILES = {"p15": "15%", "p50": "50%", "p85": "85%"}
PERCENTILE_COLORS = {"p15": "tab:green", "p50": "tab:purple", "p85": "tab:orange"}
TARGET_ACC = 0.97  # "sooner": the first evaluation at or above this test accuracy


def _seeds_text(seeds) -> str:
    return "/".join(str(int(s)) for s in sorted(seeds)) or "none"


def check_runs(table: pd.DataFrame) -> dict[str, int]:
    """The number of runs of each norm, once the runs are known to make one figure: both norms
    present, one setting (`normlab.results.check_one_setting`, varying only the seed and
    `norm.*`), at most one run per (norm, seed), and the same seeds for both norms. A figure of
    mixed settings (two sweeps, several learning rates) would average what should not be
    averaged; ValueError naming what is wrong otherwise."""
    found = sorted(map(str, table[NORM_COLUMN].dropna().unique())) if NORM_COLUMN in table else []
    missing = [n for n in NORMS if n not in found]
    if missing:
        raise ValueError(
            f"{FIGURE_ID}: no runs with {NORM_COLUMN}={'/'.join(missing)} "
            f"(found: {', '.join(found) or 'no runs'}); the figure needs both "
            f"{' and '.join(NORMS)}"
        )
    drawn = table[table[NORM_COLUMN].isin(list(NORMS))]
    check_one_setting(drawn, vary=VARY, what=FIGURE_ID)
    for norm in NORMS:  # the norm's own options (eps, momentum) may differ between norms only
        check_one_setting(drawn[drawn[NORM_COLUMN] == norm], vary=["seed"], what=FIGURE_ID)
    counts = drawn.groupby([NORM_COLUMN, "seed"])["run_dir"].nunique()
    if (counts > 1).any():
        dupes = ", ".join(f"{n} seed {s}: {c} runs" for (n, s), c in counts[counts > 1].items())
        raise ValueError(
            f"{FIGURE_ID}: several runs for one norm and seed ({dupes}); "
            "draw one sweep (one setting) at a time"
        )
    seeds = {norm: set(drawn.loc[drawn[NORM_COLUMN] == norm, "seed"]) for norm in NORMS}
    if len({frozenset(s) for s in seeds.values()}) > 1:
        per_norm = ", ".join(f"{norm} seeds {_seeds_text(s)}" for norm, s in seeds.items())
        raise ValueError(
            f"{FIGURE_ID}: the norms were run with different seeds ({per_norm}); "
            "both need the same seeds"
        )
    return {norm: drawn.loc[drawn[NORM_COLUMN] == norm, "run_dir"].nunique() for norm in NORMS}


def unit_metrics(table: pd.DataFrame) -> dict[str, str]:
    """The probed unit's percentile metrics, {"p15": "act/layer3/unit7/p15", ...}.

    ValueError unless exactly one unit of the last hidden layer was probed, with all three."""
    names = [n for n in table["metric"].unique() if UNIT_RE.match(str(n))]
    units = sorted({UNIT_RE.match(n).group(1) for n in names}, key=int)
    if len(units) != 1:
        raise ValueError(
            f"{FIGURE_ID}: expected the percentiles of exactly one unit of layer {LAST_HIDDEN} "
            f"({UNIT_GLOB}), found units: {', '.join(units) or 'none'}"
        )
    metrics = {p: f"act/layer{LAST_HIDDEN}/unit{units[0]}/{p}" for p in PERCENTILES}
    absent = [m for m in metrics.values() if m not in names]
    if absent:
        raise ValueError(f"{FIGURE_ID}: missing metrics {', '.join(absent)}")
    return metrics


def seed_band(table: pd.DataFrame, norm: str, metric: str) -> pd.DataFrame:
    """Per step, over the runs of `norm`: `mean`, `min` and `max` of `metric` and `n`, the number
    of runs that logged it at that step (NaN-skipping, so a step logged by only some runs averages
    those). Index: step. ValueError when a run of `norm` never logged `metric`."""
    runs = table.loc[table[NORM_COLUMN] == norm, "run_dir"].unique()
    rows = table[(table[NORM_COLUMN] == norm) & (table["metric"] == metric)]
    absent = sorted(set(runs) - set(rows["run_dir"]))
    if rows.empty or absent:
        raise ValueError(
            f"{FIGURE_ID}: no {metric} in the run(s) with {NORM_COLUMN}={norm}"
            + (f": {', '.join(absent)}" if absent else "")
        )
    return band_over_runs(rows)


def plot_data(table: pd.DataFrame) -> pd.DataFrame:
    """The numbers Fig. 1 plots, from a `load_metrics` table holding `test/acc` and
    `act/layer3/unit{j}/p15|p50|p85` of runs with norm.name none and batch: one row per point,
    columns `panel, series, step, mean, min, max, n` (`normlab.figures.DATA_COLUMNS`), series in
    the order they are drawn. ValueError naming what is missing or mixed otherwise."""
    check_runs(table)
    units = unit_metrics(table)
    series = [("a", label, norm, ACC) for norm, label in NORMS.items()]
    series += [
        (NORM_PANELS[norm], p_label, norm, units[p])
        for norm in NORMS
        for p, p_label in PERCENTILES.items()
    ]
    frames = [
        seed_band(table, norm, metric)
        .rename_axis("step")
        .reset_index()
        .assign(panel=panel, series=label)
        for panel, label, norm, metric in series
    ]
    data = pd.concat(frames, ignore_index=True)[DATA_COLUMNS]
    return data.astype({"step": "int64", "n": "int64"})


def draw(table: pd.DataFrame) -> Figure:
    """Fig. 1 from a `load_metrics` table: `plot_data(table)`, plotted. ValueError naming what is
    missing or mixed otherwise.

    Lines (in order): (a) "Without BN (n=N)", "With BN (n=N)", N the number of runs (seeds)
    averaged; (b) and (c) "15%", "50%", "85%"."""
    data = plot_data(table)
    runs = check_runs(table)
    units = unit_metrics(table)

    def band(panel: str, series: str) -> pd.DataFrame:
        return data[(data["panel"] == panel) & (data["series"] == series)]

    fig = new_figure(figsize=(13, 3.8), layout="constrained")
    ax_a = fig.add_subplot(1, 3, 1)
    ax_b = fig.add_subplot(1, 3, 2)
    ax_c = fig.add_subplot(1, 3, 3, sharey=ax_b)

    for norm, label in NORMS.items():
        plot_band(ax_a, band("a", label), f"{label} (n={runs[norm]})", NORM_COLORS[norm])
    ax_a.set(title="(a)", xlabel="training step", ylabel="test accuracy")
    # As in the paper (0.7..1), zoom on the part of training after the first steps, unless the
    # nets end up lower than that; the early rise is left below the axis.
    acc = [band("a", label) for label in NORMS.values()]
    late = pd.concat([b.loc[b["step"] >= 0.2 * b["step"].max(), "min"] for b in acc])
    bottom = min(0.7, float(late.min()) - 0.02)
    ax_a.set_ylim(bottom, 1.0 + 0.02 * (1.0 - bottom))
    ax_a.legend(loc="lower right")

    for ax, (norm, label) in zip((ax_b, ax_c), NORMS.items(), strict=True):
        panel = NORM_PANELS[norm]
        for p, p_label in PERCENTILES.items():
            plot_band(ax, band(panel, p_label), p_label, PERCENTILE_COLORS[p])
        ax.set(title=f"({panel}) {label}", xlabel="training step")
        ax.legend(loc="best")
    unit = units["p50"].split("/")[2].removeprefix("unit")
    ax_b.set_ylabel(f"sigmoid input (layer {LAST_HIDDEN}, unit {unit})")
    ax_c.tick_params(labelleft=False)

    seeds = table.loc[table[NORM_COLUMN].isin(list(NORMS)), "seed"].dropna().unique()
    fig.suptitle(
        f"Ioffe & Szegedy 2015, Fig. 1 (MNIST): mean over seeds {_seeds_text(seeds)}, "
        "band min..max",
        fontsize=10,
    )
    return fig


# --- claims ---------------------------------------------------------------------------------------


def _first_step_at(table: pd.DataFrame, run_dir: str, target: float) -> int | None:
    rows = table[(table["run_dir"] == run_dir) & (table["metric"] == ACC)].sort_values("step")
    hit = rows[rows["value"] >= target]
    return None if hit.empty else int(hit["step"].iloc[0])


def _first_steps_text(steps: list[int | None]) -> str:
    reached = [s for s in steps if s is not None]
    if not reached:
        return "never"
    text = f"{np.mean(reached):.0f}"
    if len(reached) < len(steps):
        text += f" (never in {len(steps) - len(reached)} of {len(steps)} seeds)"
    return text


def measure_higher_sooner(table: pd.DataFrame, claim: Claim) -> Measurement:
    """Per seed, the mean over the window's evaluations of acc(BN) - acc(none), same seed paired;
    value: the mean over seeds; passed iff the difference exceeds the threshold in every seed."""
    sel = select_runs(table, claim, NORM_COLUMN, list(NORMS), vary=VARY)
    diffs = [
        sel[("batch", s)]["value"].mean() - sel[("none", s)]["value"].mean() for s in claim.seeds
    ]
    first = {
        norm: [
            _first_step_at(table, sel[(norm, s)]["run_dir"].iloc[0], TARGET_ACC)
            for s in claim.seeds
        ]
        for norm in NORMS
    }
    seeds = "/".join(map(str, claim.seeds))
    per_seed = "/".join(f"{100 * d:+.2f}" for d in diffs)
    detail = (
        f"BN - none: {100 * np.mean(diffs):+.2f} pts (seeds {seeds}: {per_seed}); "
        f"first step at {100 * TARGET_ACC:g}% test acc: BN {_first_steps_text(first['batch'])}, "
        f"none {_first_steps_text(first['none'])}; {window_note(claim, sel.values())}"
    )
    passed = all(d > claim.threshold for d in diffs)
    return Measurement(value=float(np.mean(diffs)), detail=detail, passed=passed)


def _drift(rows: pd.DataFrame) -> float:
    """Mean over the three percentiles of (max - min over the window) of that percentile's curve."""
    names = rows["metric"].unique()
    units = {UNIT_RE.match(str(n)).group(1) for n in names if UNIT_RE.match(str(n))}
    if len(units) != 1 or len(names) != len(PERCENTILES):
        raise InsufficientData(
            f"run {rows['run_dir'].iloc[0]} logged {', '.join(sorted(names))}; "
            f"expected p15/p50/p85 of one unit of layer {LAST_HIDDEN}"
        )
    spans = rows.groupby("metric")["value"].agg(lambda v: v.max() - v.min())
    return float(spans.mean())


def measure_stable_inputs(table: pd.DataFrame, claim: Claim) -> Measurement:
    """Per seed, drift(none) / drift(BN); value: the mean ratio; passed iff the ratio reaches the
    threshold in every seed."""
    # Two evaluations at least: one point has no drift to compare.
    sel = select_runs(table, claim, NORM_COLUMN, list(NORMS), min_evals=2, vary=VARY)
    drift = {norm: [_drift(sel[(norm, s)]) for s in claim.seeds] for norm in NORMS}
    ratios = []
    for d_none, d_bn in zip(drift["none"], drift["batch"], strict=True):
        if d_bn > 0:
            ratios.append(d_none / d_bn)
        else:  # BN's curves perfectly flat: infinitely steadier, unless neither moved at all
            ratios.append(float("inf") if d_none > 0 else 1.0)
    seeds = "/".join(map(str, claim.seeds))
    detail = (
        f"drift (mean over p15/p50/p85 of max-min) without BN "
        f"{'/'.join(f'{d:#.3g}' for d in drift['none'])}, with BN "
        f"{'/'.join(f'{d:#.3g}' for d in drift['batch'])} (seeds {seeds}); "
        f"ratio x{np.mean(ratios):#.3g} ({'/'.join(f'x{r:#.3g}' for r in ratios)}); "
        f"{window_note(claim, sel.values())}"
    )
    passed = all(r >= claim.threshold for r in ratios)
    return Measurement(value=float(np.mean(ratios)), detail=detail, passed=passed)


CLAIMS = [
    # Fig. 1(a). Paired by seed so that a lucky seed of one arm cannot carry the verdict; 0.5 pts
    # is well above the seed-to-seed noise of a 10k-example test set late in training, and the
    # window starts where the paper's axis does (10K steps).
    Claim(
        id="ioffe2015/fig1a_higher_sooner",
        figure=FIGURE_ID,
        claim="BN reaches a higher test accuracy, sooner",
        paper_says=(
            "Fig. 1(a): the BN net's test accuracy is above the unnormalised net's throughout "
            "10K-50K steps and it gets there faster"
        ),
        metric=ACC,
        window=(10000, 50000),
        threshold=0.005,
        seeds=(0, 1, 2),
        measure=measure_higher_sooner,
    ),
    # Fig. 1(b,c). "Drift" as the range each percentile curve covers over training; the
    # unnormalised net's must be at least twice BN's in every seed. The paper shows no number, so the
    # factor 2 is a judgement: a clear visual difference, not a marginal one.
    Claim(
        id="ioffe2015/fig1bc_stable_inputs",
        figure=FIGURE_ID,
        claim="BN keeps the sigmoid input's distribution steady; without BN it drifts",
        paper_says=(
            "Fig. 1(b,c): the 15/50/85th percentiles of a last-hidden-layer sigmoid input drift "
            "without BN and stay steady with BN"
        ),
        metric=UNIT_GLOB,
        window=(0, 50000),
        threshold=2.0,
        seeds=(0, 1, 2),
        measure=measure_stable_inputs,
    ),
]

FIGURE = FigureSpec(
    id=FIGURE_ID,
    title="Ioffe & Szegedy 2015, Fig. 1 (MNIST, with and without BN)",
    metrics=(ACC, UNIT_GLOB),
    data=plot_data,
    draw=draw,
    claims=CLAIMS,
)
