"""Lightning callbacks that measure a run without changing it.

A probe never mutates what it measures: it evaluates the model through `torch.func` (functional
calls over parameter dicts) with detached parameters and *cloned* buffers (so BN's running
statistics stay untouched), draws no random numbers, and leaves the module's modes as they were.

- `ActivationProbe`: activation distributions and moments on a fixed held-out batch (Ioffe 2015
  Fig. 1; Santurkar 2018 Fig. 1, 2, 6, 8, 9);
- `ICSProbe`: internal covariate shift, Def. 2.1 (Santurkar 2018 Fig. 3);
- `LandscapeProbe`: loss and gradient along the step's gradient (Santurkar 2018 Fig. 4, 10-13).
"""

from normlab.probes.activations import ActivationProbe
from normlab.probes.ics import ICSProbe
from normlab.probes.landscape import LandscapeProbe

__all__ = ["ActivationProbe", "ICSProbe", "LandscapeProbe"]
