"""Benchmarks: normlab's training path against a plain PyTorch loop doing the same work.

    python scripts/bench.py mnist_mlp [--steps 3000] [--repeats 5] [--norm batch] [--data-root DIR]

`mnist_mlp`: the fig1 preset (Ioffe 2015 MNIST MLP, batch 60, test-set evaluation every 500 steps,
activation probe at the preset's cadence) through `Trainer.fit` with W&B off, against a plain loop
that trains, evaluates and probes identically on the same tensors. Repeats are interleaved
(normlab, plain, normlab, plain, ...) so that machine noise hits both alike. Times cover the
training loop (first to last step, evaluation and probes included), not start-up or data loading.
The last line is `ratio=<median normlab / plain>`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F

from normlab.config import compose_config
from normlab.data import MNISTDataModule, TensorBatchLoader
from normlab.models import MLP
from normlab.train import run

REPO = Path(__file__).resolve().parents[1]


class LoopTimer(L.Callback):
    """Wall time from the first training batch to the end of fit."""

    def on_train_start(self, trainer, pl_module) -> None:
        self.start = time.perf_counter()

    def on_train_end(self, trainer, pl_module) -> None:
        self.seconds = time.perf_counter() - self.start


def normlab_loop(overrides: list[str]) -> float:
    cfg = compose_config(overrides)
    timer = LoopTimer()
    with tempfile.TemporaryDirectory() as run_dir:
        result = run(cfg, run_dir, callbacks=[timer])
        assert result.status == "finished", result.summary.get("error")
    return timer.seconds


def plain_loop(cfg, dm: MNISTDataModule) -> float:
    """The same training, evaluation and probe work, written as a bare PyTorch loop."""
    torch.manual_seed(cfg.seed)
    model = MLP(**{k: v for k, v in cfg.model.items() if k != "_target_"}, norm=dict(cfg.norm))
    opt = torch.optim.SGD(model.parameters(), lr=cfg.optim.lr)
    loader = TensorBatchLoader(
        dm.train_x,
        dm.train_y,
        cfg.data.batch_size,
        shuffle=True,
        seed=cfg.seed,
        transform=dm.transform,
    )
    test_x = dm.transform(dm.test_x)
    probe_cfg = cfg.probe.activations
    probe_x, _ = dm.probe_batch(probe_cfg.batch_size, seed=probe_cfg.batch_seed)
    q = torch.tensor([p / 100 for p in probe_cfg.percentiles])
    steps, every_eval = cfg.trainer.max_steps, cfg.trainer.val_check_interval
    every_probe, every_log = probe_cfg.every_n_steps, cfg.trainer.log_every_n_steps
    log: list[tuple[int, str, float]] = []

    def probe(step: int) -> None:
        acts = {}
        hooks = [
            model.hidden_layers[i].norm.register_forward_hook(
                lambda m, a, out, i=i: acts.__setitem__(i, out)
            )
            for i in probe_cfg.layers
        ]
        params = {k: v.detach() for k, v in model.named_parameters()}
        buffers = {k: v.clone() for k, v in model.named_buffers()}
        with torch.no_grad():
            torch.func.functional_call(model, (params, buffers), (probe_x,))
        for h in hooks:
            h.remove()
        for i, a in acts.items():
            flat = a.flatten()
            log.extend((step, f"act/layer{i}/p", v) for v in torch.quantile(flat, q).tolist())
            log.append((step, "mean", flat.mean().item()))
            log.append((step, "var", flat.var().item()))
            torch.histc(
                flat, bins=probe_cfg.hist_bins, min=flat.min().item(), max=flat.max().item()
            )
        unit = acts[probe_cfg.unit.layer][:, probe_cfg.unit.index]
        log.extend((step, "unit", v) for v in torch.quantile(unit, q).tolist())

    start = time.perf_counter()
    step, epoch = 0, 0
    while step < steps:
        loader.sampler.set_epoch(epoch)
        for x, y in loader:
            if step % every_probe == 0:
                probe(step)
            loss = F.cross_entropy(model(x), y)
            if step % every_log == 0:
                log.append((step, "train/loss", loss.item()))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if step % every_eval == 0:
                model.eval()
                with torch.no_grad():
                    logits = model(test_x)
                    log.append(
                        (step, "test/acc", (logits.argmax(1) == dm.test_y).float().mean().item())
                    )
                    log.append((step, "test/loss", F.cross_entropy(logits, dm.test_y).item()))
                model.train()
            if step == steps:
                break
        epoch += 1
    if step % every_probe == 0:
        probe(step)
    return time.perf_counter() - start


def bench_mnist_mlp(args: argparse.Namespace) -> float:
    overrides = [
        "experiment=ioffe2015/fig1_mnist",
        f"norm={args.norm}",
        "logger=none",
        f"data.root={args.data_root}",
        f"trainer.max_steps={args.steps}",
        "trainer.enable_progress_bar=false",
        "trainer.enable_checkpointing=false",
    ]
    cfg = compose_config(overrides)
    torch.set_flush_denormal(bool(cfg.flush_denormal))
    dm = MNISTDataModule(root=args.data_root, download_dir=cfg.data.download_dir, download=False)
    dm.setup()
    print(
        f"mnist_mlp: {args.steps} steps, norm={args.norm}, {torch.get_num_threads()} threads, "
        f"eval every {cfg.trainer.val_check_interval}, probe every {cfg.probe.activations.every_n_steps}"
    )
    ratios = []
    for r in range(args.repeats):
        t_normlab = normlab_loop(overrides)
        t_plain = plain_loop(cfg, dm)
        ratios.append(t_normlab / t_plain)
        print(
            f"  repeat {r}: normlab {1e3 * t_normlab / args.steps:.3f} ms/step, "
            f"plain {1e3 * t_plain / args.steps:.3f} ms/step, ratio {ratios[-1]:.3f}"
        )
    return statistics.median(ratios)


BENCHMARKS = {"mnist_mlp": bench_mnist_mlp}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("benchmark", choices=sorted(BENCHMARKS))
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--norm", default="batch", choices=["none", "batch"])
    parser.add_argument("--data-root", default=str(REPO.parent / "shared" / "data"))
    args = parser.parse_args()
    ratio = BENCHMARKS[args.benchmark](args)
    print(f"ratio={ratio:.3f}")


if __name__ == "__main__":
    sys.exit(main())
