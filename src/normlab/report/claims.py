"""Paper claims as data: what the paper says, how to measure it, and the threshold that decides.

A `Claim` is fixed before any run exists (its window, threshold and seeds are part of its
definition); `evaluate_claims` measures each claim on a `normlab.results.load_metrics` table and
gives one of three verdicts: "reproduced", "not reproduced", or "insufficient data" when a run,
seed or evaluation the claim needs is missing, or a run stopped before the claim's window ends.
A claim is never computed on partial data, nor on runs of mixed settings (ValueError).

The rules every claim shares live here:
- the runs a claim compares, by norm and rate (`select_claim_runs`, on `select_runs`), each
  holding *every* evaluation of the window that its metric's cadence makes (`needed_evals`; the
  cadence key comes from the probes' declarations, `cadence_key`);
- a window declared on the paper's run length and measured on the runs' own (`scaled`);
- a provisional reading on the seeds there are when some are missing (`provisional`): the verdict
  stays "insufficient data";
- per-step ratios of two nets with walks that blew up (`step_ratios`, `lower_median`).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from normlab.report.runs import LABELS, LR_COLUMN, VARIANT, VARY, model_text, rate_is, with_variants
from normlab.results import check_one_setting

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
INSUFFICIENT = "insufficient data"

COLUMNS = [
    "id",
    "claim",
    "paper says",
    "measured",
    "verdict",
    "value",
    "seeds",
    "per seed",
    "interval",
]
MARKDOWN_COLUMNS = ["id", "claim", "paper says", "measured", "per seed", "interval", "verdict"]
# The interval over seeds (`seed_interval`): min..max below this many seeds, a bootstrap from it.
BOOTSTRAP_FROM = 5
BOOTSTRAP_RESAMPLES = 10_000


class InsufficientData(Exception):
    """Raised by a measure when the table lacks what the claim needs; the message names it."""


@dataclass(frozen=True)
class Measurement:
    """A claim's measured number, its human-readable detail, and whether it passed
    (None: not enough data to say). `per_seed`: the quantity compared with the threshold, seed by
    seed (for a claim over several cells, lrs or layers, each seed's deciding cell: the worst, or
    the mean where the rule compares a mean over seeds)."""

    value: float
    detail: str
    passed: bool | None
    per_seed: Mapping[int, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Claim:
    """One claim of a paper figure, with the rule that decides it.

    `metric` is a metric name or shell-style glob; `window` the inclusive step window the measure
    looks at (every run must have reached its end: it is never clipped to what ran); `seeds` the
    seeds that must all be present (at least 3); `measure(table, claim)` computes the
    `Measurement` from a `load_metrics` table. `paper_steps`: the run length the window is
    declared on; measured on runs of another length, the window scales with it (`scaled`).
    `reading`: a copy made to measure part of the claim (fewer seeds, one metric of several:
    `Claim.part`), exempt from the seed minimum; never a claim of its own."""

    id: str
    figure: str
    claim: str
    paper_says: str
    metric: str
    window: tuple[int, int]
    threshold: float
    seeds: tuple[int, ...]
    measure: Callable[[pd.DataFrame, Claim], Measurement]
    paper_steps: int | None = None
    reading: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "seeds", tuple(self.seeds))
        if len(set(self.seeds)) < 3 and not self.reading:
            raise ValueError(f"claim {self.id}: needs at least 3 seeds, got {self.seeds}")
        lo, hi = self.window
        if lo > hi:
            raise ValueError(f"claim {self.id}: empty window {self.window}")

    def part(self, **fields: object) -> Claim:
        """A reading of part of this claim (`seeds`, `metric`, `window` replaced): for a
        provisional reading on fewer seeds, or the living seeds of a claim some of whose runs
        diverged."""
        return replace(self, reading=True, **fields)


def select_runs(
    table: pd.DataFrame,
    claim: Claim,
    by: str,
    groups: Sequence[Hashable],
    vary: Sequence[str] = ("seed",),
) -> dict[tuple[Hashable, int], pd.DataFrame]:
    """The rows each (group, seed) run contributes to `claim`: its metric (glob) within the
    claim's window, for every `group` of column `by` (e.g. `norm.name` in none/batch) and every
    seed of the claim.

    The window is never clipped to what ran: a run whose last step (`last_step`, the summary's
    `step`) is before the window's end has not run the claim's experiment.

    Raises ValueError (`normlab.results.check_one_setting`) when these runs differ in their config
    beyond `by`, the keys matching a glob of `vary` and bookkeeping keys (paths, logging): a claim
    is measured on one setting. Raises InsufficientData naming every missing piece: a (group, seed)
    with no run, with more than one run (ambiguous: several sweeps mixed), that stopped before
    the window's end, or with no such metric logged. That every evaluation of the window is
    there is `select_claim_runs`' check (the metric's cadence)."""
    lo, hi = claim.window
    if by not in table.columns or "seed" not in table.columns:
        raise InsufficientData(f"no runs (the table has no {by!r} / 'seed' column)")
    candidates = table[table[by].isin(list(groups)) & table["seed"].isin(list(claim.seeds))]
    check_one_setting(candidates, vary=[by, *vary], what=f"claim {claim.id}")
    for group in groups:  # within a group only the seed may vary (e.g. no two BN momentums)
        check_one_setting(
            candidates[candidates[by] == group], vary=["seed"], what=f"claim {claim.id}"
        )
    # problem -> the (group, seed) runs it applies to, so that one cause is named once.
    problems: dict[str, list[tuple[Hashable, int]]] = {}
    selected: dict[tuple[Hashable, int], pd.DataFrame] = {}
    names = table["metric"].unique()
    wanted = [n for n in names if fnmatch.fnmatchcase(str(n), claim.metric)]
    for group in groups:
        for seed in claim.seeds:
            rows = candidates[(candidates[by] == group) & (candidates["seed"] == seed)]
            runs = rows["run_dir"].unique()
            if len(runs) == 0:
                problems.setdefault("no run", []).append((group, seed))
                continue
            if len(runs) > 1:
                problem = f"{len(runs)} runs, ambiguous ({', '.join(runs)})"
                problems.setdefault(problem, []).append((group, seed))
                continue
            short = _short_of(rows, hi)
            if short:
                problems.setdefault(short, []).append((group, seed))
                continue
            rows = rows[rows["metric"].isin(wanted)]
            if rows.empty:
                problems.setdefault(f"no {claim.metric} logged", []).append((group, seed))
                continue
            in_window = rows[(rows["step"] >= lo) & (rows["step"] <= hi)]
            selected[(group, seed)] = in_window
    if problems:
        raise InsufficientData(
            "; ".join(f"{_runs_text(by, keys)}: {problem}" for problem, keys in problems.items())
        )
    return selected


def _short_of(rows: pd.DataFrame, end: int) -> str | None:
    """Why one run (its rows) cannot cover a window ending at step `end`, or None if it can."""
    last = rows["last_step"].iloc[0] if "last_step" in rows.columns else None
    if last is None or pd.isna(last):
        return f"last step unknown (no summary step), the window ends at step {end}"
    if int(last) < end:
        return f"stopped at step {int(last)}, before the window's end at step {end}"
    return None


def _runs_text(by: str, keys: Sequence[tuple[Hashable, int]]) -> str:
    """[("none", 0), ("none", 1), ("batch", 2)] -> "norm.name=none seeds 0/1, norm.name=batch seed 2"."""
    seeds: dict[Hashable, list[int]] = {}
    for group, seed in keys:
        seeds.setdefault(group, []).append(seed)
    return ", ".join(
        f"{by}={group} seed{'s' if len(s) > 1 else ''} {'/'.join(map(str, s))}"
        for group, s in seeds.items()
    )


def window_note(claim: Claim, selected: Iterable[pd.DataFrame]) -> str:
    """ "steps A-B, N evaluations per run" (or "N-M evaluations") over the selected runs' rows."""
    counts = [df["step"].nunique() for df in selected]
    lo, hi = claim.window
    n = f"{min(counts)}" if min(counts) == max(counts) else f"{min(counts)}-{max(counts)}"
    return f"steps {lo}-{hi}, {n} evaluations per run"


