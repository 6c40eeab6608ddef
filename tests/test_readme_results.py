"""The README's and the docs' verdicts are the ones normlab computes: the README's results table is
the one `scripts/readme_results.py` makes from `docs/results/claims.csv` (the report of the real
runs), and every claim row of `docs/findings.md` that names a claim in that report carries its
verdict."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pandas as pd

from normlab.report.document import CLAIMS_COLUMNS, VERDICTS
from normlab.report.registry import FIGURES

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs" / "results"
# a findings table row ends with its verdict cell: "| ... `claim_id` ... | verdict |"
ROW = re.compile(r"^\|.*\| (?P<verdict>[^|]+?) \|\s*$")
TICKED = re.compile(r"`([a-z0-9_]+)`")


def _report_claims() -> pd.DataFrame:
    return pd.read_csv(RESULTS / "claims.csv")


def test_the_readmes_results_table_is_the_reports() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "readme_results.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr


def test_the_results_report_is_whole_and_its_pages_exist() -> None:
    claims = _report_claims()
    assert list(claims.columns[: len(CLAIMS_COLUMNS)]) == CLAIMS_COLUMNS
    assert claims["claim_id"].is_unique and set(claims["verdict"]) <= set(VERDICTS)
    declared = {c.id for spec in FIGURES.values() for c in spec.claims}
    assert set(claims["claim_id"]) <= declared
    for paper in set(claims["paper"]):
        page = (RESULTS / f"{paper}.md").read_text()
        # every image the page shows is there
        for image in re.findall(r"!\[[^]]*\]\(([^)]+)\)", page):
            assert (RESULTS / image).is_file(), image


# findings.md marks a table of other runs (another rate, an earlier run) with this line; the mark
# holds to the next heading
OTHER_RUNS = "<!-- other runs -->"


def test_the_findings_verdicts_are_the_reports() -> None:
    claims = _report_claims()
    verdicts = {
        cid.split("/", 1)[1]: v
        for cid, v in zip(claims["claim_id"], claims["verdict"], strict=True)
    }
    rows, other_runs = {}, False
    for line in (REPO / "docs" / "findings.md").read_text().splitlines():
        other_runs = (other_runs or line.strip() == OTHER_RUNS) and not line.startswith("#")
        match = ROW.match(line)
        named = [t for t in TICKED.findall(line) if t in verdicts] if match else []
        if named and not other_runs:
            assert len(set(named)) == 1, f"a row naming several claims: {line}"
            rows.setdefault(named[0], set()).add(match["verdict"].strip("* "))
    # the DLN tables state every DLN claim of the report, none skipped
    dln = {
        cid.split("/", 1)[1]
        for cid, figure in zip(claims["claim_id"], claims["figure"], strict=True)
        if figure.startswith("dln_")
    }
    assert dln and dln <= set(rows), sorted(dln - set(rows))
    assert {c: v for c, v in rows.items() if v != {verdicts[c]}} == {}
