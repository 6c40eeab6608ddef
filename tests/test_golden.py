"""Golden outputs: every figure's plotted data, claims (measured text, verdict, value) and refusals,
as `scripts/figures.py` makes them, equal to those recorded in `tests/golden/` (scripts/golden.py).

Sources: the fake-run fixtures (deterministic on any machine: curves written by formula) and the
committed smoke sweeps (`tests/golden/runs/`: real runs of every suite at a few steps, whose
files are read as they are, not retrained). A change to what a figure or claim computes shows up
here as a diff; a change meant to alter a golden re-records it (`golden.py record`) in the same
commit, saying why.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from fakeruns import DLN_SUITE, dln_sweep, fig1_sweep, theory_sweep

REPO = Path(__file__).resolve().parents[1]
RUNS = REPO / "tests" / "golden" / "runs"


@pytest.fixture(scope="module")
def golden():
    spec = importlib.util.spec_from_file_location("golden_script", REPO / "scripts/golden.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FAKE_SOURCES = {
    "fake_ioffe2015_fig1": lambda root: fig1_sweep(root),
    "fake_dln_suite": lambda root: dln_sweep(root, DLN_SUITE),
    # The standard net's walk overflows in seed 1: the non-finite markers and the claims' reading.
    "fake_dln_suite_blowup": lambda root: dln_sweep(root, DLN_SUITE, blowup=(1,)),
    "fake_theory_mlp": lambda root: theory_sweep(root),
}


@pytest.mark.parametrize("name", sorted(FAKE_SOURCES))
def test_fake_runs_give_the_golden_figures_and_claims(golden, name, tmp_path) -> None:
    root = FAKE_SOURCES[name](tmp_path / "sweep")
    diffs = golden.differences(name, [root])
    assert not diffs, "\n".join(diffs)


SMOKE = sorted(p.name for p in RUNS.iterdir()) if RUNS.is_dir() else []


@pytest.mark.parametrize("name", SMOKE)
def test_smoke_sweeps_give_the_golden_figures_and_claims(golden, name) -> None:
    diffs = golden.differences(f"smoke_{name}", [RUNS / name])
    assert not diffs, "\n".join(diffs)


def test_every_suite_has_a_committed_smoke_sweep() -> None:
    assert SMOKE == [
        "ioffe2015_fig1_mnist",
        "santurkar2018_dln_suite",
        "santurkar2018_theory_mlp",
        "santurkar2018_vgg_suite",
    ]


def test_a_changed_number_is_a_difference(golden, tmp_path) -> None:
    """The comparison can fail: one value of one fake run changed by 1e-12 shows as a diff."""
    root = fig1_sweep(tmp_path / "sweep")
    metrics = root / "norm=batch,seed=1" / "metrics.csv"
    lines = metrics.read_text().splitlines()
    i = next(k for k, line in enumerate(lines) if ",test/acc," in line and "50000" in line)
    step, name, value = lines[i].split(",")
    lines[i] = f"{step},{name},{float(value) - 1e-12!r}"
    metrics.write_text("\n".join(lines) + "\n")
    diffs = golden.differences("fake_ioffe2015_fig1", [root])
    assert diffs and any("data.csv" in d for d in diffs)
