"""Ioffe 2015 Fig. 1 (`normlab.papers.ioffe2015.fig1_mnist`) on fake runs: its lines are the mean
over seeds and are the plotted data, its refusals, its two claims' verdicts, and the Fig. 1
notebook's form (tests/test_e2e.py executes it)."""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
from fakeruns import UNIT, base_config, fig1_curves, fig1_sweep, fig1_sweep_with_gaps, write_run

from normlab.papers.ioffe2015 import protocol as P
from normlab.report import COLUMNS, evaluate_claims
from normlab.report.registry import FIGURES
from normlab.results import load_metrics

REPO = Path(__file__).resolve().parents[3]
FIG1 = "ioffe2015/fig1_mnist"
SPEC = FIGURES[FIG1]
HIGHER = "ioffe2015/fig1a_higher_sooner"
STABLE = "ioffe2015/fig1bc_stable_inputs"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fig1_sweep_with_gaps(tmp_path_factory.mktemp("fig1") / "sweep")


def load(*sweeps: Path) -> pd.DataFrame:
    return load_metrics(list(sweeps), metrics=SPEC.needed_metrics())


def seed_means(sweep: Path, norm: str, metric: str) -> tuple[list[int], list[float]]:
    """The mean over seeds at each step, straight from the finished runs' metrics.csv files."""
    values: dict[int, list[float]] = defaultdict(list)
    for seed in (0, 1, 2):
        with (sweep / f"norm={norm},seed={seed}" / "metrics.csv").open() as f:
            for row in csv.DictReader(f):
                if row["metric"] == metric:
                    values[int(row["step"])].append(float(row["value"]))
    steps = sorted(values)
    return steps, [float(np.mean(values[s])) for s in steps]


# --- the figure -----------------------------------------------------------------------------------


def test_fig1_lines_are_the_mean_over_seeds(sweep: Path) -> None:
    fig = SPEC.draw(load(sweep))
    ax_a, ax_b, ax_c = fig.axes
    assert [ax.get_title() for ax in fig.axes] == ["(a)", "(b) Without BN", "(c) With BN"]
    assert [line.get_label() for line in ax_a.get_lines()] == ["Without BN (n=3)", "With BN (n=3)"]
    for line, norm in zip(ax_a.get_lines(), ("none", "batch"), strict=True):
        steps, means = seed_means(sweep, norm, "test/acc")
        np.testing.assert_array_equal(line.get_xdata(), steps)
        np.testing.assert_allclose(line.get_ydata(), means, rtol=1e-12)
    # Step 1000 of the unnormalised net averages the two seeds that logged it.
    none_steps, _ = seed_means(sweep, "none", "test/acc")
    assert 1000 in none_steps
    for ax, norm in ((ax_b, "none"), (ax_c, "batch")):
        assert [line.get_label() for line in ax.get_lines()] == ["15%", "50%", "85%"]
        for line, p in zip(ax.get_lines(), ("p15", "p50", "p85"), strict=True):
            steps, means = seed_means(sweep, norm, f"act/layer3/unit{UNIT}/{p}")
            np.testing.assert_array_equal(line.get_xdata(), steps)
            np.testing.assert_allclose(line.get_ydata(), means, rtol=1e-12)
    assert ax_b.get_shared_y_axes().joined(ax_b, ax_c)
    assert not ax_a.get_shared_y_axes().joined(ax_a, ax_b)
    assert ax_a.get_ylabel() == "test accuracy" and ax_a.get_xlabel() == "training step"
    assert f"unit {UNIT}" in ax_b.get_ylabel()
    # Bands: one min..max patch per line.
    assert len(ax_a.collections) == 2 and len(ax_b.collections) == 3
    # (a) zooms on the paper's range (0.7..1), the early rise below the axis; its legend low right.
    assert ax_a.get_ylim() == pytest.approx((0.7, 1.006))
    assert ax_a.get_legend()._loc == 4  # "lower right"


