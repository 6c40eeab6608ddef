"""What the Santurkar et al. 2018 VGG figures share: a figure as a grid of panels of lines, runs
that diverged, and claims measured at any scale.

A VGG figure draws from its own sweep (`santurkar2018/vgg_fig4_landscape`) or from the suite's
(`santurkar2018/vgg_suite`, every probe on), at paper scale or at `scale=cpu`: it selects its runs
by norm variant and learning rate (`santurkar2018_common.select_figure_runs`), so both sweeps give
the same numbers.

Each figure is declared as a `PanelFigure`: panels, each a list of `Line`s (one metric of the
runs of one norm variant at one rate, mean over seeds with a min..max band). Its `plot_data` and
`draw` are generic.

Runs that diverged (the standard net at lr 0.5; `status: diverged` with `diverged_at_step`) are
drawn, never as a normal curve: a run's line is the mean over every seed or nothing, so from the
step a seed died on, the line's points have no mean (`n_nonfinite` counts the dead seeds) and an
'X' at the top of the panel marks the step each run died at. Points where a living run logged inf
or nan (a landscape walk that overflowed) are marked '^' as in the DLN figures.

Claims are declared at paper scale (windows in steps of the paper's 15,000) and measured on the
runs' own length: a window is scaled by `trainer.max_steps / 15,000` (`scaled`). A claim needs
three seeds; on fewer (one seed at `scale=cpu`), the verdict is "insufficient data" and the
measured column adds a provisional reading on the seeds there are (`provisional`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from normlab.claims import Claim, InsufficientData, Measurement
from normlab.figures import new_figure, plot_band
from normlab.figures.santurkar2018_common import (
    COLORS,
    LABELS,
    LR_COLUMN,
    NONFINITE_LABEL,
    VARIANT,
    VARY,
    mark_nonfinite,
    nonfinite_x,
    rate_is,
    seed_band,
    select_claim_runs,
    select_figure_runs,
    suptitle,
    tidy,
    with_variants,
)
from normlab.results import check_one_setting

SUITE_ID = "santurkar2018/vgg_suite"
LR = 0.1  # App. A.1: "constant lr 0.1 unless a figure says otherwise"
LR_FAST = 0.5  # Fig. 1
LR_SLOW = 0.01  # Fig. 3(a)
PAPER_STEPS = 15_000  # App. A.1; claim windows are declared on this length
STATUSES = ("finished", "diverged")  # the runs a VGG figure draws
DIVERGED_LABEL = "run diverged"
ACC_TRAIN = "train/acc"
ACC_TEST = "test/acc"


@dataclass(frozen=True)
class Line:
    """One plotted line: `metric` of the runs of norm `variant` at rate `lr`."""

    variant: str
    lr: float
    metric: str
    label: str
    color: str
    style: str = "-"


@dataclass(frozen=True)
class Panel:
    title: str
    ylabel: str
    lines: tuple[Line, ...]
    yscale: str = "linear"


def norm_lines(
    metric: str, variants: Sequence[str], lr: float = LR, style: str = "-", suffix: str = ""
) -> tuple[Line, ...]:
    """One line of `metric` per norm variant, in the variant's color, labelled by the norm."""
    return tuple(Line(v, lr, metric, f"{LABELS[v]}{suffix}", COLORS[v], style) for v in variants)


