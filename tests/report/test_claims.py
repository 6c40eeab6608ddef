"""`normlab.report.claims`: a claim's rules (three seeds, a window), its verdicts and report, and the
runs `select_runs` gives a claim (never part of its window, never mixed settings, never two runs
for one seed), on constructed runs whose answer is known: the fake Ioffe 2015 Fig. 1 sweeps and
that figure's two claims."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fakeruns import base_config, fig1_curves, fig1_sweep, write_run

from normlab.report.claims import Claim, Measurement, claims_markdown, evaluate_claims
from normlab.report.registry import FIGURES
from normlab.results import load_metrics

SPEC = FIGURES["ioffe2015/fig1_mnist"]
HIGHER = "ioffe2015/fig1a_higher_sooner"
STABLE = "ioffe2015/fig1bc_stable_inputs"


def evaluate(sweep: Path) -> pd.DataFrame:
    table = load_metrics([sweep], metrics=SPEC.needed_metrics())
    return evaluate_claims(SPEC.claims, table).set_index("id")


# --- the runs a claim selects ---------------------------------------------------------------------


def test_a_missing_seed_is_insufficient_data_and_named(tmp_path: Path) -> None:
    sweep = fig1_sweep(tmp_path / "sweep", norms=("none",))
    fig1_sweep(sweep, norms=("batch",), seeds=(0, 1))
    df = evaluate(sweep)
    for claim_id in (HIGHER, STABLE):
        assert df.loc[claim_id, "verdict"] == "insufficient data"
        assert "norm.name=batch seed 2: no run" in df.loc[claim_id, "measured"]
        assert np.isnan(df.loc[claim_id, "value"])


def test_a_short_sweep_is_insufficient_data_for_both_claims(tmp_path: Path) -> None:
    """A 60-step sweep: no claim is judged on it, even Fig. 1(b,c) whose window (0-50K) starts
    where the runs did; the window is not clipped to what ran."""
    df = evaluate(fig1_sweep(tmp_path / "sweep", max_steps=60, every=20))
    for claim_id in (HIGHER, STABLE):
        assert df.loc[claim_id, "verdict"] == "insufficient data"
        assert np.isnan(df.loc[claim_id, "value"])
        assert df.loc[claim_id, "measured"] == (
            "missing: norm.name=none seeds 0/1/2, norm.name=batch seeds 0/1/2: "
            "stopped at step 60, before the window's end at step 50000"
        )


def test_one_run_stopped_short_is_insufficient_data_and_named(tmp_path: Path) -> None:
    """Seed 1 of the BN net was interrupted at step 49500, with every evaluation up to there: both
    windows hold plenty of its evaluations, yet neither claim is judged."""
    sweep = fig1_sweep(tmp_path / "sweep")
    write_run(
        sweep / "norm=batch,seed=1",
        status="interrupted",
        seed=1,
        norm="batch",
        step=49500,
        curves=fig1_curves("batch", 1, max_steps=49500),
    )
    table = load_metrics(
        [sweep], statuses=("finished", "interrupted"), metrics=SPEC.needed_metrics()
    )
    df = evaluate_claims(SPEC.claims, table).set_index("id")
    for claim_id in (HIGHER, STABLE):
        assert df.loc[claim_id, "verdict"] == "insufficient data"
        assert df.loc[claim_id, "measured"] == (
            "missing: norm.name=batch seed 1: stopped at step 49500, before the window's end at "
            "step 50000"
        )


def test_claims_refuse_runs_of_mixed_settings(tmp_path: Path) -> None:
    def config(norm: str, seed: int) -> dict:
        c = base_config(norm, seed)
        if (norm, seed) == ("none", 2):
            c["model"]["init_std"] = 1.0
            c["data"]["seed"] = 7  # no longer the run's seed: compared like any key
        return c

    table = load_metrics([fig1_sweep(tmp_path / "sweep", config=config)])
    with pytest.raises(ValueError) as err:
        evaluate_claims(SPEC.claims, table)
    message = str(err.value)
    assert message.startswith(
        f"claim {HIGHER}: the runs mix settings, they differ in data.seed, model.init_std:"
    )
    assert "model.init_std = 0.1 (5 runs) / 1.0 (norm=none,seed=2)" in message
    assert "data.seed = 0 (norm=batch,seed=0, norm=none,seed=0) / 1 (" in message
    assert "/ 7 (norm=none,seed=2)" in message


def test_claims_judge_runs_that_differ_only_in_seed_norm_and_bookkeeping(tmp_path: Path) -> None:
    """Each run wrote elsewhere, logged elsewhere, checkpointed or not: one setting. Their thread
    counts are not bookkeeping (`normlab.bookkeeping`: they change float32 sums): runs that
    differ in them are refused."""

    def config(norm: str, seed: int, threads: int = 1) -> dict:
        c = base_config(norm, seed, threads=threads)
        c["paths"]["runs_dir"] = f"/elsewhere/{norm}/{seed}"
        c["logger"] = {"wandb": {"mode": "online", "group": norm}} if seed else {"none": True}
        c["trainer"]["enable_checkpointing"] = seed != 1
        return c

    df = evaluate(fig1_sweep(tmp_path / "sweep", config=config))
    assert df["verdict"].tolist() == ["reproduced", "reproduced"]
    threads = fig1_sweep(
        tmp_path / "threads", config=lambda norm, seed: config(norm, seed, threads=4 * seed + 1)
    )
    with pytest.raises(ValueError, match="mix settings, they differ in threads:"):
        evaluate(threads)


def test_claims_ignore_runs_they_do_not_select(tmp_path: Path) -> None:
    """A seed the claims do not use, at another setting, does not stop them (the figure, which
    would draw it, refuses it)."""
    sweep = fig1_sweep(tmp_path / "sweep")
    fig1_sweep(sweep, seeds=(5,), config=lambda norm, seed: base_config(norm, seed, lr=0.1))
    df = evaluate(sweep)
    assert df["verdict"].tolist() == ["reproduced", "reproduced"]


def test_two_runs_for_one_norm_and_seed_are_ambiguous(tmp_path: Path) -> None:
    sweep = fig1_sweep(tmp_path / "a")
    fig1_sweep(tmp_path / "b", norms=("batch",), seeds=(0,))
    table = load_metrics([sweep, tmp_path / "b"], metrics=SPEC.needed_metrics())
    df = evaluate_claims(SPEC.claims, table).set_index("id")
    assert df.loc[HIGHER, "verdict"] == "insufficient data"
    assert "norm.name=batch seed 0: 2 runs, ambiguous" in df.loc[HIGHER, "measured"]


# --- a claim, its verdicts and its report ---------------------------------------------------------


def _claim(**kw) -> Claim:
    fields = dict(
        id="x/y",
        figure="x",
        claim="c",
        paper_says="p",
        metric="m",
        window=(0, 10),
        threshold=1.0,
        seeds=(0, 1, 2),
        measure=lambda table, claim: Measurement(1.0, "d", True),
    )
    return Claim(**(fields | kw))


def test_a_claim_needs_three_seeds_and_a_window() -> None:
    with pytest.raises(ValueError, match="at least 3 seeds"):
        _claim(seeds=(0, 1))
    with pytest.raises(ValueError, match="empty window"):
        _claim(window=(10, 0))
    # A reading of part of a claim (`Claim.part`: fewer seeds) is exempt, and never a claim.
    part = _claim().part(seeds=(1,))
    assert part.reading and part.seeds == (1,) and part.id == "x/y"


def test_verdicts_follow_the_measurement() -> None:
    claims = [
        _claim(id="yes"),
        _claim(id="no", measure=lambda t, c: Measurement(0.0, "d", False)),
        _claim(id="unknown", measure=lambda t, c: Measurement(float("nan"), "d", None)),
    ]
    df = evaluate_claims(claims, pd.DataFrame())
    assert df["verdict"].tolist() == ["reproduced", "not reproduced", "insufficient data"]


def test_claims_markdown_is_a_github_table() -> None:
    def measure(table, claim):
        return Measurement(1.0, "x | y\nz", True, per_seed={0: 1.5, 1: 0.5, 2: 1.0})

    md = claims_markdown(evaluate_claims([_claim(id="a|b", measure=measure)], pd.DataFrame()))
    lines = md.strip().splitlines()
    assert lines[0] == "| id | claim | paper says | measured | per seed | interval | verdict |"
    assert lines[1] == "|---|---|---|---|---|---|---|"
    assert (
        lines[2] == "| a\\|b | c | p | x \\| y z | 0: 1.5, 1: 0.5, 2: 1 | 0.5..1.5 | reproduced |"
    )
    assert len(lines) == 3
