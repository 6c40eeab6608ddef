"""Fake but well-formed run directories (docs/run-directory.md) for the results, figures and
claims tests: summary.json + metrics.csv with a chosen status, config and metric curves."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

FIG1 = "ioffe2015/fig1_mnist"
UNIT = 7  # the probed unit of layer 3 in the fake Fig. 1 runs

# A metric curve: step -> value, or rows (step, metric, value) in the order they are written.
Curves = Mapping[str, Mapping[int, float]]


def base_config(norm: str = "none", seed: int = 0, lr: float = 0.5, **extra: Any) -> dict:
    """A resolved config shaped like the trainer's (nested groups, a list, top-level scalars), with
    what real runs of one sweep differ in beside the seed and norm: a seed-valued key
    (`data.seed: ${seed}`), per-run paths and W&B tags."""
    config = {
        "name": FIG1,
        "seed": seed,
        "flush_denormal": True,
        "threads": 1,
        "paths": {"runs_dir": "runs", "data_dir": "data"},
        "data": {"name": "mnist", "batch_size": 60, "seed": seed, "root": "data/mnist"},
        "model": {"hidden": [100, 100, 100], "init_std": 0.1, "out_features": 10},
        "norm": {"name": norm} | ({"eps": 1e-5, "momentum": 0.1} if norm == "batch" else {}),
        "optim": {"name": "sgd", "lr": lr},
        "trainer": {"max_steps": 50000, "val_check_interval": 500},
        "probe": {"activations": {"every_n_steps": 500}},
        "logger": {"wandb": {"tags": [FIG1, f"norm={norm}"], "mode": "offline"}},
    }
    config.update(extra)
    return config


def write_run(
    run_dir: Path,
    *,
    status: str = "finished",
    experiment: str = FIG1,
    seed: int = 0,
    norm: str = "none",
    config: Mapping[str, Any] | None = None,
    curves: Curves | None = None,
    rows: Iterable[tuple[int, str, float]] = (),
    max_steps: int = 50000,
    step: int | None = None,
    error: str | None = None,
    diverged_at_step: int | None = None,
    corrupt_summary: bool = False,
) -> Path:
    """Write one run directory; `curves` first (metric by metric), then the raw `rows`."""
    run_dir.mkdir(parents=True, exist_ok=True)
    written = [(s, m, v) for m, curve in (curves or {}).items() for s, v in curve.items()]
    written += list(rows)
    with (run_dir / "metrics.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(("step", "metric", "value"))
        w.writerows((s, m, repr(float(v))) for s, m, v in written)
    final = {m: float(v) for _, m, v in written}  # the last value of each metric
    summary = {
        "status": status,
        "experiment": experiment,
        "overrides": [f"norm={norm}", f"seed={seed}"],
        "seed": seed,
        "step": max_steps if step is None else step,
        "max_steps": max_steps,
        "diverged_at_step": diverged_at_step,
        "error": error,
        "final_metrics": final,
        "config": dict(config) if config is not None else base_config(norm, seed),
        "git": {"revision": "0" * 40, "dirty": False},
        "versions": {"python": "3.11.7"},
        "device": "cpu",
        "threads": 1,
        "started_at": "2026-01-01T00:00:00+00:00",
        "ended_at": "2026-01-01T00:01:00+00:00",
        "wall_time_s": 60.0,
    }
    text = json.dumps(summary, indent=2)
    # A torn write: the first half of the file.
    (run_dir / "summary.json").write_text(text[: len(text) // 2] if corrupt_summary else text)
    return run_dir


def fig1_curves(
    norm: str, seed: int, max_steps: int = 50000, every: int = 500, bn_better: bool = True
) -> dict[str, dict[int, float]]:
    """Fig. 1-like curves: test accuracy and the probed unit's percentiles.

    With `bn_better`, the BN net learns faster and higher and its unit's percentiles stay flat
    while the unnormalised net's drift; otherwise the roles are swapped."""
    rng = np.random.default_rng(1000 * seed + (norm == "batch"))
    steps = np.arange(0, max_steps + 1, every)
    good = (norm == "batch") == bn_better
    if good:
        acc = 0.975 - 0.875 * np.exp(-steps / 1500)
        centre = np.full(steps.shape, -0.2)
    else:
        acc = 0.972 - 0.872 * np.exp(-steps / 6000)
        centre = -0.2 + 2.0 * steps / max_steps  # drifts upwards over training
    acc = acc + rng.normal(0, 0.001, steps.shape)
    centre = centre + rng.normal(0, 0.01, steps.shape)
    unit = f"act/layer3/unit{UNIT}"
    return {
        "test/acc": dict(zip(steps.tolist(), acc, strict=True)),
        f"{unit}/p15": dict(zip(steps.tolist(), centre - 1.0, strict=True)),
        f"{unit}/p50": dict(zip(steps.tolist(), centre, strict=True)),
        f"{unit}/p85": dict(zip(steps.tolist(), centre + 1.0, strict=True)),
        "train/loss": dict(zip(steps.tolist(), 1 - acc, strict=True)),
    }


