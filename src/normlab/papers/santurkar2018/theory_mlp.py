"""Santurkar et al. 2018, Sec. 4.1 (Thm 4.1, Thm 4.2) on real training: the BN layers of Ioffe
2015's Fig. 1 MLP (`conf/experiment/santurkar2018/theory_mlp.yaml`).

Thm 4.1 writes the gradient the BN net passes to a layer's input y, dL_hat/dy, through the upstream
gradient g = dL/dz at the layer's output: per unit j, ||dL_hat/dy_j||^2 = gamma_j^2/sigma_j^2
(||g_j||^2 - <1,g_j>^2/m - <g_j,y_hat_j>^2/m) (an identity at eps = 0, docs/theory.md). The
`theory` probe (`normlab.probes.theory`) logs, every 100 steps on the step's batch, per layer k:
`theory/layer{k}/removed_frac` (the share of ||g||^2 the two projections remove) with its parts
`mean_frac` (the centring's, <1,g>^2/m) and `proj_frac` (the division by sigma's,
<g,y_hat>^2/m); `gamma2_over_sigma2` (the mean over units of the factor); `grad_ratio`
(||dL_hat/dy||^2 / ||g||^2, both effects together). Thm 4.2 writes the BN net's curvature along
v = dL_hat/dy as `curv_bn` = `curv_scaled` - `curv_shift` (the scaled curvature
gamma^2/sigma^2 v^T H v of the rest of the net, less gamma/(m sigma^2) <g,y_hat> ||v||^2; an
identity at eps = 0), logged per unit of ||v||^2 over the first `curvature_units` units.

Rows: the removed share (with its two parts), grad_ratio, gamma^2/sigma^2 (log y axes); curv_bn
against curv_scaled - curv_shift (the two lines should coincide), and curv_shift / curv_scaled
(symlog y axes: both change sign); columns: layers #1, #2, #3; each row shares its y axis. Lines
are means over seeds, bands min..max. Dashed: the claims' thresholds; dotted in the first row:
2/m, what the projections remove on average from a g uncorrelated with 1 and y_hat (m the batch
size); the grey span: steps before the claims' window.

The plotted data: panel `"removed share, layer #1"`, ..., `"shift share, layer #3"`; series
`"removed"`, `"mean part"`, `"proj part"` in the removed-share panels, `"grad_ratio"`,
`"gamma^2/sigma^2"`, `"curv_bn"` and `"curv_scaled - curv_shift"` (panels `"Thm 4.2, layer #k"`),
`"shift share"` in the others (a point where a seed logged inf or nan has no mean and is marked by
a '^' at the top of the panel). The figure draws the BN runs at their one learning rate
(ValueError when the runs mix rates); the claims are declared for the preset's, lr 1.0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.ticker import LogFormatterSciNotation, PercentFormatter

from normlab.papers.santurkar2018.protocol import THEORY_LAYERS, THEORY_LR, THEORY_STEPS
from normlab.report.claims import (
    Claim,
    InsufficientData,
    Measurement,
    needed_evals,
    select_claim_runs,
    window_note,
)
from normlab.report.runs import LR_COLUMN
from normlab.report.spec import FigureSpec, Line, Marks, Panel, Runs

THEORY_ID = "santurkar2018/theory_mlp"
BATCH = "data.batch_size"  # m of Thm 4.1 (the MLP's units normalise over the batch)
THEORY_GLOB = "theory/layer*/*"
WINDOW = (1000, THEORY_STEPS)  # "after step 1,000", to the preset's last step
REMOVED_MIN = 0.10  # claim (a)'s threshold, see CLAIMS
RATIO_MAX = 1.0  # claims (b) and (c)'s threshold
SHIFT_MIN = 0.10  # claim (d)'s threshold, see CLAIMS


def theory_metric(layer: int, quantity: str) -> str:
    return f"theory/layer{layer}/{quantity}"


def with_derived(table: pd.DataFrame) -> pd.DataFrame:
    """`table` with, per run and step where both Thm 4.2 terms were logged, the rows
    `theory/layer{k}/curv_rhs` = curv_scaled - curv_shift (Thm 4.2's right-hand side, equal to
    curv_bn at eps = 0) and `theory/layer{k}/shift_share` = curv_shift / curv_scaled (NaN where
    curv_scaled is 0); each a copy of the curv_scaled row with its metric and value replaced."""
    frames = [table]
    for layer in THEORY_LAYERS:
        scaled = table[table["metric"] == theory_metric(layer, "curv_scaled")]
        shift = table[table["metric"] == theory_metric(layer, "curv_shift")]
        if scaled.empty or shift.empty:
            continue
        key = ["run_dir", "step"]
        shift_at = shift.set_index(key)["value"].astype(float)
        both = scaled[scaled.set_index(key).index.isin(shift_at.index)]
        a = both["value"].to_numpy(dtype=float)
        b = shift_at.loc[pd.MultiIndex.from_frame(both[key])].to_numpy(dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(a != 0, b / a, np.nan)
        frames.append(both.assign(metric=theory_metric(layer, "curv_rhs"), value=a - b))
        frames.append(both.assign(metric=theory_metric(layer, "shift_share"), value=share))
    return pd.concat(frames, ignore_index=True)


# --- the figure -----------------------------------------------------------------------------------


class PlainLogFormatter(LogFormatterSciNotation):
    """Log-axis tick labels where matplotlib's default would put them, written 0.5 or 2 (or 3%
    with `percent`) rather than 5 x 10^-1."""

    def __init__(self, percent: bool = False) -> None:
        super().__init__(labelOnlyBase=False)
        self.percent = percent

    def __call__(self, x: float, pos: int | None = None) -> str:
        if not super().__call__(x, pos):
            return ""
        return f"{100 * x:.3g}%" if self.percent else f"{x:.3g}"


@dataclass(frozen=True)
class Ref:
    """A horizontal line across a panel: a claim's threshold, a reference level. A `label`
    starting with "_" stays out of the legend."""

    y: float
    label: str
    style: str = "--"
    color: str = "0.3"
    lw: float = 0.9


@dataclass(frozen=True)
class RefPanel(Panel):
    """A `Panel` with what its lines are read against: horizontal lines (`refs(runs)`, from the
    drawn runs' table: the claim's threshold, 2/m), the steps before `before` shaded grey (the
    claims' window starts there), tick labels written plainly (0.5, 3%: `percent`). Of a row of
    panels on one y axis (`FigureSpec.shared_y`), only the `first` has a legend and y tick labels
    (the minor ones of a log axis too)."""

    refs: Callable[[pd.DataFrame], tuple[Ref, ...]] | None = None
    before: int | None = None
    percent: bool = False
    first: bool = True

    def draw(self, ax: Axes, data: pd.DataFrame, runs: Runs) -> Marks:
        if self.before and len(data):
            # Up to the runs' last step at most: a short run is all grey, its x axis its own.
            ax.axvspan(0, min(self.before, data["step"].max()), color="0.9", lw=0, zorder=0)
        marks = super().draw(ax, data, runs)
        for ref in self.refs(runs.table) if self.refs else ():
            ax.axhline(ref.y, color=ref.color, ls=ref.style, lw=ref.lw, label=ref.label)
        if self.yscale == "log":
            ax.yaxis.set_major_formatter(PlainLogFormatter(percent=self.percent))
            ax.yaxis.set_minor_formatter(PlainLogFormatter(percent=self.percent))
        elif self.percent:
            ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        if self.first:
            ax.legend(fontsize=7, loc=self.legend_loc)
        else:
            ax.get_legend().remove()
            ax.tick_params(axis="y", which="both", labelleft=False)
        return marks


def batch_size(runs: pd.DataFrame) -> int | None:
    sizes = pd.to_numeric(runs[BATCH], errors="coerce").dropna() if BATCH in runs else []
    return int(sizes.iloc[0]) if len(sizes) else None


ZERO = Ref(0.0, "_zero", style="-", color="0.6", lw=0.6)  # symlog: the values change sign


@dataclass(frozen=True)
class Row:
    """One row of the figure (a quantity, one panel per layer): its series {label: (probe
    quantity, colour, line style)}; `curv_rhs` and `shift_share` are computed per run and step
    from the logged terms (`with_derived`). Dashed: the claim's `threshold`; dotted with
    `chance`: 2/m, what the two projections remove on average from a g uncorrelated with 1 and
    y_hat (m the runs' batch size)."""

    name: str
    ylabel: str
    series: dict[str, tuple[str, str, str]]
    yscale: str
    threshold: float | None = None
    chance: bool = False
    linthresh: float | None = None  # symlog rows: linear within +-linthresh
    percent: bool = False

    def refs(self, runs: pd.DataFrame) -> tuple[Ref, ...]:
        refs = [] if self.threshold is None else [Ref(self.threshold, "claim threshold")]
        m = batch_size(runs) if self.chance else None
        if m:
            refs.append(Ref(2 / m, f"2/m (m = {m})", style=":"))
        if self.yscale == "symlog":
            refs.append(ZERO)
        return tuple(refs)

    def panel(self, layer: int) -> RefPanel:
        lines = tuple(
            Line("batch", theory_metric(layer, quantity), label, color, style=style)
            for label, (quantity, color, style) in self.series.items()
        )
        first = layer == THEORY_LAYERS[0]
        return RefPanel(
            f"{self.name}, layer #{layer}",
            self.ylabel if first else "",
            lines,
            yscale=self.yscale,
            linthresh=self.linthresh,
            refs=self.refs,
            before=WINDOW[0],
            percent=self.percent,
            first=first,
        )


ROWS = (
    Row(
        "removed share",
        "share of ||dL/dz||^2 removed",
        {
            "removed": ("removed_frac", "black", "-"),
            "mean part": ("mean_frac", "tab:blue", "-"),
            "proj part": ("proj_frac", "tab:orange", "-"),
        },
        "log",
        threshold=REMOVED_MIN,
        chance=True,
        percent=True,
    ),
    Row(
        "grad_ratio",
        "||dL_hat/dy||^2 / ||dL/dz||^2",
        {"grad_ratio": ("grad_ratio", "tab:red", "-")},
        "log",
        threshold=RATIO_MAX,
    ),
    Row(
        "gamma^2/sigma^2",
        "mean over units of gamma^2/sigma^2",
        {"gamma^2/sigma^2": ("gamma2_over_sigma2", "tab:green", "-")},
        "log",
        threshold=RATIO_MAX,
    ),
    Row(
        "Thm 4.2",
        "curvature along dL_hat/dy\n(per unit of ||dL_hat/dy||^2)",
        # Thm 4.2's two sides coincide: the right-hand side dashed over curv_bn, both seen
        {
            "curv_bn": ("curv_bn", "black", "-"),
            "curv_scaled - curv_shift": ("curv_rhs", "tab:purple", "--"),
        },
        "symlog",
        linthresh=1e-3,  # the curvature per unit of ||v||^2
    ),
    Row(
        "shift share",
        "curv_shift / curv_scaled",
        {"shift share": ("shift_share", "tab:brown", "-")},
        "symlog",
        threshold=SHIFT_MIN,
        linthresh=0.01,
        percent=True,
    ),
)


def describe(runs: pd.DataFrame) -> str:
    return f"MNIST, lr {float(runs[LR_COLUMN].iloc[0]):g}"


# --- claims ---------------------------------------------------------------------------------------


def logged(quantity: str) -> Callable[[pd.DataFrame, int], np.ndarray]:
    """A run's logged values of `theory/layer{layer}/{quantity}` over its rows, by step."""

    def values(rows: pd.DataFrame, layer: int) -> np.ndarray:
        picked = rows[rows["metric"] == theory_metric(layer, quantity)].sort_values("step")
        return picked["value"].to_numpy(dtype=float)

    return values


def shift_share_values(rows: pd.DataFrame, layer: int) -> np.ndarray:
    """A run's curv_shift / curv_scaled of `layer` at each step that logged both (NaN where
    curv_scaled is 0)."""
    wide = _both(rows, layer)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = wide["curv_shift"] / wide["curv_scaled"]
    return share.where(wide["curv_scaled"] != 0).to_numpy(dtype=float)


def _both(rows: pd.DataFrame, layer: int) -> pd.DataFrame:
    """curv_scaled and curv_shift of `layer` as two columns, by step (steps with both only)."""
    picked = rows[
        rows["metric"].isin([theory_metric(layer, q) for q in ("curv_scaled", "curv_shift")])
    ]
    wide = picked.pivot_table(index="step", columns="metric", values="value", aggfunc="first")
    wide = wide.rename(columns=lambda name: name.rsplit("/", 1)[1])
    return wide.reindex(columns=["curv_scaled", "curv_shift"]).dropna()


def window_means(
    table: pd.DataFrame,
    claim: Claim,
    quantity: str,
    values_of: Callable[[pd.DataFrame, int], np.ndarray] | None = None,
    aggregate: Callable[[np.ndarray], float] = np.mean,
) -> tuple[dict[tuple[int, int], float], dict]:
    """Per (layer, seed): `aggregate` (the mean) over the probes in the claim's window of
    `theory/layer{layer}/{quantity}` (or of `values_of(rows, layer)`, a quantity computed from
    the run's rows), from the BN runs at lr 1.0; and the selection (for its window note).

    InsufficientData naming every (layer, seed) that did not log the quantity at every probed step
    of the window (`needed_evals`, from `probe.theory.every_n_steps`), or logged a non-finite
    value there (an all-zero upstream gradient: the share is undefined, so no verdict)."""
    values_of = logged(quantity) if values_of is None else values_of
    sel = select_claim_runs(table, claim, ("batch",), lrs=(THEORY_LR,))
    means: dict[tuple[int, int], float] = {}
    problems = []
    for (_, _, seed), rows in sel.items():
        need = needed_evals(rows, claim)
        for layer in THEORY_LAYERS:
            values = values_of(rows, layer)
            where = f"layer #{layer} seed {seed}"
            if len(values) < need:
                problems.append(f"{where}: {len(values)} of {need} evaluations of {quantity}")
            elif not np.isfinite(values).all():
                bad = int((~np.isfinite(values)).sum())
                problems.append(f"{where}: {bad} non-finite {quantity} (undefined, no verdict)")
            else:
                means[(layer, seed)] = float(aggregate(values))
    if problems:
        raise InsufficientData("; ".join(problems))
    return means, sel


def _per_layer(means: dict[tuple[int, int], float], seeds, fmt: Callable[[float], str]) -> str:
    """ "layer #1 0.8% (0.7%/0.8%/0.9%), ...": mean over seeds, then each seed."""
    return ", ".join(
        f"layer #{layer} {fmt(np.mean([means[(layer, s)] for s in seeds]))} "
        f"({'/'.join(fmt(means[(layer, s)]) for s in seeds)})"
        for layer in THEORY_LAYERS
    )


def _percent(v: float) -> str:
    return f"{100 * v:.2f}%"


def _ratio(v: float) -> str:
    return f"{v:.3g}"


def bound_measure(
    quantity: str,
    at_least: bool,
    values_of: Callable[[pd.DataFrame, int], np.ndarray] | None = None,
    median: bool = False,
) -> Callable[[pd.DataFrame, Claim], Measurement]:
    """A measure: the window's mean (or `median`) of `quantity` at least (or below) the claim's
    threshold at every (layer, seed); value: the worst (the lowest, or the highest)."""
    fmt = _percent if quantity.endswith(("_frac", "_share")) else _ratio
    stat = "median" if median else "mean"

    def measure(table: pd.DataFrame, claim: Claim) -> Measurement:
        aggregate = np.median if median else np.mean
        means, sel = window_means(table, claim, quantity, values_of, aggregate)
        worst_key = (min if at_least else max)(means, key=means.__getitem__)
        worst = means[worst_key]
        passed = worst >= claim.threshold if at_least else worst < claim.threshold
        ok = sum(
            (v >= claim.threshold) if at_least else (v < claim.threshold) for v in means.values()
        )
        detail = (
            f"{stat} over the window's probes, mean over seeds "
            f"{'/'.join(map(str, claim.seeds))} (each seed): "
            f"{_per_layer(means, claim.seeds, fmt)}; "
            f"{'lowest' if at_least else 'highest'} {fmt(worst)} (layer #{worst_key[0]} seed "
            f"{worst_key[1]}); {ok} of {len(means)} (layer, seed) "
            f"{'at or above' if at_least else 'below'} {fmt(claim.threshold)}; "
            f"{window_note(claim, sel.values())}"
        )
        pick = min if at_least else max  # each seed's worst layer, as `worst` is over all
        per_seed = {s: pick(means[(layer, s)] for layer in THEORY_LAYERS) for s in claim.seeds}
        return Measurement(value=worst, detail=detail, passed=passed, per_seed=per_seed)

    return measure


SEEN = "declared after seeing one exploratory run (seed 0, 3,000 steps; docs/theory.md, Sec. 4)"
# Claim (d)'s: the curvature terms of seed 0 had been seen in an exploratory run.
SEEN_CURVATURE = (
    "declared after seeing Thm 4.2's terms in an exploratory run of seed 0, where curv_shift "
    "was a median 0.8%, 0.8% and 3.8% of curv_scaled at layers 1-3 (docs/theory.md, Sec. 4)"
)
COMMON = {"figure": THEORY_ID, "window": WINDOW, "seeds": (0, 1, 2)}

CLAIMS = (
    # (a) Sec. 4.1 reads Thm 4.1's two subtracted terms as a substantial reduction of the
    # gradient: the centring removes <1,g>^2/m and, g being (the paper argues) typically
    # correlated with y_hat, the division by sigma removes <g,y_hat>^2/m. What makes a share
    # substantial: for a g uncorrelated with 1 and y_hat, the two projections remove 2/m of
    # ||g||^2 on average (3.3% at m = 60). 10% is three times that, the least a removal must be
    # to be the effect the paper argues for rather than chance. The mean over the window's
    # probes (every 100 steps, steps 1,000 to the end), at each of layers 1-3 and in every seed.
    # Seed 0's exploratory run had shown 0.5-1.2% at layers 1-2 and 1.6-6.7% at layer 3 before
    # this was written.
    Claim(
        id="santurkar2018/theory_bn_removes_gradient",
        claim=(
            "BN's two projections remove at least 10% of the upstream gradient's squared norm "
            "||dL/dz||^2 at each of layers 1-3 after step 1,000 (mean of removed_frac over the "
            f"probes, every seed; {SEEN})"
        ),
        paper_says=(
            "Thm 4.1, Sec. 4.1: the centring's term <1,g>^2/m and the y_hat term <g,y_hat>^2/m "
            "(g correlated with y_hat) make the gradient through BN substantially smaller"
        ),
        metric="theory/layer*/removed_frac",
        threshold=REMOVED_MIN,
        measure=bound_measure("removed_frac", at_least=True),
        **COMMON,
    ),
    # (b) The theorem's conclusion, both effects together: the BN net's gradient w.r.t. the
    # layer's input is smaller than the standard net's at the same activations, the premise of
    # Sec. 4.1's "BN improves the Lipschitzness of the loss". Threshold 1 (the paper states a
    # direction, no margin), at every layer and seed. Seed 0 had shown grad_ratio 0.54-0.73 at
    # layer 1, 3.5-4.4 at layer 2 and 5.7-6.7 at layer 3.
    Claim(
        id="santurkar2018/theory_bn_smaller_gradient",
        claim=(
            "The gradient w.r.t. the layer's input is smaller than the upstream gradient "
            "(grad_ratio = ||dL_hat/dy||^2 / ||dL/dz||^2 < 1) at each of layers 1-3 after step "
            f"1,000 (mean over the probes, every seed; {SEEN})"
        ),
        paper_says=(
            "Thm 4.1, Sec. 4.1: BN's reparametrisation makes the loss more Lipschitz: the "
            "gradient through BN is the upstream one scaled by gamma^2/sigma^2, less the "
            "projections"
        ),
        metric="theory/layer*/grad_ratio",
        threshold=RATIO_MAX,
        measure=bound_measure("grad_ratio", at_least=False),
        **COMMON,
    ),
    # (c) The other half of (b): the factor gamma^2/sigma^2 itself below 1, our reading of the
    # theorem's scaling as a reduction (it shrinks the gradient only where sigma is large against
    # the learned gamma; the paper does not bound it). Says which half of the argument (b) rests
    # on. Seed 0's numbers foretold it: grad_ratio is about gamma^2/sigma^2
    # times (1 - removed_frac), with removed_frac near 1%.
    Claim(
        id="santurkar2018/theory_gain_below_one",
        claim=(
            "Thm 4.1's factor gamma^2/sigma^2 (mean over units) is below 1 at each of layers 1-3 "
            f"after step 1,000 (mean over the probes, every seed; {SEEN})"
        ),
        paper_says="Thm 4.1, Sec. 4.1: the gradient through BN is scaled by gamma^2/sigma^2",
        metric="theory/layer*/gamma2_over_sigma2",
        threshold=RATIO_MAX,
        measure=bound_measure("gamma2_over_sigma2", at_least=False),
        **COMMON,
    ),
    # (d) Thm 4.2, Sec. 4.1: the BN net's curvature along its own gradient is the rest of the
    # net's curvature scaled by gamma^2/sigma^2, *less* the shift term gamma/(m sigma^2)
    # <g,y_hat> ||v||^2; the paper reads the subtraction as BN reducing the curvature (a
    # smoother landscape) beyond the scaling, the more so as g correlates with y_hat. The share
    # curv_shift / curv_scaled is that reduction's size. The bar is claim (a)'s, for the same
    # reason: a reduction the argument rests on must be substantial, at least a tenth (the shift
    # term is driven by <g,y_hat>, the term claim (a) reads as substantial). Per probe the share,
    # then its median over the window's probes (a ratio: the median is not thrown by a probe
    # where curv_scaled passes near 0), at each of layers 1-3 and in every seed. Thm 4.2's terms
    # over the first `curvature_units` units of each layer (the preset's 10 of 100).
    Claim(
        id="santurkar2018/theory_shift_reduces_curvature",
        claim=(
            "Thm 4.2's shift term removes at least 10% of the scaled curvature along the gradient "
            "(curv_shift / curv_scaled >= 10%) at each of layers 1-3 after step 1,000 (median "
            f"over the probes, every seed; {SEEN_CURVATURE})"
        ),
        paper_says=(
            "Thm 4.2, Sec. 4.1: the curvature of the BN net along its gradient is the scaled "
            "curvature gamma^2/sigma^2 v^T H v less the term gamma/(m sigma^2) <g,y_hat> ||v||^2, "
            "so BN reduces it (g correlated with y_hat)"
        ),
        metric="theory/layer*/curv_s*",
        threshold=SHIFT_MIN,
        measure=bound_measure(
            "shift_share", at_least=True, values_of=shift_share_values, median=True
        ),
        **COMMON,
    ),
)

GRID = tuple(tuple(row.panel(layer) for layer in THEORY_LAYERS) for row in ROWS)

FIGURE = FigureSpec(
    id=THEORY_ID,
    title="Santurkar et al. 2018, Thm 4.1 and 4.2 on the BN layers of Ioffe 2015's Fig. 1 MLP",
    variants=("batch",),
    panels=tuple(panel for row in GRID for panel in row),
    claims=CLAIMS,
    lrs=None,  # the BN runs' one rate
    ncols=len(THEORY_LAYERS),
    panel_size=(4.3, 2.9),
    extra_metrics=(THEORY_GLOB,),
    derive=with_derived,
    describe=describe,
    band_text=f"band min..max over seeds; grey: before the claims' window (step {WINDOW[0]:,})",
    shared_y=tuple(tuple(panel.name for panel in row) for row in GRID),  # each row: one y axis
)
