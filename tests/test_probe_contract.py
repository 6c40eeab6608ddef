"""The contract every registered probe (`normlab.probes.PROBES`) keeps, tested for all of them at
once: a new probe is tested by registering it (and its `conf/probe/<name>.yaml`).

- its declarations hold: a config of its own whose `_target_` is the class, `key` naming it, the
  metrics it logs under the prefixes it declares, the files it declares written;
- training with every probe on, at every other step, follows the same trajectory as with none
  (bit for bit: losses, weights, BN's running statistics, the global RNG);
- on two DDP ranks it gives the numbers of one process on the global batch (float64).
"""

from __future__ import annotations

import fnmatch
import importlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from test_ddp import FLOAT64, _run_on_two_ranks

from normlab.config import compose_config
from normlab.probes import PROBES
from normlab.results import RUN_FILES
from normlab.train import run

CONF = Path(__file__).resolve().parents[1] / "conf" / "probe"
NAMES = [p.key.removeprefix("probe.") for p in PROBES]

# What each probe needs on the tiny 3-hidden-layer MLP (its defaults are set for the papers' nets).
ON_THE_MLP = {
    "activations": ["probe.activations.batch_size=100"],
    "ics": ["probe.ics.layers=[2,3]"],
    "landscape": ["probe.landscape.num_etas=4"],
    "sharpness": ["probe.sharpness.num_examples=120", "probe.sharpness.below_layers=[3]"],
    "hessian_trace": ["probe.hessian_trace.num_examples=120", "probe.hessian_trace.samples=2"],
    "batch_sharpness": [],
    "weights": [],
    "theory": ["probe.theory.curvature_units=4"],
}
# The probes whose numbers need BN's batch statistics over the global batch: under DDP each rank
# normalises its own shard, so no probe can match one process there (the DDP check runs without BN,
# where the theory probe has nothing to measure: it refuses a net without BN).
NEEDS_BN = {"theory"}


def test_every_probe_is_registered_with_a_config_and_its_declarations() -> None:
    configs = sorted(p.stem for p in CONF.glob("*.yaml") if p.stem != "none")
    assert sorted(NAMES) == configs
    assert set(ON_THE_MLP) == set(NAMES)
    for probe, name in zip(PROBES, NAMES, strict=True):
        node = yaml.safe_load((CONF / f"{name}.yaml").read_text())[name]
        module, cls = node["_target_"].rsplit(".", 1)
        assert getattr(importlib.import_module(module), cls) is probe
        assert probe.key == f"probe.{name}" and probe.metrics, name
    # The files a probe appends to are the ones normlab.results reads, under the probe's metrics.
    assert set(RUN_FILES) == {f for p in PROBES for f in p.files}
    for probe in PROBES:
        for file in probe.files:
            prefix = RUN_FILES[file][0]
            assert any(g.startswith(f"{prefix}/") for g in probe.metrics), (probe.key, prefix)


def _mlp(tmp_path: Path, *extra: str) -> list[str]:
    return [
        "experiment=ioffe2015/fig1_mnist",
        "debug=smoke",
        "data=synthetic",
        "model.hidden=[12,12,12]",
        "trainer.max_steps=6",
        "trainer.val_check_interval=6",
        "trainer.log_every_n_steps=1",
        f"paths.runs_dir={tmp_path / 'runs'}",
        *extra,
    ]


def _all_probes(names: list[str], every: int) -> list[str]:
    return [
        f"probe=[{','.join(names)}]",
        *(f"probe.{n}.every_n_steps={every}" for n in names),
        *(o for n in names for o in ON_THE_MLP[n]),
    ]


def _declared(metric: str) -> list[str]:
    """The probes whose declared metrics cover `metric`."""
    return [
        p.key
        for p in PROBES
        if any(metric.startswith(g) or fnmatch.fnmatchcase(metric, g) for g in p.metrics)
    ]


def test_every_probe_leaves_training_bit_identical_and_logs_what_it_declares(tmp_path) -> None:
    common = _mlp(tmp_path, "norm=batch")
    on = run(compose_config([*common, *_all_probes(NAMES, 2)]), tmp_path / "on", common)
    rng_on = torch.get_rng_state()
    off = run(compose_config([*common, "probe=none"]), tmp_path / "off", common)
    assert on.status == off.status == "finished"
    assert torch.equal(rng_on, torch.get_rng_state())  # no probe drew from the global RNG
    metrics = {d: pd.read_csv(tmp_path / d / "metrics.csv") for d in ("on", "off")}
    losses = [m.query("metric == 'train/loss'").value.tolist() for m in metrics.values()]
    assert len(losses[0]) == 6 and losses[0] == losses[1]  # bit for bit
    for key, value in on.module.state_dict().items():  # weights and running statistics
        assert torch.equal(value, off.module.state_dict()[key]), key
    # Every probe logged, each logged metric under exactly one probe's declaration, at its cadence.
    logged = set(metrics["on"].metric) - set(metrics["off"].metric)
    by_probe = {name: [m for m in logged if _declared(m) == [f"probe.{name}"]] for name in NAMES}
    assert all(by_probe.values()), {n: len(v) for n, v in by_probe.items()}
    assert not [m for m in logged if len(_declared(m)) != 1]
    for name, names in by_probe.items():  # steps 0, 2, 4 (the activation probe also after the last)
        steps = set(metrics["on"][metrics["on"].metric.isin(names)].step)
        assert {0, 2, 4} <= steps <= {0, 2, 4, 6}, (name, steps)
    for probe in PROBES:
        for file in probe.files:
            assert (tmp_path / "on" / file).stat().st_size > 0, file


@pytest.mark.ddp
def test_every_probe_gives_one_process_numbers_on_two_ranks(tmp_path) -> None:
    names = [n for n in NAMES if n not in NEEDS_BN]
    # norm=none: no batch statistics, so the ranks' shards make exactly the global batch's loss.
    common = _mlp(tmp_path, "norm=none", FLOAT64, "data.batch_size=60", *_all_probes(names, 3))
    one = run(compose_config(common), tmp_path / "one", common)
    two = _run_on_two_ranks(common, tmp_path / "two", max_steps=6)
    assert one.status == two.status == "finished"
    values = {}
    for d in ("one", "two"):
        m = pd.read_csv(tmp_path / d / "metrics.csv")
        m = m[[bool(_declared(x)) for x in m.metric]]
        values[d] = m.set_index(["step", "metric"]).value.sort_index()
    assert values["two"].index.equals(values["one"].index)
    assert {_declared(m)[0] for m in values["one"].index.get_level_values("metric")} == {
        f"probe.{n}" for n in names
    }
    # cosines near 1 are compared through 1 - cos, where a wrong reduction would show
    is_cos = values["one"].index.get_level_values("metric").str.endswith("/cos")
    for v in values.values():
        v[is_cos] = 1 - v[is_cos]
    # Lanczos' iteration count is an integer that a 1e-12 difference can move: compared apart.
    iters = values["one"].index.get_level_values("metric").str.contains("lanczos")
    np.testing.assert_allclose(values["two"][~iters], values["one"][~iters], rtol=1e-7, atol=1e-12)
