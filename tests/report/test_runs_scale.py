"""The scale a figure's runs were made at, for the report's command: recorded in their config, or
inferred from the protocol's declared scales for runs from before it was recorded."""

from __future__ import annotations

import pandas as pd
import pytest

from normlab.report.document import runs_scale, training_command

VGG = "santurkar2018/vgg_suite"


def _runs(**columns) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    return pd.DataFrame({"run_dir": [f"r{i}" for i in range(n)], **columns})


@pytest.mark.parametrize(
    ("experiment", "runs", "scale"),
    [
        # recorded
        (
            VGG,
            _runs(scale=["cpu", "cpu"], **{"model.width": [0.125] * 2, "max_steps": [4000] * 2}),
            "cpu",
        ),
        (
            VGG,
            _runs(
                scale=["cpu", "paper"], **{"model.width": [0.125, 1.0], "max_steps": [4000, 15000]}
            ),
            None,
        ),
        # not recorded: the declared scale with the runs' width and length
        (VGG, _runs(**{"model.width": [0.125] * 3, "max_steps": [4000] * 3}), "cpu"),
        (VGG, _runs(**{"model.width": [1.0], "max_steps": [15000]}), "paper"),
        ("santurkar2018/dln_suite", _runs(**{"model.width": [10], "max_steps": [10000]}), "paper"),
        # a test's tiny runs, and a mix: no declared scale
        (VGG, _runs(**{"model.width": [0.0625], "max_steps": [12]}), None),
        (VGG, _runs(**{"model.width": [0.125, 1.0], "max_steps": [4000, 15000]}), None),
    ],
)
def test_the_runs_scale_is_recorded_or_matched_to_a_declared_one(experiment, runs, scale) -> None:
    assert runs_scale(experiment, runs) == scale


def test_the_command_names_the_scale() -> None:
    cpu = _runs(**{"model.width": [0.125], "max_steps": [4000]})
    assert training_command(VGG, cpu) == f"python -m normlab.train -m experiment={VGG} scale=cpu"
    paper = _runs(**{"model.width": [1.0], "max_steps": [15000]})
    assert training_command(VGG, paper) == f"python -m normlab.train -m experiment={VGG}"
