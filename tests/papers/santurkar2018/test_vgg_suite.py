"""Santurkar 2018 VGG figures (Fig. 1, 2, 3(a), 4, 5(a), 6, 8, 12) on tiny real runs: every figure
draws from the suite's sweep, a plotted line is the seed mean of what the runs logged, a figure
from the suite equals the same figure from its own preset's sweep, claims give verdicts on three
seeds and only a provisional reading on one, windows scale with the run length, and a run that
diverged ends its line with a marker instead of being drawn as a curve.

The suite is trained once for this module (`tests/vggruns.py`: 10 norm/rate points x 3 seeds, a
few steps each); the tests are grouped by the figure they exercise."""

from __future__ import annotations

import csv
import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from vggruns import vgg_sweep

from normlab.papers.santurkar2018.protocol import VGG_STEPS, VGG_SUITE
from normlab.papers.santurkar2018.vgg_fig1_lr import CLAIMS as CLAIMS_FIG1
from normlab.report import INSUFFICIENT, N_NONFINITE, NOT_REPRODUCED, REPRODUCED, evaluate_claims
from normlab.report.bands import DIVERGED_LABEL
from normlab.report.claims import scaled
from normlab.report.registry import FIGURES, SUITES

REPO = Path(__file__).resolve().parents[3]
VGG_FIGURES = sorted(SUITES[VGG_SUITE])
FIG1 = "santurkar2018/vgg_fig1_lr"
FIG3A = "santurkar2018/vgg_fig3a_ics"
FIG4 = "santurkar2018/vgg_fig4_landscape"


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every run of santurkar2018/vgg_suite (10 norm/rate points x 3 seeds), a few steps each:
    the committed smoke sweep (tests/golden/runs/, made with vggruns' TINY settings), copied so
    that a test may change its files. Read, not retrained: the numbers are one machine's."""
    root = tmp_path_factory.mktemp("vgg") / "vgg_suite"
    shutil.copytree(REPO / "tests" / "golden" / "runs" / "santurkar2018_vgg_suite", root)
    return root


@pytest.fixture(scope="module")
def figures_main():
    spec = importlib.util.spec_from_file_location("figures_script", REPO / "scripts/figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


# --- every VGG figure ----------------------------------------------------------------------------


def test_the_suite_feeds_the_eight_vgg_figures() -> None:
    assert len(VGG_FIGURES) == 8
    for figure in VGG_FIGURES:
        spec = FIGURES[figure]
        assert spec.suite == VGG_SUITE and spec.statuses == ("finished", "diverged")
        assert spec.claims and all(c.paper_steps == VGG_STEPS for c in spec.claims)


@pytest.mark.parametrize("figure", VGG_FIGURES)
def test_every_vgg_figure_draws_from_the_suite(
    figure: str, suite: Path, figures_main, tmp_path: Path
) -> None:
    assert figures_main([figure, str(suite), "--out", str(tmp_path)]) == 0
    base = tmp_path / figure
    assert base.with_suffix(".png").stat().st_size > 10_000
    data = pd.read_csv(base.with_name(base.name + "_data.csv"))
    assert len(data) and (data["n"] == (1 if figure.endswith("hist") else 3)).all()
    claims = pd.read_csv(base.with_name(base.name + "_claims.csv"))
    assert set(claims["verdict"]) <= {REPRODUCED, NOT_REPRODUCED}, claims["measured"].tolist()


def test_claims_need_three_seeds_and_read_one_provisionally(suite: Path) -> None:
    seed0 = sorted(suite.glob("*seed=0"))
    for figure in VGG_FIGURES:
        spec = FIGURES[figure]
        claims = evaluate_claims(spec.claims, spec.load(seed0))
        assert (claims["verdict"] == INSUFFICIENT).all()
        for measured in claims["measured"]:
            assert "seeds 1/2" in measured and "provisional reading on seed 0 alone" in measured


# --- Fig. 1: windows on the run's length, a run that diverged --------------------------------------


def test_claim_windows_scale_with_the_run_length(suite: Path) -> None:
    table = FIGURES[FIG1].load([suite])
    claim = CLAIMS_FIG1[0]
    assert claim.window == (14_000, 15_000)
    assert scaled(claim, table).window == (11, 12)  # the tiny runs train 12 steps
    cpu = table.assign(**{"trainer.max_steps": 4000})
    assert scaled(claim, cpu).window == (3733, 4000)


def _diverge(run_dir: Path, at_step: int) -> None:
    """Make a finished run read as one that hit a non-finite loss at `at_step`: its metrics end
    before that step and its summary says `diverged`, as normlab.train writes them."""
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    with (run_dir / "metrics.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(r for r in rows if int(r["step"]) < at_step)
    summary = json.loads((run_dir / "summary.json").read_text())
    summary.update(status="diverged", step=at_step, diverged_at_step=at_step)
    (run_dir / "summary.json").write_text(json.dumps(summary))


def test_a_diverged_run_ends_its_line_with_a_marker(suite: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "fig1"
    for run in suite.glob("+vgg_point=*_lr[15]e-1,seed=*"):
        shutil.copytree(run, sweep / run.name)
    _diverge(sweep / "+vgg_point=none_lr5e-1,seed=1", at_step=5)
    spec = FIGURES[FIG1]
    table = spec.load([sweep])
    data = spec.data(table)
    line = data[(data["panel"] == "training accuracy") & (data["series"] == "Standard, lr 0.5")]
    before, after = line[line["step"] < 5], line[line["step"] >= 5]
    assert before["mean"].notna().all() and (before[N_NONFINITE] == 0).all()
    # from the step it died on, the line has no mean: never an average of the two living seeds
    assert 5 in set(after["step"]) and after["mean"].isna().all()
    assert (after[N_NONFINITE] == 1).all() and (after["n"] == 3).all()
    other = data[data["series"] == "BN, lr 0.5"]
    assert other["mean"].notna().all()
    # test accuracy (every 6 steps here): the dead seed counts at the later evaluations only,
    # no extra point at the step it died on
    test_line = data[(data["panel"] == "test accuracy") & (data["series"] == "Standard, lr 0.5")]
    assert sorted(test_line["step"]) == [6, 12] and test_line["mean"].isna().all()

    fig = spec.draw(table)
    marks = [
        line
        for ax in fig.axes
        for line in ax.get_lines()
        if line.get_label() == "_Standard, lr 0.5: diverged"
    ]
    assert marks and all(m.get_marker() == "X" and list(m.get_xdata()) == [5.0] for m in marks)
    assert DIVERGED_LABEL in [t.get_text() for leg in fig.legends for t in leg.get_texts()]

    claims = evaluate_claims(spec.claims, table).set_index("id")
    lr05 = claims.loc["santurkar2018/vgg_fig1_bn_tolerates_lr05"]
    assert lr05["verdict"] != INSUFFICIENT and "standard diverged" in lr05["measured"]
    # a diverged seed makes the standard net's mean accuracy -inf: "as bad as it gets"
    assert lr05["value"] == np.inf


# --- Fig. 3(a): a provisional reading on the seeds every needed run has ------------------------------


def test_a_provisional_reading_uses_the_seeds_every_needed_run_has(suite: Path) -> None:
    # Fig. 3(a) needs lr 0.1 and 0.01: with three seeds at lr 0.1 and seed 0 only at lr 0.01 the
    # reading is on seed 0 alone
    runs = [r for r in suite.iterdir() if "lr1e-2" not in r.name or r.name.endswith("seed=0")]
    spec = FIGURES[FIG3A]
    claims = evaluate_claims(spec.claims, spec.load(runs))
    assert (claims["verdict"] == INSUFFICIENT).all()
    assert claims["measured"].str.contains("provisional reading on seed 0 alone").all()


# --- Fig. 4: the plotted numbers, the suite against the figure's own sweep, a missing probe ---------


def _logged(run_dir: Path, metric: str) -> dict[int, float]:
    with (run_dir / "metrics.csv").open() as f:
        return {
            int(r["step"]): float(r["value"]) for r in csv.DictReader(f) if r["metric"] == metric
        }


def test_a_plotted_line_is_the_seed_mean_of_the_logged_values(suite: Path) -> None:
    spec = FIGURES[FIG4]
    data = spec.data(spec.load([suite]))
    line = data[(data["panel"] == "(c) effective beta-smoothness") & (data["series"] == "BN")]
    runs = [suite / f"+vgg_point=batch_lr1e-1,seed={s}" for s in range(3)]
    logged = [_logged(r, "landscape/beta_eff") for r in runs]
    assert sorted(line["step"]) == sorted(logged[0]) and len(line) >= 3
    for _, row in line.iterrows():
        values = [run[row["step"]] for run in logged]
        assert row["mean"] == pytest.approx(np.mean(values), rel=1e-12)
        assert (row["min"], row["max"]) == (min(values), max(values))


def test_a_figure_from_the_suite_equals_the_figure_from_its_own_sweep(tmp_path: Path) -> None:
    # The preset's own runs turn on the landscape probe only; the suite's every probe. Both
    # trained here (bit-equal on one machine): the suite's two points that Fig. 4 draws, seed 0.
    points = "+santurkar2018/vgg_point=none_lr1e-1,batch_lr1e-1"
    suite = vgg_sweep(tmp_path / "suite", VGG_SUITE, seeds="0", extra=(points,))
    alone = vgg_sweep(tmp_path / "alone", FIG4, seeds="0")
    spec = FIGURES[FIG4]
    from_suite, from_alone = spec.load([suite]), spec.load([alone])
    pd.testing.assert_frame_equal(spec.data(from_suite), spec.data(from_alone))
    pd.testing.assert_frame_equal(
        evaluate_claims(spec.claims, from_suite), evaluate_claims(spec.claims, from_alone)
    )


def test_a_claim_is_never_measured_on_a_run_missing_one_of_its_evaluations(
    suite: Path, tmp_path: Path
) -> None:
    sweep = tmp_path / "fig4"
    for run in suite.glob("+vgg_point=*_lr1e-1,seed=*"):
        shutil.copytree(run, sweep / run.name)
    # drop one landscape probe (step 3) from one standard run
    metrics = sweep / "+vgg_point=none_lr1e-1,seed=2" / "metrics.csv"
    rows = list(csv.DictReader(metrics.open()))
    with metrics.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(
            r for r in rows if not (r["step"] == "3" and r["metric"].startswith("landscape/"))
        )
    spec = FIGURES[FIG4]
    claims = evaluate_claims(spec.claims, spec.load([sweep]))
    assert (claims["verdict"] == INSUFFICIENT).all()
    assert claims["measured"].str.contains("need").all()
