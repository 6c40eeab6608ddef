"""Moved to `normlab.report.claims` (kept while the figures move to `normlab.papers`)."""

from normlab.report.claims import *  # noqa: F403
from normlab.report.claims import (  # noqa: F401
    COLUMNS,
    MARKDOWN_COLUMNS,
    _runs_text,
    _short_of,
)
