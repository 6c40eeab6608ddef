"""The config checked at the door: every bad value ends in one line naming the key, the value and
what is valid, before anything is built.

Three kinds of checks, on the composed and resolved job config:
- the top-level keys are the ones normlab knows (`+sed=1` is refused: Hydra's hint for a typo
  would otherwise run with seed 0 and say nothing);
- the keys every config of a group shares (`data.batch_size`, `optim.lr`, `trainer.max_steps`, ...)
  have the type and range they need (`RULES`);
- a node with a `_target_` names only keys its target accepts (`+trainer.max_step=5`).

`normlab.train` runs them in the console entry point for every job of a sweep, before Hydra
creates a directory, and again at the start of `run()` (so in-process callers are checked too).
Group options that do not exist (`norm=foo`, `experiment=ioffe2015/fig2`) are checked against
the config tree by `check_overrides`, before Hydra composes anything.
"""

from __future__ import annotations

import difflib
import inspect
import math
import numbers
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from omegaconf import DictConfig, OmegaConf

from normlab.errors import NormlabError

# The top-level keys of conf/train.yaml and its groups. Presets and scales set values under them;
# a new top-level key belongs here (and in train.yaml, with its comment).
ROOT_KEYS = (
    "paths",
    "data",
    "model",
    "norm",
    "optim",
    "module",
    "probe",
    "trainer",
    "logger",
    "name",
    "seed",
    "flush_denormal",
    "threads",
    "resume",
    "compile",
    "scale",
    "scales",
    "resources",
)

# Config groups that belong to one paper and moved under it (old spelling -> new).
MOVED_GROUPS: dict[str, tuple[str, dict[str, str]]] = {  # old group: (new group, old -> new option)
    "dln_point": ("santurkar2018/dln_point", {}),
    "vgg_point": ("santurkar2018/vgg_point", {}),
    "protocol": (
        "santurkar2018/protocol",
        {"santurkar2018_dln": "dln", "santurkar2018_vgg": "vgg"},
    ),
}

# Keys Hydra's instantiate reads itself; they are not the target's parameters.
INSTANTIATE_KEYS = {"_target_", "_partial_", "_recursive_", "_convert_", "_args_"}


@dataclass(frozen=True)
class Rule:
    """`key` must satisfy `ok`; `valid` says what is accepted, for the error message. A rule
    whose key is absent from the config is skipped unless `required`."""

    key: str
    ok: Callable[[Any], bool]
    valid: str
    required: bool = False


def _is_number(value: Any) -> bool:
    return (is_integer(value) or isinstance(value, float)) and math.isfinite(value)


def int_at_least(low: int) -> Callable[[Any], bool]:
    return lambda v: is_integer(v) and v >= low


def is_positive_number(v: Any) -> bool:
    return _is_number(v) and v > 0


def is_non_negative_number(v: Any) -> bool:
    return _is_number(v) and v >= 0


def is_bool(v: Any) -> bool:
    return isinstance(v, bool)


def is_str(v: Any) -> bool:
    return isinstance(v, str) and bool(v)


def optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or check(v)


def _precisions() -> tuple[str, ...]:
    from typing import get_args

    from lightning.fabric.connector import _PRECISION_INPUT_STR

    return get_args(_PRECISION_INPUT_STR)


RULES: tuple[Rule, ...] = (
    Rule("seed", int_at_least(0), "an integer >= 0", required=True),
    Rule("name", is_str, "a non-empty string (the preset's id)", required=True),
    Rule("flush_denormal", is_bool, "true or false"),
    Rule("threads", optional(int_at_least(1)), "null (torch's default) or an integer >= 1"),
    Rule("resources.gpus_per_node", int_at_least(0), "an integer >= 0", required=True),
    Rule("resources.cpus_per_task", int_at_least(1), "an integer >= 1", required=True),
    Rule("resources.mem_gb", int_at_least(1), "an integer >= 1", required=True),
    Rule("resources.timeout_min", int_at_least(1), "an integer >= 1 (minutes)", required=True),
    Rule("resume", optional(is_str), "null or the path of a checkpoint"),
    Rule("compile.enabled", is_bool, "true or false"),
    Rule("data.batch_size", int_at_least(1), "an integer >= 1", required=True),
    Rule("data.eval_batch_size", int_at_least(1), "an integer >= 1"),
    Rule("optim.lr", is_positive_number, "a number > 0", required=True),
    Rule("optim.momentum", is_non_negative_number, "a number >= 0"),
    Rule("optim.weight_decay", is_non_negative_number, "a number >= 0"),
    Rule("trainer.max_steps", int_at_least(1), "an integer >= 1 (the run's length)", required=True),
    Rule(
        "trainer.val_check_interval",
        int_at_least(1),
        "an integer >= 1 (training steps between evaluations of the test set)",
        required=True,
    ),
    Rule("trainer.log_every_n_steps", int_at_least(1), "an integer >= 1"),
    Rule(
        "trainer.max_epochs",
        lambda v: v == -1 or int_at_least(1)(v),
        "-1 (no limit: runs end at max_steps) or an integer >= 1",
    ),
    Rule(
        "trainer.devices",
        lambda v: (
            v in ("auto", -1)
            or int_at_least(1)(v)
            or (isinstance(v, list) and bool(v) and all(int_at_least(0)(i) for i in v))
        ),
        "'auto', -1 (every device), an integer >= 1 or a list of device indices",
    ),
    Rule("trainer.precision", lambda v: str(v) in _precisions(), f"one of {list(_precisions())}"),
    Rule(
        "trainer.enable_progress_bar",
        lambda v: v == "auto" or is_bool(v),
        "'auto' (a bar on a terminal, a line per evaluation elsewhere), true or false",
    ),
    Rule("module.log_every_n_steps", int_at_least(1), "an integer >= 1"),
    Rule("module.finite_check_every_n_steps", int_at_least(1), "an integer >= 1"),
)


