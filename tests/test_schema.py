"""Bad input stopped at the door: one line naming the key, the value and what is valid, before
anything is built, and no run directory left looking like a run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_cli

from normlab.config import compose_config
from normlab.errors import NormlabError
from normlab.schema import ROOT_KEYS, check_overrides, validate_config
from normlab.train import CONF_DIR, check_command_line, run

BASE = ["experiment=ioffe2015/fig1_mnist", "data=synthetic", "debug=smoke"]

BAD_VALUES = [
    ("data.batch_size=0", "data.batch_size=0: must be an integer >= 1"),
    ("data.batch_size=-5", "data.batch_size=-5: must be an integer >= 1"),
    ("optim.lr=-1", "optim.lr=-1: must be a number > 0"),
    ("optim.lr=abc", "optim.lr='abc': must be a number > 0"),
    ("optim.lr=0", "optim.lr=0: must be a number > 0"),
    ("trainer.val_check_interval=0", "trainer.val_check_interval=0: must be an integer >= 1"),
    ("seed=abc", "seed='abc': must be an integer >= 0"),
    ("trainer.max_steps=abc", "trainer.max_steps='abc': must be an integer >= 1"),
    ("trainer.max_steps=-1", "trainer.max_steps=-1: must be an integer >= 1"),
    ("trainer.max_steps=0", "trainer.max_steps=0: must be an integer >= 1"),
    ("trainer.precision=fp8", "trainer.precision='fp8': must be one of ["),
    ("trainer.enable_progress_bar=maybe", "trainer.enable_progress_bar='maybe': must be 'auto'"),
    ("threads=0", "threads=0: must be null (torch's default) or an integer >= 1"),
    ("trainer.devices=0", "trainer.devices=0: must be 'auto', -1 (every device), an integer >= 1"),
    ("flush_denormal=3", "flush_denormal=3: must be true or false"),
    ("+sed=1", "unknown top-level key 'sed' (from +sed=1) (did you mean 'seed'?)"),
    ("+data.foo=1", "data.foo is not a setting of normlab.data.SyntheticDataModule"),
    ("+trainer.max_step=3", "trainer.max_step is not a setting of lightning.Trainer (did you mean"),
]


@pytest.mark.parametrize("override,message", BAD_VALUES, ids=[o for o, _ in BAD_VALUES])
def test_a_bad_value_names_the_key_the_value_and_what_is_valid(override, message) -> None:
    overrides = [*BASE, override]
    with pytest.raises(NormlabError) as err:
        validate_config(compose_config(overrides), overrides)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_the_defaults_and_a_good_config_pass() -> None:
    validate_config(compose_config([]))
    validate_config(compose_config([*BASE, "optim.lr=1", "threads=1", "trainer.precision=64-true"]))
    validate_config(compose_config([*BASE, "trainer.devices=[0,1]"]))
    validate_config(compose_config([*BASE, "trainer.devices=-1"]))


def test_a_bad_value_stops_run_before_it_makes_a_directory(tmp_path) -> None:
    overrides = [*BASE, "data.batch_size=0"]
    with pytest.raises(NormlabError, match="data.batch_size=0"):
        run(compose_config(overrides), tmp_path / "run", overrides)
    assert not (tmp_path / "run").exists()


def test_a_directory_made_before_the_check_says_failed_and_why(tmp_path) -> None:
    # Hydra makes the job's directory (with .hydra/) before normlab's code runs.
    run_dir = tmp_path / "run"
    (run_dir / ".hydra").mkdir(parents=True)
    overrides = [*BASE, "optim.lr=-1"]
    with pytest.raises(NormlabError):
        run(compose_config(overrides), run_dir, overrides)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed"
    assert summary["error"] == "NormlabError: optim.lr=-1: must be a number > 0"
    assert summary["overrides"] == overrides


@pytest.mark.parametrize(
    "override,message",
    [
        ("sed=1", "sed=1: unknown top-level key 'sed' (did you mean 'seed'?)"),
        ("+sed=1", "+sed=1: unknown top-level key 'sed' (did you mean 'seed'?)"),
        ("norm=foo", "norm=foo: no such option; valid choices: batch, l1, l2, linf, lp,"),
        ("norm=batch,foo", "norm=foo: no such option"),
        (
            "experiment=ioffe2015/fig2",
            "experiment=ioffe2015/fig2: no such preset; the ioffe2015 presets are: "
            "ioffe2015/fig1_mnist, ioffe2015/fig1_mnist_tuning",
        ),
        ("experiment=fig1_mnist", "experiment=fig1_mnist: no such preset; the presets are: "),
        ("norm=[batch", "cannot parse the overrides"),
        (
            "+dln_point=batch_lr1e-6",
            "+dln_point=batch_lr1e-6: the group dln_point/ moved under its paper; use "
            "+santurkar2018/dln_point=batch_lr1e-6",
        ),
        (
            "+protocol=santurkar2018_vgg",
            "+protocol=santurkar2018_vgg: the group protocol/ moved under its paper; use "
            "+santurkar2018/protocol=vgg",
        ),
        (
            "+santurkar2018/dln_pont=batch_lr1e-6",
            "no group santurkar2018/dln_pont/; the groups under santurkar2018/: "
            "santurkar2018/dln_point, santurkar2018/protocol, santurkar2018/vgg_point",
        ),
    ],
)
def test_an_unknown_key_or_option_lists_what_exists(override, message) -> None:
    with pytest.raises(NormlabError) as err:
        check_overrides(CONF_DIR, ["experiment=ioffe2015/fig1_mnist", override])
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_known_keys_groups_and_hydra_overrides_pass() -> None:
    check_overrides(
        CONF_DIR,
        [
            "experiment=santurkar2018/vgg_suite",
            "+santurkar2018/vgg_point=batch_lr1e-1",
            "scale=cpu",
            "hydra/launcher=local",
            "hydra.sweep.dir=/tmp/x",
            "norm=none,batch",
            "debug=null",
            *(f"{key}=1" for key in ("seed", "threads")),
        ],
    )
    assert "seed" in ROOT_KEYS


def test_every_job_of_a_sweep_is_checked_before_any_runs() -> None:
    # the bad rate is one point of the sweep: the whole sweep stops before Hydra starts a job
    with pytest.raises(NormlabError, match="optim.lr=-1"):
        check_command_line(["-m", *BASE, "optim.lr=0.1,-1"])
    check_command_line(["-m", *BASE, "optim.lr=0.1,1.0"])


def test_cfg_under_multirun_says_what_to_do() -> None:
    with pytest.raises(NormlabError, match="drop -m"):
        check_command_line(["-m", *BASE, "--cfg", "hydra"])
    check_command_line([*BASE, "--cfg", "job"])  # without -m Hydra prints it
    check_command_line(["--help"])


def test_the_cli_prints_one_line_and_makes_no_run_directory(tmp_path: Path) -> None:
    proc = run_cli([*BASE, "data.batch_size=0"], cwd=tmp_path, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "normlab: error: data.batch_size=0: must be an integer >= 1"
    ]
    assert not (tmp_path / "runs").exists()
