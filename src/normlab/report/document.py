"""The report: every figure the runs under some directories can make, with its claims, in one
document (`scripts/report.py`).

A *sweep* is the runs of one experiment preset under one directory: the runs grouped by their
summary's `experiment` and their sweep directory (the parent of the job directories:
`runs/santurkar2018/dln_suite/multirun_<date>_<time>/`). Each sweep feeds the figures of its
preset (`registry.FIGURES`: a figure's own preset; `registry.SUITES`: a suite's figures). A
figure that several sweeps hold runs for (the suite's and its own) is drawn from one of them:
the one with more finished runs of the figure's norms and rates, then the newest (its latest
`summary.json`); sweeps that tie on both are refused, named.

Each figure is drawn and its claims evaluated as `scripts/figures.py` does (`FigureSpec.load`'s
`join_metrics` of the figure's metrics and files, `write_plot`, `write_claims`), into
`<out>/<paper>/<figure>.png` etc.; then `<out>/report.md` (per paper, per figure: the image and
its claims), a self-contained `<out>/report.html` (images embedded as base64 data URIs, inline
style, nothing fetched) and `<out>/claims.csv` (`CLAIMS_COLUMNS`: one row per declared claim of
every figure some sweep feeds; a figure that was refused lists its claims as "insufficient data",
`measured` saying why). A figure is skipped, in one line saying why, when no sweep feeds it or it
refused its runs (its ValueError).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pandas as pd

from normlab.report import render
from normlab.report.claims import INSUFFICIENT, NOT_REPRODUCED, REPRODUCED
from normlab.report.registry import FIGURES, SUITES
from normlab.report.render import one_line
from normlab.report.runs import LR_COLUMN, VARIANT, model_text, rate_is, seeds_text, with_variants
from normlab.report.spec import FigureSpec
from normlab.report.write import write_claims, write_plot
from normlab.results import PathLike, join_metrics, load_summaries

VERDICTS = (REPRODUCED, NOT_REPRODUCED, INSUFFICIENT)
# Every status a run can have (docs/run-directory.md), so that the report sees every run and
# counts, per sweep, those no figure draws.
STATUSES = (
    "running",
    "finished",
    "diverged",
    "failed",
    "interrupted",
    "fast_dev_run",
    "unreadable",
)
CLAIMS_COLUMNS = [
    "paper",
    "figure",
    "claim_id",
    "claim",
    "paper_says",
    "measured",
    "per_seed",
    "interval",
    "seeds",
    "scale",
    "verdict",
    "value",
    "sweep",
    # how the runs were made (their preset and scale) and the wall minutes of the runs the figure
    # draws (a run two figures draw counts in both)
    "command",
    "minutes",
]
REPORT_FILES = ("report.md", "report.html", "claims.csv")


def shown_path(path: PathLike) -> str:
    """`path` relative to the working directory when it lies under it, else absolute."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve())) or "."
    except ValueError:
        return str(path)


# --- sweeps ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sweep:
    """The runs of one experiment preset under one directory: their `load_summaries` rows (every
    status), the directory, and the preset."""

    directory: Path
    experiment: str
    runs: pd.DataFrame

    @property
    def name(self) -> str:
        """The directory as shown in the report."""
        return shown_path(self.directory)

    @property
    def statuses(self) -> dict[str, int]:
        """How many runs have each status."""
        return {str(k): int(v) for k, v in self.runs["status"].value_counts().sort_index().items()}

    @property
    def newest(self) -> float:
        """When its latest run last wrote its `summary.json` (seconds since the epoch)."""
        times = [(Path(r) / "summary.json").stat().st_mtime for r in self.runs["run_dir"]]
        return max(times, default=0.0)

    def feeds(self) -> tuple[str, ...]:
        """The ids of the figures its preset feeds (none: a preset without a figure)."""
        if self.experiment in SUITES:
            return SUITES[self.experiment]
        return (self.experiment,) if self.experiment in FIGURES else ()

    def drawable(self, spec: FigureSpec) -> int:
        """How many of its finished runs are of `spec`'s norms and rates (its `lrs`; none: any)."""
        rows = self.runs[self.runs["status"] == "finished"]
        if rows.empty:
            return 0
        if "norm.name" in rows.columns:
            rows = with_variants(rows)
            rows = rows[rows[VARIANT].isin(list(spec.variants))]
        if spec.lrs is not None and LR_COLUMN in rows.columns and not rows.empty:
            at = pd.Series(False, index=rows.index)
            for lr in spec.lrs:
                at |= rate_is(rows[LR_COLUMN], lr)
            rows = rows[at]
        return len(rows)


