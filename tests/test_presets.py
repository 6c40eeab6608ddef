"""Every experiment preset composes and instantiates at every point of its sweep.

A preset without an entry in PRESET_CHECKS fails `test_every_preset_has_a_test`: a new preset
must say here what it is expected to be.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import DictConfig

from normlab.config import CONF_DIR, compose_config, sweep_points
from normlab.errors import NormlabError
from normlab.models import DLN, MLP, VGG
from normlab.papers.santurkar2018 import protocol as P
from normlab.schema import validate_config
from normlab.train import build_probes


def _fig1(cfg: DictConfig) -> None:
    # Ioffe 2015, Sec. 4.1.
    assert cfg.trainer.max_steps == 50_000
    assert cfg.data.batch_size == 60
    assert cfg.trainer.val_check_interval == 500
    assert cfg.model.hidden == [100, 100, 100] and cfg.model.activation == "sigmoid"
    assert cfg.optim._target_ == "torch.optim.SGD" and cfg.optim.momentum == 0
    assert cfg.probe.activations.unit.layer == 3


def _fig1_tuning(cfg: DictConfig) -> None:
    assert cfg.norm.name == "none" and cfg.seed == 0
    assert cfg.trainer.max_steps == 10_000


def _dln(cfg: DictConfig) -> None:
    # Santurkar 2018, App. A.1: the DLN protocol every DLN preset shares.
    assert cfg.model._target_.endswith("DLN") and cfg.model.depth == 25 and cfg.model.width == 10
    assert cfg.data.num_train == 1000 and cfg.data.batch_size == 1000  # full batch
    assert cfg.trainer.max_steps == P.DLN_STEPS and cfg.optim.lr in (P.DLN_LR, P.DLN_LR_SLOW)
    assert cfg.optim._target_ == "torch.optim.SGD" and cfg.optim.momentum == 0
    assert cfg.module._target_.endswith("RegressionModule") and cfg.module.reduction == "sum"
    assert cfg.norm.name in ("none", "batch", "lp")
    if cfg.norm.name == "lp":
        assert str(cfg.norm.p) in ("1", "2", "inf")
    if cfg.norm.name == "lp" or "ics" not in _probes_on(cfg):
        assert cfg.optim.lr == P.DLN_LR  # lr 1e-7 only in Fig. 3(b)
    # the probes' settings are the protocol's, whichever preset turns them on
    assert tuple(cfg.probe.ics.layers) == P.DLN_ICS_LAYERS
    assert (cfg.probe.landscape.eta_lo, cfg.probe.landscape.eta_hi) == (0.01, 30.0)
    assert tuple(cfg.probe.activations.layers) == P.DLN_ACT_LAYERS


def _probes_on(cfg: DictConfig) -> set[str]:
    return {name for name, probe in cfg.probe.items() if probe and "_target_" in probe}


def _dln_with(*probes: str) -> Callable[[DictConfig], None]:
    def check(cfg: DictConfig) -> None:
        _dln(cfg)
        assert _probes_on(cfg) == set(probes)

    return check


def _vgg(cfg: DictConfig, steps: int = 15_000, width: float = 1.0) -> None:
    # Santurkar 2018, App. A.1: the VGG protocol every VGG preset shares, at paper scale.
    assert cfg.model._target_.endswith("VGG") and cfg.model.depth == 16
    assert cfg.model.width == width and cfg.trainer.max_steps == steps
    assert cfg.data._target_.endswith("CIFAR10DataModule") and cfg.data.batch_size == 128
    assert not cfg.data.augment
    assert cfg.optim._target_ == "torch.optim.SGD" and cfg.optim.momentum == 0
    assert cfg.optim.weight_decay == 0
    # the probes' settings are the protocol's, whichever preset turns them on
    assert list(cfg.probe.ics.layers) == [5, 10]
    assert (cfg.probe.landscape.eta_lo, cfg.probe.landscape.eta_hi) == (0.5, 4.0)
    assert cfg.probe.landscape.spacing == "linear"
    assert list(cfg.probe.activations.layers) == [2, 3, 9, 11, 13]


def _vgg_with(
    norms: tuple[str, ...], lrs: tuple[float, ...], *probes: str
) -> Callable[[DictConfig], None]:
    def check(cfg: DictConfig) -> None:
        _vgg(cfg)
        assert _variant(cfg) in norms and cfg.optim.lr in lrs
        assert _probes_on(cfg) == set(probes)

    return check


def _variant(cfg: DictConfig) -> str:
    return f"l{cfg.norm.p}" if cfg.norm.name == "lp" else cfg.norm.name


def _theory_mlp(cfg: DictConfig) -> None:
    # Santurkar 2018 Thm 4.1 on Ioffe 2015 Fig. 1's BN net (lr 1.0 as fig1_mnist), shorter run.
    assert cfg.model.hidden == [100, 100, 100] and cfg.model.activation == "sigmoid"
    assert cfg.data.batch_size == 60 and cfg.optim.lr == P.THEORY_LR and cfg.optim.momentum == 0
    assert cfg.norm.name == "batch" and cfg.trainer.max_steps == P.THEORY_STEPS
    assert _probes_on(cfg) == {"theory"}
    assert tuple(cfg.probe.theory.layers) == P.THEORY_LAYERS
    assert cfg.probe.theory.every_n_steps == 100


STANDARD_BN = ("none", "batch")
NOISY = ("none", "batch", "noisy_batch")
ALL_NORMS = ("none", "batch", "l1", "l2", "linf")


# preset id -> (number of sweep points, check of every composed point)
PRESET_CHECKS: dict[str, tuple[int, Callable[[DictConfig], None]]] = {
    "ioffe2015/fig1_mnist": (6, _fig1),
    "ioffe2015/fig1_mnist_tuning": (18, _fig1_tuning),
    "santurkar2018/dln_fig3b_ics": (12, _dln_with("ics")),
    "santurkar2018/dln_fig5b_lp": (15, _dln_with()),
    "santurkar2018/dln_fig9_activations": (6, _dln_with("activations")),
    "santurkar2018/dln_fig10_landscape": (6, _dln_with("landscape")),
    "santurkar2018/dln_fig11_gradchange": (6, _dln_with("landscape")),
    "santurkar2018/dln_fig13_lp_landscape": (15, _dln_with("landscape")),
    "santurkar2018/dln_suite": (21, _dln_with("ics", "landscape", "activations")),
    "santurkar2018/theory_mlp": (3, _theory_mlp),
    "santurkar2018/vgg_fig1_lr": (12, _vgg_with(STANDARD_BN, (0.1, 0.5), "activations")),
    "santurkar2018/vgg_fig2_noisy": (9, _vgg_with(NOISY, (0.1,), "activations")),
    "santurkar2018/vgg_fig3a_ics": (12, _vgg_with(STANDARD_BN, (0.1, 0.01), "ics")),
    "santurkar2018/vgg_fig4_landscape": (6, _vgg_with(STANDARD_BN, (0.1,), "landscape")),
    "santurkar2018/vgg_fig5a_lp": (15, _vgg_with(ALL_NORMS, (0.1,), "activations")),
    "santurkar2018/vgg_fig6_hist": (15, _vgg_with(ALL_NORMS, (0.1,), "activations")),
    "santurkar2018/vgg_fig8_moments": (9, _vgg_with(NOISY, (0.1,), "activations")),
    "santurkar2018/vgg_fig12_lp_landscape": (15, _vgg_with(ALL_NORMS, (0.1,), "landscape")),
    "santurkar2018/vgg_suite": (
        30,
        _vgg_with(
            (*NOISY, "l1", "l2", "linf"), (0.1, 0.5, 0.01), "ics", "landscape", "activations"
        ),
    ),
}

DLN_SUITE = "santurkar2018/dln_suite"


VGG_SUITE = "santurkar2018/vgg_suite"


def _runs(preset: str, *overrides: str) -> list[tuple[str, str, float, int]]:
    """(norm, p, lr, seed) of every run of a preset's sweep."""
    runs = []
    for point in sweep_points([f"experiment={preset}", *overrides]):
        cfg = compose_config(point)
        runs.append((cfg.norm.name, str(cfg.norm.get("p")), cfg.optim.lr, cfg.seed))
    return runs


