"""End to end through the CLI, the Santurkar 2018 deep-linear-network family: the whole `dln_suite`
sweep (every DLN run, every probe on, a few steps each), then every DLN figure drawn from it by
scripts/figures.py; and a sweep in which some jobs diverge."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO, run_cli

DLN_FIGURES = [
    "santurkar2018/dln_fig3b_ics",
    "santurkar2018/dln_fig5b_lp",
    "santurkar2018/dln_fig9_activations",
    "santurkar2018/dln_fig10_landscape",
    "santurkar2018/dln_fig11_gradchange",
    "santurkar2018/dln_fig13_lp_landscape",
]


def figures_main(args: list[str]) -> int:
    """scripts/figures.py's `main`, in this process (one matplotlib import for all figures)."""
    spec = importlib.util.spec_from_file_location("figures_script", REPO / "scripts" / "figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(args)


def summaries(sweep: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(sweep.rglob("summary.json"))]


@pytest.fixture(scope="module")
def suite_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dln_suite")
    sweep = root / "sweep"
    proc = run_cli(
        [
            "-m",
            "experiment=santurkar2018/dln_suite",
            "debug=smoke",
            "trainer.max_steps=20",
            "trainer.val_check_interval=10",
            *(f"probe.{p}.every_n_steps=5" for p in ("ics", "landscape", "activations")),
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=root,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return sweep


def test_the_suite_runs_every_dln_run_once_with_every_probe(suite_sweep: Path) -> None:
    runs = summaries(suite_sweep)
    assert len(runs) == 21 and all(s["status"] == "finished" for s in runs)
    settings = {
        (s["config"]["norm"]["name"], str(s["config"]["norm"].get("p")), s["config"]["optim"]["lr"])
        for s in runs
    }
    assert settings == {
        ("none", "None", 1e-6),
        ("batch", "None", 1e-6),
        ("none", "None", 1e-7),
        ("batch", "None", 1e-7),
        ("lp", "1", 1e-6),
        ("lp", "2", 1e-6),
        ("lp", "inf", 1e-6),
    }
    # one directory a job, directly under the sweep, its group's `/` made `.`
    jobs = sorted(p.parent for p in suite_sweep.rglob("summary.json"))
    assert {job.parent for job in jobs} == {suite_sweep}
    assert any(job.name.startswith("+santurkar2018.dln_point=batch_lr1e-6,") for job in jobs)
    job = jobs[0]
    metrics = set(pd.read_csv(job / "metrics.csv").metric)
    assert {"ics/layer17/cos", "landscape/beta_eff", "act/layer24/var_drift"} <= metrics
    assert (job / "landscape.csv").exists() and (job / "act_hist.csv").exists()


@pytest.mark.parametrize("figure", DLN_FIGURES)
def test_every_dln_figure_is_drawn_from_the_suite(figure: str, suite_sweep: Path, tmp_path) -> None:
    out = tmp_path / "figs"
    assert figures_main([figure, str(suite_sweep), "--out", str(out)]) == 0
    base = out / figure
    for suffix in (".png", ".pdf", "_data.csv", "_claims.md", "_claims.csv"):
        assert base.with_name(base.name + suffix).exists(), suffix
    data = pd.read_csv(base.with_name(base.name + "_data.csv"))
    # Every plotted point counts the 3 seeds that logged it (n); where a standard net's landscape
    # walk blew up (inf) the point has no mean and n_nonfinite counts those seeds.
    assert len(data) and (data["n"] == 3).all()
    assert data["mean"].isna().eq(data["n_nonfinite"] > 0).all()
    standard = data["series"].astype(str).str.contains("Standard") | data["panel"].astype(
        str
    ).str.contains("Standard")
    normalised = data[~standard]
    assert (normalised["n_nonfinite"] == 0).all()
    claims = pd.read_csv(base.with_name(base.name + "_claims.csv"))
    # 20-step runs cannot speak to claims about 10,000 steps
    assert (claims.verdict == "insufficient data").all()


def test_diverged_jobs_end_cleanly_and_the_sweep_goes_on(tmp_path) -> None:
    sweep = tmp_path / "sweep"
    proc = run_cli(
        [
            "-m",
            "experiment=santurkar2018/dln_fig10_landscape",
            "debug=smoke",
            "seed=0",
            "optim.lr=1e-3,1e-6",  # 1e-3 blows both nets up within a few steps
            "probe.landscape.every_n_steps=5",
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=tmp_path,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    status = {
        (s["config"]["norm"]["name"], s["config"]["optim"]["lr"]): s for s in summaries(sweep)
    }
    assert len(status) == 4
    for norm in ("none", "batch"):
        diverged, finished = status[(norm, 1e-3)], status[(norm, 1e-6)]
        assert diverged["status"] == "diverged" and diverged["diverged_at_step"] < 40
        assert diverged["step"] == diverged["diverged_at_step"]
        assert finished["status"] == "finished"
    # the figure leaves the diverged runs out (and says so): one finished run per norm remains
    out = tmp_path / "figs"
    figures_main(["santurkar2018/dln_fig10_landscape", str(sweep), "--out", str(out)])
    data = pd.read_csv(out / "santurkar2018" / "dln_fig10_landscape_data.csv")
    assert (data["n"] == 1).all()
