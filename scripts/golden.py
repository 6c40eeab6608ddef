"""Golden outputs of the figure scripts: record what `scripts/figures.py` makes from a set of runs,
and check later that the same runs still give the same numbers and verdicts.

    python scripts/golden.py record NAME SWEEP_DIR [SWEEP_DIR ...]
    python scripts/golden.py check  NAME SWEEP_DIR [SWEEP_DIR ...]

For every figure the runs feed (the figure of their preset, or every figure of their suite),
`figures.py ID SWEEP... --formats ""` is run; its plotted data (`<id>_data.csv`), its claims
(`<id>_claims.csv`: measured text, verdict, value) and its error lines (what it refused, and why)
are stored under `tests/golden/NAME/<id>/`. `check` compares them byte for byte (the CSVs are
written with pandas' shortest round-trip float repr, so equal numbers give equal text) and prints
a unified diff of what differs; exit 1 if anything does.

`tests/test_golden.py` checks the goldens made from the fake-run fixtures and the committed smoke
sweeps (`tests/golden/runs/`) on every test run; the goldens of real sweeps too large to commit
(`dln_suite_real`) are checked by hand with the second command above.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import importlib.util
import io
import json
import sys
import tempfile
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "golden"
N_NONFINITE = "n_nonfinite"


def _figures_main():
    spec = importlib.util.spec_from_file_location("figures_script", REPO / "scripts/figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def figure_ids(paths: list[Path]) -> list[str]:
    """Every figure the runs under `paths` feed: their preset's figure, or each of its suite's."""
    from normlab.report.registry import FIGURES, SUITES

    experiments = set()
    for summary in sorted(p for path in paths for p in Path(path).rglob("summary.json")):
        experiments.add(json.loads(summary.read_text()).get("experiment"))
    ids = []
    for experiment in sorted(e for e in experiments if e):
        ids += SUITES.get(experiment, (experiment,) if experiment in FIGURES else ())
    return list(dict.fromkeys(ids))


def draw(paths: list[Path]) -> dict[str, dict[str, str]]:
    """Per figure id: the text of its data.csv, claims.csv and errors.txt ("" when not written)."""
    main = _figures_main()
    outputs: dict[str, dict[str, str]] = {}
    for figure_id in figure_ids(paths):
        with tempfile.TemporaryDirectory() as out:
            stderr = io.StringIO()
            with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
                main([figure_id, *map(str, paths), "--out", out, "--formats", ""])
            base = Path(out) / figure_id
            texts = {}
            for name, path in (
                ("data.csv", base.with_name(f"{base.name}_data.csv")),
                ("claims.csv", base.with_name(f"{base.name}_claims.csv")),
            ):
                texts[name] = path.read_text() if path.exists() else ""
            # Only the lines saying what was refused: paths vary with the machine, the rest is
            # progress text.
            errors = [line for line in stderr.getvalue().splitlines() if "error:" in line]
            texts["errors.txt"] = "".join(f"{_machine_free(line, paths)}\n" for line in errors)
        outputs[figure_id] = texts
    return outputs


def _machine_free(line: str, paths: list[Path]) -> str:
    """`line` with the sweep directories' paths (which vary with the machine) as `<runs>`."""
    for path in sorted(paths, key=lambda p: -len(str(p))):
        line = line.replace(str(path), "<runs>")
    return line


def record(name: str, paths: list[Path]) -> None:
    for figure_id, texts in draw(paths).items():
        folder = GOLDEN / name / figure_id
        folder.mkdir(parents=True, exist_ok=True)
        for file, text in texts.items():
            (folder / file).write_text(text)
        print(f"recorded {folder.relative_to(REPO)}")


def _by_line(frame: pd.DataFrame) -> list[pd.DataFrame]:
    """The rows of each (panel, series) of plotted data, in order, the lines sorted by name."""
    groups = frame.groupby(["panel", "series"], sort=True)
    return [rows.reset_index(drop=True) for _, rows in groups]


def _same_data(golden: str, text: str) -> bool:
    """Whether the plotted data `text` equals `golden` (every value as text) but for two things
    that change no number: the order of the lines in the file (each line's rows in their order;
    the figures once wrote Fig. 3(b) rate by rate, now panel by panel), and an `n_nonfinite`
    column of zeros (every figure now writes it; Ioffe 2015 Fig. 1 had none)."""
    if not golden.strip() or not text.strip():
        return False
    old = pd.read_csv(io.StringIO(golden), dtype=str, keep_default_na=False)
    new = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    extra = [c for c in new.columns if c not in old.columns]
    if extra not in ([], [N_NONFINITE]) or (extra and not (new[N_NONFINITE] == "0").all()):
        return False
    if [c for c in new.columns if c not in extra] != list(old.columns):
        return False  # a column lost, or the columns reordered
    new = new[list(old.columns)]
    if not {"panel", "series"} <= set(old.columns):
        return False
    lines_old, lines_new = _by_line(old), _by_line(new)
    return len(lines_old) == len(lines_new) and all(
        a.equals(b) for a, b in zip(lines_old, lines_new, strict=True)
    )


# The columns claims gained after the goldens were recorded (issue "one report": the evidence
# per seed): a golden without them is compared on its own columns.
NEW_CLAIM_COLUMNS = ["seeds", "per seed", "interval"]


def _same_claims(golden: str, text: str) -> bool:
    """Whether the claims `text` equal `golden` on every recorded column (as text, in order), the
    only other columns being `NEW_CLAIM_COLUMNS`, after them."""
    if not golden.strip() or not text.strip():
        return False
    old = pd.read_csv(io.StringIO(golden), dtype=str, keep_default_na=False)
    new = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    if list(new.columns) != [*old.columns, *NEW_CLAIM_COLUMNS]:
        return False
    return new[list(old.columns)].equals(old)


def differences(name: str, paths: list[Path]) -> list[str]:
    """The unified diffs between the goldens `name` and what the runs give now ([] if equal)."""
    expected_ids = sorted(
        str(p.parent.relative_to(GOLDEN / name)) for p in (GOLDEN / name).rglob("data.csv")
    )
    outputs = draw(paths)
    diffs = []
    if sorted(outputs) != expected_ids:
        diffs.append(f"figures drawn {sorted(outputs)} != recorded {expected_ids}")
    for figure_id, texts in outputs.items():
        for file, text in texts.items():
            path = GOLDEN / name / figure_id / file
            golden = path.read_text() if path.exists() else "<no golden>\n"
            same = {"data.csv": _same_data, "claims.csv": _same_claims}.get(file)
            if text != golden and not (same and same(golden, text)):
                diffs.append(
                    "".join(
                        difflib.unified_diff(
                            golden.splitlines(keepends=True),
                            text.splitlines(keepends=True),
                            f"golden {figure_id}/{file}",
                            f"now {figure_id}/{file}",
                            n=1,
                        )
                    )
                )
    return diffs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="golden.py", description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=["record", "check"])
    parser.add_argument("name", help="the goldens' folder under tests/golden/")
    parser.add_argument("paths", nargs="+", type=Path, help="run or sweep directories")
    args = parser.parse_args(argv)
    if args.action == "record":
        record(args.name, args.paths)
        return 0
    diffs = differences(args.name, args.paths)
    for diff in diffs:
        print(diff)
    print(f"golden {args.name}: {'DIFFERENT' if diffs else 'equal'}")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
