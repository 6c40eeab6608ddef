"""Where normlab's config tree is, and composing it outside a Hydra app (tests, notebooks,
scripts).

`CONF_DIR` is the config tree, shipped inside the package (`normlab/conf/`, package data: a wheel
carries the YAML files; the repository's top-level `conf` is a link to it), so an installed
normlab composes from any directory. `compose_config` gives the same config as
`python -m normlab.train <overrides>` would, resolved; `sweep_points` expands a preset's sweep
(`hydra.sweeper.params`), which the compose API ignores.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf, open_dict

from normlab.schema import check_scale

CONF_DIR = Path(__file__).resolve().parent / "conf"


def _compose_with_hydra(overrides: Sequence[str]) -> DictConfig:
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        return compose("train", overrides=list(overrides), return_hydra_config=True)


def compose_config(overrides: Sequence[str] = ()) -> DictConfig:
    """The resolved job config for `overrides`, without the `hydra` node."""
    cfg = _compose_with_hydra(overrides)
    HydraConfig.instance().set_config(cfg)  # so that ${hydra:...} interpolations resolve
    with open_dict(cfg):
        del cfg.hydra
    check_scale(cfg)  # before resolving: the protocol's values interpolate its scale
    OmegaConf.resolve(cfg)
    return cfg


def sweep_points(overrides: Sequence[str] = ()) -> list[list[str]]:
    """The override lists of every job that `-m` would run for `overrides` (the preset's sweep,
    with a command-line value or sweep replacing the preset's list for the same key, as Hydra
    does: `dln_fig3b_ics norm=none optim.lr=1e-6 seed=0,1,2` is 3 jobs)."""
    parser = OverridesParser.create()
    given = parser.parse_overrides(list(overrides))
    # A key given on the command line, swept or not, replaces the preset's list for it.
    on_cli = {o.key_or_group for o in given}
    fixed = [o.input_line for o in given if not o.is_sweep_override()]
    cfg = _compose_with_hydra(fixed)
    params = dict(OmegaConf.select(cfg, "hydra.sweeper.params") or {})
    # Compared as Hydra does, by key or group: the preset's `+santurkar2018/dln_point` list and a
    # command-line `+santurkar2018/dln_point=...` (or without the `+`) name the same key.
    preset = parser.parse_overrides([f"{k}={v}" for k, v in params.items()])
    sweep = [o.input_line for o in preset if o.key_or_group not in on_cli]
    sweep += [o.input_line for o in given if o.is_sweep_override()]
    if not sweep:
        return [fixed]
    (batch,) = BasicSweeper.split_arguments(parser.parse_overrides(sweep), None)
    return [fixed + point for point in batch]
