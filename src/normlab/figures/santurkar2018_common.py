"""What the Santurkar et al. 2018 deep-linear-network (DLN) figures share: telling the norms apart,
choosing the runs a figure needs, one band per metric, and the claims' run selection.

A DLN figure draws from its own sweep (`santurkar2018/dln_fig10_landscape`: only the runs it needs)
or from the suite's (`santurkar2018/dln_suite`: standard and BN at lr 1e-6 and 1e-7, l_1, l_2 and
l_inf at lr 1e-6, every probe on). So a figure first selects its runs by config, the learning rate
(`optim.lr`) and the norm variant, and only then checks that they are one setting: from either
sweep it plots the same numbers. Two sweeps mixed are still refused (their `name` and probe
settings differ).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from normlab.claims import Claim, InsufficientData, select_runs
from normlab.figures import band_over_runs
from normlab.results import check_one_setting

SUITE_ID = "santurkar2018/dln_suite"
LR = 1e-6  # App. A.1: the DLN's learning rate "unless a figure says otherwise"
LR_SLOW = 1e-7  # Fig. 3(b)'s second rate
LR_COLUMN = "optim.lr"
VARIANT = "norm.variant"  # derived: none, batch, l1, l2, linf
LABELS = {"none": "Standard", "batch": "BN", "l1": "l1", "l2": "l2", "linf": "l_inf"}
COLORS = {
    "none": "black",
    "batch": "tab:red",
    "l1": "tab:blue",
    "l2": "tab:green",
    "linf": "tab:purple",
}
STANDARD_BN = ("none", "batch")
LP_VARIANTS = ("l1", "l2", "linf")
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


def _at_lr(values: pd.Series, lr: float) -> pd.Series:
    """Which config values are the rate `lr` (read back from YAML/JSON: compared with a relative
    tolerance, not bit for bit)."""
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    return pd.Series(np.isclose(numbers, lr, rtol=1e-9, atol=0.0), index=values.index)


def _needs_columns(table: pd.DataFrame) -> list[str]:
    return [c for c in ("norm.name", LR_COLUMN, "seed", "metric") if c not in table.columns]


def select_dln_runs(
    table: pd.DataFrame,
    figure_id: str,
    variants: Sequence[str],
    lrs: Sequence[float] = (LR,),
) -> pd.DataFrame:
    """The rows of `table` (a `load_metrics` table) from the runs a DLN figure draws: norm variant
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
        at_lr = table[_at_lr(table[LR_COLUMN], lr)]
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


def metric_band(runs: pd.DataFrame, metric: str, what: str) -> pd.DataFrame:
    """`normlab.figures.band_over_runs` of `metric` over the runs in `runs` (one norm, one rate),
    as columns `step, mean, min, max, n`. Non-finite values (a landscape walk that blew up) are
    left out: the means are over the finite values, `n` counts them, and a step where no run has
    a finite value is not plotted. ValueError when a run never logged `metric`."""
    run_dirs = runs["run_dir"].unique()
    rows = runs[runs["metric"] == metric]
    absent = sorted(set(run_dirs) - set(rows["run_dir"]))
    if rows.empty or absent:
        shown = ", ".join(absent[:3]) + (", ..." if len(absent) > 3 else "")
        raise ValueError(f"{what}: no {metric} logged" + (f" in {shown}" if absent else ""))
    finite = rows[np.isfinite(rows["value"].to_numpy(dtype=float))]
    if finite.empty:
        return pd.DataFrame({c: [] for c in ("step", "mean", "min", "max", "n")})
    return band_over_runs(finite).rename_axis("step").reset_index()


def tidy(frames: list[pd.DataFrame], columns: Sequence[str]) -> pd.DataFrame:
    """The frames of one figure's plotted data, as one table with `columns`, `step`/`n` ints."""
    return pd.concat(frames, ignore_index=True)[list(columns)].astype(
        {"step": "int64", "n": "int64"}
    )


def suptitle(
    fig: Figure, text: str, runs: pd.DataFrame, band: str = "band min..max over seeds"
) -> None:
    """The figure's title: `text` (figure and setting), then the seeds averaged and what the
    shading shows."""
    seeds = seeds_text(runs["seed"].dropna().unique())
    fig.suptitle(f"{text}\nmean over seeds {seeds}, {band}", fontsize=10)


# --- claims ---------------------------------------------------------------------------------------


def select_claim_runs(
    table: pd.DataFrame,
    claim: Claim,
    variants: Sequence[str],
    lrs: Sequence[float] = (LR,),
    min_evals: int = 1,
) -> dict[tuple[float, Hashable, int], pd.DataFrame]:
    """`normlab.claims.select_runs` for a DLN claim: per (lr, variant, seed), the run's rows of
    the claim's metric within its window, the runs chosen by rate (`lrs`) and norm variant, so
    that a suite's sweep serves as well as the figure's own.

    ValueError when the selected runs are not one setting (apart from seed, norm and rate);
    InsufficientData naming every missing (lr, variant, seed) piece otherwise."""
    absent = _needs_columns(table)
    if absent:
        raise InsufficientData(f"no runs (the table has no {', '.join(absent)} column)")
    table = with_variants(table)
    at_lrs = pd.concat([_at_lr(table[LR_COLUMN], lr) for lr in lrs], axis=1).any(axis=1)
    wanted = table[at_lrs & table[VARIANT].isin(list(variants)) & table["seed"].isin(claim.seeds)]
    check_one_setting(wanted, vary=VARY, what=f"claim {claim.id}")
    selected: dict[tuple[float, Hashable, int], pd.DataFrame] = {}
    problems = []
    for lr in lrs:
        at_lr = table[_at_lr(table[LR_COLUMN], lr)]
        try:
            sel = select_runs(
                at_lr, claim, VARIANT, list(variants), min_evals=min_evals, vary=("seed", "norm.*")
            )
        except InsufficientData as err:
            problems.append(f"lr {lr:g}: {err}")
            continue
        selected.update({(lr, v, s): rows for (v, s), rows in sel.items()})
    if problems:
        raise InsufficientData("; ".join(problems))
    return selected


def blown_up_as_inf(values: pd.Series | np.ndarray) -> np.ndarray:
    """Non-finite values (inf, nan: a landscape walk that overflowed) as +inf: a blown-up walk is
    as far from smooth as it gets, whichever way it overflowed."""
    values = np.asarray(values, dtype=float)
    return np.where(np.isfinite(values), values, np.inf)


def ratio(num: float, den: float) -> float:
    """num / den, with inf/inf (both blew up: neither is smaller) as nan and x/0 as inf."""
    if np.isinf(num) and np.isinf(den):
        return float("nan")
    if den == 0:
        return float("inf") if num > 0 else float("nan")
    return float(num / den)