def fig1_sweep(
    root: Path,
    seeds: Iterable[int] = (0, 1, 2),
    norms: Iterable[str] = ("none", "batch"),
    max_steps: int = 50000,
    every: int = 500,
    bn_better: bool = True,
    curves: Callable[..., dict[str, dict[int, float]]] = fig1_curves,
    config: Callable[[str, int], dict] | None = None,
    step: int | None = None,
) -> Path:
    """A multirun-shaped sweep directory: `root/norm=X,seed=Y/` for every norm and seed.

    `config(norm, seed)` gives a run's config (default `base_config`, its `trainer.max_steps` set
    to `max_steps`); `step` the last step the runs reached (default `max_steps`)."""
    for norm in norms:
        for seed in seeds:
            if config is None:
                run_config = base_config(norm, seed)
                run_config["trainer"]["max_steps"] = max_steps
            else:
                run_config = config(norm, seed)
            write_run(
                root / f"norm={norm},seed={seed}",
                seed=seed,
                norm=norm,
                config=run_config,
                max_steps=max_steps,
                step=step,
                curves=curves(norm, seed, max_steps=max_steps, every=every, bn_better=bn_better),
            )
    return root


def fig1_sweep_with_gaps(root: Path) -> Path:
    """Fig. 1's sweep, with seed 2 of the unnormalised net missing its evaluation at step 1000 and
    one failed run beside the finished ones."""

    def curves(norm, seed, **kw):
        c = fig1_curves(norm, seed, **kw)
        if (norm, seed) == ("none", 2):
            c["test/acc"].pop(1000)
        return c

    fig1_sweep(root, curves=curves)
    write_run(root / "norm=batch,seed=3", status="failed", seed=3, norm="batch", step=12)
    return root


# --- Santurkar 2018 DLN runs with every probe's output ------------------------------------------

DLN_SUITE = "santurkar2018/dln_suite"
DLN_NORMS: dict[str, dict[str, Any]] = {
    "none": {"name": "none"},
    "batch": {"name": "batch", "eps": 1e-5, "momentum": 0.1},
    "l1": {"name": "lp", "p": 1, "eps": 1e-5, "momentum": 0.1},
    "l2": {"name": "lp", "p": 2, "eps": 1e-5, "momentum": 0.1},
    "linf": {"name": "lp", "p": "inf", "eps": 1e-5, "momentum": 0.1},
}
DLN_PROBES: dict[str, dict[str, Any]] = {
    "ics": {"layers": [9, 17], "every_n_steps": 100},
    "landscape": {"eta_lo": 0.01, "eta_hi": 30.0, "num_etas": 10, "every_n_steps": 100},
    "activations": {"layers": [1, 11, 24], "every_n_steps": 100, "hist_bins": 5},
}
_STANDARD_BN = [(v, lr) for lr in (1e-6, 1e-7) for v in ("none", "batch")]
# Each DLN preset: its runs (norm variant, lr) and the probes it turns on (conf/experiment/).
DLN_SWEEPS: dict[str, tuple[list[tuple[str, float]], tuple[str, ...]]] = {
    "santurkar2018/dln_fig3b_ics": (_STANDARD_BN, ("ics",)),
    "santurkar2018/dln_fig5b_lp": ([(v, 1e-6) for v in DLN_NORMS], ()),
    "santurkar2018/dln_fig9_activations": ([("none", 1e-6), ("batch", 1e-6)], ("activations",)),
    "santurkar2018/dln_fig10_landscape": ([("none", 1e-6), ("batch", 1e-6)], ("landscape",)),
    "santurkar2018/dln_fig11_gradchange": ([("none", 1e-6), ("batch", 1e-6)], ("landscape",)),
    "santurkar2018/dln_fig13_lp_landscape": ([(v, 1e-6) for v in DLN_NORMS], ("landscape",)),
    DLN_SUITE: (
        [*_STANDARD_BN, ("l1", 1e-6), ("l2", 1e-6), ("linf", 1e-6)],
        ("ics", "landscape", "activations"),
    ),
}
DLN_ETA_FACTORS = np.logspace(np.log10(0.01), np.log10(30.0), 10)  # x lr: the DLN's grid


