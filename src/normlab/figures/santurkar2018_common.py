"""What the Santurkar et al. 2018 figures share (the DLN's, and the VGG's through
`santurkar2018_vgg_common`): telling the norms apart, choosing the runs a figure needs, one band
per metric, and the claims' run selection.

A DLN figure draws from its own sweep (`santurkar2018/dln_fig10_landscape`: only the runs it needs)
or from the suite's (`santurkar2018/dln_suite`: standard and BN at lr 1e-6 and 1e-7, l_1, l_2 and
l_inf at lr 1e-6, every probe on). So a figure first selects its runs by config, the learning rate
(`optim.lr`) and the norm variant, and only then checks that they are one setting: from either
sweep it plots the same numbers. Two sweeps mixed are still refused (their `name` and probe
settings differ).

A point of a DLN figure is the mean over all its seeds or nothing: where a run logged inf or nan
(the standard net's landscape walk overflows at the largest step sizes early in training), the
point's mean, min and max are left empty, `n_nonfinite` (`normlab.figures.N_NONFINITE`) counts
those runs, and the figure draws a marker at the top of the panel instead (`mark_nonfinite`).

A DLN claim needs every evaluation its window holds: the steps the metric's cadence (a config key,
`probe.ics.every_n_steps`, ...) puts between the window's start and its end (or the run's last
step), in every run (`select_claim_runs`).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from normlab.claims import Claim, InsufficientData, select_runs
from normlab.figures import DATA_COLUMNS, N_NONFINITE, plot_band
from normlab.results import check_one_setting

SUITE_ID = "santurkar2018/dln_suite"
LR = 1e-6  # App. A.1: the DLN's learning rate "unless a figure says otherwise"
LR_SLOW = 1e-7  # Fig. 3(b)'s second rate
LR_COLUMN = "optim.lr"
VARIANT = "norm.variant"  # derived: none, batch, noisy_batch, l1, l2, linf
LABELS = {
    "none": "Standard",
    "batch": "BN",
    "noisy_batch": "Noisy BN",
    "l1": "l1",
    "l2": "l2",
    "linf": "l_inf",
}
COLORS = {
    "none": "black",
    "batch": "tab:red",
    "noisy_batch": "tab:orange",
    "l1": "tab:blue",
    "l2": "tab:green",
    "linf": "tab:purple",
}
STANDARD_BN = ("none", "batch")
LP_VARIANTS = ("l1", "l2", "linf")
# The plotted data of a DLN figure: `normlab.figures.DATA_COLUMNS`, then `n_nonfinite`.
COLUMNS = [*DATA_COLUMNS, N_NONFINITE]
# What the runs of one DLN figure may differ in (bookkeeping keys aside): the seed, the norm and
# its options, and the learning rate (a figure selects the rates it plots before checking).
VARY = ("seed", "norm.*", LR_COLUMN)


def _variant(name: object, p: object) -> str:
    if name != "lp":
        return str(name)
    p = str(p).removesuffix(".0")
    return f"l{p}"


def with_variants(table: pd.DataFrame) -> pd.DataFrame:
    """`table` with a `norm.variant` column telling the l_p norms apart by p (`norm.p` may be the
    int 1, the float 2.0 or the string "inf")."""
    p = table["norm.p"] if "norm.p" in table else pd.Series(np.nan, index=table.index)
    return table.assign(
        **{VARIANT: [_variant(n, q) for n, q in zip(table["norm.name"], p, strict=True)]}
    )


def lr_text(lr: float) -> str:
    """1e-06 -> "1e-6"."""
    mantissa, exponent = f"{lr:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def seeds_text(seeds: Iterable) -> str:
    return "/".join(str(int(s)) for s in sorted(seeds)) or "none"


def rate_is(values: pd.Series, lr: float) -> pd.Series:
    """Which config values are the rate `lr` (read back from YAML/JSON: compared with a relative
    tolerance, not bit for bit)."""
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    return pd.Series(np.isclose(numbers, lr, rtol=1e-9, atol=0.0), index=values.index)


def _needs_columns(table: pd.DataFrame) -> list[str]:
    return [c for c in ("norm.name", LR_COLUMN, "seed", "metric") if c not in table.columns]


def select_figure_runs(
    table: pd.DataFrame,
    figure_id: str,
    variants: Sequence[str],
    lrs: Sequence[float] = (LR,),
) -> pd.DataFrame:
    """The rows of `table` (a `load_metrics` table) from the runs a figure draws (DLN or VGG): norm variant
    in `variants` and `optim.lr` one of `lrs`, with a `norm.variant` column and `optim.lr` set to
    the declared rate. Other runs (a suite's other rates and norms) are left aside.

    ValueError, naming what is wrong, unless every (variant, lr) has runs, the runs are one
    setting apart from the seed, the norm and the rate (`normlab.results.check_one_setting`; within
    a (variant, lr) only the seed may vary), there is one run per (variant, lr, seed), and every
    (variant, lr) ran the same seeds."""
    absent = _needs_columns(table)
    if absent or table.empty:
        raise ValueError(f"{figure_id}: no runs (no {', '.join(absent) or 'rows'} in the table)")
    table = with_variants(table)
    found_lrs = sorted(set(pd.to_numeric(table[LR_COLUMN], errors="coerce").dropna()))
    groups = []
    for lr in lrs:
        at_lr = table[rate_is(table[LR_COLUMN], lr)]
        if at_lr.empty:
            raise ValueError(
                f"{figure_id}: no runs at {LR_COLUMN}={lr:g} (found: "
                f"{', '.join(f'{v:g}' for v in found_lrs) or 'none'}); the figure needs "
                f"{', '.join(f'{v:g}' for v in lrs)}"
            )
        found = sorted(set(at_lr[VARIANT]))
        missing = [v for v in variants if v not in found]
        if missing:
            raise ValueError(
                f"{figure_id}: no runs with norm {', '.join(missing)} at {LR_COLUMN}={lr:g} "
                f"(found: {', '.join(found)}); the figure needs {', '.join(variants)}"
            )
        groups.append(at_lr[at_lr[VARIANT].isin(list(variants))].assign(**{LR_COLUMN: lr}))
    drawn = pd.concat(groups)
    drawn.attrs = dict(table.attrs)
    check_one_setting(drawn, vary=VARY, what=figure_id)
    for (variant, lr), rows in drawn.groupby([VARIANT, LR_COLUMN], sort=False):
        # A norm's own options (eps, momentum) may differ between norms only.
        check_one_setting(rows, vary=["seed"], what=f"{figure_id} ({variant}, lr {lr:g})")
    counts = drawn.groupby([VARIANT, LR_COLUMN, "seed"])["run_dir"].nunique()
    if (counts > 1).any():
        dupes = ", ".join(
            f"{v} lr {lr:g} seed {s}: {c} runs" for (v, lr, s), c in counts[counts > 1].items()
        )
        raise ValueError(
            f"{figure_id}: several runs for one norm, rate and seed ({dupes}); "
            "draw one sweep at a time"
        )
    seeds = {
        f"{v} lr {lr:g}": seeds_text(rows["seed"].unique())
        for (v, lr), rows in drawn.groupby([VARIANT, LR_COLUMN], sort=False)
    }
    if len(set(seeds.values())) > 1:
        per_group = ", ".join(f"{g} seeds {s}" for g, s in seeds.items())
        raise ValueError(f"{figure_id}: the norms ran different seeds ({per_group})")
    return drawn


def seed_band(rows: pd.DataFrame, keys: Sequence[str] = ("step",)) -> pd.DataFrame:
    """Per point (the values of `keys`), over the runs in `rows` (`run_dir`, `keys`, `value`: one
    row per run and point): `n`, the runs that logged the point; `n_nonfinite`, those of them
    whose value is inf or nan; and `mean`, `min`, `max` over the `n` runs where all are finite,
    NaN where one is not (never a mean over the finite runs alone). Columns: `keys`, then `mean,
    min, max, n, n_nonfinite`, sorted by `keys`. ValueError when a run has two rows at a point."""
    keys = list(keys)
    values = rows["value"].to_numpy(dtype=float)
    frame = rows[[*keys, "run_dir"]].assign(value=values, nonfinite=~np.isfinite(values))
    if frame.duplicated([*keys, "run_dir"]).any():
        raise ValueError(f"several values of one run at one point ({', '.join(keys)})")
    grouped = frame.groupby(keys, sort=True)
    band = grouped["value"].agg(["mean", "min", "max"])
    band["n"] = grouped.size()
    band[N_NONFINITE] = grouped["nonfinite"].sum()
    band.loc[band[N_NONFINITE] > 0, ["mean", "min", "max"]] = np.nan
    return band.reset_index()


def metric_band(runs: pd.DataFrame, metric: str, what: str) -> pd.DataFrame:
    """`seed_band` of `metric` over the runs in `runs` (one norm, one rate), per step: columns
    `step, mean, min, max, n, n_nonfinite`. ValueError when a run never logged `metric`."""
    run_dirs = runs["run_dir"].unique()
    rows = runs[runs["metric"] == metric]
    absent = sorted(set(run_dirs) - set(rows["run_dir"]))
    if rows.empty or absent:
        shown = ", ".join(absent[:3]) + (", ..." if len(absent) > 3 else "")
        raise ValueError(f"{what}: no {metric} logged" + (f" in {shown}" if absent else ""))
    return seed_band(rows)


def tidy(frames: list[pd.DataFrame], columns: Sequence[str] = COLUMNS) -> pd.DataFrame:
    """The frames of one figure's plotted data, as one table with `columns`, `step`, `n` and
    `n_nonfinite` ints."""
    return pd.concat(frames, ignore_index=True)[list(columns)].astype(
        {"step": "int64", "n": "int64", N_NONFINITE: "int64"}
    )


# --- drawing --------------------------------------------------------------------------------------

NONFINITE_LABEL = "blew up (inf)"
NONFINITE_Y = 0.97  # where the markers sit, as a fraction of the axes' height


def mark_nonfinite(
    ax: Axes,
    x: Sequence[float] | np.ndarray,
    color: str,
    label: str,
    marker: str = "^",
    what: str = "blew up",
) -> bool:
    """A `marker` ('^') at the top of `ax`, in `color`, at each x of a point some run logged as inf
    or nan (no value is drawn there); not in the legend (see `legend_nonfinite`), its line
    labelled `"_<label>: <what>"`. Whether there was anything to mark. (The VGG figures mark the
    step a run diverged at with an 'X' the same way.)"""
    x = np.asarray(x, dtype=float)
    if not len(x):
        return False
    ax.plot(
        x,
        np.full(len(x), NONFINITE_Y),
        transform=ax.get_xaxis_transform(),  # x in data, y in axes coordinates
        ls="none",
        marker=marker,
        ms=6 if marker == "^" else 8,
        color=color,
        clip_on=False,
        label=f"_{label}: {what}",
    )
    return True


def nonfinite_x(band: pd.DataFrame, x: str = "step") -> np.ndarray:
    """The `x` of the points of `band` (plotted data) with a non-finite value in some run."""
    return band.loc[band[N_NONFINITE] > 0, x].to_numpy(dtype=float)


def plot_band_marked(ax: Axes, band: pd.DataFrame, label: str, color: str) -> bool:
    """`normlab.figures.plot_band` of `band` (gaps where a point is NaN), and `mark_nonfinite` at
    its non-finite points; whether any was marked."""
    plot_band(ax, band, label, color)
    return mark_nonfinite(ax, nonfinite_x(band), color, label)


def legend_nonfinite(marked: Sequence[Axes], alone: bool = False, **legend: object) -> None:
    """One legend entry "blew up (inf)" per figure: added to the legend of the first axes in
    `marked` (the axes with markers, in drawing order), or the only entry of its legend with
    `alone`; nothing when `marked` is empty."""
    if not marked:
        return
    ax = marked[0]
    handles = [] if alone else ax.get_legend_handles_labels()[0]
    proxy = Line2D([], [], ls="none", marker="^", ms=6, color="0.35", label=NONFINITE_LABEL)
    ax.legend(handles=[*handles, proxy], **legend)


def suptitle(
    fig: Figure, text: str, runs: pd.DataFrame, band: str = "band min..max over seeds"
) -> None:
    """The figure's title: `text` (figure and setting), then the seeds averaged and what the
    shading shows."""
    seeds = seeds_text(runs["seed"].dropna().unique())
    fig.suptitle(f"{text}\nmean over seeds {seeds}, {band}", fontsize=10)


# --- claims ---------------------------------------------------------------------------------------


def config_int(rows: pd.DataFrame, key: str) -> int:
    """One run's config value `key` (a flattened config column of its `rows`) as an int;
    InsufficientData naming the run when its config lacks it."""
    value = rows[key].iloc[0] if key in rows.columns else None
    if value is None or pd.isna(value):
        raise InsufficientData(f"run {rows['run_dir'].iloc[0]}: no {key} in its config")
    return int(float(value))


def needed_evals(rows: pd.DataFrame, claim: Claim, every: str) -> int:
    """How many evaluations one run (`rows`: its `load_metrics` rows) makes in the claim's window:
    the steps 0, n, 2n, ... (n: the config's cadence `every`, e.g. `probe.ics.every_n_steps`)
    from the window's start to its end, or to the run's last trained step (`last_step` - 1) when
    the window ends where training does. InsufficientData when the config has no cadence."""
    every_n = config_int(rows, every)
    lo, hi = claim.window
    last = rows["last_step"].iloc[0] if "last_step" in rows.columns else None
    if last is not None and not pd.isna(last):
        hi = min(hi, int(last) - 1)
    if every_n < 1:
        raise InsufficientData(f"run {rows['run_dir'].iloc[0]}: {every}={every_n}, no cadence")
    first = -(-lo // every_n)  # the first multiple of the cadence at or after lo
    return max(hi // every_n - first + 1, 0)


def select_claim_runs(
    table: pd.DataFrame,
    claim: Claim,
    variants: Sequence[str],
    lrs: Sequence[float] = (LR,),
    *,
    every: str,
) -> dict[tuple[float, Hashable, int], pd.DataFrame]:
    """`normlab.claims.select_runs` for a DLN claim: per (lr, variant, seed), the run's rows of
    the claim's metric within its window, the runs chosen by rate (`lrs`) and norm variant, so
    that a suite's sweep serves as well as the figure's own. Every run must hold every evaluation
    of the window that the cadence `every` (a config key: `probe.ics.every_n_steps`,
    `trainer.log_every_n_steps`) makes, `needed_evals`: a claim is never measured on part of it.

    ValueError when the selected runs are not one setting (apart from seed, norm and rate);
    InsufficientData naming every missing (lr, variant, seed) piece otherwise."""
    absent = _needs_columns(table)
    if absent:
        raise InsufficientData(f"no runs (the table has no {', '.join(absent)} column)")
    table = with_variants(table)
    at_lrs = pd.concat([rate_is(table[LR_COLUMN], lr) for lr in lrs], axis=1).any(axis=1)
    wanted = table[at_lrs & table[VARIANT].isin(list(variants)) & table["seed"].isin(claim.seeds)]
    check_one_setting(wanted, vary=VARY, what=f"claim {claim.id}")
    selected: dict[tuple[float, Hashable, int], pd.DataFrame] = {}
    problems = []
    lo, hi = claim.window
    for lr in lrs:
        at_lr = table[rate_is(table[LR_COLUMN], lr)]
        try:
            sel = select_runs(at_lr, claim, VARIANT, list(variants), vary=("seed", "norm.*"))
        except InsufficientData as err:
            problems.append(f"lr {lr:g}: {err}")
            continue
        for (v, s), rows in sel.items():
            need = needed_evals(rows, claim, every)
            have = rows["step"].nunique()
            if have < need:
                problems.append(
                    f"lr {lr:g}: {VARIANT}={v} seed {s}: {have} evaluation(s) of {claim.metric} "
                    f"in steps {lo}-{hi}, need {need} ({every}={config_int(rows, every)})"
                )
            selected[(lr, v, s)] = rows
    if problems:
        raise InsufficientData("; ".join(problems))
    return selected


def blown_up_as_inf(values: pd.Series | np.ndarray) -> np.ndarray:
    """Non-finite values (inf, nan: a landscape walk that overflowed) as +inf: a blown-up walk is
    as far from smooth as it gets, whichever way it overflowed."""
    values = np.asarray(values, dtype=float)
    return np.where(np.isfinite(values), values, np.inf)


def step_ratios(standard: np.ndarray, normalised: np.ndarray) -> np.ndarray:
    """Per probed step, standard / normalised, with the walks that blew up (a non-finite value)
    read as: the standard net's alone, +inf (it is as rough as it gets: a large ratio); the
    normalised net's, 0 (against the claim), whether or not the standard net's blew up too (both
    non-finite: the step compares nothing, and it is not counted for the claim). 0 / 0 is 1 (equal
    values), x / 0 with x > 0 is +inf."""
    standard = np.asarray(standard, dtype=float)
    normalised = np.asarray(normalised, dtype=float)
    fin_s, fin_n = np.isfinite(standard), np.isfinite(normalised)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = standard / normalised
    ratios = np.where(fin_s & fin_n & (normalised == 0) & (standard == 0), 1.0, ratios)
    ratios = np.where(~fin_s, np.inf, ratios)
    return np.where(~fin_n, 0.0, ratios)


def lower_median(values: Sequence[float] | np.ndarray) -> float:
    """The median; of an even count, the lower of the two middle values (a tie between a passing
    and a failing half does not pass, and inf never averages in). nan when empty."""
    values = np.sort(np.asarray(values, dtype=float))
    return float(values[(len(values) - 1) // 2]) if len(values) else float("nan")
