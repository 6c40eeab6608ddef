"""scripts/report.py and `normlab.report.document`: every figure the runs feed, drawn and its claims
listed once, in report.md, a self-contained report.html and claims.csv; what was skipped and why;
which sweep a figure drew from when several hold its runs; exit codes."""

from __future__ import annotations

import base64
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from fakeruns import DLN_SUITE, dln_sweep

from normlab.report.document import CLAIMS_COLUMNS, VERDICTS, choose_sweep, find_sweeps
from normlab.report.registry import FIGURES

REPO = Path(__file__).resolve().parents[2]
RUNS = REPO / "tests" / "golden" / "runs"
SMOKE = sorted(p for p in RUNS.iterdir() if p.is_dir())
FIG10 = "santurkar2018/dln_fig10_landscape"
PNG = b"\x89PNG\r\n\x1a\n"
# the committed smoke sweeps were made before runs recorded their scale, and at none it declares
DLN_SUITE_COMMAND = (
    "python -m normlab.train -m experiment=santurkar2018/dln_suite  # the runs are at no declared "
    "scale"
)
VGG_SUITE_COMMAND = (
    "python -m normlab.train -m experiment=santurkar2018/vgg_suite  # the runs are at no declared "
    "scale"
)


def report_main():
    spec = importlib.util.spec_from_file_location("report_script", REPO / "scripts" / "report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def split_id(figure_id: str) -> tuple[str, str]:
    paper, figure = figure_id.split("/", 1)
    return paper, figure


def touch(sweep: Path, t: float) -> None:
    """Every run's summary.json of `sweep` last written at time `t`."""
    for summary in sweep.rglob("summary.json"):
        os.utime(summary, (t, t))


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, Path]:
    """The report of the committed smoke sweeps of every suite, all four directories at once."""
    out = tmp_path_factory.mktemp("report") / "out"
    status = report_main()([*map(str, SMOKE), "--out", str(out), "--formats", "png"])
    return status, out


def test_smoke_report_lists_every_declared_claim_once(smoke) -> None:
    status, out = smoke
    assert status == 0
    claims = pd.read_csv(out / "claims.csv", keep_default_na=False)
    assert list(claims.columns[: len(CLAIMS_COLUMNS)]) == CLAIMS_COLUMNS
    declared = {(*split_id(s.id), c.id) for s in FIGURES.values() for c in s.claims}
    assert len(claims) == sum(len(s.claims) for s in FIGURES.values()) == len(declared)
    assert set(zip(claims["paper"], claims["figure"], claims["claim_id"], strict=True)) == declared
    assert not claims.duplicated(["figure", "claim"]).any()
    assert not claims.duplicated(["figure", "claim_id"]).any()
    assert set(claims["verdict"]) <= set(VERDICTS)
    assert (claims["seeds"] == "0/1/2").all()
    vgg = claims["figure"].str.startswith("vgg_")
    assert claims.loc[vgg, "scale"].str.match(r"VGG-16 width x[\d.]+, \d+ steps$").all()
    assert (claims.loc[claims["figure"].str.startswith("dln_"), "scale"] == "DLN, 200 steps").all()
    # the command that made a figure's runs (their preset), the wall minutes of those runs
    dln = claims["figure"].str.startswith("dln_")
    assert (claims.loc[dln, "command"] == DLN_SUITE_COMMAND).all()
    assert (claims.loc[vgg, "command"] == VGG_SUITE_COMMAND).all()
    minutes = claims.groupby("figure")["minutes"].first()
    assert (minutes > 0).all() and minutes["dln_fig5b_lp"] > minutes["dln_fig11_gradchange"]


def test_smoke_report_writes_a_page_per_paper(smoke) -> None:
    _, out = smoke
    for paper in ("ioffe2015", "santurkar2018"):
        page = (out / f"{paper}.md").read_text()
        figures = [i for i in FIGURES if i.startswith(f"{paper}/")]
        assert sorted(re.findall(r"!\[([^]]+)\]\(([^)]+)\)", page)) == sorted(
            (i, f"{i}.png") for i in figures
        )
        for spec in (FIGURES[i] for i in figures):
            for claim in spec.claims:
                assert f"| {claim.id} |" in page


def test_smoke_report_draws_every_figure_and_embeds_it(smoke) -> None:
    _, out = smoke
    page = (out / "report.html").read_text()
    md = (out / "report.md").read_text()
    for figure_id, spec in FIGURES.items():
        png = out / f"{figure_id}.png"
        assert png.read_bytes()[:8] == PNG, figure_id
        assert not png.with_suffix(".pdf").exists()
        assert base64.b64encode(png.read_bytes()).decode() in page, figure_id
        assert f"]({figure_id}.png)" in md
        assert spec.title in md
    assert page.count('src="data:image/png;base64,') == len(FIGURES)
    # Self-contained: every source is embedded, nothing is linked, fetched or run.
    assert re.findall(r'src="(?!data:image/png;base64,)', page) == []
    for outside in ("href=", "<link", "<script", "url(", "@import"):
        assert outside not in page
    assert "Skipped figures" not in md


