"""`normlab.papers.santurkar2018.protocol` against the presets: each fact the figures and claims
read is the one the runs are made with (a preset edited without its protocol fails here)."""

from __future__ import annotations

import pytest

from normlab.config import compose_config, sweep_points
from normlab.papers.santurkar2018 import protocol as P


def _cfg(preset: str, *extra: str):
    return compose_config([f"experiment={preset}", *extra])


def _swept_rates(preset: str) -> set[float]:
    points = sweep_points([f"experiment={preset}"])
    return {float(compose_config(p).optim.lr) for p in points}


def test_dln_protocol() -> None:
    cfg = _cfg("santurkar2018/dln_fig5b_lp")
    assert cfg.optim.lr == P.DLN_LR
    assert cfg.trainer.max_steps == P.DLN_STEPS
    assert tuple(_cfg("santurkar2018/dln_fig3b_ics").probe.ics.layers) == P.DLN_ICS_LAYERS
    acts = _cfg("santurkar2018/dln_fig9_activations").probe.activations
    assert tuple(acts.layers) == P.DLN_ACT_LAYERS
    assert _swept_rates("santurkar2018/dln_fig3b_ics") == {P.DLN_LR, P.DLN_LR_SLOW}
    assert _swept_rates(P.DLN_SUITE) == {P.DLN_LR, P.DLN_LR_SLOW}


def test_vgg_protocol() -> None:
    cfg = _cfg("santurkar2018/vgg_fig4_landscape")
    assert cfg.optim.lr == P.VGG_LR
    assert (cfg.probe.landscape.eta_lo, cfg.probe.landscape.eta_hi) == P.VGG_ETA_RANGE
    assert cfg.trainer.max_steps == P.VGG_STEPS
    ics = _cfg("santurkar2018/vgg_fig3a_ics").probe.ics
    assert tuple(ics.layers) == P.VGG_ICS_LAYERS
    acts = _cfg("santurkar2018/vgg_fig1_lr").probe.activations
    assert (acts.unit.layer, acts.unit.index) == P.VGG_UNIT
    assert P.VGG_HIST_LAYER in _cfg("santurkar2018/vgg_fig6_hist").probe.activations.layers
    assert set(P.VGG_FIG1_LAYERS) <= set(acts.layers)
    noisy = _cfg("santurkar2018/vgg_fig2_noisy").probe.activations.layers
    assert set(P.VGG_NOISY_LAYERS) <= set(noisy)
    assert set(P.VGG_NOISY_LAYERS) <= set(
        _cfg("santurkar2018/vgg_fig8_moments").probe.activations.layers
    )
    assert _swept_rates("santurkar2018/vgg_fig1_lr") == {P.VGG_LR, P.VGG_LR_FAST}
    assert _swept_rates("santurkar2018/vgg_fig3a_ics") == {P.VGG_LR, P.VGG_LR_SLOW}
    assert _swept_rates(P.VGG_SUITE) == {P.VGG_LR, P.VGG_LR_FAST, P.VGG_LR_SLOW}


def test_theory_protocol() -> None:
    cfg = _cfg("santurkar2018/theory_mlp")
    assert cfg.optim.lr == P.THEORY_LR
    assert cfg.trainer.max_steps == P.THEORY_STEPS
    assert tuple(cfg.probe.theory.layers) == P.THEORY_LAYERS


@pytest.mark.parametrize(
    ("preset", "variants"),
    [
        ("santurkar2018/dln_fig3b_ics", P.STANDARD_BN),
        ("santurkar2018/dln_fig5b_lp", P.ALL_NORMS),
        ("santurkar2018/vgg_fig2_noisy", P.NOISY),
        ("santurkar2018/vgg_fig5a_lp", P.ALL_NORMS),
    ],
)
def test_the_variants_a_preset_sweeps(preset: str, variants: tuple[str, ...]) -> None:
    found = set()
    for point in sweep_points([f"experiment={preset}"]):
        norm = compose_config(point).norm
        found.add(norm.name if norm.name != "lp" else f"l{str(norm.p).removesuffix('.0')}")
    assert found == set(variants)