def test_fig1_data_is_what_is_plotted(sweep: Path) -> None:
    table = load(sweep)
    data = SPEC.data(table)
    assert list(data.columns) == COLUMNS
    assert (data["n_nonfinite"] == 0).all()
    assert data.groupby(["panel", "series"], sort=False).ngroups == 8
    fig = SPEC.draw(table)
    for ax, panel in zip(fig.axes, "abc", strict=True):
        for line in ax.get_lines():
            series = line.get_label().split(" (n=")[0]
            rows = data[(data["panel"] == panel) & (data["series"] == series)]
            np.testing.assert_array_equal(line.get_xdata(), rows["step"])
            np.testing.assert_array_equal(line.get_ydata(), rows["mean"])
    # n counts the runs that logged each step; min..max spans them.
    acc = data[(data["panel"] == "a") & (data["series"] == "Without BN")].set_index("step")
    assert acc.loc[1000, "n"] == 2 and acc.drop(1000)["n"].eq(3).all()
    assert (acc["min"] <= acc["mean"]).all() and (acc["mean"] <= acc["max"]).all()
    # (b) is the unnormalised net's unit, (c) the BN net's.
    b50 = data[(data["panel"] == "b") & (data["series"] == "50%")]
    steps, means = seed_means(sweep, "none", f"act/layer3/unit{UNIT}/p50")
    assert b50["step"].tolist() == steps
    np.testing.assert_allclose(b50["mean"], means, rtol=1e-12)


@pytest.mark.parametrize("norm", ["none", "batch"])
def test_fig1_needs_both_norms(tmp_path: Path, norm: str) -> None:
    sweep = fig1_sweep(tmp_path / "sweep", norms=(norm,), max_steps=2000)
    other = "batch" if norm == "none" else "none"
    with pytest.raises(ValueError, match=f"no runs with norm {other} "):
        SPEC.draw(load(sweep))


def test_fig1_needs_exactly_one_unit(tmp_path: Path) -> None:
    sweep = fig1_sweep(tmp_path / "sweep", max_steps=2000)
    config = base_config("none", 0)
    config["trainer"]["max_steps"] = 2000
    write_run(
        sweep / "norm=none,seed=0",
        config=config,
        curves=fig1_curves("none", 0, max_steps=2000)
        | {"act/layer3/unit9/p50": {0: 0.0}, "act/layer3/unit9/p15": {0: 0.0}},
        max_steps=2000,
    )
    for make in (SPEC.draw, SPEC.data):
        with pytest.raises(ValueError, match="exactly one unit.*found units: 7, 9"):
            make(load(sweep))


def test_fig1_refuses_to_average_two_runs_of_one_seed(tmp_path: Path) -> None:
    a = fig1_sweep(tmp_path / "a", max_steps=2000)
    b = fig1_sweep(tmp_path / "b", norms=("none",), seeds=(1,), max_steps=2000)
    with pytest.raises(ValueError, match="none lr 0.5 seed 1: 2 runs"):
        SPEC.draw(load(a, b))


def test_fig1_refuses_mixed_settings(tmp_path: Path) -> None:
    """Seed 1 of the BN net ran at another learning rate and for longer: the figure, its data and
    the claims all refuse, naming each key that differs and its values."""

    def config(norm: str, seed: int) -> dict:
        c = base_config(norm, seed, lr=0.25 if (norm, seed) == ("batch", 1) else 0.5)
        c["trainer"]["max_steps"] = 3000 if (norm, seed) == ("batch", 1) else 2000
        return c

    table = load(fig1_sweep(tmp_path / "sweep", max_steps=2000, config=config))
    for make in (SPEC.draw, SPEC.data, lambda t: evaluate_claims(SPEC.claims, t)):
        with pytest.raises(ValueError, match="mix settings") as err:
            make(table)
        message = str(err.value)
        assert "differ in optim.lr, trainer.max_steps:" in message
        assert "optim.lr = 0.5 (5 runs) / 0.25 (norm=batch,seed=1)" in message
        assert "trainer.max_steps = 2000 (5 runs) / 3000 (norm=batch,seed=1)" in message