def test_one_suite_names_the_figures_it_skips(tmp_path, capsys) -> None:
    out = tmp_path / "out"
    status = report_main()([str(RUNS / "santurkar2018_theory_mlp"), "--out", str(out)])
    assert status == 0
    err = capsys.readouterr().err
    md = (out / "report.md").read_text()
    page = (out / "report.html").read_text()
    others = [i for i in FIGURES if i != "santurkar2018/theory_mlp"]
    for figure_id in others:
        line = f"skipped {figure_id}: no runs of {figure_id}"
        assert line in err and line in md and line in page, figure_id
        assert not (out / f"{figure_id}.png").exists()
    assert "or its suite santurkar2018/vgg_suite under the given directories" in err
    assert (out / "santurkar2018/theory_mlp.pdf").exists()  # the default formats
    claims = pd.read_csv(out / "claims.csv")
    assert set(claims["figure"]) == {"theory_mlp"}
    assert len(claims) == len(FIGURES["santurkar2018/theory_mlp"].claims)


@pytest.fixture(scope="module")
def dln_two(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Fig. 10's own sweep and the DLN suite's (which feeds Fig. 10 too), in two directories."""
    root = tmp_path_factory.mktemp("dln")
    figure = dln_sweep(root / "figure" / "multirun_a", FIG10)
    suite = dln_sweep(root / "suite" / "multirun_b", DLN_SUITE)
    return figure, suite


def test_a_figure_fed_by_two_sweeps_draws_from_one_and_says_which(dln_two, tmp_path, capsys):
    figure, suite = dln_two
    touch(suite, 1_700_000_000)
    touch(figure, 1_700_000_600)
    out = tmp_path / "out"
    status = report_main()(
        [str(figure.parent), str(suite.parent), "--out", str(out), "--formats", "png"]
        + ["--only", FIG10]
    )
    assert status == 0
    err = capsys.readouterr().err
    md = (out / "report.md").read_text()
    # Both hold 6 finished runs of its norms and rate: the newer one wins.
    used = f"Used {figure}: as many finished runs of its norms and rates (6), and newer"
    assert used in err and used in md and used in (out / "report.html").read_text()
    assert f"not {suite}." in md
    claims = pd.read_csv(out / "claims.csv")
    assert (claims["sweep"] == str(figure)).all()
    assert len(claims) == len(FIGURES[FIG10].claims)
    assert (out / f"{FIG10}.png").exists()


def test_choosing_a_sweep(dln_two, tmp_path) -> None:
    figure, suite = dln_two
    spec = FIGURES[FIG10]
    touch(suite, 1_700_000_600)
    touch(figure, 1_700_000_000)
    found = find_sweeps([figure, suite]).sweeps
    assert sorted(s.experiment for s in found) == sorted([FIG10, DLN_SUITE])
    choice = choose_sweep(spec, found)
    assert choice.sweep.directory == suite  # as many runs, newer
    touch(figure, 1_700_000_600)
    choice = choose_sweep(spec, found)
    assert choice.sweep is None
    assert "cannot be told apart" in choice.reason and str(suite) in choice.reason
    # One more seed of the figure's norms: more finished runs win, whatever their age.
    more = dln_sweep(tmp_path / "more", FIG10, seeds=(0, 1, 2, 3))
    touch(more, 1_600_000_000)
    choice = choose_sweep(spec, find_sweeps([more, suite]).sweeps)
    assert choice.sweep.directory == more
    assert "more finished runs of its norms and rates (8 vs 6)" in choice.note
    touch(figure, 1_700_000_000)


def test_a_refused_figure_lists_its_claims_as_insufficient(tmp_path, capsys) -> None:
    runs = dln_sweep(tmp_path / "sweep", FIG10, skip=[("batch", 1e-6, s) for s in (0, 1, 2)])
    out = tmp_path / "out"
    status = report_main()([str(runs), "--out", str(out), "--formats", "png", "--only", FIG10])
    assert status == 1  # no figure drawn: the report is still written
    err = capsys.readouterr().err
    assert f"skipped {FIG10}: {FIG10}: no runs with norm batch" in err
    claims = pd.read_csv(out / "claims.csv")
    assert len(claims) == len(FIGURES[FIG10].claims)
    assert (claims["verdict"] == "insufficient data").all()
    assert claims["measured"].str.startswith("figure not drawn: ").all()
    assert f"skipped {FIG10}" in (out / "report.md").read_text()


def test_no_runs_at_all_exits_1(tmp_path) -> None:
    (tmp_path / "empty").mkdir()
    out = tmp_path / "out"
    assert report_main()([str(tmp_path / "empty"), "--out", str(out)]) == 1
    assert "No runs found." in (out / "report.md").read_text()
    assert pd.read_csv(out / "claims.csv").empty


def test_usage_errors_exit_2(tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "report.py"), str(tmp_path / "nope")]
        + ["--out", str(tmp_path / "out")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "no such directory" in proc.stderr and str(tmp_path / "nope") in proc.stderr
    assert not (tmp_path / "out").exists()
    main = report_main()
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path), "--formats", "pdf"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path), "--only", "santurkar2018/no_such_figure"])
    assert exit_info.value.code == 2
