"""`normlab.papers.ioffe2015.protocol` against conf/experiment/ioffe2015/fig1_mnist.yaml."""

from __future__ import annotations

from normlab.config import compose_config
from normlab.papers.ioffe2015 import protocol as P


def test_fig1_protocol() -> None:
    cfg = compose_config(["experiment=ioffe2015/fig1_mnist"])
    assert cfg.trainer.max_steps == P.FIG1_STEPS
    assert len(cfg.model.hidden) == P.LAST_HIDDEN  # the last hidden layer is weight layer 3
    assert P.LAST_HIDDEN in cfg.probe.activations.layers
    assert cfg.probe.activations.unit.layer == P.LAST_HIDDEN