@dataclass(frozen=True)
class Sweeps:
    """Every sweep under some directories, and the runs that belong to none (no experiment named
    in their summary: unreadable, or a run without a preset), counted by directory."""

    sweeps: list[Sweep]
    orphans: dict[str, int] = field(default_factory=dict)


def find_sweeps(paths: Iterable[PathLike]) -> Sweeps:
    """The sweeps under `paths` (searched recursively, `normlab.results.find_runs`): runs grouped
    by their summary's `experiment` and their directory's parent, sorted by directory then
    preset. FileNotFoundError naming a path that does not exist."""
    summaries = load_summaries(paths, statuses=STATUSES)
    if summaries.empty:
        return Sweeps([])
    parents = summaries["run_dir"].map(lambda r: str(Path(r).parent))
    named = summaries["experiment"].notna()
    orphans = {
        shown_path(parent): int(n)
        for parent, n in parents[~named].value_counts().sort_index().items()
    }
    sweeps = []
    rows = summaries[named]
    for (parent, experiment), runs in rows.groupby([parents[named], rows["experiment"]]):
        sweeps.append(Sweep(Path(parent), str(experiment), runs.reset_index(drop=True)))
    return Sweeps(sorted(sweeps, key=lambda s: (str(s.directory), s.experiment)), orphans)


@dataclass(frozen=True)
class Choice:
    """Which sweep a figure draws from (None: refused, `reason` says why) and, when several
    hold its runs, which and why (`note`; "" when there was one)."""

    sweep: Sweep | None
    note: str = ""
    reason: str = ""
    candidates: tuple[Sweep, ...] = ()


def _when(t: float, precise: bool = False) -> str:
    """A `summary.json` time as local date and time (to the microsecond if `precise`)."""
    spec = "microseconds" if precise else "seconds"
    return datetime.fromtimestamp(t).isoformat(sep=" ", timespec=spec)


def choose_sweep(spec: FigureSpec, candidates: Sequence[Sweep]) -> Choice:
    """The sweep of `candidates` (those whose preset feeds `spec`) to draw `spec` from: the one
    with more finished runs of its norms and rates (`Sweep.drawable`), then the newest
    (`Sweep.newest`). Refused (`Choice.sweep` None) when there is none, or the best two tie on
    both."""
    if not candidates:
        suite = f" or its suite {spec.suite}" if spec.suite else ""
        return Choice(None, reason=f"no runs of {spec.id}{suite} under the given directories")
    if len(candidates) == 1:
        return Choice(candidates[0], candidates=tuple(candidates))
    ranked = sorted(candidates, key=lambda s: (s.drawable(spec), s.newest), reverse=True)
    best, second = ranked[0], ranked[1]
    n_best, n_second = best.drawable(spec), second.drawable(spec)
    listed = "; ".join(
        f"{s.name} ({s.experiment}: {s.drawable(spec)} finished runs of its norms and rates, "
        f"last written {_when(s.newest)})"
        for s in ranked
    )
    if (n_best, best.newest) == (n_second, second.newest):
        return Choice(
            None,
            reason=(
                f"several sweeps hold its runs and cannot be told apart (same number of finished "
                f"runs of its norms and rates, last written at the same time): {listed}; give "
                "only one of them"
            ),
            candidates=tuple(ranked),
        )
    if n_best > n_second:
        why = f"more finished runs of its norms and rates ({n_best} vs {n_second})"
    else:
        precise = _when(best.newest) == _when(second.newest)
        why = (
            f"as many finished runs of its norms and rates ({n_best}), and newer "
            f"({_when(best.newest, precise)} vs {_when(second.newest, precise)})"
        )
    others = ", ".join(s.name for s in ranked[1:])
    note = f"several sweeps hold its runs: {listed}. Used {best.name}: {why}; not {others}."
    return Choice(best, note=note, candidates=tuple(ranked))


