"""The README's verdicts are the ones normlab computes: each row of a README results table that
names a claim recorded from real runs (`tests/golden/dln_suite_real`, the DLN suite) carries
that claim's verdict."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
REAL = REPO / "tests" / "golden" / "dln_suite_real"
ROW = re.compile(r"^\| `(?P<id>[a-z0-9_]+)`.*\| (?P<verdict>[^|]+?) \|\s*$")


def _readme_verdicts() -> dict[str, str]:
    rows = {}
    for line in (REPO / "README.md").read_text().splitlines():
        match = ROW.match(line)
        if match:
            rows[match["id"]] = match["verdict"].strip("* ")
    return rows


def test_the_readmes_dln_verdicts_are_the_real_runs() -> None:
    recorded = pd.concat(pd.read_csv(p) for p in sorted(REAL.rglob("claims.csv")))
    real = {
        cid.split("/", 1)[1]: v for cid, v in zip(recorded["id"], recorded["verdict"], strict=True)
    }
    readme = _readme_verdicts()
    assert len(real) == 10 and set(real) <= set(readme), sorted(set(real) - set(readme))
    assert {c: readme[c] for c in real} == real
