"""Paper claims as data: what the paper says, how to measure it, and the threshold that decides.

A `Claim` is fixed before any run exists (its window, threshold and seeds are part of its
definition); `evaluate_claims` measures each claim on a `normlab.results.load_metrics` table and
gives one of three verdicts: "reproduced", "not reproduced", or "insufficient data" when a run,
seed or evaluation the claim needs is missing, or a run stopped before the claim's window ends.
A claim is never computed on partial data, nor on runs of mixed settings (ValueError).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass

import pandas as pd

from normlab.results import check_one_setting

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
INSUFFICIENT = "insufficient data"

COLUMNS = ["id", "claim", "paper says", "measured", "verdict", "value"]
MARKDOWN_COLUMNS = ["id", "claim", "paper says", "measured", "verdict"]


class InsufficientData(Exception):
    """Raised by a measure when the table lacks what the claim needs; the message names it."""


@dataclass(frozen=True)
class Measurement:
    """A claim's measured number, its human-readable detail, and whether it passed
    (None: not enough data to say)."""

    value: float
    detail: str
    passed: bool | None


@dataclass(frozen=True)
class Claim:
    """One claim of a paper figure, with the rule that decides it.

    `metric` is a metric name or shell-style glob; `window` the inclusive step window the measure
    looks at (every run must have reached its end: it is never clipped to what ran); `seeds` the
    seeds that must all be present (at least 3); `measure(table, claim)` computes the
    `Measurement` from a `load_metrics` table."""

    id: str
    figure: str
    claim: str
    paper_says: str
    metric: str
    window: tuple[int, int]
    threshold: float
    seeds: tuple[int, ...]
    measure: Callable[[pd.DataFrame, Claim], Measurement]

    def __post_init__(self) -> None:
        if len(set(self.seeds)) < 3:
            raise ValueError(f"claim {self.id}: needs at least 3 seeds, got {self.seeds}")
        lo, hi = self.window
        if lo > hi:
            raise ValueError(f"claim {self.id}: empty window {self.window}")


def select_runs(
    table: pd.DataFrame,
    claim: Claim,
    by: str,
    groups: Sequence[Hashable],
    min_evals: int = 1,
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
    the window's end, with no such metric logged, or with fewer than `min_evals` evaluations
    inside the window."""
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
            evals = in_window["step"].nunique()
            if evals < min_evals:
                problem = (
                    f"{evals} evaluation(s) of {claim.metric} in steps {lo}-{hi}, need "
                    f"{min_evals} (logged steps {rows['step'].min()}-{rows['step'].max()})"
                )
                problems.setdefault(problem, []).append((group, seed))
                continue
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
        rows.append(
            {
                "id": claim.id,
                "claim": claim.claim,
                "paper says": claim.paper_says,
                "measured": m.detail,
                "verdict": verdict,
                "value": m.value,
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS)


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