# --- the figures ----------------------------------------------------------------------------------


@dataclass
class FigureResult:
    """One figure of the report: the sweep it drew from (None: no sweep fed it, or several could
    not be told apart), what it wrote, its claims (`CLAIMS_COLUMNS` rows), and why it was skipped
    (`skipped`) or its claims could not be evaluated (`claims_error`)."""

    spec: FigureSpec
    choice: Choice
    png: Path | None = None
    written: list[Path] = field(default_factory=list)
    claims: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=CLAIMS_COLUMNS))
    seeds: str = ""
    scale: str = ""
    command: str = ""
    minutes: float = float("nan")
    skipped: str = ""
    claims_error: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def paper(self) -> str:
        return self.spec.id.split("/", 1)[0]

    @property
    def name(self) -> str:
        return self.spec.id.split("/", 1)[-1]

    @property
    def drawn(self) -> bool:
        return not self.skipped

    @property
    def had_runs(self) -> bool:
        """Whether some sweep fed it (its claims are then listed, drawn or not)."""
        return bool(self.choice.candidates)


def _claim_rows(
    result: FigureResult, evaluated: pd.DataFrame | None, why: str = ""
) -> pd.DataFrame:
    """One `CLAIMS_COLUMNS` row per declared claim of the figure: from `evaluated`
    (`evaluate_claims`' table), or "insufficient data" with `measured` = `why`."""
    spec = result.spec
    by_id = {} if evaluated is None else {r["id"]: r for _, r in evaluated.iterrows()}
    sweep = result.choice.sweep.name if result.choice.sweep is not None else ""
    rows = []
    for claim in spec.claims:
        got = by_id.get(claim.id)
        rows.append(
            {
                "paper": result.paper,
                "figure": result.name,
                "claim_id": claim.id,
                "claim": claim.claim,
                "paper_says": claim.paper_says,
                "measured": got["measured"] if got is not None else why,
                # the measured quantity seed by seed and its spread (normlab.report.claims)
                "per_seed": got["per seed"] if got is not None else "",
                "interval": got["interval"] if got is not None else "",
                "seeds": (got["seeds"] if got is not None and got["seeds"] else result.seeds),
                "scale": result.scale,
                "verdict": got["verdict"] if got is not None else INSUFFICIENT,
                "value": got["value"] if got is not None else float("nan"),
                "sweep": sweep,
                "command": result.command,
                "minutes": result.minutes,
            }
        )
    return pd.DataFrame(rows, columns=CLAIMS_COLUMNS)


@functools.cache
def _declared_scales(experiment: str) -> dict[str, tuple[object, int]]:
    """{scale: (model.width, trainer.max_steps)} of every scale `experiment`'s protocol declares."""
    from normlab.config import compose_config

    names = list(compose_config([f"experiment={experiment}"]).scales)
    out = {}
    for name in names:
        cfg = compose_config([f"experiment={experiment}", f"scale={name}"])
        out[name] = (cfg.model.get("width"), int(cfg.trainer.max_steps))
    return out


