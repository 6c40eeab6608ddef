"""The loss landscape along the step's own gradient (Santurkar 2018, Sec. 3.2, App. A.2.2; Fig. 4,
10, 11, 12, 13).

At step t, with weights w_t and the step's batch gradient g_t (the gradient the optimizer is about
to use, all-reduced over DDP ranks), walk w(eta) = w_t - eta * g_t over a grid of step sizes eta on
the same batch and log

- `landscape/loss_min`, `landscape/loss_max`: the loss band, min and max over eta of L(w(eta));
- `landscape/grad_diff_min`, `landscape/grad_diff_max`: gradient predictiveness, min and max over
  eta of ||grad L(w(eta)) - g_t||_2;
- `landscape/beta_eff`: effective beta-smoothness, max over eta of
  ||grad L(w(eta)) - g_t||_2 / ||eta g_t||_2;
- `landscape/grad_norm`: ||g_t||_2;

and every grid point to `landscape.csv` in the run directory (`step, eta, loss, grad_diff`: one
curve per probed step, Fig. 11). The grid is `num_etas` points from `eta_lo * lr` to
`eta_hi * lr` (the paper's ranges: VGG [0.5, 4] x lr, DLN [1/100, 30] x lr), log- or
linearly spaced. Non-finite values (a walk that blew up) are logged as they are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor

from normlab.errors import NormlabError
from normlab.module import log_to_loggers
from normlab.probes.functional import (
    METHODS,
    StepProbe,
    at_least_fp32,
    detached_parameters,
    gradients_along,
    reduce_over_ranks,
    step_context,
)
from normlab.runlog import append_rows
from normlab.schema import integer

SPACINGS = ("log", "linear")


def eta_grid(lo: float, hi: float, num: int, spacing: str) -> Tensor:
    """`num` step-size factors from `lo` to `hi` (float64, to be multiplied by the lr)."""
    if spacing == "log":
        return torch.logspace(torch.log10(torch.tensor(lo)), torch.log10(torch.tensor(hi)), num)
    return torch.linspace(lo, hi, num, dtype=torch.float64)


def landscape_metrics(
    losses: Tensor, grads: Tensor, g: Tensor, etas: Tensor
) -> tuple[dict[str, float], Tensor]:
    """The logged metrics and the per-eta gradient change, from the global losses [K] and
    gradients [K, P] along the walk, the step's gradient g [P] and the step sizes [K]."""
    grad_diff = torch.linalg.vector_norm(grads - g, dim=1)
    g_norm = torch.linalg.vector_norm(g)
    beta = grad_diff / (etas.to(grad_diff) * g_norm)
    metrics = {
        "landscape/loss_min": losses.min().item(),
        "landscape/loss_max": losses.max().item(),
        "landscape/grad_diff_min": grad_diff.min().item(),
        "landscape/grad_diff_max": grad_diff.max().item(),
        "landscape/beta_eff": beta.max().item(),
        "landscape/grad_norm": g_norm.item(),
    }
    return metrics, grad_diff


class LandscapeProbe(StepProbe):
    """Every `every_n_steps` steps, the walk along -g_t described in the module docstring.

    `method`: "vmap" evaluates the eta grid as one batched `torch.func.vmap` call (the default:
    faster, `scripts/bench.py dln_probes`), "loop" one eta after the other (same numbers)."""

    key = "probe.landscape"
    # torch.func transforms (grad, vmap) over the model: train.compile_model refuses compile.
    uses_torch_func = True
    CURVES_FILE = "landscape.csv"
    metrics = ("landscape/", "landscape_curve/")  # the second: landscape.csv's rows, as read
    files = (CURVES_FILE,)

    def __init__(
        self,
        eta_lo: float = 0.01,
        eta_hi: float = 30.0,
        num_etas: int = 10,
        spacing: str = "log",
        method: str = "vmap",
        every_n_steps: int = 100,
    ) -> None:
        super().__init__(every_n_steps)
        if spacing not in SPACINGS:
            raise NormlabError(f"{self.key}.spacing={spacing!r}; valid choices: {list(SPACINGS)}")
        if method not in METHODS:
            raise NormlabError(f"{self.key}.method={method!r}; valid choices: {list(METHODS)}")
        if not 0 < float(eta_lo) <= float(eta_hi):
            raise NormlabError(
                f"{self.key}: need 0 < eta_lo <= eta_hi, got eta_lo={eta_lo}, eta_hi={eta_hi}"
            )
        integer(f"{self.key}.num_etas", num_etas, minimum=1)
        self.factors = eta_grid(float(eta_lo), float(eta_hi), int(num_etas), spacing)
        self.method = method

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        cumulative = [
            name
            for name, m in pl_module.model.named_modules()
            if hasattr(m, "running_mean") and getattr(m, "momentum", 0.1) is None
        ]
        if self.method == "vmap" and cumulative:
            # A cumulative running average (momentum=None) turns the batch count into a Python
            # number in every forward, which a vmapped forward cannot do.
            raise NormlabError(
                f"{self.key}.method=vmap cannot run with norm.momentum=null (cumulative running "
                f"averages in {cumulative[0]}, ...); use {self.key}.method=loop"
            )

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any
    ) -> None:
        if self._batch is None:
            return
        model = pl_module.model
        params = detached_parameters(model)
        # The step's gradient: DDP has all-reduced it during backward (summed-loss scaling
        # included, see SupervisedModule), so it is the global batch's on every rank.
        g = {
            n: torch.zeros_like(p) if p.grad is None else p.grad.detach()
            for n, p in model.named_parameters()
        }
        if all(p.grad is None for p in model.parameters()):
            raise RuntimeError("landscape probe: no gradient at on_before_optimizer_step")
        lr = optimizer.param_groups[0]["lr"]
        first = next(iter(params.values()))
        etas = (self.factors * lr).to(device=first.device, dtype=first.dtype)
        x, y = self._batch
        with step_context(trainer, model):
            losses, grads = gradients_along(
                model, pl_module.loss, params, g, etas, x, y, self.method
            )
        stacked = torch.cat([losses.detach()[:, None], grads.detach()], dim=1)
        stacked = at_least_fp32(stacked)  # bf16 training: reduced and compared in fp32
        stacked = reduce_over_ranks(trainer, stacked, pl_module.loss_reduction)
        g_flat = torch.cat([t.flatten() for t in g.values()]).to(stacked.dtype)
        metrics, grad_diff = landscape_metrics(stacked[:, 0], stacked[:, 1:], g_flat, etas)
        log_to_loggers(trainer, metrics, self._step)
        if trainer.is_global_zero:
            rows = zip(etas.tolist(), stacked[:, 0].tolist(), grad_diff.tolist(), strict=True)
            append_rows(
                Path(trainer.default_root_dir) / self.CURVES_FILE,
                ("step", "eta", "loss", "grad_diff"),
                ((self._step, repr(e), repr(v), repr(d)) for e, v, d in rows),
            )
