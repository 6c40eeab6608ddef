"""Benchmarks: normlab's training path against a plain PyTorch loop doing the same work.

    python scripts/bench.py mnist_mlp [--steps 3000] [--repeats 5] [--norm batch] [--data-root DIR]

`mnist_mlp`: the fig1 preset (Ioffe 2015 MNIST MLP, batch 60, test-set evaluation every 500 steps,
activation probe at the preset's cadence) through `Trainer.fit` with W&B off, against a plain loop
that trains, evaluates and probes identically on the same tensors. Repeats are interleaved
(normlab, plain, normlab, plain, ...) so that machine noise hits both alike. Times cover the
training loop (first to last step, evaluation and probes included), not start-up or data loading.
The last line is `ratio=<median normlab / plain>`.

    python scripts/bench.py dln_probes [--steps 2000] [--repeats 3] [--norm batch]

`dln_probes`: the Santurkar 2018 DLN (25 layers, full batch of 1000, the dln presets' one thread)
with W&B off. Each probe alone at every step against no probe gives its cost per call, in
milliseconds and in plain training steps (a bare PyTorch forward/backward/SGD step of the same net,
timed in the same run); the landscape probe with its eta grid as one `torch.func.vmap` call and as a
Python loop over eta. The last line is `ratio=<median time per step with every probe at the
presets' cadence / without probes>`: the probes' overhead on a DLN figure run. The curvature
probes (sharpness by Lanczos, the Hessian trace, batch sharpness, weights) get the same rows, plus
Hessian-vector products per Lanczos call and the overhead each probe would add at a cadence
(`--cadences`, default 10 and 100 steps: the per-call cost over that many normlab steps).

    python scripts/bench.py vgg_probes [--steps 20] [--repeats 1] [--sharpness-examples 1024]

`vgg_probes`: the same per-probe rows on VGG-16 x1/8 with BN on CIFAR-10 (batch 128, the VGG
protocol's probe settings, 2 threads): each probe on its own run of `--steps` steps at a cadence
that calls it a few times (the calls are counted in metrics.csv), against the run without
probes, in ms per call and in plain PyTorch steps; the landscape walk's eta grid as a vmap and as
a loop (the default `method` should follow this measurement per model and device).

    python scripts/bench.py vgg [--steps 200] [--repeats 3] [--width 0.125] [--data-root DIR]

`vgg`: Santurkar 2018's VGG-16 with BN on CIFAR-10 (batch 128, no evaluation, no probes, W&B
off) through `Trainer.fit` against a bare PyTorch loop over the same tensors and model, interleaved;
last line `ratio=<median normlab / plain>` (the CPU target: <= 1.1). On a GPU it also prints a
speed table at paper scale (width 1, bf16, channels_last): a bare PyTorch loop with the GPU's
utilisation, the data path alone, normlab without probes, with each probe at every step, with the
suite's probes at their cadence, and compiled. `--gpu-table` prints it on the CPU too (a dry run:
add --paper-width 0.125 --paper-steps 20).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F

from normlab.config import compose_config
from normlab.data import CIFAR10DataModule, MNISTDataModule, TensorBatchLoader
from normlab.models import MLP
from normlab.train import run

REPO = Path(__file__).resolve().parents[1]


class LoopTimer(L.Callback):
    """Wall time from the first training batch to the end of fit."""

    def on_train_start(self, trainer, pl_module) -> None:
        self.start = time.perf_counter()

    def on_train_end(self, trainer, pl_module) -> None:
        self.seconds = time.perf_counter() - self.start


def timed_run(overrides: list[str], run_dir: str | Path) -> float:
    """Seconds of the training loop of one normlab run into `run_dir`."""
    cfg = compose_config(overrides)
    timer = LoopTimer()
    result = run(cfg, run_dir, callbacks=[timer])
    assert result.status == "finished", result.summary.get("error")
    return timer.seconds


def normlab_loop(overrides: list[str]) -> float:
    with tempfile.TemporaryDirectory() as run_dir:
        return timed_run(overrides, run_dir)


def logged(run_dir: str | Path, metric: str) -> list[float]:
    """The values of `metric` in a run's metrics.csv, one per probe call."""
    import pandas as pd

    metrics = pd.read_csv(Path(run_dir) / "metrics.csv")
    return metrics[metrics.metric == metric].value.tolist()


