"""The report's two documents: `report.md` (and a page per paper) and the self-contained
`report.html`, from a `normlab.report.document.Report`."""

from __future__ import annotations

import base64
import html as html_text
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from normlab.report.document import FigureResult, Report
    from normlab.results import PathLike


def one_line(text: object) -> str:
    """`text` on one line: every run of whitespace made one space."""
    return " ".join(str(text).split())


# --- markdown -----------------------------------------------------------------------------


def markdown(report: Report, out_dir: PathLike) -> str:
    """`report.md`: the sweeps, what was skipped and why, then per paper, per figure: where
    its runs came from, its image (a path relative to `out_dir`), its claims."""
    lines = ["# normlab report", ""]
    lines += [f"Runs searched: {', '.join(f'`{p}`' for p in report.paths)}.", ""]
    lines += _markdown_sweeps(report)
    skips, notes = report.skip_lines(), report.note_lines()
    if skips:
        lines += ["## Skipped figures", "", *(f"- {_md_text(s)}" for s in skips), ""]
    if notes:
        lines += ["## Notes", "", *(f"- {_md_text(s)}" for s in notes), ""]
    for paper, figures in report.papers().items():
        if not any(f.drawn or len(f.claims) for f in figures):
            continue
        counts = report.verdict_counts(paper)
        lines += [f"## {paper}", "", _counts_text(counts), ""]
        for f in figures:
            if f.drawn or len(f.claims):
                lines += _markdown_figure(f, out_dir)
    return "\n".join(lines).rstrip() + "\n"


def paper_markdown(report: Report, paper: str, out_dir: PathLike) -> str:
    """`<paper>.md`: one paper's figures and claims, as in `report.md` (images relative to
    `out_dir`): the page `docs/results/<paper>.md` is."""
    lines = [f"# {paper}: results", ""]
    lines += [
        f"Made by `python scripts/report.py {' '.join(report.paths)} --out <dir>` "
        "(normlab.report.document). " + _counts_text(report.verdict_counts(paper)) + ".",
        "",
    ]
    for f in report.papers()[paper]:
        if f.drawn or len(f.claims):
            lines += _markdown_figure(f, out_dir)
        else:
            lines += [f"### {_md_text(f.spec.title)} (`{f.spec.id}`)", ""]
            lines += [f"Not drawn: {_md_text(f.skipped)}.", ""]
    return "\n".join(lines).rstrip() + "\n"


def _markdown_sweeps(report: Report) -> list[str]:
    if not report.sweeps.sweeps:
        return ["No runs found.", ""]
    lines = ["## Sweeps", "", "| sweep | experiment | runs | feeds |", "|---|---|---|---|"]
    for s in report.sweeps.sweeps:
        runs = ", ".join(f"{n} {status}" for status, n in s.statuses.items())
        feeds = ", ".join(s.feeds()) or "no figure"
        lines.append(f"| {_md_cell(s.name)} | {s.experiment} | {runs} | {feeds} |")
    return [*lines, ""]


def _markdown_figure(f: FigureResult, out_dir: PathLike) -> list[str]:
    lines = [f"### {_md_text(f.spec.title)} (`{f.spec.id}`)", ""]
    lines += [f"- {_md_text(line)}" for line in _figure_lines(f)]
    lines.append("")
    if f.png is not None:
        rel = Path(os.path.relpath(f.png, out_dir)).as_posix()
        lines += [f"![{f.spec.id}]({rel})", ""]
    if len(f.claims):
        columns = ["claim_id", "claim", "paper_says", "measured", "per_seed", "interval"]
        columns.append("verdict")
        lines.append("| id | claim | paper says | measured | per seed | interval | verdict |")
        lines.append("|---|---|---|---|---|---|---|")
        for _, row in f.claims.iterrows():
            lines.append("| " + " | ".join(_md_cell(row[c]) for c in columns) + " |")
        lines.append("")
    else:
        lines += ["No declared claims.", ""]
    return lines


# --- html ---------------------------------------------------------------------------------


