"""End to end through the CLI, one Santurkar 2018 VGG family: `vgg_fig4_landscape`'s sweep at a
tiny scale on the synthetic CIFAR-shaped set, then its figure and claims by scripts/figures.py;
and the start-up errors a VGG user meets (a probe layer beyond the net, scale=cpu on the DLN)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO, run_cli
from vggruns import TINY

FIG4 = "santurkar2018/vgg_fig4_landscape"


@pytest.mark.slow  # ~30 s; the VGG figures are drawn from the committed smoke sweep by default
def test_the_fig4_family_runs_and_draws_through_the_cli(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    proc = run_cli(
        ["-m", f"experiment={FIG4}", *TINY, f"hydra.sweep.dir={sweep}"], cwd=tmp_path, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = [json.loads(p.read_text()) for p in sorted(sweep.rglob("summary.json"))]
    assert len(runs) == 6 and {r["status"] for r in runs} == {"finished"}
    assert {(r["config"]["norm"]["name"], r["seed"]) for r in runs} == {
        (n, s) for n in ("none", "batch") for s in range(3)
    }
    out = tmp_path / "figures"
    spec = importlib.util.spec_from_file_location("figures_script", REPO / "scripts/figures.py")
    figures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(figures)
    assert figures.main([FIG4, str(sweep), "--out", str(out)]) == 0
    assert (out / f"{FIG4}.png").stat().st_size > 10_000
    claims = pd.read_csv(out / f"{FIG4}_claims.csv")
    assert len(claims) == 3 and claims["verdict"].isin(["reproduced", "not reproduced"]).all()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["experiment=santurkar2018/vgg_fig3a_ics", "probe.ics.layers=[5,15]"],
            "valid layers: 1..14",
        ),
        (
            # the activation probe reads the hidden layers' norm outputs: #14 is the classifier
            ["experiment=santurkar2018/vgg_fig1_lr", "probe.activations.layers=[0]"],
            "valid layers: 1..13",
        ),
        (
            ["experiment=santurkar2018/dln_fig5b_lp", "scale=cpu"],
            "scale=cpu is not a scale of santurkar2018/dln_fig5b_lp (model DLN); its scales: paper",
        ),
    ],
)
def test_bad_vgg_settings_fail_at_start_up_naming_the_valid_choices(
    overrides: list[str], message: str, tmp_path: Path
) -> None:
    proc = run_cli([*overrides, *TINY, f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr[-2000:]
    summary = tmp_path / "run" / "summary.json"
    assert not summary.exists() or json.loads(summary.read_text())["status"] == "failed"
