"""Santurkar 2018 DLN probe figures (Fig. 3(b), 9, 10, 11, 13: `normlab.papers.santurkar2018.
dln_*`) on fake runs: the plotted data is the mean/min/max over seeds of what the runs logged, the
same from a figure's own sweep and from the suite's, the claims' verdicts, non-finite values
(landscape walks that blew up, nan cosines) and runs with fewer evaluations than a claim needs,
and scripts/figures.py for every id. Fig. 5(b) alone: `test_dln_fig5b_lp.py`."""

from __future__ import annotations

import csv
import importlib.util
import logging
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fakeruns import DLN_SUITE, dln_sweep

from normlab.report import N_NONFINITE, Claim, evaluate_claims
from normlab.report.bands import NONFINITE_LABEL
from normlab.report.claims import lower_median, needed_evals, step_ratios
from normlab.report.registry import FIGURES, SUITES, infer_figure_id
from normlab.results import load_summaries

REPO = Path(__file__).resolve().parents[3]
FIG3B = "santurkar2018/dln_fig3b_ics"
FIG5B = "santurkar2018/dln_fig5b_lp"
FIG9 = "santurkar2018/dln_fig9_activations"
FIG10 = "santurkar2018/dln_fig10_landscape"
FIG11 = "santurkar2018/dln_fig11_gradchange"
FIG13 = "santurkar2018/dln_fig13_lp_landscape"
NEW_FIGURES = [FIG3B, FIG9, FIG10, FIG11, FIG13]
CLAIMS = {
    FIG3B: [
        "santurkar2018/fig3b_bn_lower_ics_cosine",
        "santurkar2018/fig3b_dln_standard_ics_near_zero",
        "santurkar2018/fig3b_dln_bn_gradients_uncorrelated",
    ],
    FIG9: [],
    FIG10: [
        "santurkar2018/fig10_bn_smaller_loss_band",
        "santurkar2018/fig10_bn_smaller_grad_diff",
        "santurkar2018/fig10_bn_smaller_beta_eff",
    ],
    FIG11: ["santurkar2018/fig11_bn_smaller_grad_change"],
    FIG13: ["santurkar2018/fig13_lp_smooths_like_bn"],
}
NEW_CLAIMS = [c for ids in CLAIMS.values() for c in ids]


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The suite's sweep and every DLN figure's own sweep, built to pass every claim."""
    root = tmp_path_factory.mktemp("dln")
    return {
        fid: dln_sweep(root / fid.replace("/", "_"), fid) for fid in [DLN_SUITE, FIG5B, *CLAIMS]
    }


def run_name(variant: str, lr: float, seed: int) -> str:
    return f"{variant}_lr{lr:g},seed={seed}"


def logged_band(sweep: Path, variant: str, lr: float, metric: str) -> pd.DataFrame:
    """Per step, over seeds 0-2 of `metric`, read straight from metrics.csv: `n` (seeds that
    logged it), `n_nonfinite` (those whose value is inf/nan), and mean/min/max over all `n` seeds
    where every value is finite, NaN where not."""
    values: dict[int, list[float]] = defaultdict(list)
    for seed in (0, 1, 2):
        with (sweep / run_name(variant, lr, seed) / "metrics.csv").open() as f:
            for row in csv.DictReader(f):
                if row["metric"] == metric:
                    values[int(row["step"])].append(float(row["value"]))
    steps = sorted(values)
    finite = {s: np.isfinite(values[s]).all() for s in steps}
    return pd.DataFrame(
        {
            "step": steps,
            "mean": [np.mean(values[s]) if finite[s] else np.nan for s in steps],
            "min": [min(values[s]) if finite[s] else np.nan for s in steps],
            "max": [max(values[s]) if finite[s] else np.nan for s in steps],
            "n": [len(values[s]) for s in steps],
            N_NONFINITE: [int((~np.isfinite(values[s])).sum()) for s in steps],
        }
    )


def edit_metrics(run_dir: Path, edit) -> None:
    """Rewrite a run's metrics.csv: `edit(step, metric, value)` gives the new value, or None to
    drop the row."""
    path = run_dir / "metrics.csv"
    with path.open() as f:
        rows = list(csv.DictReader(f))
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(("step", "metric", "value"))
        for row in rows:
            value = edit(int(row["step"]), row["metric"], float(row["value"]))
            if value is not None:
                w.writerow((row["step"], row["metric"], repr(float(value))))


def plotted(data: pd.DataFrame, panel: str, series: str) -> pd.DataFrame:
    rows = data[(data["panel"] == panel) & (data["series"] == series)]
    assert len(rows), (panel, series)
    return rows


def assert_band(rows: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert rows["step"].tolist() == expected["step"].tolist()
    for column in ("mean", "min", "max"):
        np.testing.assert_allclose(rows[column], expected[column], rtol=1e-12)
    assert rows["n"].tolist() == expected["n"].tolist()
    assert rows[N_NONFINITE].tolist() == expected[N_NONFINITE].tolist()


def verdicts(figure: str, paths: list[Path]) -> pd.Series:
    spec = FIGURES[figure]
    return evaluate_claims(spec.claims, spec.load(paths)).set_index("id")


# --- the registry ---------------------------------------------------------------------------------


def test_every_dln_figure_is_registered_with_its_claims_fixed() -> None:
    assert SUITES[DLN_SUITE] == (FIG3B, FIG5B, FIG9, FIG10, FIG11, FIG13)
    for figure, ids in CLAIMS.items():
        spec = FIGURES[figure]
        assert spec.suite == DLN_SUITE
        assert [c.id for c in spec.claims] == ids
        assert all(c.seeds == (0, 1, 2) for c in spec.claims)
    assert FIGURES[FIG11].files == ("landscape.csv",)
    windows = {c.id: c.window for f in CLAIMS for c in FIGURES[f].claims}
    assert windows["santurkar2018/fig10_bn_smaller_beta_eff"] == (0, 2000)
    assert windows["santurkar2018/fig3b_bn_lower_ics_cosine"] == (0, 9900)


# --- plotted data ---------------------------------------------------------------------------------


def test_fig3b_data_is_the_mean_over_seeds_and_drawn(sweeps) -> None:
    sweep = sweeps[FIG3B]
    spec = FIGURES[FIG3B]
    table = spec.load([sweep])
    data = spec.data(table)
    for lr in (1e-6, 1e-7):
        tag = "1e-6" if lr == 1e-6 else "1e-7"
        for variant, label in (("none", "Standard"), ("batch", "BN")):
            assert_band(
                plotted(data, f"lr {tag}: training loss", label),
                logged_band(sweep, variant, lr, "train/loss"),
            )
            for layer in (9, 17):
                for stat, quantity in (("l2", "ICS l2"), ("cos", "ICS cosine")):
                    assert_band(
                        plotted(data, f"lr {tag}: {quantity}", f"{label}, layer #{layer}"),
                        logged_band(sweep, variant, lr, f"ics/layer{layer}/{stat}"),
                    )
    assert data.groupby(["panel", "series"]).ngroups == 2 * (2 + 4 + 4)
    fig = spec.draw(table)
    assert len(fig.axes) == 6
    ax = fig.axes[4]  # lr 1e-7, ICS l2
    assert ax.get_title() == "lr 1e-7: ICS l2" and ax.get_yscale() == "log"
    # Two legend entries a panel, not four: the loss panels name the norms by colour, the ICS
    # panels the layers by line style (on the standard net's lines; BN's are left out).
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels == ["layer #9", "layer #17", "_BN, layer #9", "_BN, layer #17"]
    assert [line.get_color() for line in ax.get_lines()] == ["black", "black", "tab:red", "tab:red"]
    assert [line.get_linestyle() for line in ax.get_lines()] == ["-", "--", "-", "--"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["layer #9", "layer #17"]
    loss = fig.axes[3]
    assert [t.get_text() for t in loss.get_legend().get_texts()] == ["Standard", "BN"]
    rows = plotted(data, "lr 1e-7: ICS l2", "BN, layer #17")
    np.testing.assert_array_equal(ax.get_lines()[3].get_ydata(), rows["mean"])
    assert "Fig. 3(b)" in fig.get_suptitle() and "seeds 0/1/2" in fig.get_suptitle()


def test_fig9_data_is_the_mean_over_seeds_of_the_percentiles(sweeps) -> None:
    sweep = sweeps[FIG9]
    spec = FIGURES[FIG9]
    table = spec.load([sweep])
    data = spec.data(table)
    for variant, label in (("none", "Standard"), ("batch", "BN")):
        for layer in (1, 11, 24):
            for p in ("15", "50", "85"):
                assert_band(
                    plotted(data, f"{label}, layer #{layer}", f"{p}%"),
                    logged_band(sweep, variant, 1e-6, f"act/layer{layer}/p{p}"),
                )
    fig = spec.draw(table)
    assert [ax.get_title() for ax in fig.axes] == [
        f"{label}, layer #{layer}" for label in ("Standard", "BN") for layer in (1, 11, 24)
    ]
    median = next(ln for ln in fig.axes[2].get_lines() if ln.get_label() == "median")
    rows = plotted(data, "Standard, layer #24", "50%")
    np.testing.assert_array_equal(median.get_ydata(), rows["mean"])
    # The 15% and 85% curves dotted, one legend entry for both.
    assert [ln.get_linestyle() for ln in fig.axes[2].get_lines()] == [":", "-", ":"]
    assert [t.get_text() for t in fig.axes[2].get_legend().get_texts()] == ["15%, 85%", "median"]


def test_fig10_and_fig13_data_is_the_mean_over_seeds(sweeps) -> None:
    sweep = sweeps[FIG10]
    data = FIGURES[FIG10].data(FIGURES[FIG10].load([sweep]))
    for variant, label in (("none", "Standard"), ("batch", "BN")):
        for panel, metric in (("a", "loss"), ("b", "grad_diff")):
            for end in ("min", "max"):
                assert_band(
                    plotted(data, panel, f"{label}, {end}"),
                    logged_band(sweep, variant, 1e-6, f"landscape/{metric}_{end}"),
                )
        assert_band(
            plotted(data, "c", label), logged_band(sweep, variant, 1e-6, "landscape/beta_eff")
        )
    sweep = sweeps[FIG13]
    spec = FIGURES[FIG13]
    table = spec.load([sweep])
    data = spec.data(table)
    assert sorted(data["panel"].unique()) == ["a", "b", "c", "d"]
    for variant, label in (("l1", "l1"), ("linf", "l_inf"), ("none", "Standard")):
        assert_band(plotted(data, "a", label), logged_band(sweep, variant, 1e-6, "train/loss"))
        assert_band(
            plotted(data, "d", label), logged_band(sweep, variant, 1e-6, "landscape/beta_eff")
        )
    fig = spec.draw(table)
    assert [ax.get_title() for ax in fig.axes] == [
        "(a) training loss",
        "(b) loss landscape",
        "(c) gradient predictiveness",
        "(d) effective beta-smoothness",
    ]
    assert all(ax.get_yscale() == "log" for ax in fig.axes)
    lines = {ln.get_label(): ln for ln in fig.axes[3].get_lines()}
    np.testing.assert_array_equal(lines["l2"].get_ydata(), plotted(data, "d", "l2")["mean"])


def test_fig11_data_is_the_mean_over_seeds_of_landscape_csv(sweeps) -> None:
    sweep = sweeps[FIG11]
    spec = FIGURES[FIG11]
    table = spec.load([sweep])
    data = spec.data(table)
    assert list(data.columns) == [
        "panel",
        "series",
        "step",
        "eta",
        "mean",
        "min",
        "max",
        "n",
        "n_nonfinite",
    ]
    steps = sorted(data["step"].unique())
    assert steps == [0, 2000, 4000, 5900, 7900, 9900]
    assert set(data["series"]) == {f"step {s}" for s in steps}
    for variant, label in (("none", "Standard"), ("batch", "BN")):
        raw = pd.concat(
            pd.read_csv(sweep / run_name(variant, 1e-6, s) / "landscape.csv") for s in (0, 1, 2)
        )
        raw = raw[raw["step"].isin(steps)]
        expected = raw.groupby(["step", "eta"])["grad_diff"].agg(["mean", "min", "max", "count"])
        rows = data[data["panel"] == label].set_index(["step", "eta"]).sort_index()
        assert rows.index.equals(expected.index)
        np.testing.assert_allclose(rows["mean"], expected["mean"], rtol=1e-12)
        np.testing.assert_allclose(rows["min"], expected["min"], rtol=1e-12)
        np.testing.assert_allclose(rows["max"], expected["max"], rtol=1e-12)
        assert (rows["n"] == 3).all() and (rows[N_NONFINITE] == 0).all()
    fig = spec.draw(table)
    ax_std, ax_bn = fig.axes[:2]
    assert ax_std.get_xscale() == "log" and ax_std.get_yscale() == "log"
    assert [ax.get_title() for ax in (ax_std, ax_bn)] == ["(a) Standard", "(b) BN"]
    line = next(ln for ln in ax_bn.get_lines() if ln.get_label() == "step 4000")
    rows = data[(data["panel"] == "BN") & (data["step"] == 4000)].sort_values("eta")
    np.testing.assert_array_equal(line.get_xdata(), rows["eta"])
    np.testing.assert_array_equal(line.get_ydata(), rows["mean"])
    bar = fig.axes[2]
    assert bar.get_ylabel() == "training step t"  # the colour bar
    # Round steps on the colour bar, not the curves' own 5900, 7900.
    ticks = [t for t in bar.get_yticks() if 0 <= t <= steps[-1]]
    assert ticks == [0, 2000, 4000, 6000, 8000]
    # One y axis for both panels, holding both panels' curves.
    assert ax_bn.get_ylim() == ax_std.get_ylim()
    low = min(np.nanmin(line.get_ydata()) for ax in (ax_std, ax_bn) for line in ax.get_lines())
    assert ax_std.get_ylim()[0] <= low


# --- suite and own sweep --------------------------------------------------------------------------


@pytest.mark.parametrize("figure", [FIG3B, FIG5B, FIG9, FIG10, FIG11, FIG13])
def test_a_figure_from_the_suite_equals_the_figure_from_its_own_sweep(sweeps, figure) -> None:
    spec = FIGURES[figure]
    own = spec.data(spec.load([sweeps[figure]]))
    suite = spec.data(spec.load([sweeps[DLN_SUITE]]))
    pd.testing.assert_frame_equal(own, suite)
    own_claims = evaluate_claims(spec.claims, spec.load([sweeps[figure]]))
    suite_claims = evaluate_claims(spec.claims, spec.load([sweeps[DLN_SUITE]]))
    pd.testing.assert_frame_equal(own_claims, suite_claims)


def test_two_sweeps_mixed_are_refused(sweeps) -> None:
    spec = FIGURES[FIG10]
    table = spec.load([sweeps[FIG10], sweeps[DLN_SUITE]])
    with pytest.raises(ValueError, match="mix settings.*name"):
        spec.data(table)
    with pytest.raises(ValueError, match="mix settings"):
        evaluate_claims(spec.claims, table)


def test_a_missing_rate_or_norm_is_named(tmp_path: Path, sweeps) -> None:
    sweep = dln_sweep(
        tmp_path / "fig3b", FIG3B, skip=[(v, 1e-7, s) for v in ("none", "batch") for s in (0, 1, 2)]
    )
    with pytest.raises(ValueError, match=r"no runs at optim.lr=1e-07 \(found: 1e-06\)"):
        FIGURES[FIG3B].data(FIGURES[FIG3B].load([sweep]))
    # Fig. 13 from Fig. 10's sweep: no l_p runs.
    with pytest.raises(ValueError, match="no runs with norm l1, l2, linf"):
        FIGURES[FIG13].data(FIGURES[FIG13].load([sweeps[FIG10]]))


def test_infer_figure_id_asks_for_a_figure_for_suite_runs(sweeps, tmp_path: Path) -> None:
    with pytest.raises(
        ValueError,
        match="runs of santurkar2018/dln_suite feed several figures; name one: .*dln_fig11_gradchange",
    ):
        infer_figure_id(load_summaries([sweeps[DLN_SUITE]]))
    assert infer_figure_id(load_summaries([sweeps[FIG11]])) == FIG11
    with pytest.raises(SystemExit) as exit_:
        figures_main([str(sweeps[DLN_SUITE]), "--out", str(tmp_path)])
    assert exit_.value.code == 2


# --- claims ---------------------------------------------------------------------------------------


def test_every_claim_is_reproduced_on_data_built_to_pass(sweeps) -> None:
    for figure in CLAIMS:
        for paths in ([sweeps[figure]], [sweeps[DLN_SUITE]]):
            v = verdicts(figure, paths)
            assert (v["verdict"] == "reproduced").all(), v[["verdict", "measured"]].to_string()


def test_every_claim_fails_on_data_built_to_fail(tmp_path: Path) -> None:
    suite = dln_sweep(tmp_path / "suite", DLN_SUITE, bn_better=False)
    for figure in CLAIMS:
        v = verdicts(figure, [suite])
        assert (v["verdict"] == "not reproduced").all(), v[["verdict", "measured"]].to_string()
    detail = verdicts(FIG3B, [suite]).loc["santurkar2018/fig3b_bn_lower_ics_cosine", "measured"]
    assert "BN below Standard in 0 of 12 (lr, layer, seed)" in detail and "l2 BN/Standard" in detail


def test_one_seed_failing_fails_the_claim(tmp_path: Path) -> None:
    """Seed 2 of the BN net as rough as the standard net: the per-seed claims fail."""
    good = dln_sweep(tmp_path / "good", FIG10, skip=[("batch", 1e-6, 2)])
    dln_sweep(tmp_path / "bad", FIG10, bn_better=False, seeds=(2,))
    (tmp_path / "bad" / run_name("batch", 1e-6, 2)).rename(good / run_name("batch", 1e-6, 2))
    v = verdicts(FIG10, [good])
    assert (v["verdict"] == "not reproduced").all()
    assert "Standard/BN x" in v.loc["santurkar2018/fig10_bn_smaller_beta_eff", "measured"]


def test_a_missing_seed_or_runs_stopping_early_are_insufficient_data(tmp_path: Path) -> None:
    no_seed = dln_sweep(
        tmp_path / "no_seed", DLN_SUITE, skip=[("none", lr, 2) for lr in (1e-6, 1e-7)]
    )
    short = dln_sweep(tmp_path / "short", DLN_SUITE, max_steps=10000, step=1500)
    for figure in CLAIMS:
        for sweep, why in (
            (no_seed, "norm.variant=none seed 2: no run"),
            (short, "stopped at step 1500"),
        ):
            v = verdicts(figure, [sweep])
            assert (v["verdict"] == "insufficient data").all(), (figure, v["measured"].tolist())
            assert all(why in m for m in v["measured"]), v["measured"].tolist()


def test_a_run_without_landscape_csv_is_named(tmp_path: Path, caplog) -> None:
    sweep = dln_sweep(tmp_path / "fig11", FIG11)
    gone = sweep / run_name("batch", 1e-6, 1) / "landscape.csv"
    gone.unlink()
    spec = FIGURES[FIG11]
    with caplog.at_level(logging.WARNING, logger="normlab.results"):
        table = spec.load([sweep])
    assert "1 of 6 runs have no landscape.csv" in caplog.text
    with pytest.raises(
        ValueError, match=r"no landscape.csv rows in 1 run\(s\): .*batch_lr1e-06,seed=1"
    ):
        spec.data(table)
    v = evaluate_claims(spec.claims, table).iloc[0]
    assert v["verdict"] == "insufficient data"
    assert "norm.variant=batch seed 1: no landscape_curve/grad_diff logged" in v["measured"]


# --- non-finite values and partial runs -----------------------------------------------------------


def marker_lines(ax) -> dict[str, object]:
    """The blow-up markers of `ax` (`normlab.report.bands.mark_top`), by series."""
    return {
        ln.get_label().lstrip("_").removesuffix(": blew up"): ln
        for ln in ax.get_lines()
        if ln.get_label().endswith(": blew up")
    }


def legend_texts(fig) -> list[str]:
    """Every legend entry of `fig`: its panels' legends, and its own (the markers')."""
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend()] + list(fig.legends)
    return [t.get_text() for legend in legends for t in legend.get_texts()]


def test_a_point_where_one_seed_blew_up_is_marked_never_averaged(tmp_path: Path) -> None:
    """Seed 0's standard walk blew up at steps 0-500 (inf, nan at the largest step sizes): those
    points have no mean (never one over the two seeds left), n_nonfinite 1 of n 3, and a marker at
    the top of the panel; one legend entry per figure."""
    sweep = dln_sweep(tmp_path / "suite", DLN_SUITE, blowup=[0])
    blown = list(range(0, 501, 100))
    for figure in (FIG10, FIG13):
        spec = FIGURES[figure]
        table = spec.load([sweep])
        data = spec.data(table)
        assert (data["n"] == 3).all()
        # A mean only where every seed is finite: no point stands for a subset of the seeds.
        has_mean = data["mean"].notna()
        assert (has_mean == (data[N_NONFINITE] == 0)).all()
        assert set(data.loc[~has_mean, "series"]) == {"Standard, max", "Standard"}
        band = "a" if figure == FIG10 else "b"
        top = plotted(data, band, "Standard, max")
        assert top.loc[top["step"].isin(blown), N_NONFINITE].eq(1).all()
        assert top.loc[~top["step"].isin(blown), N_NONFINITE].eq(0).all()
        assert_band(top, logged_band(sweep, "none", 1e-6, "landscape/loss_max"))
        beta = "c" if figure == FIG10 else "d"
        assert_band(
            plotted(data, beta, "Standard"), logged_band(sweep, "none", 1e-6, "landscape/beta_eff")
        )
        fig = spec.draw(table)
        landscape_axes = fig.axes[-3:]
        for ax in landscape_axes:
            marks = marker_lines(ax)
            assert list(marks) == ["Standard"], ax.get_title()
            np.testing.assert_array_equal(marks["Standard"].get_xdata(), blown)
            assert marks["Standard"].get_color() == "black"
        assert not marker_lines(fig.axes[0]) or figure == FIG10
        assert legend_texts(fig).count(NONFINITE_LABEL) == 1
        # The drawn beta_eff line has a gap, not a value, at the blown-up steps.
        line = next(ln for ln in landscape_axes[-1].get_lines() if ln.get_label() == "Standard")
        ydata = pd.Series(line.get_ydata(), index=line.get_xdata())
        assert ydata.loc[blown].isna().all() and ydata.drop(blown).notna().all()
        fig.savefig(tmp_path / "fig.png")
    # Fig. 11: at step 0 the standard curve's two largest step sizes blew up in seed 0.
    spec = FIGURES[FIG11]
    table = spec.load([sweep])
    curve = spec.data(table)
    assert (curve["n"] == 3).all()
    assert (curve["mean"].notna() == (curve[N_NONFINITE] == 0)).all()
    step0 = curve[(curve["panel"] == "Standard") & (curve["step"] == 0)].sort_values("eta")
    assert len(step0) == 10
    assert step0[N_NONFINITE].tolist() == [0] * 8 + [1, 1]
    assert step0["mean"].iloc[-2:].isna().all()
    fig = spec.draw(table)
    marks = marker_lines(fig.axes[0])
    assert list(marks) == ["step 0"] and not marker_lines(fig.axes[1])
    np.testing.assert_allclose(marks["step 0"].get_xdata(), step0["eta"].iloc[-2:])
    assert legend_texts(fig) == [NONFINITE_LABEL]
    fig.savefig(tmp_path / "fig11.png")


def test_figures_without_blowups_mark_nothing(sweeps) -> None:
    for figure in NEW_FIGURES:
        spec = FIGURES[figure]
        table = spec.load([sweeps[figure]])
        assert (spec.data(table)[N_NONFINITE] == 0).all()
        fig = spec.draw(table)
        assert not any(marker_lines(ax) for ax in fig.axes)
        assert NONFINITE_LABEL not in legend_texts(fig)


def test_blowups_count_in_the_landscape_claims_by_step(tmp_path: Path) -> None:
    """Every seed's standard walk blew up at steps 0-500: six of the window's 21 per-step ratios
    are +inf, the median is decided by the other steps; the claims say how many walks blew up."""
    sweep = dln_sweep(tmp_path / "suite", DLN_SUITE, blowup=True)
    for figure in (FIG10, FIG13):
        v = verdicts(figure, [sweep])
        assert (v["verdict"] == "reproduced").all(), v["measured"].tolist()
        assert all("walks that blew up" in m and "Standard 18" in m for m in v["measured"])
        assert all("median" in m for m in v["measured"])
        assert np.isfinite(v["value"]).all()
    claim = verdicts(FIG11, [sweep]).iloc[0]
    assert claim["verdict"] == "reproduced"
    assert "non-finite points counted as blown up: Standard 36, BN 0" in claim["measured"]


def test_a_single_overflowed_step_does_not_decide_a_landscape_claim(tmp_path: Path) -> None:
    """On data built to fail (BN as rough as the standard net), one overflowed standard walk per
    seed (step 0) would make a window mean inf and pass the claim; the median of the per-step
    ratios stays near 1 and fails it. Conversely, one overflowed BN walk on data built to pass
    does not fail it."""
    fail = dln_sweep(tmp_path / "fail", FIG13, bn_better=False)
    overflowed = {"landscape/loss_max", "landscape/grad_diff_max", "landscape/beta_eff"}
    for seed in (0, 1, 2):
        edit_metrics(
            fail / run_name("none", 1e-6, seed),
            lambda t, m, x: float("inf") if (t == 0 and m in overflowed) else x,
        )
    for figure in (FIG10, FIG13):
        v = verdicts(figure, [fail])
        assert (v["verdict"] == "not reproduced").all(), v["measured"].tolist()
        assert (v["value"] < 10).all()
        assert all("Standard 3" in m for m in v["measured"])
    good = dln_sweep(tmp_path / "good", FIG10)
    edit_metrics(
        good / run_name("batch", 1e-6, 1),
        lambda t, m, x: float("nan") if (t == 1000 and m == "landscape/beta_eff") else x,
    )
    v = verdicts(FIG10, [good])
    assert (v["verdict"] == "reproduced").all(), v["measured"].tolist()
    assert "Standard 0, BN 1" in v.loc["santurkar2018/fig10_bn_smaller_beta_eff", "measured"]


def test_step_ratios_and_the_median() -> None:
    inf, nan = float("inf"), float("nan")
    std = np.array([100.0, inf, 100.0, inf, nan, 0.0, 5.0])
    norm = np.array([10.0, 1.0, inf, nan, inf, 0.0, 0.0])
    # standard blew up: +inf; normalised blew up: 0; both: 0 (not comparable); 0/0: 1; x/0: inf
    np.testing.assert_array_equal(step_ratios(std, norm), [10.0, inf, 0.0, 0.0, 0.0, 1.0, inf])
    assert lower_median([1.0, inf, 50.0]) == 50.0
    assert lower_median([5.0, inf]) == 5.0  # of an even count, the lower middle value
    assert lower_median([3.0, 1.0, 4.0, 2.0]) == 2.0


def test_a_nan_cosine_makes_the_ics_claims_insufficient_and_is_marked(tmp_path: Path) -> None:
    sweep = dln_sweep(tmp_path / "fig3b", FIG3B)
    edit_metrics(
        sweep / run_name("batch", 1e-6, 1),
        lambda t, m, x: float("nan") if (t in (300, 400) and m == "ics/layer9/cos") else x,
    )
    spec = FIGURES[FIG3B]
    table = spec.load([sweep])
    v = evaluate_claims(spec.claims, table)
    assert (v["verdict"] == "insufficient data").all(), v["measured"].tolist()
    assert all(
        "non-finite cos (undefined, no verdict): BN lr 1e-6 layer #9 seed 1: 2 of 100" in m
        for m in v["measured"]
    ), v["measured"].tolist()
    # Without it, the detail says there was none.
    clean = verdicts(FIG3B, [dln_sweep(tmp_path / "clean", FIG3B)])
    assert all("non-finite cos: 0 in every" in m for m in clean["measured"])
    data = spec.data(table)
    rows = plotted(data, "lr 1e-6: ICS cosine", "BN, layer #9").set_index("step")
    assert (
        rows.loc[[300, 400], "mean"].isna().all() and rows.loc[[300, 400], N_NONFINITE].eq(1).all()
    )
    assert rows.drop([300, 400])["mean"].notna().all() and (rows["n"] == 3).all()
    fig = spec.draw(table)
    marks = marker_lines(fig.axes[2])  # lr 1e-6, ICS cosine
    assert list(marks) == ["BN, layer #9"]
    np.testing.assert_array_equal(marks["BN, layer #9"].get_xdata(), [300, 400])
    assert legend_texts(fig).count(NONFINITE_LABEL) == 1


def test_a_run_with_fewer_evaluations_than_a_claim_needs_is_insufficient(tmp_path: Path) -> None:
    """One probe missing in one run (a step of the window never logged): every claim of the
    figure that reads it is insufficient data, naming the run and the count."""
    suite = dln_sweep(tmp_path / "suite", DLN_SUITE)
    edit_metrics(  # ICS: one cosine of layer #17 missing (layer #9 complete)
        suite / run_name("none", 1e-7, 2),
        lambda t, m, x: None if (t == 5000 and m == "ics/layer17/cos") else x,
    )
    edit_metrics(  # landscape: one early probe missing
        suite / run_name("none", 1e-6, 0),
        lambda t, m, x: None if (t == 1000 and m.startswith("landscape/")) else x,
    )
    edit_metrics(  # the training loss: one logged value of the end window missing
        suite / run_name("l1", 1e-6, 1),
        lambda t, m, x: None if (t == 9500 and m == "train/loss") else x,
    )
    curve = suite / run_name("batch", 1e-6, 2) / "landscape.csv"  # Fig. 11: one eta missing
    raw = pd.read_csv(curve)
    raw.drop(index=raw.index[(raw["step"] == 7000)][-1]).to_csv(curve, index=False)
    why = {
        FIG3B: "Standard lr 1e-7 layer #17 seed 2: 99 of 100 evaluations of ics/layer17/cos",
        FIG10: "norm.variant=none seed 0: 20 evaluation(s) of landscape/",
        FIG13: "norm.variant=none seed 0: 20 evaluation(s) of landscape/beta_eff in steps "
        "0-2000, need 21 (probe.landscape.every_n_steps=100)",
        FIG11: "seed 2: 999 (step, eta) point(s) in both runs' landscape.csv in steps 0-9900, "
        "need 1000",
        FIG5B: "norm.variant=l1 seed 1: 19 evaluation(s) of train/loss in steps 9000-10000, "
        "need 20 (trainer.log_every_n_steps=50)",
    }
    for figure, text in why.items():
        v = verdicts(figure, [suite])
        assert (v["verdict"] == "insufficient data").all(), (figure, v["measured"].tolist())
        assert all(text in m for m in v["measured"]), (figure, v["measured"].tolist())


def test_needed_evaluations_follow_the_window_and_the_cadence() -> None:
    def claim(window: tuple[int, int]) -> Claim:
        return Claim("c", "f", "", "", "m", window, 1.0, (0, 1, 2), lambda t, c: None)

    def rows(every: int, last: int) -> pd.DataFrame:
        return pd.DataFrame({"run_dir": ["r"], "last_step": [last], "probe.x.every": [every]})

    assert needed_evals(rows(100, 10000), claim((0, 2000)), "probe.x.every") == 21
    assert needed_evals(rows(100, 10000), claim((0, 9900)), "probe.x.every") == 100
    # A window ending where training does: the last trained step is last_step - 1.
    assert needed_evals(rows(50, 10000), claim((9000, 10000)), "probe.x.every") == 20
    assert needed_evals(rows(300, 10000), claim((100, 2000)), "probe.x.every") == 6


# --- scripts/figures.py ---------------------------------------------------------------------------


def figures_main(args: list[str]) -> int:
    """scripts/figures.py's `main`, in this process."""
    spec = importlib.util.spec_from_file_location("figures_script", REPO / "scripts" / "figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(args)


def test_figures_script_writes_every_dln_figure_from_the_suite(sweeps, tmp_path: Path) -> None:
    out = tmp_path / "figs"
    for figure in NEW_FIGURES:
        assert figures_main([figure, str(sweeps[DLN_SUITE]), "--out", str(out)]) == 0
        base = out / figure
        for suffix in (".png", ".pdf", "_data.csv", "_claims.md", "_claims.csv"):
            assert base.with_name(base.name + suffix).exists(), (figure, suffix)
        written = pd.read_csv(base.with_name(base.name + "_data.csv"))
        spec = FIGURES[figure]
        expected = spec.data(spec.load([sweeps[DLN_SUITE]]))
        pd.testing.assert_frame_equal(written, expected, check_dtype=False)
        claims = pd.read_csv(base.with_name(base.name + "_claims.csv"))
        assert claims["id"].tolist() == CLAIMS[figure]
        assert (claims["verdict"] == "reproduced").all()
