"""The figure registry (`normlab.report.registry`): every figure found in `normlab.papers`, one
module per figure at its preset's path, no figure module importing another, suites whose sweeps
hold every run their figures draw."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pandas as pd
import pytest

from normlab.config import compose_config, sweep_points
from normlab.report.claims import cadence_key
from normlab.report.registry import FIGURES, SUITES
from normlab.report.runs import with_variants

REPO = Path(__file__).resolve().parents[2]

# The spec: every figure normlab draws, and which suite's sweep feeds which.
DLN = [
    "santurkar2018/dln_fig3b_ics",
    "santurkar2018/dln_fig5b_lp",
    "santurkar2018/dln_fig9_activations",
    "santurkar2018/dln_fig10_landscape",
    "santurkar2018/dln_fig11_gradchange",
    "santurkar2018/dln_fig13_lp_landscape",
]
VGG = [
    "santurkar2018/vgg_fig1_lr",
    "santurkar2018/vgg_fig2_noisy",
    "santurkar2018/vgg_fig3a_ics",
    "santurkar2018/vgg_fig4_landscape",
    "santurkar2018/vgg_fig5a_lp",
    "santurkar2018/vgg_fig6_hist",
    "santurkar2018/vgg_fig8_moments",
    "santurkar2018/vgg_fig12_lp_landscape",
]


def test_every_figure_is_registered_in_natural_order() -> None:
    assert list(FIGURES) == [
        "ioffe2015/fig1_mnist",
        *DLN,
        "santurkar2018/theory_mlp",
        *VGG,
    ]
    assert {"santurkar2018/dln_suite": tuple(DLN), "santurkar2018/vgg_suite": tuple(VGG)} == SUITES


@pytest.mark.parametrize("figure_id", sorted(FIGURES))
def test_a_figure_is_one_module_at_its_presets_path(figure_id: str) -> None:
    spec = FIGURES[figure_id]
    assert (REPO / "conf" / "experiment" / f"{figure_id}.yaml").is_file()
    module = importlib.import_module(f"normlab.papers.{figure_id.replace('/', '.')}")
    assert module.FIGURE is spec
    ids = [c.id for c in spec.claims]
    assert len(set(ids)) == len(ids) and all(c.figure == figure_id for c in spec.claims)
    for claim in spec.claims:  # every claim's metric has a cadence, so its window can be checked
        assert cadence_key(claim.metric.replace("*", "x"))


def _imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
    return names


def test_no_figure_module_imports_another() -> None:
    modules = {f"normlab.papers.{i.replace('/', '.')}" for i in FIGURES}
    for figure_id in FIGURES:
        path = REPO / "src" / "normlab" / "papers" / f"{figure_id}.py"
        assert not (_imported(path) & modules), figure_id


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_a_suites_sweep_holds_every_run_its_figures_draw(suite: str) -> None:
    runs = set()
    for point in sweep_points([f"experiment={suite}"]):
        cfg = compose_config(point)
        norm = pd.DataFrame({"norm.name": [cfg.norm.name], "norm.p": [cfg.norm.get("p")]})
        variant = with_variants(norm)["norm.variant"][0]
        runs.add((variant, float(cfg.optim.lr), int(cfg.seed)))
    seeds = {s for _, _, s in runs}
    for figure_id in SUITES[suite]:
        spec = FIGURES[figure_id]
        for variant in spec.variants:
            for lr in spec.lrs or ():
                for seed in seeds:
                    assert (variant, lr, seed) in runs, (figure_id, variant, lr, seed)
