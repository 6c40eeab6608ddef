"""Lightning callbacks that measure a run without changing it.

A probe never mutates what it measures: it evaluates the model through `torch.func` (functional
calls over parameter dicts) with detached parameters and *cloned* buffers (so BN's running
statistics stay untouched), draws no random numbers, and leaves the module's modes as they were.

- `ActivationProbe`: activation distributions and moments on a fixed held-out batch (Ioffe 2015
  Fig. 1; Santurkar 2018 Fig. 1, 2, 6, 8, 9);
- `ICSProbe`: internal covariate shift, Def. 2.1 (Santurkar 2018 Fig. 3);
- `LandscapeProbe`: loss and gradient along the step's gradient (Santurkar 2018 Fig. 4, 10-13);
- `SharpnessProbe`, `HessianTraceProbe`, `BatchSharpnessProbe`: the Hessian's top eigenvalues
  (whole net and blocks of earlier layers), its trace, and the batch sharpness (the edge of
  stability, Cohen et al. 2021; Andreyev & Beneventano 2024);
- `WeightsProbe`: weight norms, cos(w, g) and the effective rate lr / ||w||^2 (Arora et al. 2019);
- `TheoryProbe`: Santurkar 2018's Thm 4.1 and 4.2 measured on the run's BN layers.
"""

from normlab.probes.activations import ActivationProbe
from normlab.probes.curvature import BatchSharpnessProbe, HessianTraceProbe, SharpnessProbe
from normlab.probes.ics import ICSProbe
from normlab.probes.landscape import LandscapeProbe
from normlab.probes.theory import TheoryProbe
from normlab.probes.weights import WeightsProbe

# Every probe normlab has (`conf/probe/<name>.yaml` instantiates one): what each logs, at which
# cadence and into which files is read from these classes' declarations (`StepProbe`).
PROBES = (
    ActivationProbe,
    ICSProbe,
    LandscapeProbe,
    SharpnessProbe,
    HessianTraceProbe,
    BatchSharpnessProbe,
    WeightsProbe,
    TheoryProbe,
)

__all__ = [
    "PROBES",
    "ActivationProbe",
    "BatchSharpnessProbe",
    "HessianTraceProbe",
    "ICSProbe",
    "LandscapeProbe",
    "SharpnessProbe",
    "TheoryProbe",
    "WeightsProbe",
]
