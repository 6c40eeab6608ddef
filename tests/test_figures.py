"""normlab.figures: the registry, Ioffe 2015 Fig. 1 (its lines are the data, written as a CSV too),
scripts/figures.py and the Fig. 1 notebook's form (tests/test_e2e.py executes it), on fake runs."""

from __future__ import annotations

import csv
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
from fakeruns import UNIT, base_config, fig1_curves, fig1_sweep, write_run

from normlab.claims import evaluate_claims
from normlab.figures import DATA_COLUMNS, FIGURES, infer_figure_id
from normlab.results import load_metrics, load_summaries

REPO = Path(__file__).resolve().parents[1]
FIG1 = "ioffe2015/fig1_mnist"
SPEC = FIGURES[FIG1]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Fig. 1's sweep, with seed 2 of the unnormalised net missing its evaluation at step 1000 and
    one failed run beside the finished ones."""

    def curves(norm, seed, **kw):
        c = fig1_curves(norm, seed, **kw)
        if (norm, seed) == ("none", 2):
            c["test/acc"].pop(1000)
        return c

    root = fig1_sweep(tmp_path_factory.mktemp("fig1") / "sweep", curves=curves)
    write_run(root / "norm=batch,seed=3", status="failed", seed=3, norm="batch", step=12)
    return root


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


def test_registry_ids_are_preset_names() -> None:
    for figure_id, spec in FIGURES.items():
        assert spec.id == figure_id
        assert (REPO / "conf" / "experiment" / f"{figure_id}.yaml").exists()
        assert all(c.figure == figure_id for c in spec.claims)


def test_fig1_lines_are_the_mean_over_seeds(sweep: Path) -> None:
    fig = SPEC.draw(load_metrics([sweep], metrics=SPEC.needed_metrics()))
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


def test_fig1_data_is_what_is_plotted(sweep: Path) -> None:
    table = load_metrics([sweep], metrics=SPEC.needed_metrics())
    data = SPEC.data(table)
    assert list(data.columns) == DATA_COLUMNS
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
    table = load_metrics([sweep], metrics=SPEC.needed_metrics())
    other = "batch" if norm == "none" else "none"
    with pytest.raises(ValueError, match=f"no runs with norm.name={other}"):
        SPEC.draw(table)


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
    with pytest.raises(ValueError, match="exactly one unit.*found units: 7, 9"):
        SPEC.draw(load_metrics([sweep], metrics=SPEC.needed_metrics()))


def test_fig1_refuses_to_average_two_runs_of_one_seed(tmp_path: Path) -> None:
    a = fig1_sweep(tmp_path / "a", max_steps=2000)
    b = fig1_sweep(tmp_path / "b", norms=("none",), seeds=(1,), max_steps=2000)
    with pytest.raises(ValueError, match="none seed 1: 2 runs"):
        SPEC.draw(load_metrics([a, b], metrics=SPEC.needed_metrics()))


def test_fig1_refuses_mixed_settings(tmp_path: Path) -> None:
    """Seed 1 of the BN net ran at another learning rate and for longer: the figure, its data and
    the claims all refuse, naming each key that differs and its values."""

    def config(norm: str, seed: int) -> dict:
        c = base_config(norm, seed, lr=0.25 if (norm, seed) == ("batch", 1) else 0.5)
        c["trainer"]["max_steps"] = 3000 if (norm, seed) == ("batch", 1) else 2000
        return c

    sweep = fig1_sweep(tmp_path / "sweep", max_steps=2000, config=config)
    table = load_metrics([sweep], metrics=SPEC.needed_metrics())
    for make in (SPEC.draw, SPEC.data, lambda t: evaluate_claims(SPEC.claims, t)):
        with pytest.raises(ValueError, match="mix settings") as err:
            make(table)
        message = str(err.value)
        assert "differ in optim.lr, trainer.max_steps:" in message
        assert "optim.lr = 0.5 (5 runs) / 0.25 (norm=batch,seed=1)" in message
        assert "trainer.max_steps = 2000 (5 runs) / 3000 (norm=batch,seed=1)" in message


def test_fig1_draws_runs_that_differ_only_in_seed_norm_and_bookkeeping(tmp_path: Path) -> None:
    """Each run wrote elsewhere, logged differently and used its own thread count: one setting."""

    def config(norm: str, seed: int) -> dict:
        c = base_config(norm, seed, threads=seed + 1)
        c["trainer"] |= {"max_steps": 2000, "enable_progress_bar": seed == 0}
        c["paths"]["runs_dir"] = f"/scratch/{norm}{seed}"
        c["data"] |= {"root": f"/data/{seed}", "download_dir": f"/dl/{seed}"}
        c["logger"]["wandb"]["mode"] = "online" if seed else "offline"
        return c

    sweep = fig1_sweep(tmp_path / "sweep", max_steps=2000, config=config)
    fig = SPEC.draw(load_metrics([sweep], metrics=SPEC.needed_metrics()))
    assert [ln.get_label() for ln in fig.axes[0].get_lines()] == [
        "Without BN (n=3)",
        "With BN (n=3)",
    ]


def test_fig1_needs_the_same_seeds_for_both_norms(tmp_path: Path) -> None:
    sweep = fig1_sweep(tmp_path / "sweep", norms=("none",), max_steps=2000)
    fig1_sweep(sweep, norms=("batch",), seeds=(0, 2), max_steps=2000)
    table = load_metrics([sweep], metrics=SPEC.needed_metrics())
    with pytest.raises(ValueError, match=r"different seeds \(none seeds 0/1/2, batch seeds 0/2\)"):
        SPEC.draw(table)


def test_fig1_legend_counts_the_runs(tmp_path: Path) -> None:
    sweep = fig1_sweep(tmp_path / "sweep", seeds=(0, 1, 2, 3, 4), max_steps=2000)
    fig = SPEC.draw(load_metrics([sweep], metrics=SPEC.needed_metrics()))
    labels = [ln.get_label() for ln in fig.axes[0].get_lines()]
    assert labels == ["Without BN (n=5)", "With BN (n=5)"]
    assert "seeds 0/1/2/3/4" in fig.get_suptitle()


def test_infer_figure_id(tmp_path: Path) -> None:
    write_run(tmp_path / "a" / "r")
    assert infer_figure_id(load_summaries([tmp_path / "a"])) == FIG1
    write_run(tmp_path / "b" / "r", experiment="santurkar2018/unknown")
    with pytest.raises(
        ValueError, match="'santurkar2018/unknown' has no registered figure.*fig1_mnist"
    ):
        infer_figure_id(load_summaries([tmp_path / "b"]))
    with pytest.raises(ValueError, match="several experiments .*fig1_mnist, santurkar2018/unknown"):
        infer_figure_id(load_summaries([tmp_path]))
    with pytest.raises(ValueError, match="no runs"):
        infer_figure_id(pd.DataFrame({"experiment": []}))


def figures_cli(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "figures.py"), *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_writes_figure_and_claims(sweep: Path, tmp_path: Path) -> None:
    out = tmp_path / "figs"
    proc = figures_cli(sweep, "--out", out)  # the figure is inferred from the runs
    assert proc.returncode == 0, proc.stderr
    png, pdf = out / f"{FIG1}.png", out / f"{FIG1}.pdf"
    md, claims_csv = out / f"{FIG1}_claims.md", out / f"{FIG1}_claims.csv"
    data_csv = out / f"{FIG1}_data.csv"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert pdf.read_bytes()[:4] == b"%PDF"
    text = md.read_text()
    for claim in SPEC.claims:
        assert claim.id in text and claim.id in proc.stdout
    claims = pd.read_csv(claims_csv)
    assert claims["verdict"].tolist() == ["reproduced", "reproduced"]
    # The paths written come last; left-out runs are reported in one line.
    last = proc.stdout.strip().splitlines()[-5:]
    assert sorted(last) == sorted(f"wrote {p}" for p in (png, pdf, md, claims_csv, data_csv))
    left_out = [line for line in proc.stderr.splitlines() if "left out" in line]
    assert left_out == ["figures.py: left out 1 of 7 runs: 1 failed"]


def test_cli_data_csv_is_the_plotted_lines(sweep: Path, tmp_path: Path) -> None:
    out = tmp_path / "figs"
    assert figures_cli(FIG1, sweep, "--out", out).returncode == 0
    data = pd.read_csv(out / f"{FIG1}_data.csv")
    assert list(data.columns) == ["panel", "series", "step", "mean", "min", "max", "n"]
    fig = SPEC.draw(load_metrics([sweep], metrics=SPEC.needed_metrics()))
    points = 0
    for ax, panel in zip(fig.axes, "abc", strict=True):
        for line in ax.get_lines():
            series = line.get_label().split(" (n=")[0]
            rows = data[(data["panel"] == panel) & (data["series"] == series)]
            np.testing.assert_array_equal(line.get_xdata(), rows["step"])
            np.testing.assert_allclose(line.get_ydata(), rows["mean"], rtol=1e-15)
            points += len(rows)
    assert points == len(data)  # one row per plotted point, nothing else
    for norm, series in (("none", "Without BN"), ("batch", "With BN")):
        steps, means = seed_means(sweep, norm, "test/acc")
        rows = data[(data["panel"] == "a") & (data["series"] == series)]
        assert rows["step"].tolist() == steps
        np.testing.assert_allclose(rows["mean"], means, rtol=1e-12)


def test_cli_with_explicit_id_and_missing_norm(tmp_path: Path) -> None:
    sweep = fig1_sweep(tmp_path / "sweep", norms=("none",), max_steps=2000)
    proc = figures_cli(FIG1, sweep, "--out", tmp_path / "figs")
    assert proc.returncode == 1
    assert "no runs with norm.name=batch" in proc.stderr
    # The claims report is still written, and says why it cannot judge.
    assert "insufficient data" in (tmp_path / "figs" / f"{FIG1}_claims.md").read_text()
    assert not (tmp_path / "figs" / f"{FIG1}.png").exists()
    assert not (tmp_path / "figs" / f"{FIG1}_data.csv").exists()


def test_cli_refuses_mixed_settings(tmp_path: Path) -> None:
    a = fig1_sweep(tmp_path / "a", max_steps=2000)
    b = fig1_sweep(
        tmp_path / "b",
        seeds=(3,),
        max_steps=2000,
        config=lambda norm, seed: (
            base_config(norm, seed, lr=0.25) | {"trainer": {"max_steps": 2000}}
        ),
    )
    proc = figures_cli(a, b, "--out", tmp_path / "figs")
    assert proc.returncode == 1
    assert "cannot draw" in proc.stderr and "optim.lr = 0.5 (6 runs) / 0.25 (" in proc.stderr
    assert not list((tmp_path / "figs").rglob("*.png"))


def test_cli_list() -> None:
    proc = figures_cli("--list")
    assert proc.returncode == 0
    assert proc.stdout.startswith(FIG1)
    for claim in SPEC.claims:
        assert claim.id in proc.stdout


def test_cli_first_argument_is_a_path_or_a_figure_id(sweep: Path, tmp_path: Path) -> None:
    # Not an existing path: a figure id, which must be registered.
    for first in ("ioffe2015/fig9_nope", str(tmp_path / "no_such_sweep")):
        proc = figures_cli(first, sweep, "--out", tmp_path)
        assert proc.returncode == 2
        assert f"unknown figure id {first!r}" in proc.stderr
        assert f"valid figure ids: {FIG1}" in proc.stderr
    # Alone, too: it is not taken for a sweep directory.
    proc = figures_cli(tmp_path / "no_such_sweep", "--out", tmp_path)
    assert proc.returncode == 2 and FIG1 in proc.stderr
    assert f"unknown figure id {str(tmp_path / 'no_such_sweep')!r}" in proc.stderr
    # A registered id, then a path that does not exist.
    proc = figures_cli(FIG1, tmp_path / "gone", "--out", tmp_path)
    assert proc.returncode == 2 and "no such directory" in proc.stderr and "gone" in proc.stderr
    # An id with no path.
    assert figures_cli(FIG1, "--out", tmp_path).returncode == 2


def test_notebook_is_stored_without_outputs_and_says_how_to_choose_the_sweep() -> None:
    """Executed on a real tiny sweep by tests/test_e2e.py; here only its form."""
    nb = nbformat.read(REPO / "notebooks" / "fig1_mnist.ipynb", as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.execution_count is None and c.outputs == [] for c in code)
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "NORMLAB_SWEEP=" in markdown and "newest multirun" in markdown
    assert "results.newest_multirun(" in code[0].source
