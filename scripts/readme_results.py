"""The README's results table, made from a report's claims.csv.

    python scripts/readme_results.py [--claims docs/results/claims.csv] [--readme README.md] [--check]

Writes, between the README's `<!-- results -->` and `<!-- /results -->` lines, a line counting the
verdicts and a table of one row per declared claim of every registered figure
(`normlab.report.registry`): its id, paper, figure, what the paper says, the verdict, the command
that made the runs and the runs' wall minutes, taken from `claims.csv` (`scripts/report.py`'s). A claim with no row there reads "not run here" with its
preset's command. `--check` changes nothing and exits 1 if the README's table differs from the one
`claims.csv` gives (tests/test_readme_results.py runs it).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import pandas as pd

from normlab.report.registry import FIGURES

REPO = Path(__file__).resolve().parents[1]
START, END = "<!-- results -->", "<!-- /results -->"
HEADER = [
    "| claim | paper | figure | paper says | verdict | command | minutes |",
    "|---|---|---|---|---|---|---|",
]
NOT_RUN = "not run here"


def _cell(value: object) -> str:
    return " ".join(str(value).split()).replace("|", "\\|")


def _minutes(value: object) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:g}"


def table(claims: pd.DataFrame) -> list[str]:
    """The table's lines: every declared claim, in registry order, with its row of `claims`."""
    rows = {r["claim_id"]: r for _, r in claims.iterrows()}
    lines = list(HEADER)
    verdicts = []
    for figure_id, spec in FIGURES.items():
        paper, figure = figure_id.split("/", 1)
        for claim in spec.claims:
            row = rows.get(claim.id)
            if row is None:
                verdict, minutes = NOT_RUN, ""
                command = f"python -m normlab.train -m experiment={spec.suite or figure_id}"
            else:
                verdict, minutes, command = row["verdict"], _minutes(row["minutes"]), row["command"]
            verdicts.append(verdict)
            name = claim.id.split("/", 1)[1]
            cells = [f"`{name}`", paper, figure, _cell(claim.paper_says), f"**{verdict}**"]
            lines.append("| " + " | ".join([*cells, f"`{command}`", minutes]) + " |")
    counts = {v: verdicts.count(v) for v in dict.fromkeys(verdicts)}
    summary = ", ".join(f"{n} {v}" for v, n in counts.items())
    return [f"{len(verdicts)} claims: {summary}.", "", *lines]


def rewrite(readme: str, lines: list[str]) -> str:
    """`readme` with the block between START and END replaced by `lines`."""
    head, start, rest = readme.partition(START + "\n")
    _, end, tail = rest.partition(END)
    if not start or not end:
        raise ValueError(f"the README has no {START} ... {END} block")
    return head + start + "\n".join(lines) + "\n" + end + tail


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="readme_results.py", description=__doc__.split("\n")[0])
    parser.add_argument("--claims", default=str(REPO / "docs" / "results" / "claims.csv"))
    parser.add_argument("--readme", default=str(REPO / "README.md"))
    parser.add_argument("--check", action="store_true", help="exit 1 if the README differs")
    args = parser.parse_args(argv)
    readme = Path(args.readme)
    current = readme.read_text()
    wanted = rewrite(current, table(pd.read_csv(args.claims)))
    if args.check:
        if wanted != current:
            print(f"{readme}: the results table differs from {args.claims}", file=sys.stderr)
            return 1
        return 0
    readme.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
