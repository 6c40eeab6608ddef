"""normlab's reporting core: a paper figure as data (`FigureSpec`: panels of lines over runs,
and its claims), one rule for a line over seeds (`bands`), the runs a figure or claim selects
(`runs`), and the rules every claim shares (`claims`). The figures themselves live in
`normlab.papers`; `normlab.report.registry` finds them."""

from normlab.report.bands import COLUMNS, DATA_COLUMNS, N_NONFINITE
from normlab.report.claims import (
    INSUFFICIENT,
    NOT_REPRODUCED,
    REPRODUCED,
    Claim,
    InsufficientData,
    Measurement,
    claims_markdown,
    evaluate_claims,
)
from normlab.report.spec import FigureSpec, Line, Marks, Panel, Runs, Shade, new_figure
from normlab.report.write import write_claims, write_plot

__all__ = [
    "COLUMNS",
    "DATA_COLUMNS",
    "INSUFFICIENT",
    "NOT_REPRODUCED",
    "N_NONFINITE",
    "REPRODUCED",
    "Claim",
    "FigureSpec",
    "InsufficientData",
    "Line",
    "Marks",
    "Measurement",
    "Panel",
    "Runs",
    "Shade",
    "claims_markdown",
    "evaluate_claims",
    "new_figure",
    "write_claims",
    "write_plot",
]