@pytest.mark.parametrize(("suite", "family"), [(DLN_SUITE, "dln_"), (VGG_SUITE, "vgg_")])
def test_a_suite_is_the_union_of_its_figures_runs_each_once(suite: str, family: str) -> None:
    runs = _runs(suite)
    assert len(set(runs)) == len(runs)
    figures = [p for p in PRESET_CHECKS if p.startswith(f"santurkar2018/{family}") and p != suite]
    assert set(runs) == {run for preset in figures for run in _runs(preset)}


VGG_PRESETS = [p for p in PRESET_CHECKS if p.startswith("santurkar2018/vgg_")]


@pytest.mark.parametrize("preset", VGG_PRESETS)
def test_scale_cpu_shrinks_width_and_steps_and_keeps_the_protocol(preset: str) -> None:
    points = sweep_points([f"experiment={preset}", "scale=cpu"])
    assert len(points) == PRESET_CHECKS[preset][0]
    for point in points:
        cfg = compose_config(point)
        _vgg(cfg, steps=4000, width=0.125)
        assert cfg.optim.lr in (0.1, 0.5, 0.01)
    # the sweep is the preset's: same runs as at paper scale
    assert _runs(preset, "scale=cpu") == _runs(preset)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["experiment=santurkar2018/dln_fig5b_lp", "scale=cpu"],
            "scale=cpu is not a scale of santurkar2018/dln_fig5b_lp (model DLN); its scales: paper",
        ),
        (["scale=cpu"], "scale=cpu is not a scale of default (model MLP); its scales: paper"),
        (
            ["experiment=santurkar2018/vgg_fig1_lr", "scale=gpu"],
            "scale=gpu is not a scale of santurkar2018/vgg_fig1_lr (model VGG); its scales: "
            "paper, cpu",
        ),
    ],
)
def test_a_scale_the_protocol_does_not_declare_is_refused_naming_its_scales(
    overrides: list[str], message: str
) -> None:
    with pytest.raises(NormlabError) as err:
        compose_config(overrides)
    assert str(err.value) == message


