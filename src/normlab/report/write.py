"""Writing a figure and its claims: `<out>/<figure id>.<format>`, `_data.csv`, `_claims.md`,
`_claims.csv` (`scripts/figures.py`; the id holds the paper: `<out>/santurkar2018/dln_fig10_...`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from normlab.report.claims import claims_markdown, evaluate_claims
from normlab.report.spec import FigureSpec
from normlab.results import PathLike


def write_claims(
    spec: FigureSpec, table: pd.DataFrame, out_dir: PathLike
) -> tuple[list[Path], pd.DataFrame]:
    """Evaluate `spec`'s claims on `table`; write `<out_dir>/<id>_claims.md` and `_claims.csv`.

    Returns the paths written and the claims table."""
    base = Path(out_dir) / spec.id
    base.parent.mkdir(parents=True, exist_ok=True)
    claims = evaluate_claims(spec.claims, table)
    md = base.with_name(f"{base.name}_claims.md")
    md.write_text(f"# {spec.title}: claims\n\n{claims_markdown(claims)}")
    csv = base.with_name(f"{base.name}_claims.csv")
    claims.to_csv(csv, index=False)
    return [md, csv], claims


def write_plot(
    spec: FigureSpec,
    table: pd.DataFrame,
    out_dir: PathLike,
    formats: Sequence[str] = ("png", "pdf"),
) -> list[Path]:
    """Draw `spec` from `table` to `<out_dir>/<id>.<format>` for each format, and write the
    plotted data (`spec.data`) to `<out_dir>/<id>_data.csv`; the paths written.

    Raises the figure's ValueError, writing nothing, when the table cannot make it."""
    base = Path(out_dir) / spec.id
    data = spec.data(table)
    fig = spec.draw(table) if formats else None
    base.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        path = base.with_name(f"{base.name}.{fmt}")
        fig.savefig(path, dpi=150)
        written.append(path)
    csv = base.with_name(f"{base.name}_data.csv")
    data.to_csv(csv, index=False)
    written.append(csv)
    return written