@dataclass(frozen=True)
class ProbeRow:
    """A probe measured alone: its overrides, and a key it logs once per call (to count calls)."""

    name: str
    overrides: tuple[str, ...]
    key: str


def curvature_rows(
    every: int, below: str, fixed_every: int | None = None, num_examples: int | None = None
) -> list[ProbeRow]:
    """The curvature probes, each alone: the step probes every `every` steps, the fixed-batch ones
    (sharpness, trace) every `fixed_every` (default `every`); `below`: the sharpness blocks'
    layers (the ICS layers); `num_examples`: the fixed batch's size (None: the probe's default)."""

    def row(name: str, probe: str, key: str, cadence: int, *settings: str) -> ProbeRow:
        return ProbeRow(
            name, (f"probe=[{probe}]", f"probe.{probe}.every_n_steps={cadence}", *settings), key
        )

    fixed_every = fixed_every or every
    examples = () if num_examples is None else (f"num_examples={num_examples}",)
    sharpness = tuple(f"probe.sharpness.{e}" for e in examples)
    trace = tuple(f"probe.hessian_trace.{e}" for e in examples)
    lanczos = "curv/lanczos_iters"
    return [
        row("sharpness (Lanczos, tol 1e-3)", "sharpness", lanczos, fixed_every, *sharpness),
        row(
            f"sharpness + blocks below {below}",
            "sharpness",
            lanczos,
            fixed_every,
            f"probe.sharpness.below_layers={below}",
            *sharpness,
        ),
        row("hessian trace (10 samples)", "hessian_trace", "curv/trace", fixed_every, *trace),
        row("batch sharpness (1 HVP)", "batch_sharpness", "curv/batch_sharpness", every),
        row("weights (every layer)", "weights", "weights/layer1/norm_sq", every),
    ]


def probe_cost_ms(
    base: list[str], row: ProbeRow, steps: int, seconds_off: float
) -> tuple[float, list[float]]:
    """ms per call of `row`'s probe over a run of `steps` steps (against `seconds_off`, the same
    run without probes), and the values of its counting key (one per call)."""
    with tempfile.TemporaryDirectory() as run_dir:
        seconds = timed_run([*base, *row.overrides, f"trainer.max_steps={steps}"], run_dir)
        values = logged(run_dir, row.key)
    return 1e3 * (seconds - seconds_off) / len(values), values


def print_lanczos_line(cost: float, iterations: list[float], plain: float) -> None:
    """Hessian-vector products per Lanczos call, and a product's cost within it (the graph is
    built once per call: this includes a share of that build)."""
    mean = statistics.mean(iterations)
    per_hvp = cost / mean
    print(
        f"  Lanczos: {mean:.1f} HVPs per call (min {min(iterations):.0f}, max {max(iterations):.0f}),"
        f" {per_hvp:.2f} ms per HVP = {per_hvp / plain:.1f} plain steps"
    )


def print_cost_row(name: str, cost: float, plain: float, step: float, cadences: list[int]) -> None:
    """ms per call, in plain PyTorch steps, and the overhead at each cadence (normlab steps)."""
    overhead = ", ".join(f"every {c}: +{100 * cost / (c * step):.1f}%" for c in cadences)
    print(f"  {name:30s} {cost:9.2f} ms per call = {cost / plain:7.1f} plain steps ({overhead})")


def plain_batches(cfg, dm, steps: int):
    """(step, x, y) for `steps` training steps, epoch after epoch, in the order the project's
    loader gives them (the same permutation per (seed, epoch), the same batch transform)."""
    loader = TensorBatchLoader(
        dm.train_x,
        dm.train_y,
        cfg.data.batch_size,
        shuffle=True,
        seed=cfg.seed,
        transform=dm.transform,
    )
    step, epoch = 0, 0
    while True:
        loader.sampler.set_epoch(epoch)
        for x, y in loader:
            yield step, x, y
            step += 1
            if step == steps:
                return
        epoch += 1


