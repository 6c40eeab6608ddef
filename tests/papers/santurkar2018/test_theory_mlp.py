"""The Santurkar 2018 Thm 4.1 / 4.2 figure (`santurkar2018/theory_mlp`) on fake runs: plotted data,
claims verdicts, refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fakeruns import PASSING, theory_sweep, value

from normlab.papers.santurkar2018.theory_mlp import THEORY_ID
from normlab.report import INSUFFICIENT, NOT_REPRODUCED, REPRODUCED, evaluate_claims
from normlab.report.registry import FIGURES, infer_figure_id
from normlab.results import load_summaries

REMOVED = "santurkar2018/theory_bn_removes_gradient"
SMALLER = "santurkar2018/theory_bn_smaller_gradient"
GAIN = "santurkar2018/theory_gain_below_one"
SHIFT = "santurkar2018/theory_shift_reduces_curvature"


def _claims(root: Path):
    spec = FIGURES[THEORY_ID]
    return evaluate_claims(spec.claims, spec.load([root])).set_index("id")


def test_registered_and_inferred_from_the_runs(tmp_path) -> None:
    root = theory_sweep(tmp_path)
    assert infer_figure_id(load_summaries([root])) == THEORY_ID
    spec = FIGURES[THEORY_ID]
    assert {c.id for c in spec.claims} == {REMOVED, SMALLER, GAIN, SHIFT}
    assert all(c.seeds == (0, 1, 2) and c.window == (1000, 10000) for c in spec.claims)
    assert all("Thm 4." in c.paper_says and "seed 0" in c.claim for c in spec.claims)


def test_plotted_data_is_mean_min_max_over_seeds(tmp_path) -> None:
    root = theory_sweep(tmp_path)
    spec = FIGURES[THEORY_ID]
    data = spec.data(spec.load([root]))
    # 15 panels; 3 series in the 3 removed-share ones, 2 in the 3 Thm 4.2 ones
    assert len(data) == 15 * 100 + 3 * 2 * 100 + 3 * 100
    assert (data["n"] == 3).all() and (data["n_nonfinite"] == 0).all()
    cases = [
        ("removed share, layer #2", "removed", "removed_frac", 2),
        ("removed share, layer #3", "mean part", "mean_frac", 3),
        ("removed share, layer #1", "proj part", "proj_frac", 1),
        ("grad_ratio, layer #3", "grad_ratio", "grad_ratio", 3),
        ("gamma^2/sigma^2, layer #1", "gamma^2/sigma^2", "gamma2_over_sigma2", 1),
        ("Thm 4.2, layer #2", "curv_bn", "curv_bn", 2),
    ]
    for panel, series, quantity, layer in cases:
        rows = data[(data["panel"] == panel) & (data["series"] == series)].set_index("step")
        assert list(rows.index) == list(range(0, 10000, 100))
        for step in (0, 1300, 9900):
            by_hand = [value(quantity, layer, s, step, PASSING) for s in (0, 1, 2)]
            assert rows.loc[step, "mean"] == pytest.approx(np.mean(by_hand), rel=1e-12)
            assert rows.loc[step, "min"] == pytest.approx(min(by_hand), rel=1e-12)
            assert rows.loc[step, "max"] == pytest.approx(max(by_hand), rel=1e-12)
            assert rows.loc[step, "min"] < rows.loc[step, "mean"] < rows.loc[step, "max"]


def test_thm42_rows_are_computed_per_run_and_step(tmp_path) -> None:
    root = theory_sweep(tmp_path)
    spec = FIGURES[THEORY_ID]
    data = spec.data(spec.load([root]))
    for step in (0, 1300, 9900):
        scaled = [value("curv_scaled", 3, s, step, PASSING) for s in (0, 1, 2)]
        shift = [value("curv_shift", 3, s, step, PASSING) for s in (0, 1, 2)]
        cases = [
            ("Thm 4.2, layer #3", "curv_scaled - curv_shift", np.subtract(scaled, shift)),
            ("shift share, layer #3", "shift share", np.divide(shift, scaled)),
        ]
        for panel, series, by_hand in cases:
            rows = data[(data["panel"] == panel) & (data["series"] == series)].set_index("step")
            assert rows.loc[step, "mean"] == pytest.approx(np.mean(by_hand), rel=1e-12)
            assert rows.loc[step, "max"] == pytest.approx(max(by_hand), rel=1e-12)


def test_draw_plots_the_plotted_data(tmp_path) -> None:
    root = theory_sweep(tmp_path)
    spec = FIGURES[THEORY_ID]
    table = spec.load([root])
    data = spec.data(table)
    fig = spec.draw(table)
    assert len(fig.axes) == 15
    ax = fig.axes[4]  # row 2 (grad_ratio), layer #2
    assert ax.get_title() == "grad_ratio, layer #2"
    (line,) = [ln for ln in ax.get_lines() if ln.get_label() == "grad_ratio"]
    rows = data[data["panel"] == "grad_ratio, layer #2"]
    np.testing.assert_allclose(line.get_ydata(), rows["mean"].to_numpy())
    first = fig.axes[0]
    labels = [ln.get_label() for ln in first.get_lines()]
    assert labels[:3] == ["removed", "mean part", "proj part"]
    assert "2/m (m = 60)" in labels and "claim threshold" in labels
    assert "mean over seeds 0/1/2" in fig._suptitle.get_text()
    curvature = fig.axes[9]  # row 4 (Thm 4.2), layer #1
    assert curvature.get_title() == "Thm 4.2, layer #1"
    labels = [ln.get_label() for ln in curvature.get_lines()]
    assert labels[:2] == ["curv_bn", "curv_scaled - curv_shift"]
    assert "claim threshold" in [ln.get_label() for ln in fig.axes[12].get_lines()]
    # Each row on one y axis, its legend and y tick labels in the first panel only.
    for row in range(5):
        first, *rest = fig.axes[3 * row : 3 * row + 3]
        assert first.get_legend() is not None and first.get_ylabel()
        for ax in rest:
            assert first.get_shared_y_axes().joined(first, ax)
            assert ax.get_legend() is None and not ax.get_ylabel()
    assert [ax.get_yscale() for ax in fig.axes[::3]] == ["log", "log", "log", "symlog", "symlog"]
    # Grey: the steps before the claims' window (step 1,000).
    (span,) = first.patches
    assert span.get_x() == 0 and span.get_width() == 1000
    assert "grey: before the claims' window (step 1,000)" in fig._suptitle.get_text()
    assert "(MNIST, lr 1)" in fig._suptitle.get_text()


def test_claims_pass_on_data_that_meets_them(tmp_path) -> None:
    claims = _claims(theory_sweep(tmp_path))
    assert (claims["verdict"] == REPRODUCED).all(), claims["measured"].tolist()
    removed = claims.loc[REMOVED]
    # The value is the worst (layer, seed) mean over the window's 90 probes (steps 1000-9900).
    by_hand = min(
        np.mean([value("removed_frac", k, s, t, PASSING) for t in range(1000, 10000, 100)])
        for k in (1, 2, 3)
        for s in (0, 1, 2)
    )
    assert removed["value"] == pytest.approx(by_hand, rel=1e-12)
    assert "90 evaluations per run" in removed["measured"]
    assert "9 of 9 (layer, seed)" in removed["measured"]


def test_claims_fail_where_one_layer_of_one_seed_misses(tmp_path) -> None:
    override = {
        (2, 1): {"removed_frac": 0.05},  # one (layer, seed) below 10%
        (3, 2): {"grad_ratio": 1.5, "gamma2_over_sigma2": 2.0},  # above 1
    }
    claims = _claims(theory_sweep(tmp_path, override=override))
    assert claims.loc[REMOVED, "verdict"] == NOT_REPRODUCED
    assert claims.loc[REMOVED, "value"] == pytest.approx(0.05, rel=0.02)
    assert "layer #2 seed 1" in claims.loc[REMOVED, "measured"]
    assert "8 of 9" in claims.loc[REMOVED, "measured"]
    assert claims.loc[SMALLER, "verdict"] == NOT_REPRODUCED
    assert claims.loc[SMALLER, "value"] == pytest.approx(1.5, rel=0.02)
    assert claims.loc[GAIN, "verdict"] == NOT_REPRODUCED
    assert claims.loc[GAIN, "value"] == pytest.approx(2.0, rel=0.02)
    assert claims.loc[SHIFT, "verdict"] == REPRODUCED


def test_shift_claim_is_the_median_share_and_fails_on_one_layer(tmp_path) -> None:
    root = theory_sweep(tmp_path, override={(1, 2): {"shift_share": 0.05}})
    spec = FIGURES[THEORY_ID]
    table = spec.load([root])
    claims = evaluate_claims(spec.claims, table).set_index("id")
    assert claims.loc[SHIFT, "verdict"] == NOT_REPRODUCED
    assert claims.loc[SHIFT, "value"] == pytest.approx(0.05, rel=1e-9)
    assert "layer #1 seed 2" in claims.loc[SHIFT, "measured"]
    assert "8 of 9" in claims.loc[SHIFT, "measured"]
    assert "median over the window's probes" in claims.loc[SHIFT, "measured"]
    # a few probes where curv_scaled passes near 0 (a share of -1000) leave the median alone
    passing = spec.load([theory_sweep(tmp_path / "spikes")])
    near_zero = (passing["metric"] == "theory/layer2/curv_scaled") & passing["step"].isin(
        [2000, 5000, 8000]
    )
    passing.loc[near_zero, "value"] = -1e-6
    claims = evaluate_claims(spec.claims, passing).set_index("id")
    assert claims.loc[SHIFT, "verdict"] == REPRODUCED
    assert claims.loc[SHIFT, "value"] > 0.19


def test_values_before_the_window_do_not_count(tmp_path) -> None:
    spec = FIGURES[THEORY_ID]
    table = spec.load([theory_sweep(tmp_path)])
    before = evaluate_claims(spec.claims, table).set_index("id")
    table.loc[table["step"] < 1000, "value"] = 1e6  # steps 0-900: the claims' grey span
    after = evaluate_claims(spec.claims, table).set_index("id")
    assert (after["value"] == before["value"]).all()
    assert (after["verdict"] == REPRODUCED).all()


def test_fewer_than_three_seeds_is_insufficient_data(tmp_path) -> None:
    claims = _claims(theory_sweep(tmp_path, seeds=(0, 1)))
    assert (claims["verdict"] == INSUFFICIENT).all()
    assert "seed 2: no run" in claims.loc[REMOVED, "measured"]


def test_a_short_run_or_a_missing_probe_is_insufficient_data(tmp_path) -> None:
    short = _claims(theory_sweep(tmp_path / "short", max_steps=5000))
    assert (short["verdict"] == INSUFFICIENT).all()
    assert "stopped at step 5000" in short.loc[REMOVED, "measured"]
    gap = _claims(theory_sweep(tmp_path / "gap", skip_step=4200))
    assert (gap["verdict"] == INSUFFICIENT).all()
    assert "89 evaluation(s)" in gap.loc[SMALLER, "measured"]
    # one layer of one run short of a probe
    spec = FIGURES[THEORY_ID]
    table = spec.load([theory_sweep(tmp_path / "layer")])
    hole = (table["metric"] == "theory/layer3/grad_ratio") & (table["step"] == 4200)
    table = table[~(hole & (table["seed"] == 1))]
    claims = evaluate_claims(spec.claims, table).set_index("id")
    assert claims.loc[SMALLER, "verdict"] == INSUFFICIENT
    assert "layer #3 seed 1: 89 of 90 evaluations" in claims.loc[SMALLER, "measured"]
    assert claims.loc[REMOVED, "verdict"] == REPRODUCED


def test_a_non_finite_value_is_insufficient_data(tmp_path) -> None:
    claims = _claims(theory_sweep(tmp_path, override={(1, 0): {"removed_frac": np.nan}}))
    assert claims.loc[REMOVED, "verdict"] == INSUFFICIENT
    assert "non-finite" in claims.loc[REMOVED, "measured"]
    assert claims.loc[SMALLER, "verdict"] == REPRODUCED  # other metrics are unaffected


def test_claims_are_for_lr_1_and_the_figure_refuses_mixed_rates(tmp_path) -> None:
    root = theory_sweep(tmp_path / "slow", lr=0.1)
    spec = FIGURES[THEORY_ID]
    table = spec.load([root])
    assert len(spec.data(table)) == 2400  # drawn at its one rate
    assert (evaluate_claims(spec.claims, table)["verdict"] == INSUFFICIENT).all()
    theory_sweep(tmp_path / "fast", lr=1.0)
    with pytest.raises(ValueError, match="mix settings, they differ in optim.lr"):
        spec.data(spec.load([tmp_path]))
