"""Santurkar 2018 DLN probe figures (Fig. 3(b), 9, 10, 11, 13) on fake runs: the plotted data is
the mean/min/max over seeds of what the runs logged, the same from a figure's own sweep and from the
suite's, the claims' verdicts, non-finite landscape values, and scripts/figures.py for every id."""

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

from normlab.claims import evaluate_claims
from normlab.figures import FIGURES, infer_figure_id
from normlab.results import load_summaries

REPO = Path(__file__).resolve().parents[1]
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
    """Per step, mean/min/max/n over seeds 0-2 of `metric`, read straight from metrics.csv."""
    values: dict[int, list[float]] = defaultdict(list)
    for seed in (0, 1, 2):
        with (sweep / run_name(variant, lr, seed) / "metrics.csv").open() as f:
            for row in csv.DictReader(f):
                if row["metric"] == metric and np.isfinite(float(row["value"])):
                    values[int(row["step"])].append(float(row["value"]))
    steps = sorted(values)
    return pd.DataFrame(
        {
            "step": steps,
            "mean": [np.mean(values[s]) for s in steps],
            "min": [min(values[s]) for s in steps],
            "max": [max(values[s]) for s in steps],
            "n": [len(values[s]) for s in steps],
        }
    )


def plotted(data: pd.DataFrame, panel: str, series: str) -> pd.DataFrame:
    rows = data[(data["panel"] == panel) & (data["series"] == series)]
    assert len(rows), (panel, series)
    return rows


def assert_band(rows: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert rows["step"].tolist() == expected["step"].tolist()
    for column in ("mean", "min", "max"):
        np.testing.assert_allclose(rows[column], expected[column], rtol=1e-12)
    assert rows["n"].tolist() == expected["n"].tolist()


def verdicts(figure: str, paths: list[Path]) -> pd.Series:
    spec = FIGURES[figure]
    return evaluate_claims(spec.claims, spec.load(paths)).set_index("id")


# --- the registry ---------------------------------------------------------------------------------


def test_every_dln_figure_is_registered_with_its_claims_fixed() -> None:
    for figure, ids in CLAIMS.items():
        spec = FIGURES[figure]
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
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels == [
        "Standard, layer #9",
        "Standard, layer #17",
        "BN, layer #9",
        "BN, layer #17",
    ]
    assert [line.get_linestyle() for line in ax.get_lines()] == ["-", "--", "-", "--"]
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
    assert list(data.columns) == ["panel", "series", "step", "eta", "mean", "min", "max", "n"]
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
        assert (rows["n"] == 3).all()
    fig = spec.draw(table)
    ax_std, ax_bn = fig.axes[:2]
    assert ax_std.get_xscale() == "log" and ax_std.get_yscale() == "log"
    assert [ax.get_title() for ax in (ax_std, ax_bn)] == ["(a) Standard", "(b) BN"]
    line = next(ln for ln in ax_bn.get_lines() if ln.get_label() == "step 4000")
    rows = data[(data["panel"] == "BN") & (data["step"] == 4000)].sort_values("eta")
    np.testing.assert_array_equal(line.get_xdata(), rows["eta"])
    np.testing.assert_array_equal(line.get_ydata(), rows["mean"])
    assert fig.axes[2].get_ylabel() == "training step t"  # the colorbar


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


def test_non_finite_landscape_values_are_left_out_of_plots_and_counted_by_claims(
    tmp_path: Path,
) -> None:
    sweep = dln_sweep(tmp_path / "suite", DLN_SUITE, blowup=True)
    for figure in (FIG10, FIG11, FIG13):
        spec = FIGURES[figure]
        table = spec.load([sweep])
        data = spec.data(table)
        assert np.isfinite(data[["mean", "min", "max"]].to_numpy()).all()
        spec.draw(table).savefig(tmp_path / "fig.png")
        v = evaluate_claims(spec.claims, table)
        assert (v["verdict"] == "reproduced").all(), v["measured"].tolist()
        assert all("non-finite" in m for m in v["measured"])
    # The standard net's walk blew up at steps 0-500: its max band edge there averages fewer
    # seeds (none, here), while its min edge keeps all three.
    data = FIGURES[FIG10].data(FIGURES[FIG10].load([sweep]))
    assert plotted(data, "a", "Standard, max")["step"].min() == 600
    assert plotted(data, "a", "Standard, min")["n"].eq(3).all()
    curve = FIGURES[FIG11].data(FIGURES[FIG11].load([sweep]))
    step0 = curve[(curve["panel"] == "Standard") & (curve["step"] == 0)]
    assert len(step0) == 8  # 10 step sizes, the largest two blew up


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