def runs_scale(experiment: str, table: pd.DataFrame) -> str | None:
    """The scale `table`'s runs were made at: the one their configs record, or, for runs from
    before normlab recorded it, the declared scale of `experiment` whose model width and run
    length they all have. None when they mix scales or match none (a test's tiny runs)."""
    runs = table.drop_duplicates("run_dir")
    if "scale" in runs and runs["scale"].notna().all():
        recorded = set(runs["scale"])
        return recorded.pop() if len(recorded) == 1 else None
    widths = {None if pd.isna(w) else w for w in runs.get("model.width", pd.Series([None]))}
    steps = set(runs["max_steps"].astype(int))
    if len(widths) != 1 or len(steps) != 1:
        return None
    shape = (widths.pop(), steps.pop())
    matches = [name for name, declared in _declared_scales(experiment).items() if declared == shape]
    return matches[0] if len(matches) == 1 else None


def training_command(experiment: str, table: pd.DataFrame) -> str:
    """The multirun that makes a sweep of `experiment`'s runs at their scale (`runs_scale`); a
    shell comment says so when the runs are at no declared scale."""
    command = f"python -m normlab.train -m experiment={experiment}"
    scale = runs_scale(experiment, table)
    if scale is None:
        return f"{command}  # the runs are at no declared scale"
    return command if scale == "paper" else f"{command} scale={scale}"


def run_minutes(table: pd.DataFrame) -> float:
    """The wall minutes of the runs in `table` (one row or many per run), summed."""
    if "wall_time_s" not in table:
        return float("nan")
    runs = table.drop_duplicates("run_dir")
    return round(float(runs["wall_time_s"].sum(min_count=1)) / 60, 2)


def draw_figure(
    spec: FigureSpec, choice: Choice, out_dir: PathLike, formats: Sequence[str] = ("png",)
) -> FigureResult:
    """Draw `spec` from the chosen sweep's runs (those of its `statuses`) and evaluate its claims
    into `out_dir`, as `scripts/figures.py` does. The figure's ValueError skips it (its claims
    then all "insufficient data", saying why); a ValueError of its claims only marks them so."""
    result = FigureResult(spec, choice)
    sweep = choice.sweep
    if sweep is None:
        result.skipped = choice.reason
        if result.had_runs:
            result.claims = _claim_rows(result, None, f"figure not drawn: {choice.reason}")
        return result
    drawn = sweep.runs["status"].isin(spec.statuses)
    left = sweep.runs.loc[~drawn, "status"].value_counts().sort_index()
    if len(left):
        parts = ", ".join(f"{n} {status}" for status, n in left.items())
        result.notes.append(
            f"left out {parts} run(s): it draws {'/'.join(spec.statuses)} runs only"
        )
    summaries = sweep.runs[drawn].reset_index(drop=True)
    summaries.attrs["left_out"] = {str(k): int(v) for k, v in left.items()}
    try:
        if summaries.empty:
            raise ValueError(f"{spec.id}: no {'/'.join(spec.statuses)} runs in {sweep.name}")
        table = join_metrics(summaries, metrics=spec.needed_metrics(), files=spec.files)
        result.written += write_plot(spec, table, out_dir, formats=formats)
        runs = spec.runs(table)
    except ValueError as err:
        result.skipped = one_line(err)
        result.claims = _claim_rows(result, None, f"figure not drawn: {result.skipped}")
        return result
    result.seeds = seeds_text(runs.seeds)
    result.scale = model_text(runs.table)
    result.command = training_command(sweep.experiment, runs.table)
    result.minutes = run_minutes(runs.table)
    pngs = [p for p in result.written if p.suffix == ".png"]
    result.png = pngs[0] if pngs else None
    try:
        paths, evaluated = write_claims(spec, table, out_dir)
        result.written += paths
        result.claims = _claim_rows(result, evaluated)
    except ValueError as err:
        result.claims_error = one_line(err)
        result.claims = _claim_rows(result, None, f"claims not evaluated: {result.claims_error}")
    return result


# --- the report -----------------------------------------------------------------------------------


