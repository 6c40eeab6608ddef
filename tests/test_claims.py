"""normlab.claims and the Fig. 1 claims of Ioffe 2015, on constructed runs whose answer is known."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fakeruns import base_config, fig1_curves, fig1_sweep, write_run

from normlab.claims import Claim, Measurement, claims_markdown, evaluate_claims
from normlab.figures import FIGURES
from normlab.results import load_metrics

SPEC = FIGURES["ioffe2015/fig1_mnist"]
HIGHER = "ioffe2015/fig1a_higher_sooner"
STABLE = "ioffe2015/fig1bc_stable_inputs"


def evaluate(sweep: Path) -> pd.DataFrame:
    table = load_metrics([sweep], metrics=SPEC.needed_metrics())
    return evaluate_claims(SPEC.claims, table).set_index("id")


def test_the_figure_has_its_two_claims_fixed() -> None:
    claims = {c.id: c for c in SPEC.claims}
    assert set(claims) == {HIGHER, STABLE}
    assert claims[HIGHER].window == (10000, 50000) and claims[HIGHER].threshold == 0.005
    assert claims[STABLE].window == (0, 50000) and claims[STABLE].threshold == 2.0
    assert all(c.seeds == (0, 1, 2) and c.figure == SPEC.id for c in claims.values())


def test_bn_clearly_better_is_reproduced(tmp_path: Path) -> None:
    sweep = fig1_sweep(tmp_path / "sweep", bn_better=True)
    df = evaluate(sweep)
    assert list(df.columns) == ["claim", "paper says", "measured", "verdict", "value"]
    assert df.loc[HIGHER, "verdict"] == "reproduced"
    assert df.loc[STABLE, "verdict"] == "reproduced"
    # The measured value, recomputed here: mean over seeds of the paired window means.
    diffs = []
    for seed in (0, 1, 2):
        acc = {n: fig1_curves(n, seed)["test/acc"] for n in ("none", "batch")}
        window = [s for s in acc["none"] if 10000 <= s <= 50000]
        diffs.append(
            np.mean([acc["batch"][s] for s in window]) - np.mean([acc["none"][s] for s in window])
        )
    assert df.loc[HIGHER, "value"] == pytest.approx(np.mean(diffs), rel=1e-9)
    detail = df.loc[HIGHER, "measured"]
    assert detail.startswith(f"BN - none: {100 * np.mean(diffs):+.2f} pts (seeds 0/1/2: ")
    sooner = re.search(r"first step at 97% test acc: BN (\d+), none (\d+);", detail)
    assert sooner and int(sooner[1]) < int(sooner[2])
    assert df.loc[STABLE, "value"] > 10
    assert "without BN" in df.loc[STABLE, "measured"]


def test_bn_clearly_worse_is_not_reproduced(tmp_path: Path) -> None:
    df = evaluate(fig1_sweep(tmp_path / "sweep", bn_better=False))
    assert df.loc[HIGHER, "verdict"] == "not reproduced"
    assert df.loc[HIGHER, "value"] < 0
    assert df.loc[STABLE, "verdict"] == "not reproduced"
    assert df.loc[STABLE, "value"] < 1


def test_a_missing_seed_is_insufficient_data_and_named(tmp_path: Path) -> None:
    sweep = fig1_sweep(tmp_path / "sweep", norms=("none",))
    fig1_sweep(sweep, norms=("batch",), seeds=(0, 1))
    df = evaluate(sweep)
    for claim_id in (HIGHER, STABLE):
        assert df.loc[claim_id, "verdict"] == "insufficient data"
        assert "norm.name=batch seed 2: no run" in df.loc[claim_id, "measured"]
        assert np.isnan(df.loc[claim_id, "value"])


def test_every_seed_must_pass_not_just_the_mean(tmp_path: Path) -> None:
    """Seed 1's BN run is a copy of its unnormalised run: the mean difference still clears the
    threshold, seed 1 does not."""

    def curves(norm, seed, **kw):
        return fig1_curves("none" if (norm, seed) == ("batch", 1) else norm, seed, **kw)

    df = evaluate(fig1_sweep(tmp_path / "sweep", curves=curves))
    assert df.loc[HIGHER, "value"] > 0.005
    assert df.loc[HIGHER, "verdict"] == "not reproduced"
    assert "+0.00" in df.loc[HIGHER, "measured"]
    assert df.loc[STABLE, "verdict"] == "not reproduced"


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


def test_a_window_with_too_few_evaluations_is_insufficient_data(tmp_path: Path) -> None:
    """Full-length runs that logged their unit only at step 0: no drift to measure."""

    def curves(norm, seed, **kw):
        c = fig1_curves(norm, seed, **kw)
        return {k: ({0: v[0]} if "unit" in k else v) for k, v in c.items()}

    df = evaluate(fig1_sweep(tmp_path / "sweep", curves=curves))
    assert df.loc[HIGHER, "verdict"] == "reproduced"
    assert df.loc[STABLE, "verdict"] == "insufficient data"
    assert (
        "1 evaluation(s) of act/layer3/unit*/p* in steps 0-50000, need 2"
        in (df.loc[STABLE, "measured"])
    )


def test_the_measured_window_is_the_claims(tmp_path: Path) -> None:
    df = evaluate(fig1_sweep(tmp_path / "sweep"))
    # Evaluations every 500 steps: 81 in 10000..50000, 101 in 0..50000.
    assert df.loc[HIGHER, "measured"].endswith("; steps 10000-50000, 81 evaluations per run")
    assert df.loc[STABLE, "measured"].endswith("; steps 0-50000, 101 evaluations per run")


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
    def config(norm: str, seed: int) -> dict:
        c = base_config(norm, seed, threads=4 * seed + 1)
        c["paths"]["runs_dir"] = f"/elsewhere/{norm}/{seed}"
        c["logger"] = {"wandb": {"mode": "online", "group": norm}} if seed else {"none": True}
        c["trainer"]["enable_checkpointing"] = seed != 1
        return c

    df = evaluate(fig1_sweep(tmp_path / "sweep", config=config))
    assert df["verdict"].tolist() == ["reproduced", "reproduced"]


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


def test_a_run_without_the_metric_is_insufficient_data(tmp_path: Path) -> None:
    def curves(norm, seed, **kw):
        c = fig1_curves(norm, seed, **kw)
        return {k: v for k, v in c.items() if not (norm == "none" and seed == 0 and "unit" in k)}

    df = evaluate(fig1_sweep(tmp_path / "sweep", curves=curves))
    assert df.loc[HIGHER, "verdict"] == "reproduced"
    assert df.loc[STABLE, "verdict"] == "insufficient data"
    assert "norm.name=none seed 0: no act/layer3/unit*/p* logged" in df.loc[STABLE, "measured"]


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


def test_verdicts_follow_the_measurement() -> None:
    claims = [
        _claim(id="yes"),
        _claim(id="no", measure=lambda t, c: Measurement(0.0, "d", False)),
        _claim(id="unknown", measure=lambda t, c: Measurement(float("nan"), "d", None)),
    ]
    df = evaluate_claims(claims, pd.DataFrame())
    assert df["verdict"].tolist() == ["reproduced", "not reproduced", "insufficient data"]


def test_claims_markdown_is_a_github_table() -> None:
    claims = [_claim(id="a|b", measure=lambda t, c: Measurement(1.0, "x | y\nz", True))]
    md = claims_markdown(evaluate_claims(claims, pd.DataFrame()))
    lines = md.strip().splitlines()
    assert lines[0] == "| id | claim | paper says | measured | verdict |"
    assert lines[1] == "|---|---|---|---|---|"
    assert lines[2] == "| a\\|b | c | p | x \\| y z | reproduced |"
    assert len(lines) == 3
