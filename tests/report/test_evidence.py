"""Every verdict with its evidence: each claim's row carries the seeds it used, the measured
quantity per seed and one interval over seeds (`normlab.report.claims.seed_interval`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fakeruns import DLN_SUITE, dln_sweep, fig1_sweep, theory_sweep

from normlab.report import evaluate_claims
from normlab.report.claims import INSUFFICIENT, seed_interval
from normlab.report.registry import FIGURES, SUITES

RUNS = Path(__file__).resolve().parents[1] / "golden" / "runs"


def test_fewer_than_five_seeds_give_min_to_max() -> None:
    assert seed_interval([0.3, 0.1, 0.2]) == "0.1..0.3"
    assert seed_interval([]) == ""
    assert seed_interval([1.0, -np.inf, 2.0]) == "-inf..2"  # a diverged seed's accuracy


def test_five_seeds_or_more_give_a_reproducible_bootstrap_of_the_mean() -> None:
    values = [0.1, 0.2, 0.3, 0.4, 0.9]
    text = seed_interval(values)
    assert text == seed_interval(values) and text.endswith(" (bootstrap)")
    lo, hi = (float(x) for x in text.removesuffix(" (bootstrap)").split(".."))
    assert min(values) < lo < np.mean(values) < hi < max(values)  # narrower than min..max


def _figure_ids(source: str) -> list[str]:
    return list(SUITES.get(source, (source,)))


SOURCES = {
    "fake Ioffe Fig. 1": (lambda root: fig1_sweep(root), "ioffe2015/fig1_mnist"),
    "fake DLN suite": (lambda root: dln_sweep(root, DLN_SUITE), DLN_SUITE),
    "fake theory MLP": (lambda root: theory_sweep(root), "santurkar2018/theory_mlp"),
    "smoke VGG suite": (lambda root: RUNS / "santurkar2018_vgg_suite", "santurkar2018/vgg_suite"),
}


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_every_measured_claim_carries_its_seeds_and_values(source: str, tmp_path: Path) -> None:
    make, preset = SOURCES[source]
    root = make(tmp_path / "sweep")
    measured = 0
    for figure_id in _figure_ids(preset):
        spec = FIGURES[figure_id]
        table = evaluate_claims(spec.claims, spec.load([root])).set_index("id")
        for claim in spec.claims:
            row = table.loc[claim.id]
            if row["verdict"] == INSUFFICIENT:
                continue
            measured += 1
            assert row["seeds"] == "/".join(map(str, claim.seeds)), claim.id
            per_seed = dict(part.split(": ") for part in row["per seed"].split(", "))
            values = np.array([float(v) for v in per_seed.values()])
            assert [int(s) for s in per_seed] == list(claim.seeds), claim.id
            # The claim's value is its worst cell over the seeds, or their mean: within them.
            lo, hi = values.min(), values.max()
            slack = 1e-3 * max(abs(lo), abs(hi), 1e-12)  # the per-seed text keeps 4 digits
            assert lo - slack <= row["value"] <= hi + slack, (claim.id, row["value"], per_seed)
            assert row["interval"] == seed_interval(values) or "inf" in row["interval"]
    assert measured, f"{source}: no claim got a verdict"


def test_an_unmeasured_claim_has_no_evidence(tmp_path: Path) -> None:
    spec = FIGURES["ioffe2015/fig1_mnist"]
    root = fig1_sweep(tmp_path / "sweep", seeds=(0, 1))
    table = evaluate_claims(spec.claims, spec.load([root]))
    assert (table["verdict"] == INSUFFICIENT).all()
    assert (table[["seeds", "per seed", "interval"]] == "").all().all()
