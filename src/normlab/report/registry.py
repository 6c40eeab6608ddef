"""Every paper figure normlab draws, found in the paper packages (`normlab.papers.<paper>`): each
module of a paper package that defines `FIGURE` (a `normlab.report.FigureSpec`) is one figure,
its id the experiment preset whose runs it draws, mirrored by the module's path
(`normlab.papers.santurkar2018.dln_fig10_landscape` draws `experiment=santurkar2018/
dln_fig10_landscape`). Adding a figure is writing one such module and its preset.

`FIGURES` maps a figure id to its spec; `SUITES` maps a preset whose sweep feeds several figures
(`santurkar2018/dln_suite`: every figure whose spec names it as its `suite`) to those figures' ids.
"""

from __future__ import annotations

import importlib
import pkgutil
import re

import pandas as pd

import normlab.papers
from normlab.report.spec import FigureSpec


def _natural(text: str) -> list:
    """ "dln_fig3b" before "dln_fig10": digits compared as numbers."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def discover() -> dict[str, FigureSpec]:
    """The `FIGURE` of every module of every paper package, by id, in natural order. ValueError
    when a module's path does not mirror its figure's id, or two modules claim one id."""
    found: dict[str, FigureSpec] = {}
    for paper in pkgutil.iter_modules(normlab.papers.__path__):
        if not paper.ispkg:
            continue
        package = importlib.import_module(f"normlab.papers.{paper.name}")
        for info in pkgutil.iter_modules(package.__path__):
            module = importlib.import_module(f"{package.__name__}.{info.name}")
            spec = getattr(module, "FIGURE", None)
            if spec is None:
                continue  # a paper's shared measures or protocol
            expected = f"{paper.name}/{info.name}"
            if spec.id != expected:
                raise ValueError(f"{module.__name__} defines figure {spec.id!r}, not {expected!r}")
            found[spec.id] = spec
    return {k: found[k] for k in sorted(found, key=_natural)}


FIGURES: dict[str, FigureSpec] = discover()

SUITES: dict[str, tuple[str, ...]] = {}
for _spec in FIGURES.values():
    if _spec.suite:
        SUITES[_spec.suite] = (*SUITES.get(_spec.suite, ()), _spec.id)


def infer_figure_id(table: pd.DataFrame) -> str:
    """The figure id of the runs in `table` (a `load_summaries` or `load_metrics` table), read from
    their `experiment` column. ValueError, listing what was found and the registered ids, when the
    runs belong to no registered figure or to several, or to a suite (`SUITES`) that feeds several
    figures: the message then names those."""
    registered = ", ".join(FIGURES)
    found = sorted(str(e) for e in table["experiment"].dropna().unique()) if len(table) else []
    if len(found) == 1 and found[0] in FIGURES:
        return found[0]
    if not found:
        raise ValueError(f"no runs to infer the figure from; registered figures: {registered}")
    if len(found) == 1 and found[0] in SUITES:
        raise ValueError(
            f"runs of {found[0]} feed several figures; name one: {', '.join(SUITES[found[0]])}"
        )
    if len(found) > 1:
        problem = f"the runs come from several experiments ({', '.join(found)})"
    else:
        problem = f"experiment {found[0]!r} has no registered figure"
    raise ValueError(f"cannot infer the figure: {problem}; registered figures: {registered}")