def evaluate_claims(claims: Iterable[Claim], table: pd.DataFrame) -> pd.DataFrame:
    """Measure each claim on a `load_metrics` table. A measure's ValueError (runs of mixed
    settings) propagates: there is no verdict to give on such a table.

    Columns: `id`, `claim`, `paper says`, `measured` (the measurement's detail, or what is
    missing), `verdict` ("reproduced" | "not reproduced" | "insufficient data"), `value`."""
    rows = []
    for claim in claims:
        try:
            m = claim.measure(table, claim)
        except InsufficientData as err:
            m = Measurement(value=float("nan"), detail=f"missing: {err}", passed=None)
        verdict = {True: REPRODUCED, False: NOT_REPRODUCED, None: INSUFFICIENT}[m.passed]
        per_seed = {int(s): float(v) for s, v in sorted(m.per_seed.items())}
        rows.append(
            {
                "id": claim.id,
                "claim": claim.claim,
                "paper says": claim.paper_says,
                "measured": m.detail,
                "verdict": verdict,
                "value": m.value,
                "seeds": "/".join(map(str, per_seed)),
                "per seed": ", ".join(f"{s}: {_short(v)}" for s, v in per_seed.items()),
                "interval": seed_interval(list(per_seed.values())),
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS)


def _short(x: float) -> str:
    return f"{x:.4g}"


def seed_interval(values: Sequence[float]) -> str:
    """The spread of a claim's per-seed values, one rule for every claim: "min..max" over fewer
    than `BOOTSTRAP_FROM` (5) seeds, where a bootstrap would resample 3 points into at most 10
    distinct means and claim a precision it does not have; from 5 seeds on, the 95% percentile
    bootstrap interval of the mean over seeds (10,000 resamples of a fixed generator, so a report
    is reproducible), as "lo..hi (bootstrap)". "" without values; a non-finite value (a diverged
    run's -inf accuracy) is kept: the interval then reaches it."""
    values = np.asarray(values, dtype=float)
    if not len(values):
        return ""
    if len(values) < BOOTSTRAP_FROM or not np.isfinite(values).all():
        return f"{_short(values.min())}..{_short(values.max())}"
    rng = np.random.default_rng(0)
    means = rng.choice(values, size=(BOOTSTRAP_RESAMPLES, len(values))).mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return f"{_short(lo)}..{_short(hi)} (bootstrap)"


def _cell(value: object) -> str:
    # A pipe would end the cell and a newline the row.
    return str(value).replace("|", "\\|").replace("\n", " ")


def claims_markdown(df: pd.DataFrame) -> str:
    """`evaluate_claims`'s table as a GitHub markdown table (without the numeric `value`)."""
    columns = [c for c in MARKDOWN_COLUMNS if c in df.columns]
    lines = [
        "| " + " | ".join(columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    for _, row in df.iterrows():
        lines.append("| " + " | ".join(_cell(row[c]) for c in columns) + " |")
    return "\n".join(lines) + "\n"


# --- cadences: which evaluations a window holds ------------------------------------------------------


def cadence_key(metric: str) -> str:
    """The config key of `metric`'s cadence: the trainer's for `train/` and `test/`, otherwise the
    one its probe declares (`normlab.probes.PROBES`: a probe's `metrics` globs and `key`)."""
    from normlab.probes import PROBES  # the probes import torch: only when a claim asks

    if metric.startswith("train/"):
        return "trainer.log_every_n_steps"
    if metric.startswith("test/"):
        return "trainer.val_check_interval"
    for probe in PROBES:
        if any(fnmatch.fnmatchcase(metric, g) or metric.startswith(g) for g in probe.metrics):
            return f"{probe.key}.every_n_steps"
    known = ["train/", "test/", *(g for p in PROBES for g in p.metrics)]
    raise ValueError(f"no known cadence for {metric!r}; known metrics: {', '.join(known)}")


def config_int(rows: pd.DataFrame, key: str) -> int:
    """One run's config value `key` (a flattened config column of its `rows`) as an int;
    InsufficientData naming the run when its config lacks it."""
    value = rows[key].iloc[0] if key in rows.columns else None
    if value is None or pd.isna(value):
        raise InsufficientData(f"run {rows['run_dir'].iloc[0]}: no {key} in its config")
    return int(float(value))


def needed_evals(rows: pd.DataFrame, claim: Claim, every: str | None = None) -> int:
    """How many evaluations one run (`rows`: its `load_metrics` rows) makes in the claim's window:
    the steps 0, n, 2n, ... (n: the config's cadence `every`, by default the claim's metric's,
    `cadence_key`: `probe.ics.every_n_steps`, ...) from the window's start to its end, or to the
    run's last trained step (`last_step` - 1) when the window ends where training does.
    InsufficientData when the config has no cadence."""
    every = every or cadence_key(claim.metric)
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
    lrs: Sequence[float] | None,
    *,
    every: str | None = None,
    by: str = VARIANT,
) -> dict[tuple[float | None, Hashable, int], pd.DataFrame]:
    """The runs a claim compares: per (lr, variant, seed), the run's rows of the claim's metric
    within its window, the runs chosen by rate (`lrs`; None: the runs' one rate, whatever it is)
    and norm variant (column `by`: `norm.variant`, or `norm.name` where the norms have no
    options), so that a suite's sweep serves as well as the figure's own (`select_runs`). Every
    run must hold every evaluation of the window that the cadence `every` (a config key;
    default: the metric's, `cadence_key`) makes, `needed_evals`: a claim is never measured on
    part of it.

    ValueError when the selected runs are not one setting (apart from seed, norm and rate);
    InsufficientData naming every missing (lr, variant, seed) piece otherwise."""
    absent = [c for c in ("norm.name", LR_COLUMN, "seed", "metric") if c not in table.columns]
    if absent:
        raise InsufficientData(f"no runs (the table has no {', '.join(absent)} column)")
    every = every or cadence_key(claim.metric)
    table = with_variants(table)
    if lrs is None:  # one rate: the runs may not differ in it
        groups, vary = [(None, table)], VARY[:-1]
    else:
        # Each run's rate set to the declared one, as the figures do: a rate read back a hair off
        # (1.0000000000000002e-06) is the same rate.
        groups = [
            (lr, table[rate_is(table[LR_COLUMN], lr)].assign(**{LR_COLUMN: lr})) for lr in lrs
        ]
        vary = VARY
    wanted = pd.concat([rows for _, rows in groups])
    wanted = wanted[wanted[by].isin(list(variants)) & wanted["seed"].isin(claim.seeds)]
    check_one_setting(wanted, vary=vary, what=f"claim {claim.id}")
    selected: dict[tuple[float | None, Hashable, int], pd.DataFrame] = {}
    problems = []
    lo, hi = claim.window
    for lr, at_lr in groups:
        where = "" if lr is None else f"lr {lr:g}: "
        try:
            sel = select_runs(at_lr, claim, by, list(variants), vary=("seed", "norm.*"))
        except InsufficientData as err:
            problems.append(f"{where}{err}")
            continue
        for (v, s), rows in sel.items():
            need = needed_evals(rows, claim, every)
            have = rows["step"].nunique()
            if have < need:
                problems.append(
                    f"{where}{by}={v} seed {s}: {have} evaluation(s) of {claim.metric} "
                    f"in steps {lo}-{hi}, need {need} ({every}={config_int(rows, every)})"
                )
            selected[(lr, v, s)] = rows
    if problems:
        raise InsufficientData("; ".join(problems))
    return selected


# --- windows on the runs' own length, per-seed means, provisional readings ---------------------------


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
    """`claim` with its window (declared on `claim.paper_steps`) scaled to the runs' length."""
    if claim.paper_steps is None:
        return claim
    factor = run_steps(table) / claim.paper_steps
    lo, hi = claim.window
    return replace(claim, window=(round(lo * factor), round(hi * factor)))


def per_seed(
    table: pd.DataFrame, claim: Claim, variant: str, lr: float, metric: str | None = None
) -> dict[int, float]:
    """Per seed, the mean over the claim's window of `metric` (default: the claim's) of the run of
    `variant` at `lr`. The run must hold every evaluation of the window (`select_claim_runs`, the
    metric's cadence: `cadence_key`). A run that diverged gives -inf for an accuracy (as bad as it
    gets); for any other metric it has no value over the window: InsufficientData naming it."""
    metric = metric or claim.metric
    claim = claim.part(metric=metric)
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
        selected = select_claim_runs(living, claim.part(seeds=alive), (variant,), lrs=(lr,))
        for (_, _, s), rows in selected.items():
            values[int(s)] = float(finite_values(rows, claim).mean())
    return values


def finite_values(rows: pd.DataFrame, claim: Claim) -> np.ndarray:
    """One run's values (`rows`) of the claim's window, every one finite: a nan or inf there (a
    walk that overflowed, a cosine of a zero gradient) is undefined, not small or large, and
    skipping it would measure part of the window; InsufficientData naming the run and how many.
    (A measure that reads non-finite values on purpose says how: `step_ratios`.)"""
    values = rows["value"].to_numpy(dtype=float)
    bad = int((~np.isfinite(values)).sum())
    if bad:
        raise InsufficientData(
            f"run {rows['run_dir'].iloc[0]}: {bad} non-finite value(s) of {claim.metric} in "
            f"steps {claim.window[0]}-{claim.window[1]}"
        )
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
        measure(table, claim.part(seeds=(seed,)))
    except InsufficientData:
        return False
    return True


def provisional(
    measure: Callable[[pd.DataFrame, Claim], Measurement],
) -> Callable[[pd.DataFrame, Claim], Measurement]:
    """`measure` on the runs' length (`scaled`), its detail ending with the scale the runs ran at
    (`normlab.report.runs.model_text`). When seeds are missing, still "insufficient data", with a
    provisional reading on the seeds that ran (every run the claim needs, fewer seeds)."""

    def wrapped(table: pd.DataFrame, claim: Claim) -> Measurement:
        # The runs a claim compares (norms, rates) are measured one (norm, rate) at a time: check
        # here, once, that they are one setting apart from the seed, the norm and the rate.
        check_one_setting(table, vary=VARY, what=f"claim {claim.id}")
        claim = scaled(claim, table)
        table = with_variants(table)
        scale = f" [{model_text(table)}, steps {claim.window[0]}-{claim.window[1]}]"
        try:
            m = measure(table, claim)
        except InsufficientData as err:
            # The seeds whose every needed run is there (some runs may have more seeds than others)
            present = tuple(s for s in claim.seeds if _measurable(measure, table, claim, s))
            if not present or len(present) == len(claim.seeds):
                raise
            m = measure(table, claim.part(seeds=present))
            seeds = "/".join(map(str, present))
            verdict = "passes" if m.passed else "fails"
            raise InsufficientData(
                f"{err}; provisional reading on seed {seeds} alone: {m.detail} ({verdict}){scale}"
            ) from None
        return replace(m, detail=m.detail + scale)

    return wrapped


# --- ratios of two nets per probed step ---------------------------------------------------------------


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