def dln_config(
    experiment: str, variant: str, seed: int, lr: float, probes: Iterable[str], max_steps: int
) -> dict:
    """A resolved DLN config shaped like the trainer's (conf/santurkar2018/protocol/dln.yaml)."""
    return {
        "name": experiment,
        "seed": seed,
        "threads": 1,
        "paths": {"runs_dir": "runs"},
        "data": {"name": "gaussian_linear", "num_train": 1000, "seed": seed},
        "model": {"depth": 25, "width": 10},
        "module": {"reduction": "sum"},
        "norm": dict(DLN_NORMS[variant]),
        "optim": {"lr": lr, "momentum": 0.0},
        "trainer": {"max_steps": max_steps, "val_check_interval": 500, "log_every_n_steps": 50},
        "probe": {name: dict(DLN_PROBES[name]) for name in probes},
        "logger": {"wandb": {"tags": [experiment, f"norm={variant}"]}},
    }


def dln_probe_outputs(
    variant: str,
    lr: float,
    seed: int,
    probes: Iterable[str] = ("ics", "landscape", "activations"),
    max_steps: int = 10000,
    bn_better: bool = True,
    blowup: bool = False,
) -> tuple[dict[str, dict[int, float]], list[tuple], list[tuple]]:
    """What a DLN run with `probes` logs: metric curves, landscape.csv rows, act_hist.csv rows.

    The numbers depend only on (variant, lr, seed), so a run is the same in its figure's sweep
    and in the suite. With `bn_better`, the normalised nets' landscape is 100x smoother than the
    standard net's (bands, beta_eff and every per-eta gradient change) and the ICS cosine is 0.98
    for the standard net and 0.1 for BN; otherwise every norm is as rough as the standard net and
    the cosines are swapped (0.97 for BN, 0.3 for the standard net). `blowup`: the standard net's
    walk overflows (inf, nan) at its largest step sizes during the first 500 steps."""
    probes = set(probes)
    jitter = 1 + 0.02 * seed  # seeds differ, so that min < mean < max
    normalised = variant != "none"
    rough = 100.0 if (not normalised or not bn_better) else 1.0
    tau = 4000.0 if not normalised else 2000.0
    curves: dict[str, dict[int, float]] = {"train/loss": {}, "test/loss": {}}
    landscape: list[tuple] = []
    hist: list[tuple] = []

    def loss(t: int) -> float:
        return (1e5 * np.exp(-t / tau) + 50 * (1 + (lr < 1e-6))) * jitter

    for t in range(0, max_steps, 50):
        curves["train/loss"][t] = loss(t)
        if t % 500 == 0:
            curves["test/loss"][t] = loss(t) / 1000
    for t in range(0, max_steps, 100):
        grow = 1 + t / 10000
        if "ics" in probes:
            if bn_better:
                cos = 0.1 if variant == "batch" else 0.98
            else:
                cos = 0.97 if variant == "batch" else 0.3
            for layer in (9, 17):
                put = curves.setdefault
                put(f"ics/layer{layer}/cos", {})[t] = cos - 0.01 * seed - 0.001 * layer * grow
                l2 = (1.0 if variant == "batch" else 0.1) * jitter * grow * (layer / 9)
                put(f"ics/layer{layer}/l2", {})[t] = l2
        if "landscape" in probes:
            blown = blowup and variant == "none" and t <= 500
            g = 1e3 * jitter * np.exp(-t / 5000)
            diffs = [rough * 0.1 * g * f * jitter * grow for f in DLN_ETA_FACTORS]
            losses = [loss(t) * (1 + rough * 0.005 * f) for f in DLN_ETA_FACTORS]
            if blown:
                diffs[-2:] = [float("inf"), float("nan")]
                losses[-2:] = [float("inf"), float("nan")]
            landscape += [
                (t, f * lr, v, d) for f, v, d in zip(DLN_ETA_FACTORS, losses, diffs, strict=True)
            ]
            values = {
                "loss_min": loss(t) * 0.95,
                "loss_max": float("inf") if blown else loss(t) * (1 + rough * 0.5),
                "grad_diff_min": rough * 1e-3 * g * jitter,
                "grad_diff_max": float("inf") if blown else rough * 3 * g * jitter * grow,
                "beta_eff": float("nan") if blown else rough * 10 * jitter * grow,
                "grad_norm": g,
            }
            for name, value in values.items():
                curves.setdefault(f"landscape/{name}", {})[t] = value
        if "activations" in probes:
            for layer in (1, 11, 24):
                centre = 0.0 if normalised else 0.1 * layer * t / max_steps
                width = (1.0 if normalised else 0.5 + 0.05 * layer) * jitter
                stats = {
                    "p15": centre - width,
                    "p50": centre,
                    "p85": centre + width,
                    "mean": centre,
                    "var": width**2,
                }
                for name, value in stats.items():
                    curves.setdefault(f"act/layer{layer}/{name}", {})[t] = value
                edges = np.linspace(centre - 3 * width, centre + 3 * width, 6)
                hist += [
                    (t, layer, lo, hi, c)
                    for lo, hi, c in zip(edges[:-1], edges[1:], (5, 250, 490, 250, 5), strict=True)
                ]
    return curves, landscape, hist


