"""Lightning callbacks that measure a run without changing it.

A probe never mutates what it measures: it evaluates the model through `torch.func.functional_call`
with detached parameters and *cloned* buffers (so BN's running statistics stay untouched), under
`no_grad`, draws no random numbers, and restores the module's train/eval mode.
"""

from normlab.probes.activations import ActivationProbe

__all__ = ["ActivationProbe"]
