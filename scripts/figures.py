"""Draw a paper figure and its claims report from runs.

    python scripts/figures.py [FIGURE_ID] SWEEP_DIR [SWEEP_DIR ...] --out FIG_DIR
    python scripts/figures.py --list

FIGURE_ID is an experiment preset's name (`ioffe2015/fig1_mnist`); left out, it is inferred from
the runs (a suite's runs, `santurkar2018/dln_suite`, feed several figures: name one). A first
argument that is not an existing path is a figure id. Writes FIG_DIR/<id>.png and .pdf (the id
holds the paper: FIG_DIR/santurkar2018/dln_fig10_landscape.png; `--formats` chooses), the
plotted data FIG_DIR/<id>_data.csv (panel, series, step, mean, min, max, n, n_nonfinite: one row
per plotted point; a panel whose x axis is not the step adds that column, Fig. 11 `eta`;
`n_nonfinite` counts the seeds whose value blew up, or whose run had diverged, there: such a point
has no mean), and the claims report FIG_DIR/<id>_claims.md and _claims.csv. A figure that reads per-run files besides
metrics.csv (`FigureSpec.files`: Fig. 11 reads landscape.csv) gets them in the same table; runs
without such a file are reported in one line. Figures draw `finished` runs; the VGG figures also
`diverged` ones (`FigureSpec.statuses`), marked where they died; other runs are left out, counted.
Exit codes: 0 done, 1 the figure or its claims could not be made from these runs (missing data,
mixed settings), 2 usage error.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from normlab.report import claims_markdown, write_claims, write_plot
from normlab.report.registry import FIGURES, infer_figure_id
from normlab.results import join_metrics, load_summaries


def valid_ids() -> str:
    return ", ".join(sorted(FIGURES))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="figures.py",
        description="Turn finished runs into a paper figure and a report of its claims.",
    )
    parser.add_argument(
        "paths", nargs="*", metavar="[FIGURE_ID] SWEEP_DIR", help="figure id, then run/sweep dirs"
    )
    parser.add_argument("--out", default="figures", help="output directory (default: figures)")
    parser.add_argument(
        "--formats",
        default="png,pdf",
        help="image formats, comma-separated (default: png,pdf; empty: only the data and claims)",
    )
    parser.add_argument("--list", action="store_true", help="list the registered figures")
    args = parser.parse_args(argv)

    if args.list:
        for spec in FIGURES.values():
            print(f"{spec.id}\t{spec.title}")
            for claim in spec.claims:
                print(f"  claim {claim.id}: {claim.claim}")
        return 0

    paths = list(args.paths)
    figure_id = None
    if paths and not Path(paths[0]).exists():
        figure_id = paths.pop(0)
        if figure_id not in FIGURES:
            parser.exit(
                2,
                f"figures.py: error: unknown figure id {figure_id!r} (and no such path); "
                f"valid figure ids: {valid_ids()}\n",
            )
    if not paths:
        parser.error("give at least one sweep directory")
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        parser.exit(2, f"figures.py: error: no such directory: {', '.join(missing)}\n")

    # The results logger reports left-out runs in one line.
    logging.basicConfig(level=logging.WARNING, format="figures.py: %(message)s")
    # Every figure draws finished runs; some also draw diverged ones (`FigureSpec.statuses`).
    summaries = load_summaries(paths, statuses=("finished", "diverged"))
    if figure_id is None:
        try:
            figure_id = infer_figure_id(summaries)
        except ValueError as err:
            parser.exit(2, f"figures.py: error: {err}; name the figure as the first argument\n")
    spec = FIGURES[figure_id]
    drawn = summaries["status"].isin(spec.statuses)
    if not drawn.all():
        print(
            f"figures.py: left out {(~drawn).sum()} diverged run(s): {spec.id} draws "
            f"{'/'.join(spec.statuses)} runs only",
            file=sys.stderr,
        )
    summaries = summaries[drawn]
    table = join_metrics(summaries, metrics=spec.needed_metrics(), files=spec.files)
    print(f"{spec.id}: {summaries.shape[0]} runs from {', '.join(paths)}")

    written: list[Path] = []
    status = 0
    try:
        paths_written, claims = write_claims(spec, table, args.out)
        written += paths_written
        print(claims_markdown(claims))
    except ValueError as err:
        print(f"figures.py: error: cannot evaluate the claims of {spec.id}: {err}", file=sys.stderr)
        status = 1
    try:
        formats = [f for f in args.formats.split(",") if f]
        written += write_plot(spec, table, args.out, formats=formats)
    except ValueError as err:
        print(f"figures.py: error: cannot draw {spec.id}: {err}", file=sys.stderr)
        status = 1
    for path in written:
        print(f"wrote {path}")
    return status


if __name__ == "__main__":
    sys.exit(main())