def validate_config(cfg: DictConfig, overrides: Sequence[str] = ()) -> None:
    """NormlabError naming the first bad key of the resolved job config `cfg` (see module doc).
    `overrides` (the job's command-line overrides) only help the message say where a key came
    from."""
    check_scale(cfg)  # before resolving: a protocol's values interpolate its scale
    container = OmegaConf.to_container(cfg, resolve=True)
    _check_root_keys(container, overrides)
    for rule in RULES:
        found, value = _lookup(container, rule.key)
        if not found:
            if rule.required:
                raise NormlabError(f"{rule.key} is missing; it must be {rule.valid}")
            continue
        if not rule.ok(value):
            raise NormlabError(f"{rule.key}={_show(value)}: must be {rule.valid}")
    for key, node in _target_nodes(container):
        _check_target_keys(key, node)


def check_scale(cfg: DictConfig) -> None:
    """`scale` must be one of the scales the config's protocol declares (`scales`, train.yaml)."""
    scale, scales = cfg.get("scale"), cfg.get("scales")
    if scales is None:
        return  # a config without scales (a test's hand-made one) has nothing to choose
    if scale not in scales:
        model = str(OmegaConf.select(cfg, "model._target_", default="?")).rpartition(".")[2]
        names = ", ".join(str(k) for k in scales)
        raise NormlabError(
            f"scale={scale} is not a scale of {cfg.get('name', 'this config')} (model {model}); "
            f"its scales: {names}"
        )


def _check_root_keys(container: dict[str, Any], overrides: Sequence[str]) -> None:
    for key in container:
        if key in ROOT_KEYS:
            continue
        added = [o for o in overrides if o.lstrip("+~").split("=")[0].split(".")[0] == key]
        origin = f" (from {added[0]})" if added else ""
        raise NormlabError(
            f"unknown top-level key {key!r}{origin}{_did_you_mean(key, ROOT_KEYS)}; "
            f"normlab's top-level keys: {', '.join(sorted(ROOT_KEYS))}"
        )


def _check_target_keys(path: str, node: dict[str, Any]) -> None:
    """The keys of a `_target_` node that its callable does not take (a typo, or a `+key`)."""
    from hydra.utils import get_object

    try:
        target = get_object(node["_target_"])
    except Exception as err:
        raise NormlabError(
            f"{path}._target_={node['_target_']!r} cannot be imported: {err}"
        ) from err
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):  # a builtin without a signature: nothing to check against
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = [n for n, p in params.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL]
    for key in node:
        if key not in INSTANTIATE_KEYS and key not in accepted:
            raise NormlabError(
                f"{path}.{key} is not a setting of {node['_target_']}"
                f"{_did_you_mean(key, accepted)}; its settings: {', '.join(accepted)}"
            )


def _target_nodes(container: Any, prefix: str = "") -> Iterable[tuple[str, dict[str, Any]]]:
    if isinstance(container, dict):
        if "_target_" in container and prefix:
            yield prefix, container
        for key, value in container.items():
            yield from _target_nodes(value, f"{prefix}.{key}" if prefix else str(key))