def test_fig1_draws_runs_that_differ_only_in_seed_norm_and_bookkeeping(tmp_path: Path) -> None:
    """Each run wrote elsewhere and logged differently: one setting. Their thread counts are not
    bookkeeping (`normlab.bookkeeping`: they change float32 sums): runs that differ in them are
    refused."""

    def config(norm: str, seed: int, threads: int = 1) -> dict:
        c = base_config(norm, seed, threads=threads)
        c["trainer"] |= {"max_steps": 2000, "enable_progress_bar": seed == 0}
        c["paths"]["runs_dir"] = f"/scratch/{norm}{seed}"
        c["data"] |= {"root": f"/data/{seed}", "download_dir": f"/dl/{seed}"}
        c["logger"]["wandb"]["mode"] = "online" if seed else "offline"
        return c

    fig = SPEC.draw(load(fig1_sweep(tmp_path / "sweep", max_steps=2000, config=config)))
    assert [ln.get_label() for ln in fig.axes[0].get_lines()] == [
        "Without BN (n=3)",
        "With BN (n=3)",
    ]
    threads = fig1_sweep(
        tmp_path / "threads",
        max_steps=2000,
        config=lambda norm, seed: config(norm, seed, threads=seed + 1),
    )
    with pytest.raises(ValueError, match="mix settings, they differ in threads:"):
        SPEC.draw(load(threads))


def test_fig1_needs_the_same_seeds_for_both_norms(tmp_path: Path) -> None:
    sweep = fig1_sweep(tmp_path / "sweep", norms=("none",), max_steps=2000)
    fig1_sweep(sweep, norms=("batch",), seeds=(0, 2), max_steps=2000)
    with pytest.raises(ValueError, match="the norms ran different seeds") as err:
        SPEC.draw(load(sweep))
    assert "none lr 0.5 seeds 0/1/2" in str(err.value)
    assert "batch lr 0.5 seeds 0/2" in str(err.value)


def test_fig1_legend_counts_the_runs(tmp_path: Path) -> None:
    sweep = fig1_sweep(tmp_path / "sweep", seeds=(0, 1, 2, 3, 4), max_steps=2000)
    fig = SPEC.draw(load(sweep))
    labels = [ln.get_label() for ln in fig.axes[0].get_lines()]
    assert labels == ["Without BN (n=5)", "With BN (n=5)"]
    assert "seeds 0/1/2/3/4" in fig.get_suptitle()


# --- the claims -----------------------------------------------------------------------------------


def evaluate(sweep: Path) -> pd.DataFrame:
    return evaluate_claims(SPEC.claims, load(sweep)).set_index("id")


def test_the_figure_has_its_two_claims_fixed() -> None:
    claims = {c.id: c for c in SPEC.claims}
    assert set(claims) == {HIGHER, STABLE}
    assert claims[HIGHER].window == (10000, 50000) and claims[HIGHER].threshold == 0.005
    assert claims[STABLE].window == (0, 50000) and claims[STABLE].threshold == 2.0
    assert P.FIG1_STEPS == 50000  # the windows end where the paper's runs do
    assert all(c.seeds == (0, 1, 2) and c.figure == SPEC.id for c in claims.values())


def test_bn_clearly_better_is_reproduced(tmp_path: Path) -> None:
    df = evaluate(fig1_sweep(tmp_path / "sweep", bn_better=True))
    assert list(df.columns) == [
        "claim",
        "paper says",
        "measured",
        "verdict",
        "value",
        "seeds",
        "per seed",
        "interval",
    ]
    assert df.loc[HIGHER, "seeds"] == "0/1/2" and df.loc[HIGHER, "per seed"].startswith("0: ")
    assert df.loc[HIGHER, "verdict"] == "reproduced"
    assert df.loc[STABLE, "verdict"] == "reproduced"
    # The measured value, recomputed here: mean over seeds of the paired window means.
    diffs = []
    for seed in (0, 1, 2):
        acc = {n: fig1_curves(n, seed)["test/acc"] for n in ("none", "batch")}
        window = [s for s in acc["none"] if 10000 <= s <= 50000]
        diffs.append(
            np.mean([acc["batch"][s] for s in window]) - np.mean([acc["none"][s] for s in window])
        )
    assert df.loc[HIGHER, "value"] == pytest.approx(np.mean(diffs), rel=1e-9)
    detail = df.loc[HIGHER, "measured"]
    assert detail.startswith(f"BN - none: {100 * np.mean(diffs):+.2f} pts (seeds 0/1/2: ")
    sooner = re.search(r"first step at 97% test acc: BN (\d+), none (\d+);", detail)
    assert sooner and int(sooner[1]) < int(sooner[2])
    assert df.loc[STABLE, "value"] > 10
    assert "without BN" in df.loc[STABLE, "measured"]