def discovered_presets() -> list[str]:
    root = CONF_DIR / "experiment"
    return sorted(str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.yaml"))


def test_every_preset_has_a_test() -> None:
    missing = set(discovered_presets()) - set(PRESET_CHECKS)
    assert not missing, f"presets without an entry in PRESET_CHECKS: {sorted(missing)}"
    stale = set(PRESET_CHECKS) - set(discovered_presets())
    assert not stale, f"PRESET_CHECKS names presets that no longer exist: {sorted(stale)}"


@pytest.mark.parametrize("preset", sorted(PRESET_CHECKS))
def test_preset_composes_and_instantiates_at_every_sweep_point(preset: str, tmp_path: Path) -> None:
    size, check = PRESET_CHECKS[preset]
    points = sweep_points([f"experiment={preset}"])
    assert len(points) == size
    assert len({tuple(sorted(p)) for p in points}) == size  # no two jobs alike
    for point in points:
        cfg = compose_config([*point, f"paths.data_dir={tmp_path}"])
        assert cfg.name == preset
        validate_config(cfg, point)  # what the entry point checks before a job starts
        check(cfg)
        model = instantiate(cfg.model, norm=dict(cfg.norm))
        assert isinstance(model, MLP | DLN | VGG)
        instantiate(cfg.data)
        instantiate(
            cfg.module, model=model, optimizer=instantiate(cfg.optim)
        ).configure_optimizers()
        build_probes(cfg)
        instantiate(cfg.trainer, logger=False, default_root_dir=str(tmp_path))


def test_command_line_sweep_replaces_the_presets_list() -> None:
    points = sweep_points(["experiment=ioffe2015/fig1_mnist", "seed=5,6"])
    preset = "experiment=ioffe2015/fig1_mnist"
    assert sorted(points) == sorted(
        [[preset, f"norm={n}", f"seed={s}"] for n in ("none", "batch") for s in (5, 6)]
    )


def test_a_command_line_value_replaces_the_presets_list() -> None:
    # Hydra runs 3 jobs for this command line (the preset sweeps norm and optim.lr too)
    overrides = ["experiment=santurkar2018/dln_fig3b_ics", "norm=none", "optim.lr=1e-6"]
    points = sweep_points([*overrides, "seed=0,1,2"])
    assert sorted(points) == [[*overrides, f"seed={s}"] for s in (0, 1, 2)]


def test_a_command_line_value_replaces_the_presets_appended_group() -> None:
    # The suite sweeps `+santurkar2018/dln_point`; the same group on the command line picks points
    # of it (docs/findings.md: a suite split in two), one job each, as Hydra runs them.
    overrides = ["experiment=santurkar2018/dln_suite", "+santurkar2018/dln_point=batch_lr1e-7"]
    assert sweep_points([*overrides, "seed=2"]) == [[*overrides, "seed=2"]]
    two_points = "+santurkar2018/dln_point=l1_lr1e-6,l2_lr1e-6"
    assert len(sweep_points([*overrides[:1], two_points])) == 2 * 3


@pytest.mark.parametrize(
    "group,bad", [("norm", "layerz"), ("model", "resnet"), ("data", "imagenet")]
)
def test_unknown_group_option_lists_valid_choices(group: str, bad: str) -> None:
    from hydra.errors import MissingConfigException

    with pytest.raises(MissingConfigException) as err:
        compose_config([f"{group}={bad}"])
    message = str(err.value)
    assert f"Could not find '{group}/{bad}'" in message
    expected = {"norm": ["batch", "none"], "model": ["mlp"], "data": ["mnist", "synthetic"]}[group]
    assert all(choice in message for choice in expected), message


@pytest.mark.parametrize("launcher", ["local", "slurm"])
def test_submitit_launchers_compose(launcher: str) -> None:
    from normlab.config import _compose_with_hydra

    cfg = _compose_with_hydra(["experiment=ioffe2015/fig1_mnist", f"hydra/launcher={launcher}"])
    target = cfg.hydra.launcher._target_
    assert target.startswith("hydra_plugins.hydra_submitit_launcher")
    assert ("Local" in target) == (launcher == "local")
    assert cfg.hydra.launcher.timeout_min > 0


@pytest.mark.parametrize("preset", VGG_PRESETS)
def test_every_vgg_preset_runs_a_couple_of_steps(preset: str, tmp_path: Path) -> None:
    from vggruns import TINY

    from normlab.train import run

    first = sweep_points([f"experiment={preset}", *TINY, "trainer.max_steps=2"])[0]
    result = run(compose_config(first), tmp_path / "run", first)
    assert result.status == "finished" and result.summary["step"] == 2