def died_padded(group: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """`rows` (`run_dir, step, value` of one metric, runs of one norm and rate in `group`) with
    the diverged runs' missing points as inf: every step from the one it died at on that another
    run of the group logged. A line's mean then never stands for fewer seeds than it has (the
    step of the death itself is marked by `mark_deaths`)."""
    runs = group.drop_duplicates("run_dir").set_index("run_dir")
    steps = np.sort(rows["step"].unique())
    extra = []
    for run_dir, run in runs[runs["status"] == "diverged"].iterrows():
        if pd.isna(run.get("diverged_at_step")):
            raise ValueError(f"run {run_dir} diverged but its summary has no diverged_at_step")
        died = int(run["diverged_at_step"])
        logged = set(rows.loc[rows["run_dir"] == run_dir, "step"])
        missing = sorted(set(steps[steps >= died]) - logged)
        extra.append(pd.DataFrame({"run_dir": run_dir, "step": missing, "value": np.inf}))
    return pd.concat([rows[["run_dir", "step", "value"]], *extra], ignore_index=True)


def death_steps(group: pd.DataFrame) -> list[int]:
    """The steps the diverged runs of `group` died at."""
    runs = group.drop_duplicates("run_dir")
    died = runs.loc[runs["status"] == "diverged", "diverged_at_step"].dropna()
    return sorted(int(s) for s in died)


@dataclass(frozen=True)
class PanelFigure:
    """A VGG figure as a grid of panels (`ncols` wide), drawn from the runs of `variants` x `lrs`."""

    id: str
    title: str
    variants: tuple[str, ...]
    lrs: tuple[float, ...]
    panels: tuple[Panel, ...]
    ncols: int

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(line.metric for p in self.panels for line in p.lines))

    def runs(self, table: pd.DataFrame) -> pd.DataFrame:
        return select_figure_runs(table, self.id, self.variants, lrs=self.lrs)

    def _group(self, runs: pd.DataFrame, line: Line) -> pd.DataFrame:
        # `select_figure_runs` has set each run's rate to the declared one: compare exactly.
        return runs[(runs[VARIANT] == line.variant) & (runs[LR_COLUMN] == line.lr)]

    def plot_data(self, table: pd.DataFrame) -> pd.DataFrame:
        """The plotted numbers: per panel and line (series), per step, the mean, min and max over
        seeds, `n` and `n_nonfinite`. ValueError naming what is missing or mixed."""
        runs = self.runs(table)
        frames = []
        for panel in self.panels:
            for line in panel.lines:
                group = self._group(runs, line)
                rows = group[group["metric"] == line.metric]
                what = f"{self.id} ({line.variant}, lr {line.lr:g})"
                alive = group.loc[group["status"] != "diverged", "run_dir"].unique()
                absent = sorted(set(alive) - set(rows["run_dir"]))
                if absent:
                    raise ValueError(f"{what}: no {line.metric} logged in {', '.join(absent)}")
                if rows.empty:
                    raise ValueError(f"{what}: no {line.metric} logged (every run diverged first)")
                band = seed_band(died_padded(group, rows))
                frames.append(band.assign(panel=panel.title, series=line.label))
        return tidy(frames)

    def draw(self, table: pd.DataFrame) -> Figure:
        data = self.plot_data(table)
        runs = self.runs(table)
        nrows = -(-len(self.panels) // self.ncols)
        fig = new_figure(figsize=(4.2 * self.ncols, 3.4 * nrows + 0.6), layout="constrained")
        axes = fig.subplots(nrows, self.ncols, squeeze=False).ravel()
        any_died = any_blown = False
        for ax, panel in zip(axes, self.panels, strict=False):
            for line in panel.lines:
                band = data[(data["panel"] == panel.title) & (data["series"] == line.label)]
                plot_band(ax, band, line.label, line.color)
                ax.get_lines()[-1].set_linestyle(line.style)
                died = death_steps(self._group(runs, line))
                # '^' where a living run logged inf/nan; the steps after a death are not marked.
                blown = nonfinite_x(band)
                if died:
                    blown = blown[blown < min(died)]
                any_blown |= mark_nonfinite(ax, blown, line.color, line.label)
                any_died |= mark_deaths(ax, died, line.color, line.label)
            ax.set(title=panel.title, ylabel=panel.ylabel, xlabel="step", yscale=panel.yscale)
            ax.legend(fontsize=7)
        for ax in axes[len(self.panels) :]:
            ax.set_visible(False)
        extra = []
        if any_died:
            extra.append(Line2D([], [], ls="none", marker="X", color="0.35", label=DIVERGED_LABEL))
        if any_blown:
            extra.append(Line2D([], [], ls="none", marker="^", color="0.35", label=NONFINITE_LABEL))
        if extra:
            fig.legend(handles=extra, loc="outside lower center", ncols=len(extra), fontsize=8)
        scale = scale_text(runs)
        suptitle(fig, f"{self.title} ({scale})", runs)
        return fig


def mark_deaths(ax: Axes, steps: Sequence[int], color: str, label: str) -> bool:
    """An 'X' at the top of `ax` at each step a run died at; whether there was any."""
    return mark_nonfinite(ax, steps, color, label, marker="X", what="diverged")


def scale_text(runs: pd.DataFrame) -> str:
    """ "VGG-16 x1, 15000 steps" from the runs' config (one setting, checked by the selection)."""
    row = runs.iloc[0]
    width = row.get("model.width", 1.0)
    depth = row.get("model.depth", 16)
    steps = row.get("trainer.max_steps", PAPER_STEPS)
    return f"VGG-{int(depth)} width x{float(width):g}, {int(steps)} steps"


# --- claims ---------------------------------------------------------------------------------------

# The config key of each logged metric's cadence: a claim needs every evaluation of its window.
CADENCES = {
    "train/": "trainer.log_every_n_steps",
    "test/": "trainer.val_check_interval",
    "ics/": "probe.ics.every_n_steps",
    "act/": "probe.activations.every_n_steps",
    "landscape/": "probe.landscape.every_n_steps",
}


def cadence_key(metric: str) -> str:
    """The config key of `metric`'s cadence (`CADENCES`)."""
    for prefix, key in CADENCES.items():
        if metric.startswith(prefix):
            return key
    raise ValueError(f"no known cadence for {metric!r}; known prefixes: {', '.join(CADENCES)}")


def run_steps(table: pd.DataFrame) -> int:
    """The runs' `trainer.max_steps`: InsufficientData without runs, ValueError (mixed settings)
    when they differ."""
    if "trainer.max_steps" not in table.columns or table.empty:
        raise InsufficientData("no runs (no trainer.max_steps in the table)")
    values = pd.to_numeric(table["trainer.max_steps"], errors="coerce").dropna().unique()
    if len(values) != 1:
        raise ValueError(f"runs of different lengths (trainer.max_steps: {sorted(values)})")
    return int(values[0])


def scaled(claim: Claim, table: pd.DataFrame) -> Claim:
    """`claim` with its window (declared on the paper's 15,000 steps) scaled to the runs' length."""
    factor = run_steps(table) / PAPER_STEPS
    lo, hi = claim.window
    return replace(claim, window=(round(lo * factor), round(hi * factor)))


def claim_with(claim: Claim, **fields: object) -> Claim:
    """A copy of `claim` with `fields` replaced, bypassing `Claim`'s checks: its 3-seed minimum
    does not hold for a provisional reading on fewer seeds (`provisional`), nor for the living
    seeds of a claim some of whose runs diverged (`per_seed`), and such a claim may then be asked
    for one metric of several (`per_seed`)."""
    changed = copy.copy(claim)
    for name, value in fields.items():
        object.__setattr__(changed, name, tuple(value) if name == "seeds" else value)
    return changed


def per_seed(
    table: pd.DataFrame, claim: Claim, variant: str, lr: float, metric: str | None = None
) -> dict[int, float]:
    """Per seed, the mean over the claim's window of `metric` (default: the claim's) of the run of
    `variant` at `lr`. The run must hold every evaluation of the window (`select_claim_runs`, the
    metric's cadence: `cadence_key`). A run that diverged gives -inf for an accuracy (as bad as it
    gets); for any other metric it has no value over the window: InsufficientData naming it."""
    metric = metric or claim.metric
    claim = claim_with(claim, metric=metric)
    rows = table[rate_is(table[LR_COLUMN], lr)]
    rows = rows[(rows[VARIANT] == variant) & rows["seed"].isin(claim.seeds)]
    dead = rows[rows["status"] == "diverged"].drop_duplicates("run_dir")
    if len(dead) and not metric.endswith("acc"):
        died = ", ".join(
            f"seed {s} at step {d}"
            for s, d in zip(dead["seed"], dead["diverged_at_step"], strict=True)
        )
        raise InsufficientData(f"{LABELS[variant]} at lr {lr:g} diverged ({died}): no {metric}")
    values = dict.fromkeys((int(s) for s in dead["seed"]), -np.inf)
    alive = [s for s in claim.seeds if s not in values]
    if alive:
        living = table[table["status"] != "diverged"]
        selected = select_claim_runs(
            living, claim_with(claim, seeds=alive), (variant,), lrs=(lr,), every=cadence_key(metric)
        )
        values |= {
            int(s): float(r["value"].astype(float).mean()) for (_, _, s), r in selected.items()
        }
    return values


def seeds_mean(values: dict[int, float]) -> float:
    return float(np.mean(list(values.values())))


def _measurable(
    measure: Callable[[pd.DataFrame, Claim], Measurement],
    table: pd.DataFrame,
    claim: Claim,
    seed: int,
) -> bool:
    """Whether `measure` has everything it needs for `claim` on `seed` alone."""
    try:
        measure(table, claim_with(claim, seeds=(seed,)))
    except InsufficientData:
        return False
    return True


def provisional(
    measure: Callable[[pd.DataFrame, Claim], Measurement],
) -> Callable[[pd.DataFrame, Claim], Measurement]:
    """`measure` on the runs' length (`scaled`), its detail ending with the scale the runs ran at
    (`scale_text`). When seeds are missing, still "insufficient data", with a provisional reading
    on the seeds that ran (every run the claim needs, fewer seeds)."""

    def wrapped(table: pd.DataFrame, claim: Claim) -> Measurement:
        # The runs a claim compares (norms, rates) are measured one (norm, rate) at a time: check
        # here, once, that they are one setting apart from the seed, the norm and the rate.
        check_one_setting(table, vary=VARY, what=f"claim {claim.id}")
        claim = scaled(claim, table)
        table = with_variants(table)
        scale = f" [{scale_text(table)}, steps {claim.window[0]}-{claim.window[1]}]"
        try:
            m = measure(table, claim)
        except InsufficientData as err:
            # The seeds whose every needed run is there (some runs may have more seeds than others)
            present = tuple(s for s in claim.seeds if _measurable(measure, table, claim, s))
            if not present or len(present) == len(claim.seeds):
                raise
            m = measure(table, claim_with(claim, seeds=present))
            seeds = "/".join(map(str, present))
            verdict = "passes" if m.passed else "fails"
            raise InsufficientData(
                f"{err}; provisional reading on seed {seeds} alone: {m.detail} ({verdict}){scale}"
            ) from None
        return Measurement(m.value, m.detail + scale, m.passed)

    return wrapped


__all__ = [
    "ACC_TEST",
    "ACC_TRAIN",
    "DIVERGED_LABEL",
    "LR",
    "LR_FAST",
    "LR_SLOW",
    "STATUSES",
    "SUITE_ID",
    "Line",
    "Panel",
    "PanelFigure",
    "norm_lines",
    "per_seed",
    "provisional",
    "scale_text",
    "scaled",
    "seeds_mean",
]
