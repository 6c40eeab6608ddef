"""`scripts/reproduce_all.py` (`make reproduce-all`): every job of every suite, progress a line a
job, finished jobs skipped on a re-run, unfinished ones run again, then the report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from normlab.report.registry import FIGURES

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "reproduce_all.py"


def _reproduce(runs: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke", "--runs", str(runs), *args],
        capture_output=True,
        text=True,
        timeout=1200,
    )


@pytest.mark.slow  # ~50 s: six smoke jobs and two reports in subprocesses
def test_one_suite_runs_reports_and_skips_what_finished(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    first = _reproduce(runs, "--only", "santurkar2018/theory_mlp")
    assert first.returncode == 0, first.stderr[-2000:]
    lines = [x for x in first.stdout.splitlines() if x.startswith("run ")]
    assert [x.split(":")[0] for x in lines] == [f"run {i} of 3" for i in (1, 2, 3)]
    assert all(": finished in " in x and "min so far" in x for x in lines)
    summaries = sorted((runs / "santurkar2018/theory_mlp").glob("*/summary.json"))
    assert [p.parent.name for p in summaries] == ["seed=0", "seed=1", "seed=2"]
    claims = pd.read_csv(runs / "report" / "claims.csv")
    assert len(claims) == len(FIGURES["santurkar2018/theory_mlp"].claims)

    # A job that did not finish is run again (its directory set aside); the others are skipped.
    summary = runs / "santurkar2018/theory_mlp/seed=1/summary.json"
    summary.write_text(json.dumps(json.loads(summary.read_text()) | {"status": "interrupted"}))
    again = _reproduce(runs, "--only", "santurkar2018/theory_mlp")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "run 1 of 3: santurkar2018/theory_mlp seed=0: finished before, skipped" in again.stdout
    assert "run 2 of 3: santurkar2018/theory_mlp seed=1: interrupted before, set aside" in (
        again.stdout
    )
    assert (runs / "santurkar2018/theory_mlp/seed=1.stale-1").is_dir()
    assert json.loads(summary.read_text())["status"] == "finished"


def test_a_bad_preset_is_refused_naming_the_valid_ones(tmp_path: Path) -> None:
    proc = _reproduce(tmp_path, "--only", "santurkar2018/vgg")
    assert proc.returncode == 2
    assert "unknown preset(s) santurkar2018/vgg; valid: ioffe2015/fig1_mnist" in proc.stderr


@pytest.mark.slow
def test_every_suite_at_smoke_scale_gives_a_report_of_every_claim(tmp_path: Path) -> None:
    proc = _reproduce(tmp_path / "runs")
    assert proc.returncode == 0, proc.stderr[-3000:]
    claims = pd.read_csv(tmp_path / "runs" / "report" / "claims.csv")
    assert len(claims) == sum(len(spec.claims) for spec in FIGURES.values())
    assert "reproduce-all: 60 jobs, 0 not finished" in proc.stdout