def plain_loop(cfg, dm: MNISTDataModule) -> float:
    """The same training, evaluation and probe work, written as a bare PyTorch loop."""
    torch.manual_seed(cfg.seed)
    model = MLP(**{k: v for k, v in cfg.model.items() if k != "_target_"}, norm=dict(cfg.norm))
    opt = torch.optim.SGD(model.parameters(), lr=cfg.optim.lr)
    test_x = dm.transform(dm.test_x)
    probe_cfg = cfg.probe.activations
    probe_x, _ = dm.probe_batch(probe_cfg.batch_size, seed=probe_cfg.batch_seed)
    q = torch.tensor([p / 100 for p in probe_cfg.percentiles])
    steps, every_eval = cfg.trainer.max_steps, cfg.trainer.val_check_interval
    every_probe, every_log = probe_cfg.every_n_steps, cfg.trainer.log_every_n_steps
    log: list[tuple[int, str, float]] = []
    first: dict[int, torch.Tensor] = {}
    last: dict[int, torch.Tensor] = {}

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
            var, mean = torch.var_mean(a, dim=0, correction=0)  # per-unit moments
            moments = torch.stack([mean, var])
            for ref in (first.setdefault(i, moments), last.get(i, moments)):
                log.extend((step, "moment", v) for v in (moments - ref).abs().mean(1).tolist())
            last[i] = moments
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
    for step, x, y in plain_batches(cfg, dm, steps):
        if step % every_probe == 0:
            probe(step)
        loss = F.cross_entropy(model(x), y)
        if step % every_log == 0:
            log.append((step, "train/loss", loss.item()))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % every_eval == 0:
            model.eval()
            with torch.no_grad():
                logits = model(test_x)
                acc = (logits.argmax(1) == dm.test_y).float().mean().item()
                log.append((step + 1, "test/acc", acc))
                log.append((step + 1, "test/loss", F.cross_entropy(logits, dm.test_y).item()))
            model.train()
    if steps % every_probe == 0:
        probe(steps)
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


def plain_dln_step_ms(cfg, dm, steps: int = 300) -> float:
    """One bare PyTorch training step of the DLN on the full batch (median of `steps`)."""
    from normlab.models import DLN

    torch.manual_seed(cfg.seed)
    model = DLN(cfg.model.depth, cfg.model.width, norm=dict(cfg.norm))
    opt = torch.optim.SGD(model.parameters(), lr=cfg.optim.lr)
    x, y = dm.train_x, dm.train_y
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        loss = (model(x) - y).pow(2).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def bench_dln_probes(args: argparse.Namespace) -> float:
    from normlab.data import GaussianLinearDataModule

    base = [
        "experiment=santurkar2018/dln_suite",
        "+santurkar2018/dln_point=batch_lr1e-6"
        if args.norm == "batch"
        else "+santurkar2018/dln_point=none_lr1e-6",
        "logger=none",
        "trainer.enable_progress_bar=false",
        "trainer.val_check_interval=1000000",  # no evaluation: time the training steps
    ]
    cfg = compose_config(base)
    torch.set_num_threads(int(cfg.threads))
    dm = GaussianLinearDataModule(**{k: v for k, v in cfg.data.items() if k != "_target_"})
    dm.setup()
    every = [f"probe.{p}.every_n_steps=1" for p in ("ics", "landscape", "activations")]
    per_call = {  # name -> overrides; each probe alone, at every step
        "ics (layers 9, 17)": ["probe=[ics]", *every],
        "landscape, vmap over eta": ["probe=[landscape]", *every],
        "landscape, loop over eta": ["probe=[landscape]", "probe.landscape.method=loop", *every],
        "activations (1000 points)": ["probe=[activations]", *every],
    }
    short = max(args.steps // 10, 50)

    def ms_per_step(overrides: list[str], steps: int) -> float:
        return 1e3 * normlab_loop([*base, *overrides, f"trainer.max_steps={steps}"]) / steps

    print(
        f"dln_probes: norm={args.norm}, {torch.get_num_threads()} thread(s), per-call costs over "
        f"{short} steps, overhead over {args.steps} steps at the presets' cadence "
        f"(every {cfg.probe.ics.every_n_steps} steps), {args.repeats} interleaved repeats"
    )
    plain = plain_dln_step_ms(cfg, dm)
    curvature = curvature_rows(every=1, below="[9,17]")
    costs: dict[str, list[float]] = {name: [] for name in [*per_call, *(r.name for r in curvature)]}
    ratios, normlab_steps, hvps = [], [], []
    for r in range(args.repeats):
        off = ms_per_step(["probe=none"], short)
        normlab_steps.append(off)
        for name, overrides in per_call.items():
            costs[name].append(ms_per_step(overrides, short) - off)
        for row in curvature:
            cost, values = probe_cost_ms(base, row, short, off * short / 1e3)
            costs[row.name].append(cost)
            hvps += values if row is curvature[0] else []
        without = ms_per_step(["probe=none"], args.steps)
        with_probes = ms_per_step([], args.steps)  # the suite's probes at their cadence
        ratios.append(with_probes / without)
        print(f"  repeat {r}: every probe at cadence {with_probes:.3f} ms/step, none {without:.3f}")
    step = statistics.median(normlab_steps)
    print(f"  plain PyTorch step {plain:.3f} ms; normlab step {step:.3f} ms (x{step / plain:.2f})")
    for name, values in costs.items():
        print_cost_row(name, statistics.median(values), plain, step, args.cadences)
    vmap = statistics.median(costs["landscape, vmap over eta"])
    loop = statistics.median(costs["landscape, loop over eta"])
    print(f"  eta grid: loop / vmap = {loop / vmap:.2f}")
    print_lanczos_line(statistics.median(costs[curvature[0].name]), hvps, plain)
    return statistics.median(ratios)


def plain_vgg_loop(cfg, dm, steps: int, device: torch.device) -> float:
    """The same training (model, data order, batch transform, SGD) as a bare PyTorch loop."""
    from normlab.models import VGG

    torch.manual_seed(cfg.seed)
    model = VGG(
        depth=cfg.model.depth,
        width=cfg.model.width,
        norm=dict(cfg.norm),
        channels_last=cfg.model.channels_last,
    ).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.optim.lr)
    start = time.perf_counter()
    for _, x, y in plain_batches(cfg, dm, steps):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def data_path_ms(cfg, dm, steps: int, device: torch.device) -> float:
    """ms per step of the data path alone: index slices of the on-device set, normalised."""
    start = time.perf_counter()
    for _, x, _ in plain_batches(cfg, dm, steps):
        x.sum()  # touch the batch, as a forward would
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 1e3 * (time.perf_counter() - start) / steps


