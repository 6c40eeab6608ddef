"""Choosing the runs a figure draws: by norm variant and learning rate, then checked to be one
setting.

A figure draws from its own preset's sweep or from a suite's (`santurkar2018/dln_suite`: several
rates and norms, every probe on). So a figure first selects its runs by config, the norm variant
(`norm.variant`, derived: `none`, `batch`, `noisy_batch`, `l1`, `l2`, `linf`) and the learning rate
(`optim.lr`), and only then checks that they are one setting: from either sweep it plots the same
numbers. Two sweeps mixed are still refused (their `name` and probe settings differ).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from normlab.results import check_one_setting

LR_COLUMN = "optim.lr"
VARIANT = "norm.variant"
# What the runs of one figure may differ in (bookkeeping keys aside): the seed, the norm and its
# options, and the learning rate (a figure selects the rates it plots before checking).
VARY = ("seed", "norm.*", LR_COLUMN)
# How normlab's norm variants are drawn in every figure (a paper may label its own lines).
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


def _variant(name: object, p: object) -> str:
    if name != "lp":
        return str(name)
    return f"l{str(p).removesuffix('.0')}"


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


def _absent_columns(table: pd.DataFrame) -> list[str]:
    return [c for c in ("norm.name", LR_COLUMN, "seed", "metric") if c not in table.columns]


def select_figure_runs(
    table: pd.DataFrame,
    figure_id: str,
    variants: Sequence[str],
    lrs: Sequence[float] | None,
) -> pd.DataFrame:
    """The rows of `table` (a `load_metrics` table) from the runs a figure draws: norm variant in
    `variants` and `optim.lr` one of `lrs` (None: the runs' one rate, whatever it is), with a
    `norm.variant` column and `optim.lr` set to the declared rate. Other runs (a suite's other
    rates and norms) are left aside.

    ValueError, naming what is wrong, unless every (variant, lr) has runs, the runs are one
    setting apart from the seed, the norm and the rate (`normlab.results.check_one_setting`;
    within a (variant, lr) only the seed may vary), there is one run per (variant, lr, seed), and
    every (variant, lr) ran the same seeds."""
    absent = _absent_columns(table)
    if absent or table.empty:
        raise ValueError(f"{figure_id}: no runs (no {', '.join(absent) or 'rows'} in the table)")
    table = with_variants(table)
    found_lrs = sorted(set(pd.to_numeric(table[LR_COLUMN], errors="coerce").dropna()))
    vary = VARY if lrs is not None else VARY[:-1]
    if lrs is None:
        lrs = found_lrs[:1] if len(found_lrs) == 1 else [None]
    groups = []
    for lr in lrs:
        at_lr = table if lr is None else table[rate_is(table[LR_COLUMN], lr)]
        if at_lr.empty:
            raise ValueError(
                f"{figure_id}: no runs at {LR_COLUMN}={lr:g} (found: "
                f"{', '.join(f'{v:g}' for v in found_lrs) or 'none'}); the figure needs "
                f"{', '.join(f'{v:g}' for v in lrs)}"
            )
        found = sorted(set(at_lr[VARIANT]))
        missing = [v for v in variants if v not in found]
        if missing:
            where = "" if lr is None else f" at {LR_COLUMN}={lr:g}"
            raise ValueError(
                f"{figure_id}: no runs with norm {', '.join(missing)}{where} "
                f"(found: {', '.join(found)}); the figure needs {', '.join(variants)}"
            )
        rows = at_lr[at_lr[VARIANT].isin(list(variants))]
        groups.append(rows if lr is None else rows.assign(**{LR_COLUMN: lr}))
    drawn = pd.concat(groups)
    drawn.attrs = dict(table.attrs)
    check_one_setting(drawn, vary=vary, what=figure_id)
    keys = [VARIANT, LR_COLUMN]
    for (variant, lr), rows in drawn.groupby(keys, sort=False, dropna=False):
        # A norm's own options (eps, momentum) may differ between norms only.
        check_one_setting(rows, vary=["seed"], what=f"{figure_id} ({variant}, lr {lr:g})")
    counts = drawn.groupby([*keys, "seed"], dropna=False)["run_dir"].nunique()
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
        for (v, lr), rows in drawn.groupby(keys, sort=False, dropna=False)
    }
    if len(set(seeds.values())) > 1:
        per_group = ", ".join(f"{g} seeds {s}" for g, s in seeds.items())
        raise ValueError(f"{figure_id}: the norms ran different seeds ({per_group})")
    return drawn


def model_text(runs: pd.DataFrame) -> str:
    """What the runs trained, from their (one-setting) config: "VGG-16 width x0.125, 4000 steps",
    "DLN, 10000 steps", "MLP, 50000 steps"."""
    row = runs.iloc[0]
    target = row.get("model._target_")
    target = "" if target is None or pd.isna(target) else str(target)
    steps = row.get("trainer.max_steps")
    steps = "" if steps is None or pd.isna(steps) else f"{int(steps)} steps"
    if target.endswith("VGG"):
        width, depth = row.get("model.width", 1.0), row.get("model.depth", 16)
        model = f"VGG-{int(depth)} width x{float(width):g}"
    else:  # the model's class (DLN, MLP), unless the runs' config does not say
        model = target.rsplit(".", 1)[-1]
    return ", ".join(part for part in (model, steps) if part)
