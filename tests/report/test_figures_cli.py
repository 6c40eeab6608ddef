"""The figure registry (`normlab.report.registry`: ids are preset names, a figure is inferred from
its runs) and scripts/figures.py (the figure, its plotted data and its claims written; refusals and
usage errors), on the fake Ioffe 2015 Fig. 1 sweeps."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fakeruns import base_config, fig1_sweep, fig1_sweep_with_gaps, write_run

from normlab.report import COLUMNS
from normlab.report.registry import FIGURES, infer_figure_id
from normlab.results import load_metrics, load_summaries

REPO = Path(__file__).resolve().parents[2]
FIG1 = "ioffe2015/fig1_mnist"
SPEC = FIGURES[FIG1]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fig1_sweep_with_gaps(tmp_path_factory.mktemp("fig1") / "sweep")


def test_registry_ids_are_preset_names() -> None:
    for figure_id, spec in FIGURES.items():
        assert spec.id == figure_id
        assert (REPO / "conf" / "experiment" / f"{figure_id}.yaml").exists()
        assert all(c.figure == figure_id for c in spec.claims)


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
    assert figures_cli(FIG1, sweep, "--out", out, "--formats", "").returncode == 0
    data = pd.read_csv(out / f"{FIG1}_data.csv")
    assert list(data.columns) == COLUMNS
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
        acc = pd.concat(
            pd.read_csv(sweep / f"norm={norm},seed={seed}" / "metrics.csv") for seed in (0, 1, 2)
        ).query("metric == 'test/acc'")
        means = acc.groupby("step")["value"].agg(["mean", "size"])
        rows = data[(data["panel"] == "a") & (data["series"] == series)]
        assert rows["step"].tolist() == means.index.tolist()
        np.testing.assert_allclose(rows["mean"], means["mean"], rtol=1e-12)
        assert rows["n"].tolist() == means["size"].tolist()  # 2 at step 1000 without BN
    assert not list(out.rglob("*.png"))  # --formats "": the data and claims only


def test_cli_with_explicit_id_and_missing_norm(tmp_path: Path) -> None:
    sweep = fig1_sweep(tmp_path / "sweep", norms=("none",), max_steps=2000)
    proc = figures_cli(FIG1, sweep, "--out", tmp_path / "figs")
    assert proc.returncode == 1
    assert "no runs with norm batch" in proc.stderr
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
    for spec in FIGURES.values():
        assert f"{spec.id}\t{spec.title}" in proc.stdout
        for claim in spec.claims:
            assert f"claim {claim.id}: " in proc.stdout


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
