"""End to end, as a user runs it: a multirun through the CLI, then the figure script and the
notebook on its output. One tiny sweep (6 jobs, 60 steps each) is shared by these tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import REPO

FIGURE = "ioffe2015/fig1_mnist"


def _job_dirs(sweep: Path) -> list[Path]:
    return sorted(p.parent for p in sweep.rglob("summary.json"))


def _job(job: Path) -> tuple[str, int]:
    """(norm, seed) of a job, from what it ran (its summary), not from its directory name."""
    summary = json.loads((job / "summary.json").read_text())
    return summary["config"]["norm"]["name"], summary["seed"]


def test_multirun_runs_every_job_of_the_preset_sweep(e2e_sweep) -> None:
    sweep, proc = e2e_sweep
    jobs = _job_dirs(sweep)
    assert sorted(map(_job, jobs)) == sorted((n, s) for n in ("batch", "none") for s in (0, 1, 2))
    for job in jobs:
        summary = json.loads((job / "summary.json").read_text())
        assert summary["status"] == "finished" and summary["step"] == 60
        # each job's directory is named by its overrides (and nothing else of the command line)
        norm, seed = _job(job)
        assert set(job.name.split(",")) >= {f"norm={norm}", f"seed={seed}"}
        assert "hydra.sweep.dir" not in job.name and "paths." not in job.name
        steps = pd.read_csv(job / "metrics.csv").query("metric == 'test/acc'").step.tolist()
        assert steps == [20, 40, 60]


def test_each_job_has_its_own_finished_offline_wandb_run(e2e_sweep) -> None:
    sweep, _ = e2e_sweep
    run_ids = set()
    for job in _job_dirs(sweep):
        (run_dir,) = (job / "wandb").glob("offline-run-*")
        out = subprocess.run(
            [
                str(Path(sys.executable).parent / "wandb"),
                "leet",
                "inspect",
                "--summary",
                "--json",
                str(run_dir),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        info = json.loads(out.stdout)
        assert info["state"] == "finished" and info["project"] == "normlab"
        assert info["name"] == job.name  # runs are named by their overrides
        assert f"norm={info['config']['norm']['name']}" in info["tags"]
        summary = info["summary"]
        for key in (
            "train/loss",
            "test/acc",
            "act/layer3/unit0/p50",
            "act/layer1/var",
            "trainer/global_step",
        ):
            assert key in summary, key
        assert summary["act/layer3/hist"]["_type"] == "histogram"
        # W&B's final values are the run's own, not another job's.
        final = json.loads((job / "summary.json").read_text())["final_metrics"]
        assert summary["test/acc"] == pytest.approx(final["test/acc"])
        run_ids.add(info["run_id"])
    assert len(run_ids) == 6


def _mean_over_seeds(sweep: Path, norm: str, metric: str) -> pd.Series:
    frames = []
    for job in _job_dirs(sweep):
        if _job(job)[0] == norm:
            m = pd.read_csv(job / "metrics.csv")
            frames.append(m[m.metric == metric].set_index("step").value)
    assert len(frames) == 3
    return pd.concat(frames, axis=1).mean(axis=1).sort_index()


def test_figure_plots_the_runs_mean_curves(e2e_sweep, tmp_path) -> None:
    from normlab.report.registry import FIGURES
    from normlab.results import load_metrics

    sweep, _ = e2e_sweep
    spec = FIGURES[FIGURE]
    fig = spec.draw(load_metrics([sweep], metrics=spec.metrics))
    ax_a, ax_b, ax_c = fig.axes[:3]
    for ax, norm, label in ((ax_a, "none", "Without BN"), (ax_a, "batch", "With BN")):
        (line,) = [ln for ln in ax.get_lines() if ln.get_label().startswith(label)]
        expected = _mean_over_seeds(sweep, norm, "test/acc")
        np.testing.assert_allclose(line.get_xdata(), expected.index)
        np.testing.assert_allclose(line.get_ydata(), expected.values, rtol=1e-6)
    for ax, norm in ((ax_b, "none"), (ax_c, "batch")):
        for pct in ("15", "50", "85"):
            (line,) = [ln for ln in ax.get_lines() if ln.get_label() == f"{pct}%"]
            expected = _mean_over_seeds(sweep, norm, f"act/layer3/unit0/p{pct}")
            assert list(expected.index) == [0, 10, 20, 30, 40, 50, 60]
            np.testing.assert_allclose(line.get_xdata(), expected.index)
            np.testing.assert_allclose(line.get_ydata(), expected.values, rtol=1e-6)


def _figures_script(sweep: Path, out: Path) -> subprocess.CompletedProcess:
    """`python scripts/figures.py SWEEP --out OUT`, the figure id inferred from the runs."""
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "figures.py"), str(sweep), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_figures_script_writes_figure_and_claims(e2e_sweep, tmp_path) -> None:
    sweep, _ = e2e_sweep
    out = tmp_path / "figs"
    proc = _figures_script(sweep, out)
    assert proc.returncode == 0, proc.stderr
    png = out / f"{FIGURE}.png"
    assert png.stat().st_size > 10_000 and (out / f"{FIGURE}.pdf").exists()
    claims = pd.read_csv(out / f"{FIGURE}_claims.csv").set_index("id")
    assert set(claims.index) == {"ioffe2015/fig1a_higher_sooner", "ioffe2015/fig1bc_stable_inputs"}
    # 60-step runs cannot speak to claims whose windows end at step 50,000
    assert (claims.verdict == "insufficient data").all()
    assert claims.measured.str.contains("before the window's end at step 50000").all()
    # the plotted numbers, as written next to the figure, are the runs' means over seeds
    data = pd.read_csv(out / f"{FIGURE}_data.csv")
    acc = data[(data.panel == "a") & (data.series == "With BN")].set_index("step")["mean"]
    expected = _mean_over_seeds(sweep, "batch", "test/acc")
    np.testing.assert_allclose(acc.values, expected.values, rtol=1e-6)
    assert (data.n == 3).all()
    assert str(png) in proc.stdout


def test_notebook_runs_on_the_sweep(e2e_sweep) -> None:
    import nbformat
    from nbclient import NotebookClient

    sweep, _ = e2e_sweep
    nb = nbformat.read(REPO / "notebooks" / "fig1_mnist.ipynb", as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), (
        "stored with outputs"
    )
    os.environ["NORMLAB_SWEEP"] = str(sweep)
    try:
        NotebookClient(
            nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}
        ).execute()
    finally:
        del os.environ["NORMLAB_SWEEP"]
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)
