"""Distribution and per-unit moments of the nonlinearity's input (after the norm) on a fixed batch.

What is measured, on a fixed batch of held-out examples, for each chosen hidden layer i, where the
probed activation is the output of `layer{i}.norm` (the input of the nonlinearity), of shape (N, C)
for a fully connected layer or (N, C, H, W) for a convolution. A *unit* is a column j of an (N, C)
activation or a channel j of an (N, C, H, W) one; its *samples* are its values over the batch and,
for a channel, over all H*W spatial positions (m = N or N*H*W samples per unit).

- `act/layer{i}/p15|p50|p85|mean|var`: percentiles, mean and variance of all values of the layer
  (every unit's samples pooled; the variance is the unbiased one, `Tensor.var`), and a histogram of
  them (W&B `act/layer{i}/hist` and the counts in `act_hist.csv`). Ioffe 2015 Fig. 1; Santurkar
  2018 Fig. 1(c), 2, 6 and 9 (the DLN's distributions).
- `act/layer{i}/unit{j}/p15|p50|p85`: percentiles of one unit's samples (Ioffe 2015 Fig. 1(b,c):
  one sigmoid input of the last hidden layer).
- Per-unit moments and how they move (Santurkar 2018 Fig. 8, "change of per-unit mean and variance
  between steps, and from step 0"). At each probe call t, for each unit j of layer i,
      mu_j(t)  = (1/m) sum_s a_js,    var_j(t) = (1/m) sum_s (a_js - mu_j(t))^2
  (the *biased* variance, as BN's batch variance in Ioffe 2015 Alg. 1), and with C units
      act/layer{i}/mean_change = (1/C) sum_j |mu_j(t)  - mu_j(t_prev)|
      act/layer{i}/var_change  = (1/C) sum_j |var_j(t) - var_j(t_prev)|
      act/layer{i}/mean_drift  = (1/C) sum_j |mu_j(t)  - mu_j(t_0)|
      act/layer{i}/var_drift   = (1/C) sum_j |var_j(t) - var_j(t_0)|
  where t_prev is the previous probe call (the changes are absent at the first call) and t_0 the
  first probe call of the run, normally step 0 (the drifts are 0 there). The moments of t_prev and
  t_0 are the callback's state (`state_dict`), which Lightning saves in checkpoints: a resumed run
  measures its drift from the original run's first call, and its first change from the last call
  before the checkpoint.

All of it is measured every `every_n_steps` steps (steps 0, n, 2n, ...; the last step too when it
is a multiple of n) at step = updates done so far, on the model evaluated through
`functional_call` (nothing of the model changes).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import WandbLogger
from torch import Tensor, nn
from torch.func import functional_call

from normlab.errors import NormlabError
from normlab.module import log_to_loggers
from normlab.norms import frozen_noise
from normlab.probes.functional import cloned_buffers, detached_parameters
from normlab.runlog import append_rows
from normlab.schema import integer

log = logging.getLogger(__name__)

BN_MODES = ("train", "eval")

Histogram = tuple[Tensor, Tensor]  # (counts, bin edges)


def unit_moments(acts: Tensor) -> Tensor:
    """Per-unit mean and biased variance of `acts` (N, C) or (N, C, H, W), stacked as a (2, C)
    tensor: unit j's samples are acts[:, j] over the batch and every spatial position."""
    dims = [0, *range(2, acts.dim())]
    var, mean = torch.var_mean(acts, dim=dims, correction=0)
    return torch.stack([mean, var])


def layer_width(layer: nn.Module) -> int | None:
    """The number of units (channels) of a hidden layer's probed activation: its norm's
    `num_features`, or where the norm has none (`norm=none` is an Identity) the `out_features` /
    `out_channels` of the layer's weight layer; None if neither is found."""
    width = getattr(layer.norm, "num_features", None)
    if width is None:
        sizes = (
            getattr(module, "out_features", None) or getattr(module, "out_channels", None)
            for module in layer.modules()
        )
        width = next((size for size in sizes if size), None)
    return width


