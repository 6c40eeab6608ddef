"""Tiny real VGG sweeps for the Santurkar 2018 VGG figure tests: every point of a preset's sweep,
trained in-process for a few steps on the synthetic CIFAR-shaped set with a tiny width."""

from __future__ import annotations

from pathlib import Path

from normlab.config import compose_config, sweep_points
from normlab.resolvers import job_dirname as multirun_job_dirname
from normlab.train import run

# A few steps of a 1/16-width VGG-16, every probe's cadence shrunk to fit; the presets' protocol
# (lr, norms, probe layers, eta range) unchanged.
TINY = [
    "data=synthetic_cifar",
    "data.num_train=256",
    "data.num_test=128",
    "model.width=0.0625",
    "trainer.max_steps=12",
    "trainer.val_check_interval=6",
    "trainer.log_every_n_steps=1",
    "trainer.enable_checkpointing=false",
    "trainer.enable_progress_bar=false",
    "probe.ics.every_n_steps=3",
    "probe.landscape.every_n_steps=3",
    "probe.activations.every_n_steps=3",
    "probe.activations.batch_size=64",
    "logger=none",
    "threads=1",
]


def job_dirname(point: list[str]) -> str:
    """A sweep job's directory name, as a multirun names it: its swept overrides (the tiny
    settings left out)."""
    swept = sorted(o for o in point if o not in TINY and not o.startswith("experiment="))
    return multirun_job_dirname(",".join(swept), 0)


def vgg_sweep(root: Path, preset: str, seeds: str = "0,1,2", extra: tuple[str, ...] = ()) -> Path:
    """Train every point of `preset`'s sweep (seeds `seeds`) at the tiny scale into `root`."""
    points = sweep_points([f"experiment={preset}", *TINY, *extra, f"seed={seeds}"])
    for point in points:
        cfg = compose_config(point)
        result = run(cfg, root / job_dirname(point), overrides=point)
        assert result.status in ("finished", "diverged"), result.summary
    return root
