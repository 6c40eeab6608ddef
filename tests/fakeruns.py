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