def write_csv(path: Path, header: tuple[str, ...], rows: Iterable[tuple]) -> None:
    """A per-run long file as the probes write it (floats by repr)."""
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(
            tuple(repr(float(v)) if isinstance(v, float) else v for v in row) for row in rows
        )


def dln_sweep(
    root: Path,
    experiment: str,
    seeds: Iterable[int] = (0, 1, 2),
    max_steps: int = 10000,
    step: int | None = None,
    bn_better: bool = True,
    blowup: bool | Iterable[int] = False,
    skip: Iterable[tuple[str, float, int]] = (),
) -> Path:
    """A multirun-shaped sweep of the DLN preset `experiment` (a figure id or the suite): one run
    directory `root/<variant>_lr<lr>,seed=<seed>/` per (variant, lr) of `DLN_SWEEPS[experiment]`
    and seed, but those in `skip`, with the outputs of the preset's probes (`dln_probe_outputs`):
    metrics.csv, and landscape.csv / act_hist.csv when the landscape / activation probe is on.
    `step`: the last step the runs reached (default `max_steps`; the logs stop there too).
    `blowup`: the standard net's walk overflows (`dln_probe_outputs`) in every seed (True) or in
    the seeds listed."""
    points, probes = DLN_SWEEPS[experiment]
    blown_seeds = set(seeds) if blowup is True else set(blowup or ())
    for variant, lr in points:
        for seed in seeds:
            if (variant, lr, seed) in set(skip):
                continue
            run_dir = root / f"{variant}_lr{lr:g},seed={seed}"
            curves, landscape, hist = dln_probe_outputs(
                variant,
                lr,
                seed,
                probes,
                max_steps,
                bn_better=bn_better,
                blowup=seed in blown_seeds,
            )
            last = max_steps if step is None else step
            curves = {m: {t: v for t, v in c.items() if t <= last} for m, c in curves.items()}
            write_run(
                run_dir,
                experiment=experiment,
                seed=seed,
                norm=DLN_NORMS[variant]["name"],
                config=dln_config(experiment, variant, seed, lr, probes, max_steps),
                curves=curves,
                max_steps=max_steps,
                step=step,
            )
            if "landscape" in probes:
                rows = [r for r in landscape if r[0] <= last]
                write_csv(run_dir / "landscape.csv", ("step", "eta", "loss", "grad_diff"), rows)
            if "activations" in probes:
                rows = [r for r in hist if r[0] <= last]
                write_csv(
                    run_dir / "act_hist.csv", ("step", "layer", "bin_lo", "bin_hi", "count"), rows
                )
    return root


