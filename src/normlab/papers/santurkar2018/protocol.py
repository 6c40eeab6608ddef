"""Santurkar et al. 2018's protocols as the figures and claims read them: one definition of each
fact (rates, run lengths, probed layers), held against the presets' YAML by
`tests/papers/santurkar2018/test_protocol.py` (conf/santurkar2018/protocol/{dln,vgg}.yaml and
the experiment presets).
"""

from __future__ import annotations

# The norm variants a figure compares (`normlab.report.runs.VARIANT`).
STANDARD_BN = ("none", "batch")
NOISY = ("none", "batch", "noisy_batch")
LP_VARIANTS = ("l1", "l2", "linf")
ALL_NORMS = ("none", "batch", *LP_VARIANTS)  # no noisy BN in the l_p figures

# --- the deep linear network (App. A.1, A.2) ---------------------------------------------------------
DLN_SUITE = "santurkar2018/dln_suite"
DLN_LR = 1e-6  # "unless a figure says otherwise"
DLN_LR_SLOW = 1e-7  # Fig. 3(b)'s second rate
DLN_STEPS = 10_000
DLN_ICS_LAYERS = (9, 17)  # Fig. 3(b)
DLN_ACT_LAYERS = (1, 11, 24)  # Fig. 9

# --- VGG-16 on CIFAR-10 (App. A.1) ------------------------------------------------------------------
VGG_SUITE = "santurkar2018/vgg_suite"
VGG_LR = 0.1  # "constant lr 0.1 unless a figure says otherwise"
VGG_LR_FAST = 0.5  # Fig. 1
VGG_LR_SLOW = 0.01  # Fig. 3(a)
VGG_STEPS = 15_000  # the claims' windows are declared on this length and scale with the runs'
VGG_ICS_LAYERS = (5, 10)  # Fig. 3(a)
VGG_HIST_LAYER = 11  # Fig. 6
VGG_FIG1_LAYERS = (3, 11)  # Fig. 1(c): the activations' percentiles
VGG_NOISY_LAYERS = (2, 9, 13)  # Fig. 2 and Fig. 8
VGG_ETA_RANGE = (0.5, 4.0)  # App. A.2.2: the landscape walk's eta in [0.5, 4] x lr
VGG_UNIT = (11, 0)  # Fig. 1(c): "a randomly chosen activation", channel 0 of layer #11

# --- Sec. 4 on the Ioffe 2015 Fig. 1 MLP with BN (santurkar2018/theory_mlp) ---------------------------
THEORY_LR = 1.0  # the preset's rate (Ioffe 2015 Fig. 1's, as ioffe2015/fig1_mnist chose it)
THEORY_LAYERS = (1, 2, 3)  # the MLP's three hidden layers, each with BN
THEORY_STEPS = 10_000