def test_bn_clearly_worse_is_not_reproduced(tmp_path: Path) -> None:
    df = evaluate(fig1_sweep(tmp_path / "sweep", bn_better=False))
    assert df.loc[HIGHER, "verdict"] == "not reproduced"
    assert df.loc[HIGHER, "value"] < 0
    assert df.loc[STABLE, "verdict"] == "not reproduced"
    assert df.loc[STABLE, "value"] < 1


def test_every_seed_must_pass_not_just_the_mean(tmp_path: Path) -> None:
    """Seed 1's BN run is a copy of its unnormalised run: the mean difference still clears the
    threshold, seed 1 does not."""

    def curves(norm, seed, **kw):
        return fig1_curves("none" if (norm, seed) == ("batch", 1) else norm, seed, **kw)

    df = evaluate(fig1_sweep(tmp_path / "sweep", curves=curves))
    assert df.loc[HIGHER, "value"] > 0.005
    assert df.loc[HIGHER, "verdict"] == "not reproduced"
    assert "+0.00" in df.loc[HIGHER, "measured"]
    assert df.loc[STABLE, "verdict"] == "not reproduced"


def test_the_measured_window_is_the_claims(tmp_path: Path) -> None:
    df = evaluate(fig1_sweep(tmp_path / "sweep"))
    # Evaluations every 500 steps: 81 in 10000..50000, 101 in 0..50000.
    assert df.loc[HIGHER, "measured"].endswith("; steps 10000-50000, 81 evaluations per run")
    assert df.loc[STABLE, "measured"].endswith("; steps 0-50000, 101 evaluations per run")


def test_a_window_with_too_few_evaluations_is_insufficient_data(tmp_path: Path) -> None:
    """Full-length runs that logged their unit only at step 0: the activation probe's cadence
    (every 500 steps) puts 100 evaluations in the window's trained steps 0..49999."""

    def curves(norm, seed, **kw):
        c = fig1_curves(norm, seed, **kw)
        return {k: ({0: v[0]} if "unit" in k else v) for k, v in c.items()}

    df = evaluate(fig1_sweep(tmp_path / "sweep", curves=curves))
    assert df.loc[HIGHER, "verdict"] == "reproduced"
    assert df.loc[STABLE, "verdict"] == "insufficient data"
    assert (
        "norm.name=none seed 0: 1 evaluation(s) of act/layer3/unit*/p* in steps 0-50000, "
        "need 100 (probe.activations.every_n_steps=500)" in df.loc[STABLE, "measured"]
    )


def test_a_run_without_the_metric_is_insufficient_data(tmp_path: Path) -> None:
    def curves(norm, seed, **kw):
        c = fig1_curves(norm, seed, **kw)
        return {k: v for k, v in c.items() if not (norm == "none" and seed == 0 and "unit" in k)}

    df = evaluate(fig1_sweep(tmp_path / "sweep", curves=curves))
    assert df.loc[HIGHER, "verdict"] == "reproduced"
    assert df.loc[STABLE, "verdict"] == "insufficient data"
    assert "norm.name=none seed 0: no act/layer3/unit*/p* logged" in df.loc[STABLE, "measured"]


# --- the notebook ---------------------------------------------------------------------------------


def test_notebook_is_stored_without_outputs_and_says_how_to_choose_the_sweep() -> None:
    """Executed on a real tiny sweep by tests/test_e2e.py; here only its form."""
    nb = nbformat.read(REPO / "notebooks" / "fig1_mnist.ipynb", as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.execution_count is None and c.outputs == [] for c in code)
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "NORMLAB_SWEEP=" in markdown and "newest multirun" in markdown
    assert "results.newest_multirun(" in code[0].source