# --- Santurkar 2018 Sec. 4 (the theory probe) ----------------------------------------------------

THEORY_ID = "santurkar2018/theory_mlp"
QUANTITIES = (
    "removed_frac",
    "mean_frac",
    "proj_frac",
    "grad_ratio",
    "gamma2_over_sigma2",
    "curv_bn",
    "curv_scaled",
    "curv_shift",
)
# What every (layer, seed) logs, at every probe, unless a test says otherwise (`shift_share`:
# curv_shift as a share of curv_scaled, which is logged; curv_bn = curv_scaled - curv_shift).
PASSING = {
    "removed_frac": 0.2,
    "grad_ratio": 0.5,
    "gamma2_over_sigma2": 0.6,
    "curv_scaled": 0.01,
    "shift_share": 0.2,
}


def value(quantity: str, layer: int, seed: int, step: int, levels: dict) -> float:
    """A curve of `levels[quantity]` (removed_frac's parts: 30% and 70% of it), a little different
    per layer, seed and step (+-1%), so that min < mean < max and means are not the level."""
    if quantity in ("mean_frac", "proj_frac"):
        share = 0.3 if quantity == "mean_frac" else 0.7
        return share * value("removed_frac", layer, seed, step, levels)
    if quantity == "curv_shift":
        return levels["shift_share"] * value("curv_scaled", layer, seed, step, levels)
    if quantity == "curv_bn":
        return value("curv_scaled", layer, seed, step, levels) - value(
            "curv_shift", layer, seed, step, levels
        )
    wiggle = 0.01 * np.sin(step / 700 + layer) * (1 + seed)
    return levels[quantity] * (1 + wiggle)


def theory_sweep(
    root: Path,
    seeds=(0, 1, 2),
    levels: dict | None = None,
    override: dict | None = None,
    max_steps: int = 10000,
    lr: float = 1.0,
    every: int = 100,
    skip_step: int | None = None,
) -> Path:
    """A multirun-shaped sweep of the preset: `root/seed=<s>/` per seed, each run logging every
    theory metric at steps 0, every, ... < max_steps. `override[(layer, seed)] = {quantity: v}`
    replaces a (layer, seed)'s level; `skip_step` leaves that probe out of every run."""
    levels = PASSING if levels is None else levels
    for seed in seeds:
        curves: dict[str, dict[int, float]] = {}
        for layer in (1, 2, 3):
            at = levels | (override or {}).get((layer, seed), {})
            for q in QUANTITIES:
                curves[f"theory/layer{layer}/{q}"] = {
                    t: value(q, layer, seed, t, at)
                    for t in range(0, max_steps, every)
                    if t != skip_step
                }
        config = {
            "name": THEORY_ID,
            "seed": seed,
            "norm": {"name": "batch", "eps": 1e-5, "momentum": 0.1},
            "optim": {"lr": lr, "momentum": 0.0},
            "data": {"name": "mnist", "batch_size": 60, "seed": seed},
            "model": {"hidden": [100, 100, 100], "activation": "sigmoid"},
            "trainer": {"max_steps": max_steps, "log_every_n_steps": 100},
            "probe": {"theory": {"layers": [1, 2, 3], "every_n_steps": every}},
            "paths": {"runs_dir": "runs"},
        }
        write_run(
            root / f"seed={seed}" if lr == 1.0 else root / f"lr={lr},seed={seed}",
            experiment=THEORY_ID,
            seed=seed,
            norm="batch",
            config=config,
            curves=curves,
            max_steps=max_steps,
        )
    return root
