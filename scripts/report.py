"""The report: every paper figure the runs under some directories can make, with its claims.

    python scripts/report.py RUNS_DIR [RUNS_DIR ...] --out DIR [--formats png,pdf] [--only ID,...]

Finds every sweep under the RUNS_DIRs (the runs of one experiment preset under one directory),
maps each to the figures it feeds (a figure's own preset, or a suite's figures:
`normlab.report.registry`), and draws every figure it can, as `scripts/figures.py` does, into
DIR/<paper>/<figure>.png (and the other `--formats`), _data.csv, _claims.md and _claims.csv. A
figure that several sweeps feed (its suite's and its own) is drawn from the one with more finished
runs of its norms and rates, then the newest; the report says which. Then writes DIR/report.md
(per paper, per figure: the image and its claims), DIR/report.html (the same, self-contained:
images embedded, opens offline) and DIR/claims.csv (paper, figure, claim_id, claim, paper_says,
measured, seeds, scale, verdict, value, sweep: one row per declared claim of every figure some
sweep feeds). A figure it skips (no runs for it; it refused its runs) is named, with why, in one
line on stderr and in the report. `--only` limits the report to some figure ids.

Exit codes: 0 the report was written (figures may have been skipped), 1 no figure could be drawn
(the report is still written, saying why), 2 usage error (no such directory, unknown figure id).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from normlab.report.document import build_report
from normlab.report.registry import FIGURES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="report.py",
        description="Draw every figure the runs can make, and report every claim, in one document.",
    )
    parser.add_argument("paths", nargs="+", metavar="RUNS_DIR", help="run/sweep directories")
    parser.add_argument("--out", default="report", help="output directory (default: report)")
    parser.add_argument(
        "--formats",
        default="png,pdf",
        help="image formats, comma-separated; png is needed (default: png,pdf)",
    )
    parser.add_argument(
        "--only", default="", help="comma-separated figure ids to report (default: every one)"
    )
    args = parser.parse_args(argv)

    missing = [p for p in args.paths if not Path(p).exists()]
    if missing:
        parser.exit(2, f"report.py: error: no such directory: {', '.join(missing)}\n")
    formats = [f for f in args.formats.split(",") if f]
    if "png" not in formats:
        parser.exit(2, "report.py: error: --formats must include png (the report shows PNGs)\n")
    only = [f for f in args.only.split(",") if f] or None
    unknown = [f for f in only or () if f not in FIGURES]
    if unknown:
        parser.exit(
            2,
            f"report.py: error: unknown figure id(s): {', '.join(unknown)}; "
            f"valid figure ids: {', '.join(FIGURES)}\n",
        )

    # The results logger reports left-out runs and missing per-run files in one line each.
    logging.basicConfig(level=logging.WARNING, format="report.py: %(message)s")
    report = build_report(args.paths, args.out, formats=formats, figures=only)
    for line in report.skip_lines() + report.note_lines():
        print(f"report.py: {line}", file=sys.stderr)
    written = [p for f in report.figures for p in f.written] + report.write(args.out)
    for f in report.drawn:
        print(f"{f.spec.id}: drawn from {f.choice.sweep.name}")
    for path in written:
        print(f"wrote {path}")
    if not report.drawn:
        print("report.py: error: no figure could be drawn from these runs", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
