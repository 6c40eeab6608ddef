"""normlab.figures: the registry, Ioffe 2015 Fig. 1 (its lines are the data), scripts/figures.py
and the Fig. 1 notebook, all on fake runs."""

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
from fakeruns import UNIT, fig1_curves, fig1_sweep, write_run
from nbclient import NotebookClient

from normlab.figures import FIGURES, infer_figure_id
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
    assert [line.get_label() for line in ax_a.get_lines()] == ["Without BN", "With BN"]
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


@pytest.mark.parametrize("norm", ["none", "batch"])
def test_fig1_needs_both_norms(tmp_path: Path, norm: str) -> None:
    sweep = fig1_sweep(tmp_path / "sweep", norms=(norm,), max_steps=2000)
    table = load_metrics([sweep], metrics=SPEC.needed_metrics())
    other = "batch" if norm == "none" else "none"
    with pytest.raises(ValueError, match=f"no runs with norm.name={other}"):
        SPEC.draw(table)


def test_fig1_needs_exactly_one_unit(tmp_path: Path) -> None:
    sweep = fig1_sweep(tmp_path / "sweep", max_steps=2000)
    write_run(
        sweep / "norm=none,seed=0",
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
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert pdf.read_bytes()[:4] == b"%PDF"
    text = md.read_text()
    for claim in SPEC.claims:
        assert claim.id in text and claim.id in proc.stdout
    claims = pd.read_csv(claims_csv)
    assert claims["verdict"].tolist() == ["reproduced", "reproduced"]
    # The paths written come last; left-out runs are reported in one line.
    last = proc.stdout.strip().splitlines()[-4:]
    assert sorted(last) == sorted(f"wrote {p}" for p in (png, pdf, md, claims_csv))
    left_out = [line for line in proc.stderr.splitlines() if "left out" in line]
    assert left_out == ["figures.py: left out 1 of 7 runs: 1 failed"]


def test_cli_with_explicit_id_and_missing_norm(tmp_path: Path) -> None:
    sweep = fig1_sweep(tmp_path / "sweep", norms=("none",), max_steps=2000)
    proc = figures_cli(FIG1, sweep, "--out", tmp_path / "figs")
    assert proc.returncode == 1
    assert "no runs with norm.name=batch" in proc.stderr
    # The claims report is still written, and says why it cannot judge.
    assert "insufficient data" in (tmp_path / "figs" / f"{FIG1}_claims.md").read_text()
    assert not (tmp_path / "figs" / f"{FIG1}.png").exists()


def test_cli_list() -> None:
    proc = figures_cli("--list")
    assert proc.returncode == 0
    assert proc.stdout.startswith(FIG1)
    for claim in SPEC.claims:
        assert claim.id in proc.stdout


def test_cli_unknown_figure_id(sweep: Path, tmp_path: Path) -> None:
    proc = figures_cli("ioffe2015/fig9_nope", sweep, "--out", tmp_path)
    assert proc.returncode == 2
    assert "unknown figure id 'ioffe2015/fig9_nope'" in proc.stderr
    assert FIG1 in proc.stderr
    proc = figures_cli(tmp_path / "no_such_sweep", "--out", tmp_path)
    assert proc.returncode == 2 and "no_such_sweep" in proc.stderr and FIG1 in proc.stderr


def test_notebook_runs_on_a_sweep(sweep: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = REPO / "notebooks" / "fig1_mnist.ipynb"
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is None and c.outputs == [] for c in code), "stored with outputs"
    monkeypatch.setenv("NORMLAB_SWEEP", str(sweep))
    client = NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}
    )
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "the figure was not shown"
    texts = [o["data"].get("text/markdown", "") for o in outputs if "data" in o]
    claims = [t for t in texts if "ioffe2015/fig1a_higher_sooner" in t]
    assert claims and "reproduced" in claims[0]
    # The final-accuracy pivot: one row per norm, one column per seed (+ mean).
    pivot = [
        o["data"]["text/plain"]
        for o in outputs
        if "mean" in o.get("data", {}).get("text/plain", "")
    ]
    assert pivot and "batch" in pivot[-1] and "none" in pivot[-1]