@dataclass
class Report:
    """Every figure considered (in registry order), the sweeps found, and the directories
    searched."""

    paths: list[str]
    sweeps: Sweeps
    figures: list[FigureResult]

    @property
    def drawn(self) -> list[FigureResult]:
        return [f for f in self.figures if f.drawn]

    def skip_lines(self) -> list[str]:
        """One line per figure not drawn: its id and why."""
        return [f"skipped {f.spec.id}: {f.skipped}" for f in self.figures if f.skipped]

    def note_lines(self) -> list[str]:
        """One line per other thing worth saying: a sweep chosen among several, claims not
        evaluated, runs left out, runs or sweeps that feed no figure."""
        lines = []
        for f in self.figures:
            if f.choice.note:
                lines.append(f"{f.spec.id}: {f.choice.note}")
            if f.claims_error:
                lines.append(f"{f.spec.id}: cannot evaluate the claims: {f.claims_error}")
        for s in self.sweeps.sweeps:
            if not s.feeds():
                lines.append(f"{s.name}: experiment {s.experiment!r} feeds no registered figure")
        for directory, n in self.sweeps.orphans.items():
            lines.append(f"{directory}: {n} run(s) whose summary names no experiment")
        return lines

    def claims_table(self) -> pd.DataFrame:
        """`CLAIMS_COLUMNS`: one row per declared claim of every figure some sweep fed."""
        frames = [f.claims for f in self.figures if len(f.claims)]
        if not frames:
            return pd.DataFrame(columns=CLAIMS_COLUMNS)
        return pd.concat(frames, ignore_index=True)[CLAIMS_COLUMNS]

    def papers(self) -> dict[str, list[FigureResult]]:
        """The figures by paper, in registry order."""
        out: dict[str, list[FigureResult]] = {}
        for f in self.figures:
            out.setdefault(f.paper, []).append(f)
        return out

    def verdict_counts(self, paper: str) -> dict[str, int]:
        claims = self.claims_table()
        verdicts = claims.loc[claims["paper"] == paper, "verdict"]
        return {v: int((verdicts == v).sum()) for v in VERDICTS}

    # --- files --------------------------------------------------------------------------------

    def write(self, out_dir: PathLike) -> list[Path]:
        """Write `report.md`, `report.html`, `claims.csv` and a `<paper>.md` for each paper with
        something to show into `out_dir`; the paths."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        md, page, csv = (out / name for name in REPORT_FILES)
        md.write_text(render.markdown(self, out))
        page.write_text(render.html(self))
        self.claims_table().to_csv(csv, index=False)
        pages = []
        for paper, figures in self.papers().items():
            if any(f.drawn or len(f.claims) for f in figures):
                pages.append(out / f"{paper}.md")
                pages[-1].write_text(render.paper_markdown(self, paper, out))
        return [md, page, csv, *pages]


def build_report(
    paths: Sequence[PathLike],
    out_dir: PathLike,
    formats: Sequence[str] = ("png", "pdf"),
    figures: Sequence[str] | None = None,
) -> Report:
    """Find the sweeps under `paths`, draw every figure of `figures` (default: every registered
    one) that one feeds into `out_dir` (`formats`: image formats, PNG needed for the report's
    images), evaluate its claims, and return the report (not yet written: `Report.write`).

    FileNotFoundError naming a path that does not exist; ValueError for an unknown figure id."""
    ids = list(FIGURES) if figures is None else list(dict.fromkeys(figures))
    unknown = [i for i in ids if i not in FIGURES]
    if unknown:
        raise ValueError(f"unknown figure id(s): {', '.join(unknown)}; known: {', '.join(FIGURES)}")
    found = find_sweeps(paths)
    results = []
    for figure_id in ids:
        spec = FIGURES[figure_id]
        candidates = [s for s in found.sweeps if figure_id in s.feeds()]
        results.append(draw_figure(spec, choose_sweep(spec, candidates), out_dir, formats))
    return Report([shown_path(p) for p in paths], found, results)