def with_utilisation(work) -> tuple[float, str]:
    """`work()`'s return value (seconds), and the GPU utilisation sampled every 0.1 s while it ran
    (nvidia-smi's counter, via torch.cuda.utilization; "n/a" without a GPU or pynvml)."""
    import threading

    if not torch.cuda.is_available():
        return work(), "n/a (no GPU)"
    try:
        torch.cuda.utilization()
    except Exception as err:  # pynvml missing
        return work(), f"n/a ({type(err).__name__})"
    samples, done = [], threading.Event()

    def sample() -> None:
        while not done.is_set():
            samples.append(torch.cuda.utilization())
            time.sleep(0.1)

    thread = threading.Thread(target=sample)
    thread.start()
    try:
        seconds = work()
    finally:
        done.set()
        thread.join()
    busy = samples[len(samples) // 5 :]  # leave out the start-up fifth
    return seconds, (f"{statistics.mean(busy):.0f}% mean of {len(busy)} samples" if busy else "n/a")


def speed_table(args: argparse.Namespace, device: torch.device, dm: CIFAR10DataModule) -> None:
    """Paper-scale VGG-16 (width `--paper-width`, 1 on a GPU) in bf16 with channels_last: a bare
    PyTorch loop, the data path alone, normlab without probes, with each probe at every step, with
    the suite's probes at their cadence, and compiled. Probe settings are the VGG protocol's."""

    width, steps = args.paper_width, args.paper_steps
    suite = [
        "experiment=santurkar2018/vgg_suite",
        "+santurkar2018/vgg_point=batch_lr1e-1",
        f"data.root={args.data_root}",
        "data.download=false",
        f"model.width={width}",
        "model.channels_last=true",
        "trainer.precision=bf16-mixed" if device.type == "cuda" else "trainer.precision=32-true",
        "logger=none",
        "trainer.enable_progress_bar=false",
        "trainer.enable_checkpointing=false",
        "trainer.val_check_interval=1000000",
    ]
    cfg = compose_config(suite)
    print(
        f"speed table: VGG-16 width {width}, batch {cfg.data.batch_size}, {cfg.trainer.precision},"
        f" channels_last, {steps} steps, {device}"
    )

    def plain() -> float:
        with torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
            return plain_vgg_loop(cfg, dm, steps, device)

    plain()  # warm-up: cuDNN autotuning, allocator
    plain_s, util = with_utilisation(plain)
    print(f"  bare PyTorch loop: {1e3 * plain_s / steps:.2f} ms/step, GPU utilisation {util}")
    print(f"  data path alone: {data_path_ms(cfg, dm, steps, device):.3f} ms/step")
    every = [f"probe.{p}.every_n_steps=1" for p in ("ics", "landscape", "activations")]
    rows = {
        "normlab, no probes": ["probe=none"],
        "  + ICS (layers 5, 10) every step": ["probe=[ics]", *every],
        "  + landscape (8 etas, vmap) every step": ["probe=[landscape]", *every],
        "  + activations (5 layers) every step": ["probe=[activations]", *every],
        "  + every probe at the suite's cadence": [],
    }
    for name, extra in rows.items():
        n = steps if "every step" not in name else max(steps // 5, 10)
        seconds = normlab_loop([*suite, *extra, f"trainer.max_steps={n}"])
        print(f"  {name}: {n / seconds:.1f} steps/s ({1e3 * seconds / n:.2f} ms/step)")
    # Compiling happens inside the timed loop (at the first step): two lengths, and the
    # difference is the compiled step's time without the compile.
    compiled = [*suite, "probe=none", "compile.enabled=true"]
    normlab_loop([*compiled, f"trainer.max_steps={steps // 5}"])  # fills inductor's cache
    short, full = (normlab_loop([*compiled, f"trainer.max_steps={n}"]) for n in (steps // 5, steps))
    per_step = (full - short) / (steps - steps // 5)
    print(
        f"normlab, compiled, no probes: {1 / per_step:.1f} steps/s ({1e3 * per_step:.2f} ms/step)"
    )


def bench_vgg(args: argparse.Namespace) -> float:

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    base = [
        "data=cifar10",
        f"data.root={args.data_root}",
        "data.download=false",
        "model=vgg",
        "norm=batch",
        "optim.lr=0.1",
        "logger=none",
        "trainer.enable_progress_bar=false",
        "trainer.enable_checkpointing=false",
        "trainer.val_check_interval=1000000",
    ]
    cfg = compose_config([*base, f"model.width={args.width}"])
    dm = CIFAR10DataModule(root=args.data_root, download_dir=args.data_root, download=False)
    dm.setup()
    dm.train_x, dm.train_y = dm.train_x.to(device), dm.train_y.to(device)
    print(
        f"vgg: VGG-{cfg.model.depth} width {args.width}, norm=batch, batch {cfg.data.batch_size}, "
        f"{args.steps} steps, {device}, {torch.get_num_threads()} threads"
    )
    ratios = []
    for r in range(args.repeats):
        overrides = [*base, f"model.width={args.width}", f"trainer.max_steps={args.steps}"]
        t_normlab = normlab_loop(overrides)
        t_plain = plain_vgg_loop(cfg, dm, args.steps, device)
        ratios.append(t_normlab / t_plain)
        print(
            f"  repeat {r}: normlab {1e3 * t_normlab / args.steps:.2f} ms/step, "
            f"plain {1e3 * t_plain / args.steps:.2f} ms/step, ratio {ratios[-1]:.3f}"
        )
    if device.type == "cuda" or args.gpu_table:
        speed_table(args, device, dm)  # the training set already on the device
    return statistics.median(ratios)


def bench_vgg_probes(args: argparse.Namespace) -> float:
    """Per-probe rows on VGG-16 (width `--width`, BN) at the VGG protocol's probe settings; returns
    the landscape walk's loop / vmap time (> 1: vmap is the faster default here)."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    base = [
        "experiment=santurkar2018/vgg_suite",
        "+santurkar2018/vgg_point=batch_lr1e-1",
        f"data.root={args.data_root}",
        "data.download=false",
        f"model.width={args.width}",
        "logger=none",
        "trainer.enable_progress_bar=false",
        "trainer.enable_checkpointing=false",
        "trainer.val_check_interval=1000000",
        *(
            ["trainer.precision=bf16-mixed", "model.channels_last=true"]
            if device.type == "cuda"
            else []
        ),
    ]
    cfg = compose_config(base)
    dm = CIFAR10DataModule(root=args.data_root, download_dir=args.data_root, download=False)
    dm.setup()
    dm.train_x, dm.train_y = dm.train_x.to(device), dm.train_y.to(device)
    steps = args.steps
    curvature = curvature_rows(
        every=1,
        below="[5,10]",
        fixed_every=max(steps // 2, 1),
        num_examples=args.sharpness_examples,
    )
    rows = [
        ProbeRow(
            "ics (layers 5, 10)", ("probe=[ics]", "probe.ics.every_n_steps=1"), "ics/layer5/cos"
        ),
        *(
            ProbeRow(
                f"landscape, {method} over eta",
                (
                    "probe=[landscape]",
                    "probe.landscape.every_n_steps=1",
                    f"probe.landscape.method={method}",
                ),
                "landscape/beta_eff",
            )
            for method in ("vmap", "loop")
        ),
        ProbeRow(
            "activations (5 layers)",
            ("probe=[activations]", "probe.activations.every_n_steps=1"),
            "act/layer2/p50",
        ),
        *curvature,
    ]
    print(
        f"vgg_probes: VGG-{cfg.model.depth} width {args.width}, norm=batch, batch "
        f"{cfg.data.batch_size}, {steps} steps a run, {device}, {torch.get_num_threads()} threads, "
        f"sharpness/trace on {args.sharpness_examples} training examples, {args.repeats} repeats"
    )
    plain = 1e3 * plain_vgg_loop(cfg, dm, steps, device) / steps
    costs: dict[str, list[float]] = {row.name: [] for row in rows}
    normlab_steps, hvps = [], []
    for _ in range(args.repeats):
        seconds_off = normlab_loop([*base, "probe=none", f"trainer.max_steps={steps}"])
        normlab_steps.append(1e3 * seconds_off / steps)
        for row in rows:
            cost, values = probe_cost_ms(base, row, steps, seconds_off)
            costs[row.name].append(cost)
            hvps += values if row is curvature[0] else []
    step = statistics.median(normlab_steps)
    print(f"  plain PyTorch step {plain:.2f} ms; normlab step {step:.2f} ms (x{step / plain:.2f})")
    for name, values in costs.items():
        print_cost_row(name, statistics.median(values), plain, step, args.cadences)
    vmap = statistics.median(costs["landscape, vmap over eta"])
    loop = statistics.median(costs["landscape, loop over eta"])
    print(f"  eta grid: loop / vmap = {loop / vmap:.2f}")
    print_lanczos_line(statistics.median(costs[curvature[0].name]), hvps, plain)
    return loop / vmap


DEFAULT_STEPS = {"mnist_mlp": 3000, "dln_probes": 2000, "vgg": 200, "vgg_probes": 20}
BENCHMARKS = {
    "mnist_mlp": bench_mnist_mlp,
    "dln_probes": bench_dln_probes,
    "vgg": bench_vgg,
    "vgg_probes": bench_vgg_probes,
}


def main() -> None:
    # Lightning's per-run banners would bury the numbers.
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module="lightning")
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("benchmark", choices=sorted(BENCHMARKS))
    parser.add_argument("--steps", type=int, default=None, help=f"default: {DEFAULT_STEPS}")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--norm", default="batch", choices=["none", "batch"])
    parser.add_argument("--width", type=float, default=0.125, help="vgg: width multiplier")
    parser.add_argument("--data-root", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument(
        "--gpu-table", action="store_true", help="vgg: the GPU speed table on this device too"
    )
    parser.add_argument("--paper-width", type=float, default=1.0, help="vgg: speed table width")
    parser.add_argument("--paper-steps", type=int, default=500, help="vgg: speed table steps")
    parser.add_argument(
        "--cadences",
        type=lambda text: [int(c) for c in text.split(",")],
        default=[10, 100],
        help="*_probes: cadences (steps) at which to show each probe's amortised overhead",
    )
    parser.add_argument(
        "--sharpness-examples",
        type=int,
        default=1024,
        help="vgg_probes: the sharpness and trace probes' fixed batch (training examples)",
    )
    args = parser.parse_args()
    args.steps = args.steps or DEFAULT_STEPS[args.benchmark]
    ratio = BENCHMARKS[args.benchmark](args)
    print(f"ratio={ratio:.3f}")


if __name__ == "__main__":
    sys.exit(main())
