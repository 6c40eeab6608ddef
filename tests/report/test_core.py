"""Direct unit tests of normlab's reporting core (`normlab.report.bands`, `runs`, `claims`,
`spec`) on small `load_metrics`-shaped tables built by hand: no training, no files.

A table here is the long format `load_metrics` returns: one row per logged value (`run_dir, seed,
status, diverged_at_step, last_step, metric, step, value`) with the run's flattened config
(`norm.name`, `norm.p`, `optim.lr`, `trainer.max_steps`, cadences) repeated on each row."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from normlab.report.bands import died_padded, metric_band, seed_band
from normlab.report.claims import (
    Claim,
    InsufficientData,
    Measurement,
    cadence_key,
    lower_median,
    needed_evals,
    provisional,
    scaled,
    select_claim_runs,
    step_ratios,
)
from normlab.report.runs import lr_text, rate_is, select_figure_runs, with_variants
from normlab.report.spec import FigureSpec, Line, Panel

ICS = "ics/layer9/cos"
LOSS = "train/loss"
# A rate as it comes back from a run's YAML/JSON config, a hair off the declared 1e-6.
READ_BACK_1E6 = 1.0000000000000002e-06

# --- building tables -------------------------------------------------------------------------------


def run(
    run_dir: str,
    curves: Mapping[str, Mapping[int, float]],
    *,
    seed: int = 0,
    norm: str = "none",
    p: Any = None,
    lr: float = 0.1,
    max_steps: int = 100,
    last_step: int | None = None,
    status: str = "finished",
    diverged_at_step: int | None = None,
    **config: Any,
) -> list[dict]:
    """The `load_metrics` rows of one run: `curves` maps metric -> {step: value}. Extra config
    keys are given with `__` for the dots (`model__width=0.5` -> `model.width`)."""
    summary = {
        "run_dir": run_dir,
        "seed": seed,
        "status": status,
        "diverged_at_step": diverged_at_step,
        "last_step": max_steps if last_step is None else last_step,
    }
    cfg = {
        "norm.name": norm,
        "norm.p": p,
        "optim.lr": lr,
        "trainer.max_steps": max_steps,
        "trainer.log_every_n_steps": 10,
        "probe.ics.every_n_steps": 10,
    } | {key.replace("__", "."): value for key, value in config.items()}
    return [
        summary | {"metric": metric, "step": step, "value": value} | cfg
        for metric, curve in curves.items()
        for step, value in curve.items()
    ]


def frame(*runs: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([row for rows in runs for row in rows])


def curve(steps: Sequence[int], value: float = 1.0) -> dict[int, float]:
    return dict.fromkeys(steps, value)


def points(rows: Sequence[tuple[str, int, float]]) -> pd.DataFrame:
    """`run_dir, step, value` rows, as `seed_band` reads them."""
    return pd.DataFrame(rows, columns=["run_dir", "step", "value"])


def band_at(band: pd.DataFrame, step: int) -> pd.Series:
    (row,) = band[band["step"] == step].itertuples(index=False)
    return pd.Series(row._asdict())


# --- bands.seed_band --------------------------------------------------------------------------------


def test_seed_band_is_mean_min_max_and_count_over_runs() -> None:
    rows = points(
        [
            ("c", 10, 9.0),
            ("a", 0, 1.0),
            ("b", 0, 3.0),
            ("c", 0, 5.0),
            ("a", 10, 2.0),
            ("b", 10, 4.0),
        ]
    )
    band = seed_band(rows)
    assert list(band.columns) == ["step", "mean", "min", "max", "n", "n_nonfinite"]
    assert band["step"].tolist() == [0, 10]  # sorted by step
    assert band["mean"].tolist() == [3.0, 5.0]
    assert band["min"].tolist() == [1.0, 2.0]
    assert band["max"].tolist() == [5.0, 9.0]
    assert band["n"].tolist() == [3, 3]
    assert band["n_nonfinite"].tolist() == [0, 0]


def test_a_step_one_run_did_not_log_averages_the_others() -> None:
    rows = points([("a", 0, 1.0), ("b", 0, 3.0), ("c", 0, 5.0), ("a", 10, 2.0), ("b", 10, 6.0)])
    at_10 = band_at(seed_band(rows), 10)
    assert at_10["mean"] == 4.0
    assert (at_10["min"], at_10["max"]) == (2.0, 6.0)
    assert at_10["n"] == 2
    assert at_10["n_nonfinite"] == 0


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_a_nonfinite_value_blanks_the_point_and_is_counted(bad: float) -> None:
    rows = points([("a", 0, bad), ("b", 0, 1.0), ("c", 0, 2.0), ("a", 10, 1.0), ("b", 10, 3.0)])
    band = seed_band(rows)
    at_0, at_10 = band_at(band, 0), band_at(band, 10)
    assert np.isnan([at_0["mean"], at_0["min"], at_0["max"]]).all()
    assert (at_0["n"], at_0["n_nonfinite"]) == (3, 1)
    # The other points of the line are untouched.
    assert (at_10["mean"], at_10["n"], at_10["n_nonfinite"]) == (2.0, 2, 0)


def test_two_values_of_one_run_at_one_point_are_refused() -> None:
    rows = points([("a", 0, 1.0), ("a", 0, 2.0), ("b", 0, 3.0)])
    with pytest.raises(ValueError, match=r"several values of one run at one point \(step\)"):
        seed_band(rows)


def test_seed_band_over_step_and_eta() -> None:
    rows = pd.DataFrame(
        {
            "run_dir": ["a", "a", "b", "b", "a", "b"],
            "step": [0, 0, 0, 0, 10, 10],
            "eta": [0.2, 0.1, 0.2, 0.1, 0.1, 0.1],
            "value": [1.0, 2.0, 3.0, 4.0, 5.0, 7.0],
        }
    )
    # One run has several values at a step (one per eta): not a duplicate over (step, eta).
    band = seed_band(rows, keys=("step", "eta"))
    assert list(band.columns[:2]) == ["step", "eta"]
    assert list(zip(band["step"], band["eta"], strict=True)) == [(0, 0.1), (0, 0.2), (10, 0.1)]
    assert band["mean"].tolist() == [3.0, 2.0, 6.0]
    assert band["n"].tolist() == [2, 2, 2]
    with pytest.raises(ValueError, match=r"\(step, eta\)"):
        seed_band(pd.concat([rows, rows.iloc[:1]]), keys=("step", "eta"))


# --- bands.died_padded, metric_band ------------------------------------------------------------------


def _group_with_a_death(diverged_at_step: int | None = 20) -> pd.DataFrame:
    steps = (0, 10, 20, 30)
    return frame(
        run("a", {LOSS: {s: 1.0 + s for s in steps}}, seed=0),
        run("b", {LOSS: {s: 3.0 + s for s in steps}}, seed=1),
        run(
            "c",
            {LOSS: {0: 5.0, 10: 15.0}},
            seed=2,
            status="diverged",
            diverged_at_step=diverged_at_step,
            last_step=diverged_at_step,
        ),
    )


def test_a_diverged_runs_missing_later_steps_are_inf() -> None:
    group = _group_with_a_death()
    padded = died_padded(group, group[group["metric"] == LOSS])
    c = padded[padded["run_dir"] == "c"].sort_values("step")
    assert c["step"].tolist() == [0, 10, 20, 30]
    assert c["value"].tolist() == [5.0, 15.0, np.inf, np.inf]
    # The living runs are not padded.
    assert len(padded[padded["run_dir"] != "c"]) == 8


def test_metric_band_blanks_the_points_after_a_death() -> None:
    band = metric_band(_group_with_a_death(), LOSS, "fig")
    assert band["n"].tolist() == [3, 3, 3, 3]  # the dead run still counts
    assert band["n_nonfinite"].tolist() == [0, 0, 1, 1]
    assert band["mean"].iloc[:2].tolist() == [3.0, 13.0]  # (1+3+5)/3, (11+13+15)/3
    assert band["mean"].iloc[2:].isna().all()
    assert band["max"].iloc[2:].isna().all()


def test_a_diverged_run_that_never_logged_the_metric_is_padded_not_refused() -> None:
    group = frame(
        run("a", {LOSS: curve((0, 10), 1.0)}, seed=0),
        run("b", {LOSS: curve((0, 10), 3.0)}, seed=1),
        run("c", {"train/acc": {0: 0.1}}, seed=2, status="diverged", diverged_at_step=10),
    )
    band = metric_band(group, LOSS, "fig")
    assert band["n"].tolist() == [2, 3]
    assert band["n_nonfinite"].tolist() == [0, 1]
    assert band["mean"].iloc[0] == 2.0


def test_a_diverged_run_without_its_death_step_is_refused() -> None:
    group = _group_with_a_death(diverged_at_step=None)
    with pytest.raises(ValueError, match="run c diverged but its summary has no diverged_at_step"):
        died_padded(group, group[group["metric"] == LOSS])
    with pytest.raises(ValueError, match="diverged_at_step"):
        metric_band(group, LOSS, "fig")


def test_a_living_run_that_never_logged_the_metric_is_named() -> None:
    group = frame(
        run("runs/x/seed=0", {LOSS: curve((0, 10))}, seed=0),
        run("runs/x/seed=1", {"train/acc": curve((0, 10))}, seed=1),
    )
    with pytest.raises(
        ValueError, match=r"^fig 9 \(none\): no train/loss logged in runs/x/seed=1$"
    ):
        metric_band(group, LOSS, "fig 9 (none)")


# --- runs: variants, rates, the runs a figure draws ---------------------------------------------------


def test_with_variants_tells_lp_norms_apart_by_p() -> None:
    table = pd.DataFrame(
        {
            "norm.name": ["lp", "lp", "lp", "batch", "none", "noisy_batch"],
            "norm.p": [1, 2.0, "inf", None, None, None],
        }
    )
    assert with_variants(table)["norm.variant"].tolist() == [
        "l1",
        "l2",
        "linf",
        "batch",
        "none",
        "noisy_batch",
    ]
    # A table of no l_p norm may have no norm.p column at all.
    no_p = with_variants(pd.DataFrame({"norm.name": ["none", "batch"]}))
    assert no_p["norm.variant"].tolist() == ["none", "batch"]


def test_rate_is_compares_with_a_relative_tolerance() -> None:
    values = pd.Series([READ_BACK_1E6, 1e-6, 1.1e-6, 1e-5, "1e-06", None], index=list("abcdef"))
    assert READ_BACK_1E6 != 1e-6  # the point of the tolerance
    result = rate_is(values, 1e-6)
    assert list(result.index) == list("abcdef")
    assert result.tolist() == [True, True, False, False, True, False]


@pytest.mark.parametrize(
    ("lr", "text"), [(1e-6, "1e-6"), (3e-4, "3e-4"), (0.1, "1e-1"), (1e-10, "1e-10"), (5.0, "5e0")]
)
def test_lr_text(lr: float, text: str) -> None:
    assert lr_text(lr) == text


def suite(
    variants: Sequence[tuple[str, Any]] = (("none", None), ("batch", None), ("lp", 2.0)),
    lrs: Sequence[float] = (READ_BACK_1E6, 1e-4),
    seeds: Sequence[int] = (0, 1, 2),
    **config: Any,
) -> pd.DataFrame:
    """A suite-like sweep: every norm at every rate and seed, every probe on."""
    runs = []
    for norm, p in variants:
        options = {"norm__eps": 1e-5, "norm__momentum": 0.1} if norm == "batch" else {}
        for lr in lrs:
            for seed in seeds:
                name = f"suite/norm={norm},p={p},lr={lr:g},seed={seed}"
                curves = {LOSS: {0: 2.0 + seed, 10: 1.0 + seed}, ICS: curve((0, 10), 0.5)}
                runs.append(
                    run(name, curves, seed=seed, norm=norm, p=p, lr=lr, **options, **config)
                )
    return frame(*runs)


def test_select_figure_runs_selects_by_variant_and_rate_and_sets_the_rate() -> None:
    drawn = select_figure_runs(suite(), "fig", ("none", "l2"), lrs=(1e-6,))
    assert set(drawn["norm.variant"]) == {"none", "l2"}
    assert drawn["run_dir"].nunique() == 6  # 2 norms x 3 seeds; BN and the other rate left aside
    assert (drawn["optim.lr"] == 1e-6).all()  # the declared rate, exactly
    assert set(drawn["metric"]) == {LOSS, ICS}


def test_select_figure_runs_at_two_rates() -> None:
    drawn = select_figure_runs(suite(), "fig", ("none", "batch"), lrs=(1e-6, 1e-4))
    assert drawn["run_dir"].nunique() == 12
    per_rate = drawn.groupby("optim.lr")["run_dir"].nunique()
    assert per_rate.to_dict() == {1e-6: 6, 1e-4: 6}


def test_select_figure_runs_names_a_missing_variant() -> None:
    with pytest.raises(ValueError, match=r"fig: no runs with norm l1 at optim.lr=1e-06 \(found"):
        select_figure_runs(suite(), "fig", ("none", "l1"), lrs=(1e-6,))


def test_select_figure_runs_names_a_missing_rate() -> None:
    with pytest.raises(ValueError, match=r"no runs at optim.lr=0.001 \(found: 1e-06, 0.0001\)"):
        select_figure_runs(suite(), "fig", ("none",), lrs=(1e-6, 1e-3))


def test_select_figure_runs_refuses_two_runs_of_one_variant_rate_and_seed() -> None:
    table = suite(variants=(("none", None),), lrs=(1e-6,))
    again = table[table["seed"] == 0].assign(run_dir="other_sweep/seed=0")
    with pytest.raises(ValueError, match=r"several runs .*none lr 1e-06 seed 0: 2 runs"):
        select_figure_runs(pd.concat([table, again]), "fig", ("none",), lrs=(1e-6,))


def test_select_figure_runs_refuses_norms_that_ran_different_seeds() -> None:
    table = suite(lrs=(1e-6,))
    table = table[~((table["norm.name"] == "lp") & (table["seed"] == 2))]
    with pytest.raises(
        ValueError, match=r"different seeds \(none lr 1e-06 seeds 0/1/2, l2 .*0/1\)"
    ):
        select_figure_runs(table, "fig", ("none", "l2"), lrs=(1e-6,))


def test_select_figure_runs_refuses_runs_that_differ_in_another_key() -> None:
    table = suite(lrs=(1e-6,), model__width=1.0)
    wide = table["norm.name"] == "lp"
    table.loc[wide, "model.width"] = 0.5
    with pytest.raises(ValueError, match="model.width"):
        select_figure_runs(table, "fig", ("none", "l2"), lrs=(1e-6,))
    # Runs of one norm that differ (one seed) are refused too.
    one_norm = suite(variants=(("none", None),), lrs=(1e-6,), model__width=1.0)
    one_norm.loc[one_norm["seed"] == 2, "model.width"] = 0.5
    with pytest.raises(ValueError, match="model.width"):
        select_figure_runs(one_norm, "fig", ("none",), lrs=(1e-6,))
    # ...but what the runs of a figure may differ in (a norm's own options) passes.
    select_figure_runs(suite(lrs=(1e-6,)), "fig", ("none", "batch", "l2"), lrs=(1e-6,))


def test_select_figure_runs_without_rates_takes_the_runs_one_rate() -> None:
    drawn = select_figure_runs(suite(lrs=(1e-4,)), "fig", ("none", "batch"), lrs=None)
    assert drawn["run_dir"].nunique() == 6
    assert (drawn["optim.lr"] == 1e-4).all()
    with pytest.raises(ValueError, match=r"optim\.lr"):
        select_figure_runs(suite(), "fig", ("none", "batch"), lrs=None)


# --- claims: cadences and the evaluations a window holds -----------------------------------------------


@pytest.mark.parametrize(
    ("metric", "key"),
    [
        ("train/loss", "trainer.log_every_n_steps"),
        ("test/acc", "trainer.val_check_interval"),
        ("ics/layer9/cos", "probe.ics.every_n_steps"),
        ("landscape/beta_eff", "probe.landscape.every_n_steps"),
        ("act/layer3/p50", "probe.activations.every_n_steps"),
        ("curv/lr_lambda_max", "probe.sharpness.every_n_steps"),
        ("curv/trace", "probe.hessian_trace.every_n_steps"),
        ("curv/lr_batch_sharpness", "probe.batch_sharpness.every_n_steps"),
    ],
)
def test_cadence_key(metric: str, key: str) -> None:
    assert cadence_key(metric) == key


def test_an_unknown_metric_has_no_cadence() -> None:
    with pytest.raises(ValueError, match="no known cadence for 'foo/bar'") as err:
        cadence_key("foo/bar")
    for known in ("train/", "test/", "ics/", "landscape/", "curv/trace"):
        assert known in str(err.value)


def make_claim(**fields: Any) -> Claim:
    defaults = dict(
        id="t/claim",
        figure="t/fig",
        claim="c",
        paper_says="p",
        metric=ICS,
        window=(20, 60),
        threshold=0.5,
        seeds=(0, 1, 2),
        measure=lambda table, claim: Measurement(1.0, "d", True),
    )
    return Claim(**(defaults | fields))


def one_run(every: int = 10, last_step: int = 100) -> pd.DataFrame:
    return frame(run("r", {ICS: curve(range(0, last_step, every))}, last_step=last_step)).assign(
        **{"probe.ics.every_n_steps": every}
    )


@pytest.mark.parametrize(
    ("window", "every", "last_step", "need"),
    [
        ((20, 60), 10, 100, 5),  # 20, 30, 40, 50, 60
        ((5, 40), 10, 100, 4),  # start off the cadence: 10, 20, 30, 40
        ((5, 9), 10, 100, 0),  # no evaluation in the window
        ((0, 100), 10, 100, 10),  # ends where training does: 0..90, no evaluation at step 100
        ((0, 1000), 25, 100, 4),  # past the run's last step: 0, 25, 50, 75
    ],
)
def test_needed_evals(window: tuple[int, int], every: int, last_step: int, need: int) -> None:
    rows = one_run(every=every, last_step=last_step)
    assert needed_evals(rows, make_claim(window=window), "probe.ics.every_n_steps") == need


def test_needed_evals_without_a_cadence_in_the_config() -> None:
    with pytest.raises(InsufficientData, match="run r: no probe.foo.every_n_steps in its config"):
        needed_evals(one_run(), make_claim(), "probe.foo.every_n_steps")


def claim_table(
    drop: Mapping[tuple[str, int], Sequence[int]] | None = None,
    last_steps: Mapping[tuple[str, int], int] | None = None,
) -> pd.DataFrame:
    """none and batch at lr 0.1, seeds 0-2, ics every 10 steps from 0 to 90 (runs of 100 steps);
    `drop` leaves out some evaluations of a (norm, seed), `last_steps` stops one early."""
    drop, last_steps = drop or {}, last_steps or {}
    runs = []
    for norm in ("none", "batch"):
        for seed in (0, 1, 2):
            last = last_steps.get((norm, seed), 100)
            steps = [s for s in range(0, last, 10) if s not in drop.get((norm, seed), ())]
            curves = {ICS: {s: seed + s / 100 for s in steps}}
            runs.append(run(f"sweep/{norm},{seed}", curves, seed=seed, norm=norm, last_step=last))
    return frame(*runs)


def test_select_claim_runs_gives_each_runs_window() -> None:
    selected = select_claim_runs(claim_table(), make_claim(), ("none", "batch"), lrs=(0.1,))
    assert sorted(selected) == [(0.1, v, s) for v in ("batch", "none") for s in (0, 1, 2)]
    for rows in selected.values():
        assert rows["step"].tolist() == [20, 30, 40, 50, 60]


def test_a_run_missing_one_evaluation_of_the_window_is_insufficient() -> None:
    table = claim_table(drop={("batch", 1): (40,), ("none", 2): (90,)})  # step 90: outside
    with pytest.raises(InsufficientData) as err:
        select_claim_runs(table, make_claim(), ("none", "batch"), lrs=(0.1,))
    assert str(err.value) == (
        "lr 0.1: norm.variant=batch seed 1: 4 evaluation(s) of ics/layer9/cos in steps 20-60, "
        "need 5 (probe.ics.every_n_steps=10)"
    )


def test_a_run_that_stopped_before_the_windows_end_is_insufficient() -> None:
    # Seed 2 of BN stopped at step 50: its window 20-50 holds every evaluation it made, but the
    # claim's window is never clipped to what ran.
    table = claim_table(last_steps={("batch", 2): 50})
    with pytest.raises(InsufficientData, match="norm.variant=batch seed 2: stopped at step 50, "):
        select_claim_runs(table, make_claim(), ("none", "batch"), lrs=(0.1,))


def test_select_claim_runs_takes_a_rate_read_back_a_hair_off_like_the_figure() -> None:
    table = claim_table()
    table["optim.lr"] = np.where(table["seed"] == 1, READ_BACK_1E6, 1e-6)
    # The figure takes these runs as one rate: they differ in the rate's last bit alone.
    assert (
        select_figure_runs(table, "fig", ("none", "batch"), lrs=(1e-6,))["run_dir"].nunique() == 6
    )
    selected = select_claim_runs(table, make_claim(), ("none", "batch"), lrs=(1e-6,))
    assert len(selected) == 6


# --- claims.Claim ---------------------------------------------------------------------------------------


def test_a_claim_needs_three_distinct_seeds_unless_a_part() -> None:
    with pytest.raises(ValueError, match="needs at least 3 seeds"):
        make_claim(seeds=(0, 1))
    with pytest.raises(ValueError, match="needs at least 3 seeds"):
        make_claim(seeds=(0, 0, 1))
    part = make_claim().part(seeds=(0,))
    assert part.seeds == (0,) and part.reading
    assert part.window == (20, 60) and part.metric == ICS


def test_a_claim_needs_a_window() -> None:
    with pytest.raises(ValueError, match=r"empty window \(60, 20\)"):
        make_claim(window=(60, 20))
    assert make_claim(window=(20, 20)).window == (20, 20)  # one step is a window


# --- claims.scaled, provisional ----------------------------------------------------------------------


def lengths_table(*max_steps: int) -> pd.DataFrame:
    return frame(
        *(run(f"r{i}", {ICS: {0: 1.0}}, max_steps=n, seed=i) for i, n in enumerate(max_steps))
    )


def test_scaled_puts_the_window_on_the_runs_length() -> None:
    claim = make_claim(window=(1000, 15000), paper_steps=15000)
    # 1000 * 4000 / 15000 = 266.67
    assert scaled(claim, lengths_table(4000, 4000)).window == (267, 4000)
    assert scaled(claim, lengths_table(15000)).window == (1000, 15000)


def test_scaled_without_paper_steps_is_the_claim() -> None:
    claim = make_claim(window=(1000, 15000))
    assert scaled(claim, lengths_table(4000)) is claim


def test_scaled_refuses_runs_of_different_lengths() -> None:
    claim = make_claim(window=(1000, 15000), paper_steps=15000)
    with pytest.raises(ValueError, match="different lengths"):
        scaled(claim, lengths_table(4000, 2000))


def _mean_measure(table: pd.DataFrame, claim: Claim) -> Measurement:
    """The mean of the claim's metric over its window and seeds, for the standard net at lr
    0.1; passes above the threshold."""
    selected = select_claim_runs(table, claim, ("none",), lrs=(0.1,))
    value = float(np.mean([rows["value"].mean() for rows in selected.values()]))
    return Measurement(value, f"mean {value:.3g}", value > claim.threshold)


def provisional_table(seeds: Sequence[int] = (0, 1, 2)) -> pd.DataFrame:
    """DLN runs of 4000 steps, ics every 400 steps, seed s logging s + 1 throughout."""
    return frame(
        *(
            run(
                f"dln/seed={s}",
                {ICS: curve(range(0, 4000, 400), s + 1.0)},
                seed=s,
                max_steps=4000,
                probe__ics__every_n_steps=400,
                model___target_="normlab.models.DLN",
            )
            for s in seeds
        )
    )


PAPER_CLAIM = dict(window=(7500, 15000), paper_steps=15000, threshold=1.5)


def test_provisional_measures_on_the_runs_scale_and_says_so() -> None:
    m = provisional(_mean_measure)(provisional_table(), make_claim(**PAPER_CLAIM))
    assert m.value == 2.0  # (1 + 2 + 3) / 3
    assert m.passed is True
    assert m.detail == "mean 2 [DLN, 4000 steps, steps 2000-4000]"


@pytest.mark.parametrize(("threshold", "verdict"), [(1.2, "passes"), (1.8, "fails")])
def test_a_missing_seed_gives_a_provisional_reading(threshold: float, verdict: str) -> None:
    claim = make_claim(**(PAPER_CLAIM | {"threshold": threshold}))
    with pytest.raises(InsufficientData) as err:
        provisional(_mean_measure)(provisional_table(seeds=(0, 1)), claim)
    message = str(err.value)
    assert message.startswith("lr 0.1: norm.variant=none seed 2: no run")
    assert (
        f"; provisional reading on seed 0/1 alone: mean 1.5 ({verdict}) "
        "[DLN, 4000 steps, steps 2000-4000]"
    ) in message


def test_no_provisional_reading_without_a_measurable_seed() -> None:
    table = provisional_table().assign(**{"norm.name": "batch"})
    with pytest.raises(InsufficientData) as err:
        provisional(_mean_measure)(table, make_claim(**PAPER_CLAIM))
    assert "provisional" not in str(err.value)
    assert "norm.variant=none seeds 0/1/2: no run" in str(err.value)


# --- claims.step_ratios, lower_median -------------------------------------------------------------------


def test_step_ratios_of_walks_that_blew_up() -> None:
    standard = [6.0, np.inf, np.nan, 1.0, np.inf, 0.0, 2.0, 0.0]
    normalised = [3.0, 1.0, 1.0, np.inf, np.inf, 0.0, 0.0, 4.0]
    expected = [2.0, np.inf, np.inf, 0.0, 0.0, 1.0, np.inf, 0.0]
    np.testing.assert_array_equal(step_ratios(np.array(standard), np.array(normalised)), expected)


def test_lower_median() -> None:
    assert lower_median([4.0, 1.0, 3.0, 2.0]) == 2.0  # even count: the lower middle
    assert lower_median([3.0, 1.0, 2.0]) == 2.0
    assert lower_median([np.inf, 1.0]) == 1.0  # inf never averages in
    assert np.isnan(lower_median([]))


# --- spec.FigureSpec --------------------------------------------------------------------------------------


def figure_table(seeds: Sequence[int] = (0, 1, 2)) -> pd.DataFrame:
    """none and batch at lr 0.1: train/loss = seed + step/10 (none), 10*seed + step (batch);
    test/acc of batch = 0.5 + seed/10."""
    runs = []
    for norm in ("none", "batch"):
        for s in seeds:
            loss = {t: (s + t / 10) if norm == "none" else (10 * s + t) for t in (0, 10, 20)}
            curves = {LOSS: loss, "test/acc": curve((0, 10, 20), 0.5 + s / 10)}
            runs.append(run(f"fig/{norm},{s}", curves, seed=s, norm=norm))
    return frame(*runs)


SPEC = FigureSpec(
    id="t/fig",
    title="Test figure",
    variants=("none", "batch"),
    lrs=(0.1,),
    panels=(
        Panel(
            "loss",
            "training loss",
            (Line("none", LOSS, "Standard", "black"), Line("batch", LOSS, "BN", "tab:red")),
        ),
        Panel("acc", "test accuracy", (Line("batch", "test/acc", "BN", "tab:red"),)),
    ),
)


def test_figure_data_is_the_mean_over_seeds_per_panel_series_and_step() -> None:
    data = SPEC.data(figure_table())
    assert list(data.columns) == ["panel", "series", "step", "mean", "min", "max", "n"] + [
        "n_nonfinite"
    ]
    assert len(data) == 9  # (2 + 1 series) x 3 steps
    assert data.groupby("panel")["series"].unique().map(sorted).to_dict() == {
        "loss": ["BN", "Standard"],
        "acc": ["BN"],
    }
    point = data[(data["panel"] == "loss") & (data["series"] == "BN") & (data["step"] == 10)]
    (row,) = point.itertuples(index=False)
    assert row.mean == pytest.approx(np.mean([0 + 10, 10 + 10, 20 + 10]))
    assert (row.min, row.max, row.n, row.n_nonfinite) == (10.0, 30.0, 3, 0)
    standard = data[(data["panel"] == "loss") & (data["series"] == "Standard")]
    assert standard["mean"].tolist() == pytest.approx([1.0, 2.0, 3.0])
    acc = data[data["panel"] == "acc"]
    assert acc["mean"].tolist() == pytest.approx([0.6, 0.6, 0.6])


def test_figure_draw_has_one_axes_per_panel_and_one_line_per_line() -> None:
    fig = SPEC.draw(figure_table())
    assert isinstance(fig, Figure)
    assert len(fig.axes) == len(SPEC.panels)
    assert [len(ax.get_lines()) for ax in fig.axes] == [2, 1]
    assert [ax.get_title() for ax in fig.axes] == ["loss", "acc"]
    assert "mean over seeds 0/1/2" in fig.get_suptitle()


def test_a_figure_of_one_seed_says_so_in_its_title() -> None:
    fig = SPEC.draw(figure_table(seeds=(0,)))
    assert "seed 0 alone" in fig.get_suptitle()
    assert "mean over seeds" not in fig.get_suptitle()
