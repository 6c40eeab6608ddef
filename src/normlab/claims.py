"""Paper claims as data: what the paper says, how to measure it, and the threshold that decides.

A `Claim` is fixed before any run exists (its window, threshold and seeds are part of its
definition); `evaluate_claims` measures each claim on a `normlab.results.load_metrics` table and
gives one of three verdicts: "reproduced", "not reproduced", or "insufficient data" when a run,
seed or evaluation the claim needs is missing. A claim is never computed on partial data.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass

import pandas as pd

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
    looks at (clipped by what ran); `seeds` the seeds that must all be present (at least 3);
    `measure(table, claim)` computes the `Measurement` from a `load_metrics` table."""

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
) -> dict[tuple[Hashable, int], pd.DataFrame]:
    """The rows each (group, seed) run contributes to `claim`: its metric (glob) within the
    claim's window, for every `group` of column `by` (e.g. `norm.name` in none/batch) and every
    seed of the claim.

    Raises InsufficientData naming every missing piece: a (group, seed) with no run, with more than
    one run (ambiguous: several sweeps or settings mixed), with no such metric logged, or with
    fewer than `min_evals` evaluations inside the window."""
    lo, hi = claim.window
    if by not in table.columns or "seed" not in table.columns:
        raise InsufficientData(f"no runs (the table has no {by!r} / 'seed' column)")
    # problem -> the (group, seed) runs it applies to, so that one cause is named once.
    problems: dict[str, list[tuple[Hashable, int]]] = {}
    selected: dict[tuple[Hashable, int], pd.DataFrame] = {}
    names = table["metric"].unique()
    wanted = [n for n in names if fnmatch.fnmatchcase(str(n), claim.metric)]
    for group in groups:
        for seed in claim.seeds:
            rows = table[(table[by] == group) & (table["seed"] == seed)]
            runs = rows["run_dir"].unique()
            if len(runs) == 0:
                problems.setdefault("no run", []).append((group, seed))
                continue
            if len(runs) > 1:
                problem = f"{len(runs)} runs, ambiguous ({', '.join(runs)})"
                problems.setdefault(problem, []).append((group, seed))
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
    """ "steps A-B" actually measured, noting when the claim's window was clipped by what ran."""
    steps = pd.concat([df["step"] for df in selected])
    lo, hi = int(steps.min()), int(steps.max())
    if (lo, hi) == tuple(claim.window):
        return f"steps {lo}-{hi}"
    return f"steps {lo}-{hi} (window {claim.window[0]}-{claim.window[1]} clipped by what ran)"


def evaluate_claims(claims: Iterable[Claim], table: pd.DataFrame) -> pd.DataFrame:
    """Measure each claim on a `load_metrics` table.

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