def _lookup(container: dict[str, Any], key: str) -> tuple[bool, Any]:
    node: Any = container
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _did_you_mean(key: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


# --- values checked where they are used (probes, models): the same one-line form --------------


def require(key: str, value: Any, valid: str, ok: bool) -> None:
    """NormlabError naming the key, the value and what is valid, unless `ok`, in normlab.schema's
    form `<key>=<value>: must be <what is valid>`."""
    if not ok:
        shown = repr(value) if isinstance(value, str) else str(value)
        raise NormlabError(f"{key}={shown}: must be {valid}")


def is_integer(value: Any) -> bool:
    """An int (or numpy integer), not a bool and not a float with an integral value."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def integer(key: str, value: Any, minimum: int | None = None, valid: str | None = None) -> int:
    """`value` as an int, or NormlabError when it is not an integer (>= `minimum`)."""
    if valid is None:
        valid = "an integer" if minimum is None else f"an integer >= {minimum}"
    require(key, value, valid, is_integer(value) and (minimum is None or value >= minimum))
    return int(value)


def positive_number(key: str, value: Any) -> float:
    """`value` as a float, or NormlabError unless it is a finite real number > 0."""
    ok = (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )
    require(key, value, "a finite number > 0", ok)
    return float(value)


def integer_list(key: str, value: Any) -> list[int]:
    """`value` as a list of distinct ints (order kept), or NormlabError unless it is a list of
    integers."""
    ok = (
        isinstance(value, Sequence)
        and not isinstance(value, str)
        and all(is_integer(i) for i in value)
    )
    require(key, value, "a list of integers (layer numbers), e.g. [9, 17]", ok)
    return list(dict.fromkeys(int(i) for i in value))


# --- group options, before Hydra composes -------------------------------------------------------


def check_overrides(conf_dir: Path, overrides: Sequence[str]) -> None:
    """NormlabError for a command-line override of a top-level key normlab does not know (`sed=1`,
    `+sed=1`) or a group option with no config file (`norm=foo`, `experiment=ioffe2015/fig2`),
    listing the valid ones (for `experiment`, the paper's presets). Hydra's own groups
    (`hydra/...`) are left to Hydra."""
    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except Exception as err:  # Hydra's grammar error: say it in one line
        raise NormlabError(f"cannot parse the overrides: {_one_line(err)}") from err
    for override in parsed:
        group = override.key_or_group
        root = group.split(".")[0].split("/")[0]
        if root in MOVED_GROUPS:
            new_group, options = MOVED_GROUPS[root]
            value = override.input_line.split("=", 1)[1] if "=" in override.input_line else ""
            raise NormlabError(
                f"{override.input_line}: the group {root}/ moved under its paper; use "
                f"+{new_group}={options.get(value, value)}"
            )
        nested = "/" in group and root != "hydra"  # a group under a folder: a paper's
        if nested and (conf_dir / root).is_dir() and not (conf_dir / group).is_dir():
            groups = sorted(p.name for p in (conf_dir / root).iterdir() if p.is_dir())
            raise NormlabError(
                f"{override.input_line}: no group {group}/; the groups under {root}/: "
                f"{', '.join(f'{root}/{g}' for g in groups)}"
            )
        if root not in ROOT_KEYS and root != "hydra" and not (conf_dir / group).is_dir():
            raise NormlabError(
                f"{override.input_line}: unknown top-level key {root!r}"
                f"{_did_you_mean(root, ROOT_KEYS)}; normlab's top-level keys: "
                f"{', '.join(sorted(ROOT_KEYS))}"
            )
        if override.is_delete() or root == "hydra" or not (conf_dir / group).is_dir():
            continue
        for choice in _choices(override):
            if choice is None or choice == "null":
                continue
            if not (conf_dir / group / f"{choice}.yaml").is_file():
                raise NormlabError(_unknown_choice(conf_dir, group, str(choice)))


def _choices(override: Override) -> list[Any]:
    if override.is_sweep_override():
        return list(override.sweep_string_iterator())
    value = override.value()
    return value if isinstance(value, list) else [value]


def _unknown_choice(conf_dir: Path, group: str, choice: str) -> str:
    folder = conf_dir / group
    if group == "experiment":
        paper, _, _ = choice.rpartition("/")
        if paper and (folder / paper).is_dir():
            presets = sorted(p.stem for p in (folder / paper).glob("*.yaml"))
            return (
                f"experiment={choice}: no such preset; the {paper} presets are: "
                f"{', '.join(f'{paper}/{p}' for p in presets)}"
            )
        presets = sorted(str(p.relative_to(folder).with_suffix("")) for p in folder.rglob("*.yaml"))
        return f"experiment={choice}: no such preset; the presets are: {', '.join(presets)}"
    options = sorted(p.stem for p in folder.glob("*.yaml"))
    return f"{group}={choice}: no such option; valid choices: {', '.join(options)}"


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())