class ActivationProbe(L.Callback):
    """Every `every_n_steps` steps (0, n, 2n, ... up to the last step), on a fixed batch of
    `batch_size` test examples, record for each layer in `layers` the percentiles, mean and
    variance of its activations over all units, its per-unit moments' change since the previous
    call and drift since the first (see the module docstring for the definitions), and the
    percentiles of unit `unit["index"]` (a channel, for conv layers) of layer `unit["layer"]`.

    Measured at step t, the values describe the weights after t updates. `bn_mode="train"`
    (default) normalises with the probe batch's own statistics, as the net does in training, with
    the running statistics left untouched; `"eval"` uses the running statistics (Alg. 2).
    """

    HIST_FILE = "act_hist.csv"
    # The declarations of `normlab.probes.functional.StepProbe`.
    key = "probe.activations"
    # The second prefix: act_hist.csv's rows, as normlab.results reads them.
    metrics = ("act/", "act_hist/")
    files = (HIST_FILE,)
    uses_torch_func = False  # functional_call only (no transform): a compiled model runs it

    def __init__(
        self,
        layers: Sequence[int] = (1, 2, 3),
        unit: Mapping[str, int] | None = None,
        every_n_steps: int = 100,
        batch_size: int = 1000,
        batch_seed: int = 0,
        percentiles: Sequence[float] = (15, 50, 85),
        bn_mode: str = "train",
        hist_bins: int = 50,
    ) -> None:
        if bn_mode not in BN_MODES:
            raise NormlabError(f"probe.activations.bn_mode={bn_mode!r}; valid choices: {BN_MODES}")
        for key, value in (
            ("every_n_steps", every_n_steps),
            ("batch_size", batch_size),
            ("hist_bins", hist_bins),
        ):
            integer(f"probe.activations.{key}", value, minimum=1)
        bad = [p for p in percentiles if not 0 <= p <= 100]
        if bad:
            raise NormlabError(f"probe.activations.percentiles must lie in [0, 100], got {bad}")
        if unit and set(unit) != {"layer", "index"}:
            raise NormlabError(
                f"probe.activations.unit must have the keys layer and index, got {sorted(unit)}"
            )
        self.layers = list(layers)
        self.unit = dict(unit) if unit else None
        self.every_n_steps = every_n_steps
        self.batch_size = batch_size
        self.batch_seed = batch_seed
        self.quantiles = torch.tensor([p / 100 for p in percentiles])
        self.percentile_names = [f"p{p:g}" for p in percentiles]
        self.bn_mode = bn_mode
        self.hist_bins = hist_bins
        self._x: Tensor | None = None
        self._last_step: int | None = None
        # Per layer, the (2, C) per-unit (mean, var) of the first and of the latest probe call, on
        # the CPU: the references of the drifts and changes (Santurkar 2018 Fig. 8).
        self._first_moments: dict[int, Tensor] = {}
        self._last_moments: dict[int, Tensor] = {}

    def state_dict(self) -> dict[str, Any]:
        """The reference moments and the last probed step, saved in checkpoints by Lightning."""
        return {
            "last_step": self._last_step,
            "first_moments": dict(self._first_moments),
            "last_moments": dict(self._last_moments),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._last_step = state_dict.get("last_step")
        self._first_moments = dict(state_dict.get("first_moments", {}))
        self._last_moments = dict(state_dict.get("last_moments", {}))

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.bn_mode == "train" and any(
            isinstance(m, torch.nn.SyncBatchNorm) for m in pl_module.modules()
        ):
            # SyncBatchNorm in train mode all-reduces its statistics, but the probe runs on rank 0
            # alone: the other ranks would never join and training would hang.
            raise NormlabError(
                "probe.activations.bn_mode=train cannot run with trainer.sync_batchnorm=true; "
                "use bn_mode=eval"
            )
        hidden = pl_module.model.hidden_layers
        valid = f"{min(hidden)}..{max(hidden)}" if hidden else "none"
        for layer in sorted(self._wanted_layers()):
            if layer not in hidden:
                raise NormlabError(
                    f"probe.activations: layer {layer} is not a hidden layer of the model; "
                    f"valid layers: {valid}"
                )
        if self.unit:
            self._check_unit_index(layer_width(hidden[self.unit["layer"]]))

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        x, _ = trainer.datamodule.probe_batch(self.batch_size, seed=self.batch_seed)
        # In the dtype training batches get (float64 under trainer.precision=64-true).
        self._x = trainer.precision_plugin.convert_input(x)

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if trainer.global_step % self.every_n_steps == 0:
            self._probe(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step % self.every_n_steps == 0:
            self._probe(trainer, pl_module)

    def _probe(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        step = trainer.global_step
        if step == self._last_step or not trainer.is_global_zero:
            return
        metrics, hists = self.measure(pl_module.model, step)
        log_to_loggers(trainer, metrics, step)
        rows: list[tuple[int, int, float, float, int]] = []
        for layer, (counts, edges) in hists.items():
            rows += [
                (step, layer, edges[b].item(), edges[b + 1].item(), int(counts[b]))
                for b in range(len(counts))
            ]
            self._log_wandb_histogram(trainer, f"act/layer{layer}/hist", counts, edges, step)
        append_rows(
            Path(trainer.default_root_dir) / self.HIST_FILE,
            ("step", "layer", "bin_lo", "bin_hi", "count"),
            rows,
        )

    def measure(self, model: nn.Module, step: int) -> tuple[dict[str, float], dict[int, Histogram]]:
        """Probe `model` (as it is after `step` updates) on the probe batch: the metrics, and each
        layer's histogram. Records this call's per-unit moments as the reference of the next
        call's changes (and, at the first call, of every drift)."""
        acts = self.activations(model)
        if self.unit:  # checked at setup too, where the layer's width is known from its modules
            self._check_unit_index(acts[self.unit["layer"]].shape[1])
        metrics: dict[str, float] = {}
        hists: dict[int, Histogram] = {}
        for layer in self.layers:
            a = acts[layer].float()
            flat = a.flatten()
            prefix = f"act/layer{layer}"
            metrics |= self._percentiles(flat, prefix)
            metrics[f"{prefix}/mean"] = flat.mean().item()
            metrics[f"{prefix}/var"] = flat.var().item()
            metrics |= self._moment_changes(layer, unit_moments(a).cpu())
            hists[layer] = self._histogram(flat)
        if self.unit:
            # A unit of a conv layer is a channel: all its values over the batch and positions.
            unit_acts = acts[self.unit["layer"]][:, self.unit["index"]].float().flatten()
            prefix = f"act/layer{self.unit['layer']}/unit{self.unit['index']}"
            metrics |= self._percentiles(unit_acts, prefix)
        self._last_step = step
        return metrics, hists

    def _moment_changes(self, layer: int, moments: Tensor) -> dict[str, float]:
        """Mean absolute change over units of the (2, C) per-unit (mean, var) `moments` since the
        previous call (`*_change`) and since the first (`*_drift`); see the module docstring."""
        first = self._first_moments.setdefault(layer, moments)
        last = self._last_moments.get(layer)
        self._last_moments[layer] = moments
        out: dict[str, float] = {}
        for kind, reference in (("change", last), ("drift", first)):
            if reference is None:
                continue
            mean_diff, var_diff = (moments - reference).abs().mean(dim=1).tolist()
            out[f"act/layer{layer}/mean_{kind}"] = mean_diff
            out[f"act/layer{layer}/var_{kind}"] = var_diff
        return out

    def _wanted_layers(self) -> set[int]:
        return set(self.layers) | ({self.unit["layer"]} if self.unit else set())

    def _check_unit_index(self, width: int | None) -> None:
        if width is not None and not 0 <= self.unit["index"] < width:
            raise NormlabError(
                f"probe.activations.unit.index={self.unit['index']} out of range for "
                f"layer {self.unit['layer']}; valid: 0..{width - 1}"
            )

    @torch.no_grad()
    def activations(self, model: nn.Module) -> dict[int, Tensor]:
        """The norm outputs of the probed layers on the probe batch, leaving `model` untouched."""
        captured: dict[int, Tensor] = {}
        hidden = model.hidden_layers
        handles = [
            hidden[i].norm.register_forward_hook(
                lambda module, args, out, i=i: captured.__setitem__(i, out.detach())
            )
            for i in sorted(self._wanted_layers())
        ]
        params = detached_parameters(model)
        # Cloned buffers: in train mode BN updates the buffers it is given (running statistics,
        # num_batches_tracked); the clones absorb that update and are thrown away.
        buffers = cloned_buffers(model)
        modes = {module: module.training for module in model.modules()}
        try:
            model.train(self.bn_mode == "train")
            # Noisy BN counts its training forwards to draw each step's noise: the probe's forward
            # reuses the coming step's noise and leaves the count alone.
            with frozen_noise(model):
                functional_call(model, (params, buffers), (self._x,))
        finally:
            for module, training in modes.items():
                module.training = training
            for handle in handles:
                handle.remove()
        return captured

    def _percentiles(self, values: Tensor, prefix: str) -> dict[str, float]:
        q = torch.quantile(values, self.quantiles.to(values.device)).tolist()
        return {f"{prefix}/{name}": v for name, v in zip(self.percentile_names, q, strict=True)}

    def _histogram(self, values: Tensor) -> Histogram:
        lo, hi = values.min().item(), values.max().item()
        if hi <= lo:
            hi = lo + 1e-6
        counts = torch.histc(values, bins=self.hist_bins, min=lo, max=hi).long().cpu()
        return counts, torch.linspace(lo, hi, self.hist_bins + 1)

    @staticmethod
    def _log_wandb_histogram(
        trainer: L.Trainer, key: str, counts: Tensor, edges: Tensor, step: int
    ) -> None:
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                import wandb

                hist = wandb.Histogram(np_histogram=(counts.numpy(), edges.numpy()))
                logger.experiment.log({key: hist, "trainer/global_step": step})