def html(report: Report) -> str:
    """`report.html`: the report's content in one file, every figure embedded as a
    `data:image/png;base64,` URI, an inline style, no script and nothing fetched."""
    e = html_text.escape
    body = ["<h1>normlab report</h1>"]
    body.append(f"<p>Runs searched: {', '.join(f'<code>{e(p)}</code>' for p in report.paths)}.</p>")
    if report.sweeps.sweeps:
        body.append("<h2>Sweeps</h2>")
        rows = [
            [
                s.name,
                s.experiment,
                ", ".join(f"{n} {st}" for st, n in s.statuses.items()),
                ", ".join(s.feeds()) or "no figure",
            ]
            for s in report.sweeps.sweeps
        ]
        body.append(_html_table(["sweep", "experiment", "runs", "feeds"], rows))
    else:
        body.append("<p>No runs found.</p>")
    skips, notes = report.skip_lines(), report.note_lines()
    if skips:
        body.append("<h2>Skipped figures</h2>")
        body.append("<ul>" + "".join(f"<li>{e(s)}</li>" for s in skips) + "</ul>")
    if notes:
        body.append("<h2>Notes</h2>")
        body.append("<ul>" + "".join(f"<li>{e(s)}</li>" for s in notes) + "</ul>")
    for paper, figures in report.papers().items():
        if not any(f.drawn or len(f.claims) for f in figures):
            continue
        body.append(f"<h2>{e(paper)}</h2>")
        body.append(f"<p>{e(_counts_text(report.verdict_counts(paper)))}</p>")
        for f in figures:
            if f.drawn or len(f.claims):
                body.append(_html_figure(f))
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        "<title>normlab report</title>\n"
        f"<style>{STYLE}</style>\n</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"
    )


STYLE = (
    "body{font-family:sans-serif;max-width:75em;margin:1em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:.5em 0 1.5em}"
    "td,th{border:1px solid #ccc;padding:.25em .5em;vertical-align:top;font-size:.9em}"
    "th{background:#f3f3f3;text-align:left}img{max-width:100%}"
    ".reproduced{background:#dff0d8}.not-reproduced{background:#f2dede}"
    ".insufficient-data{background:#fcf8e3}"
)


def _counts_text(counts: dict[str, int]) -> str:
    total = sum(counts.values())
    return f"{total} claim(s): " + ", ".join(f"{n} {v}" for v, n in counts.items())


def _figure_lines(f: FigureResult) -> list[str]:
    """Where a figure's runs came from and what happened to it, one line each."""
    lines = []
    sweep = f.choice.sweep
    if sweep is not None:
        lines.append(f"runs: {sweep.name} ({sweep.experiment})")
    if f.seeds or f.scale:
        lines.append(f"seeds {f.seeds or 'none'}; {f.scale or 'scale unknown'}")
    if f.command:
        lines.append(f"made by {f.command} ({f.minutes:g} wall minutes of the runs drawn)")
    if f.choice.note:
        lines.append(f.choice.note)
    lines += f.notes
    if f.skipped:
        lines.append(f"not drawn: {f.skipped}")
    if f.claims_error:
        lines.append(f"claims not evaluated: {f.claims_error}")
    return lines


def _md_text(text: object) -> str:
    return one_line(text).replace("<", "&lt;")


def _md_cell(value: object) -> str:
    # A pipe would end the cell and a newline the row.
    return _md_text(value).replace("|", "\\|")


def _html_table(header: Sequence[str], rows: Iterable[Sequence[object]], verdict: int = -1) -> str:
    e = html_text.escape
    out = ["<table>", "<tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>"]
    for row in rows:
        cells = []
        for i, value in enumerate(row):
            cls = f' class="{str(value).replace(" ", "-")}"' if i == verdict else ""
            cells.append(f"<td{cls}>{e(str(value))}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _html_figure(f: FigureResult) -> str:
    e = html_text.escape
    parts = [f"<h3>{e(f.spec.title)} (<code>{e(f.spec.id)}</code>)</h3>"]
    parts.append("<ul>" + "".join(f"<li>{e(line)}</li>" for line in _figure_lines(f)) + "</ul>")
    if f.png is not None:
        data = base64.b64encode(f.png.read_bytes()).decode("ascii")
        parts.append(f'<img alt="{e(f.spec.id)}" src="data:image/png;base64,{data}">')
    if len(f.claims):
        columns = ["claim_id", "claim", "paper_says", "measured", "per_seed", "interval", "verdict"]
        rows = [[row[c] for c in columns] for _, row in f.claims.iterrows()]
        header = ["id", "claim", "paper says", "measured", "per seed", "interval", "verdict"]
        parts.append(_html_table(header, rows, verdict=6))
    else:
        parts.append("<p>No declared claims.</p>")
    return "\n".join(parts)
