"""Every suite of both papers at CPU scale, three seeds, then the report.

    python scripts/reproduce_all.py [--data DIR] [--runs DIR] [--out DIR] [--smoke] [--only PRESET,...]

Runs, one job after another, every job of: Ioffe 2015 Fig. 1 (`ioffe2015/fig1_mnist`, MNIST),
Santurkar 2018's DLN suite (`santurkar2018/dln_suite`), its VGG suite at `scale=cpu`
(`santurkar2018/vgg_suite`, CIFAR-10) and its Sec. 4 preset (`santurkar2018/theory_mlp`, MNIST),
each preset's sweep of seeds 0, 1, 2, into `RUNS/<preset>/<job>/` (a job named by its swept
overrides), then `scripts/report.py RUNS --out OUT`. It prints a line per job: run i of n, the
job, its status and time, and the time so far. Re-running it skips the jobs that finished; a job
that did not (failed, interrupted, killed) is run again from the start in a fresh directory, its
old one kept beside it as `<job>.stale-<n>` (resuming it is the cluster issue's part).

`--smoke` shrinks every job to a few steps on the synthetic data sets (the tests' scale: the whole
thing in a few minutes) and writes under `runs/smoke_reproduce/` unless `--runs` says otherwise.
`--data DIR` is the folder holding `MNIST/raw/*.gz` and `cifar10.npz` (`data.root`).
Exit code: 0 when every job finished (or diverged: a result) and the report was written, 1 else.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from normlab.config import compose_config, sweep_points
from normlab.resolvers import job_dirname
from normlab.train import run

REPO = Path(__file__).resolve().parents[1]
# Each suite and the overrides that put it at CPU scale on this machine's data.
SUITES = {
    "ioffe2015/fig1_mnist": [],
    "santurkar2018/dln_suite": [],
    "santurkar2018/vgg_suite": ["scale=cpu"],
    "santurkar2018/theory_mlp": [],
}
DATA_SETS = {  # the preset's data group, for --data and --smoke
    "ioffe2015/fig1_mnist": "mnist",
    "santurkar2018/dln_suite": None,  # generated (gaussian_linear): no files
    "santurkar2018/vgg_suite": "cifar10",
    "santurkar2018/theory_mlp": "mnist",
}
# A few steps of every job, every probe firing: the tests' scale.
SMOKE = {
    "ioffe2015/fig1_mnist": ["debug=smoke", "data=synthetic", "probe.activations.every_n_steps=10"],
    "santurkar2018/dln_suite": [
        "trainer.max_steps=40",
        "trainer.val_check_interval=20",
        "trainer.log_every_n_steps=10",
        "probe.ics.every_n_steps=20",
        "probe.landscape.every_n_steps=20",
        "probe.activations.every_n_steps=20",
    ],
    "santurkar2018/vgg_suite": [
        "data=synthetic_cifar",
        "data.num_train=256",
        "data.num_test=128",
        "model.width=0.0625",
        "trainer.max_steps=12",
        "trainer.val_check_interval=6",
        "trainer.log_every_n_steps=1",
        "probe.ics.every_n_steps=3",
        "probe.landscape.every_n_steps=3",
        "probe.activations.every_n_steps=3",
        "probe.activations.batch_size=64",
    ],
    "santurkar2018/theory_mlp": ["debug=smoke", "data=synthetic", "probe.theory.every_n_steps=10"],
}
COMMON = ["logger=none", "trainer.enable_progress_bar=false"]


def jobs(preset: str, extra: list[str]) -> list[tuple[str, list[str]]]:
    """(job name, overrides) of every job of `preset`'s sweep with seeds 0, 1, 2: named by its
    swept overrides, as a multirun names its jobs (`normlab.resolvers.job_dirname`)."""
    fixed = [f"experiment={preset}", *extra, *COMMON]
    out = []
    for point in sweep_points([*fixed, "seed=0,1,2"]):
        swept = sorted(o for o in point if o not in fixed)
        out.append((job_dirname(",".join(swept), len(out)), point))
    return out


def status_of(run_dir: Path) -> str | None:
    summary = run_dir / "summary.json"
    if not summary.exists():
        return None
    try:
        return json.loads(summary.read_text()).get("status")
    except json.JSONDecodeError:
        return "unreadable"


def set_aside(run_dir: Path) -> Path:
    """Move an unfinished run directory out of the way (`<job>.stale-<n>`): kept, never drawn
    (`normlab.results` reads it as its own run only if asked for that path)."""
    n = 1
    while run_dir.with_name(f"{run_dir.name}.stale-{n}").exists():
        n += 1
    target = run_dir.with_name(f"{run_dir.name}.stale-{n}")
    run_dir.rename(target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="reproduce_all.py", description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, help="folder with MNIST/raw/*.gz and cifar10.npz")
    parser.add_argument("--runs", type=Path, help="where the runs go (default: runs/reproduce)")
    parser.add_argument("--out", type=Path, help="the report's folder (default: RUNS/report)")
    parser.add_argument("--smoke", action="store_true", help="a few steps of every job")
    parser.add_argument("--only", help=f"comma-separated presets (default: {', '.join(SUITES)})")
    args = parser.parse_args(argv)
    presets = list(SUITES) if not args.only else args.only.split(",")
    unknown = [p for p in presets if p not in SUITES]
    if unknown:
        parser.error(f"unknown preset(s) {', '.join(unknown)}; valid: {', '.join(SUITES)}")
    if args.data is not None and not args.data.is_dir():
        parser.error(f"--data {args.data}: no such directory")
    runs = args.runs or REPO / "runs" / ("smoke_reproduce" if args.smoke else "reproduce")
    out = args.out or runs / "report"

    todo = []
    for preset in presets:
        extra = list(SUITES[preset])
        if args.smoke:
            extra = [*SMOKE[preset]]  # the smoke scale replaces scale=cpu
        elif args.data is not None and DATA_SETS[preset]:
            extra.append(f"data.root={args.data.resolve()}")
        todo += [(preset, name, point) for name, point in jobs(preset, extra)]

    start, failed = time.monotonic(), []
    for i, (preset, name, point) in enumerate(todo, 1):
        run_dir = runs / preset / name
        status = status_of(run_dir)
        head = f"run {i} of {len(todo)}: {preset} {name}"
        if status in ("finished", "diverged"):
            print(f"{head}: {status} before, skipped", flush=True)
            continue
        if run_dir.exists():
            print(
                f"{head}: {status or 'no summary'} before, set aside as {set_aside(run_dir).name}"
            )
        t0 = time.monotonic()
        try:
            result = run(compose_config(point), run_dir, point)
            status = result.status
        except Exception as err:  # the run wrote `failed` with the error; the others go on
            status = f"failed ({type(err).__name__}: {err})"
        if status not in ("finished", "diverged"):
            failed.append(f"{preset} {name}: {status}")
        elapsed = time.monotonic() - start
        print(
            f"{head}: {status} in {time.monotonic() - t0:.0f} s ({elapsed / 60:.1f} min so far)",
            flush=True,
        )

    report = [sys.executable, str(REPO / "scripts" / "report.py"), str(runs), "--out", str(out)]
    print(f"report: {' '.join(report[1:])}", flush=True)
    code = subprocess.run(report).returncode
    minutes = (time.monotonic() - start) / 60
    for line in failed:
        print(f"not finished: {line}", file=sys.stderr)
    print(f"reproduce-all: {len(todo)} jobs, {len(failed)} not finished, {minutes:.1f} min")
    return 0 if not failed and code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
