"""Santurkar 2018 Fig. 5(b) (`normlab.papers.santurkar2018.dln_fig5b_lp`) on fake DLN loss runs:
plotted data, claims verdicts, refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fakeruns import write_run

from normlab.report import evaluate_claims
from normlab.report.registry import FIGURES

FIG = "santurkar2018/dln_fig5b_lp"
NORMS = {
    "none": {"name": "none"},
    "batch": {"name": "batch"},
    "l1": {"name": "lp", "p": 1},
    "l2": {"name": "lp", "p": 2},
    "linf": {"name": "lp", "p": "inf"},
}


def dln_sweep(
    root: Path,
    final: dict[str, float],
    seeds=(0, 1, 2),
    max_steps=10000,
    lr: float = 1e-6,
    variants=tuple(NORMS),
) -> Path:
    """Loss curves falling from 1e5 to final[variant] (+1% per seed); run directories
    `<variant>-<seed>` (at another lr than 1e-6: `<variant>-<seed>-lr<lr>`)."""
    for variant, norm in NORMS.items():
        if variant not in variants:
            continue
        for seed in seeds:
            steps = range(0, max_steps + 1, 500)
            end = final[variant] * (1 + 0.01 * seed)
            curve = {
                s: float(np.exp(np.log(1e5) + (np.log(end) - np.log(1e5)) * s / max_steps))
                for s in steps
            }
            config = {
                "name": FIG,
                "seed": seed,
                "norm": norm,
                "optim": {"lr": lr},
                "module": {"reduction": "sum"},
                "model": {"depth": 25},
                "trainer": {"max_steps": max_steps, "log_every_n_steps": 500},
                "paths": {"runs_dir": "runs"},
            }
            write_run(
                root / (f"{variant}-{seed}" + ("" if lr == 1e-6 else f"-lr{lr:g}")),
                experiment=FIG,
                seed=seed,
                norm=norm["name"],
                config=config,
                curves={"train/loss": curve},
                max_steps=max_steps,
            )
    return root


def _verdicts(root: Path) -> pd.Series:
    spec = FIGURES[FIG]
    claims = evaluate_claims(spec.claims, spec.load([root]))
    return claims.set_index("id")["verdict"]


def test_plotted_lines_are_the_mean_over_seeds(tmp_path) -> None:
    root = dln_sweep(tmp_path, {"none": 100, "batch": 50, "l1": 20, "l2": 45, "linf": 52})
    spec = FIGURES[FIG]
    table = spec.load([root])
    fig = spec.draw(table)
    (ax,) = fig.axes
    labels = [ln.get_label() for ln in ax.get_lines()]
    assert labels == ["Standard", "BN", "l1", "l2", "l_inf"]
    l1 = ax.get_lines()[2]
    raw = pd.concat(
        pd.read_csv(tmp_path / f"l1-{s}" / "metrics.csv").set_index("step").value for s in range(3)
    )
    expected = raw.groupby(level=0).mean()
    np.testing.assert_allclose(l1.get_xdata(), expected.index)
    np.testing.assert_allclose(l1.get_ydata(), expected.values)
    assert ax.get_yscale() == "log"
    data = spec.data(table)
    assert (data.n == 3).all() and set(data.series) == set(labels)


def test_claims_reproduced_when_lp_matches_bn_and_l1_wins(tmp_path) -> None:
    v = _verdicts(dln_sweep(tmp_path, {"none": 100, "batch": 50, "l1": 20, "l2": 45, "linf": 52}))
    assert v["santurkar2018/fig5b_lp_trains_like_bn"] == "reproduced"
    assert v["santurkar2018/fig5b_l1_beats_bn"] == "reproduced"


def test_claims_not_reproduced_when_lp_lags(tmp_path) -> None:
    v = _verdicts(dln_sweep(tmp_path, {"none": 100, "batch": 50, "l1": 60, "l2": 45, "linf": 80}))
    assert v["santurkar2018/fig5b_lp_trains_like_bn"] == "not reproduced"
    assert v["santurkar2018/fig5b_l1_beats_bn"] == "not reproduced"


def test_short_runs_are_insufficient_and_missing_variants_refused(tmp_path) -> None:
    short = dln_sweep(tmp_path / "short", dict.fromkeys(NORMS, 10.0), max_steps=2000)
    assert (_verdicts(short) == "insufficient data").all()
    partial = dln_sweep(tmp_path / "full", dict.fromkeys(NORMS, 10.0))
    for seed in range(3):
        for f in (partial / f"linf-{seed}").iterdir():
            f.unlink()
        (partial / f"linf-{seed}").rmdir()
    with pytest.raises(ValueError, match=r"no runs with norm linf"):
        FIGURES[FIG].draw(FIGURES[FIG].load([partial]))


def test_a_norm_option_changed_within_one_norm_is_refused(tmp_path) -> None:
    root = dln_sweep(tmp_path, dict.fromkeys(NORMS, 10.0))
    NORMS["batch"] = {"name": "batch", "momentum": 0.5}
    try:
        dln_sweep(tmp_path / "odd", dict.fromkeys(NORMS, 10.0), seeds=(1,))
    finally:
        NORMS["batch"] = {"name": "batch"}
    odd = tmp_path / "odd" / "batch-1"
    target = root / "batch-1"
    for f in target.iterdir():
        f.unlink()
    target.rmdir()
    odd.rename(target)
    spec = FIGURES[FIG]
    table = spec.load([root / f"{v}-{s}" for v in NORMS for s in range(3)])
    with pytest.raises(ValueError, match=r"norm.momentum"):
        spec.draw(table)
    with pytest.raises(ValueError, match=r"norm.momentum"):
        evaluate_claims(spec.claims, table)


def test_drawn_from_a_suite_with_other_rates_the_figure_keeps_lr_1e6(tmp_path) -> None:
    """The suite's sweep also holds standard and BN runs at lr 1e-7 (for Fig. 3(b)): Fig. 5(b) and
    its claims leave them aside and give what the lr 1e-6 runs alone give."""
    final = {"none": 100, "batch": 50, "l1": 20, "l2": 45, "linf": 52}
    alone = dln_sweep(tmp_path / "alone", final)
    suite = dln_sweep(tmp_path / "suite", final)
    dln_sweep(suite, {"none": 1e4, "batch": 1e4}, lr=1e-7, variants=("none", "batch"))
    spec = FIGURES[FIG]
    table = spec.load([suite])
    assert sorted(table["optim.lr"].unique()) == [1e-7, 1e-6]
    pd.testing.assert_frame_equal(spec.data(table), spec.data(spec.load([alone])))
    pd.testing.assert_frame_equal(
        evaluate_claims(spec.claims, table), evaluate_claims(spec.claims, spec.load([alone]))
    )
    assert (_verdicts(suite) == "reproduced").all()
    # Without its lr 1e-6 runs the figure says which rate it needs.
    only_slow = dln_sweep(tmp_path / "slow", final, lr=1e-7)
    with pytest.raises(ValueError, match=r"no runs at optim.lr=1e-06 \(found: 1e-07\)"):
        spec.data(spec.load([only_slow]))
    assert (_verdicts(only_slow) == "insufficient data").all()
