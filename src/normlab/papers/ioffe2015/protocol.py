"""Ioffe & Szegedy 2015's Fig. 1 protocol as its figure and claims read it, held against
conf/experiment/ioffe2015/fig1_mnist.yaml by `tests/papers/ioffe2015/test_protocol.py`."""

from __future__ import annotations

FIG1_STEPS = 50_000
LAST_HIDDEN = 3  # the MLP's hidden layers are weight layers 1..3; Fig. 1(b,c) probe the last
