"""Distribution of the nonlinearity's input (after the norm) on a fixed held-out batch.

Ioffe 2015, Fig. 1(b,c): the 15th, 50th and 85th percentiles of one sigmoid input of the last
hidden layer over training. Also the same percentiles, mean and variance over all units of each
chosen layer, and a histogram of them (W&B and `act_hist.csv`).
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import WandbLogger
from torch import Tensor
from torch.func import functional_call

from normlab.errors import NormlabError
from normlab.module import log_to_loggers
from normlab.norms import frozen_noise

log = logging.getLogger(__name__)

BN_MODES = ("train", "eval")


class ActivationProbe(L.Callback):
    """Every `every_n_steps` steps (and after the last one), on a fixed batch of `batch_size` test
    examples, record for each layer in `layers` the percentiles, mean and variance of its
    activations over all units, and the percentiles of unit `unit["index"]` of layer
    `unit["layer"]`.

    Measured at step t, the values describe the weights after t updates. `bn_mode="train"`
    (default) normalises with the probe batch's own statistics, as the net does in training, with
    the running statistics left untouched; `"eval"` uses the running statistics (Alg. 2).
    """

    HIST_FILE = "act_hist.csv"

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
            if value < 1:
                raise NormlabError(f"probe.activations.{key} must be >= 1, got {value}")
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
        wanted = set(self.layers) | ({self.unit["layer"]} if self.unit else set())
        for layer in sorted(wanted):
            if layer not in hidden:
                raise NormlabError(
                    f"probe.activations: layer {layer} is not a hidden layer of the model; "
                    f"valid layers: {valid}"
                )
        if self.unit:
            width = hidden[self.unit["layer"]].linear.out_features
            if not 0 <= self.unit["index"] < width:
                raise NormlabError(
                    f"probe.activations.unit.index={self.unit['index']} out of range for "
                    f"layer {self.unit['layer']}; valid: 0..{width - 1}"
                )

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._x, _ = trainer.datamodule.probe_batch(self.batch_size, seed=self.batch_seed)

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
        self._last_step = step
        acts = self.activations(pl_module.model)
        metrics: dict[str, float] = {}
        rows: list[tuple[int, int, float, float, int]] = []
        for layer in self.layers:
            a = acts[layer].float()
            flat = a.flatten()
            metrics |= self._percentiles(flat, f"act/layer{layer}")
            metrics[f"act/layer{layer}/mean"] = flat.mean().item()
            metrics[f"act/layer{layer}/var"] = flat.var().item()
            counts, edges = self._histogram(flat)
            rows += [
                (step, layer, edges[b].item(), edges[b + 1].item(), int(counts[b]))
                for b in range(len(counts))
            ]
            self._log_wandb_histogram(trainer, f"act/layer{layer}/hist", counts, edges, step)
        if self.unit:
            unit_acts = acts[self.unit["layer"]][:, self.unit["index"]].float()
            prefix = f"act/layer{self.unit['layer']}/unit{self.unit['index']}"
            metrics |= self._percentiles(unit_acts, prefix)
        log_to_loggers(trainer, metrics, step)
        self._append_histograms(Path(trainer.default_root_dir), rows)

    @torch.no_grad()
    def activations(self, model: torch.nn.Module) -> dict[int, Tensor]:
        """The norm outputs of the probed layers on the probe batch, leaving `model` untouched."""
        wanted = set(self.layers) | ({self.unit["layer"]} if self.unit else set())
        captured: dict[int, Tensor] = {}
        hidden = model.hidden_layers
        handles = [
            hidden[i].norm.register_forward_hook(
                lambda module, args, out, i=i: captured.__setitem__(i, out.detach())
            )
            for i in sorted(wanted)
        ]
        params = {k: v.detach() for k, v in model.named_parameters()}
        # Cloned buffers: in train mode BN updates the buffers it is given (running statistics,
        # num_batches_tracked); the clones absorb that update and are thrown away.
        buffers = {k: v.clone() for k, v in model.named_buffers()}
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

    def _histogram(self, values: Tensor) -> tuple[Tensor, Tensor]:
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

    def _append_histograms(self, run_dir: Path, rows: list[tuple]) -> None:
        path = run_dir / self.HIST_FILE
        new = not path.exists()
        with path.open("a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(("step", "layer", "bin_lo", "bin_hi", "count"))
            writer.writerows(rows)
