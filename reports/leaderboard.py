"""The leaderboard: one row per source, its counts (``n``, ``failed``, ``missing``, ``coverage``),
then one column per headline metric with direction arrows.

``leaderboard.csv`` holds plain values (plus ``<metric>_ci_low``/``_ci_high`` and
``coverage_note``, the reason a source is marked); ``leaderboard.md`` shows ``value [low, high]``,
marks a source below ``metrics.min_coverage`` with † and explains counts, marks and the
evaluator of every metric in footnotes, so demo numbers are never mistaken for Inception-FID or
torchxrayvision numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from xreal_bench.atomic import write_text_atomic
from xreal_bench.coverage import Coverage
from xreal_bench.metrics import table as metric_table
from xreal_bench.reports.coverage import COUNTS_NOTE, MARK, count_text, counts, coverage_text, is_marked, mark_footnote
from xreal_bench.tables import markdown_cell, to_csv

REFERENCE = "real"
DEMOGRAPHICS_NOTE = (
    "Fallback demographics (no MIMIC-IV record for the case, or its age, sex or race unknown there, so the prompt "
    "carried the documented fallback value for each missing one; "
    "each image's source is in its manifest line, condition.inputs.demographics):"
)
NO_COVERAGE: Mapping[str, Coverage] = {}


def fmt(value: float, decimals: int) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{decimals}f}"


def cell(row: pd.Series | None, decimals: int) -> str:
    if row is None:
        return "–"
    text = fmt(row["value"], decimals)
    if not (math.isnan(row["ci_low"]) or math.isnan(row["ci_high"])):
        text += f" [{fmt(row['ci_low'], decimals)}, {fmt(row['ci_high'], decimals)}]"
    return text


def generator_order(frame: pd.DataFrame, coverage: Mapping[str, Coverage] = NO_COVERAGE) -> list[str]:
    """The reference row first, then sources best first by the ranking metric (FID) if present, else by name.

    Sources with a coverage record but no result row (nothing scored) are listed too, last among equals.
    """
    present = set(frame["generator"]) | set(coverage)
    names = sorted(present - {REFERENCE})
    ranking = metric_table.ranking()
    values = frame[(frame.metric == ranking.name) & (frame.subset == "all")].set_index("generator")["value"]
    sign = 1 if ranking.lower_is_better else -1

    def key(g: str) -> tuple[float, str]:
        v = values.get(g, math.nan)
        return (math.inf if math.isnan(v) else sign * v, g)

    names.sort(key=key)
    return ([REFERENCE] if REFERENCE in present else []) + names


def leaderboard(frame: pd.DataFrame, coverage: Mapping[str, Coverage] = NO_COVERAGE) -> pd.DataFrame:
    """Wide table: generator, its counts, then each present headline metric with its CI columns."""
    overall = frame[frame.subset == "all"]
    metrics = [m.name for m in metric_table.headline() if m.name in set(overall.metric)]
    records = []
    for g in generator_order(overall, coverage):
        rows = overall[overall.generator == g].set_index("metric")
        c = counts(frame, g, coverage)
        record: dict = {"generator": g, "n": c.n, "failed": c.failed, "missing": c.missing, "coverage": c.coverage}
        record["coverage_note"] = c.note
        for m in metrics:
            r = rows.loc[m] if m in rows.index else None
            record[m] = r["value"] if r is not None else math.nan
            record[f"{m}_ci_low"] = r["ci_low"] if r is not None else math.nan
            record[f"{m}_ci_high"] = r["ci_high"] if r is not None else math.nan
        records.append(record)
    board = pd.DataFrame(records)
    for column in ("failed", "missing"):
        if column in board and board[column].notna().all():
            board[column] = board[column].astype(int)
    return board


def evaluator_notes(frame: pd.DataFrame) -> list[str]:
    """``name: evaluator`` per headline metric, each evaluator name escaped (results.csv text is data)."""
    overall = frame[frame.subset == "all"]
    notes = []
    for m in metric_table.headline():
        evaluators = sorted(set(overall[overall.metric == m.name]["evaluator"].astype(str)))
        if evaluators:
            notes.append(f"`{m.name}`: {', '.join(map(markdown_cell, evaluators))}")
    return notes


def unit_note(frame: pd.DataFrame) -> str:
    """What each headline metric's ``n`` counts in results.csv (its ``n_unit`` column, else the metric table)."""
    overall = frame[frame.subset == "all"]
    units: dict[str, list[str]] = {}
    for m in metric_table.headline():
        rows = overall[overall.metric == m.name]
        if rows.empty:
            continue
        recorded = sorted({u for u in rows["n_unit"] if isinstance(u, str) and u}) if "n_unit" in rows else []
        units.setdefault(" / ".join(recorded) or m.n_unit, []).append(f"`{m.name}`")
    return "; ".join(f"{unit} for {', '.join(names)}" for unit, names in units.items())


def markdown_label(generator: str, coverage: Mapping[str, Coverage]) -> str:
    return markdown_cell(generator) + (MARK if is_marked(generator, coverage) else "")


def markdown(
    frame: pd.DataFrame,
    decimals: int = 3,
    coverage: Mapping[str, Coverage] = NO_COVERAGE,
    *,
    unverified: Sequence[str] = (),
    demographics: Sequence[str] = (),
) -> str:
    """The leaderboard in Markdown with its footnotes (values, counts, coverage marks, evaluators,
    weights no published hash confirms, images prompted with fallback demographics, demo evaluators)."""
    board = leaderboard(frame, coverage)
    overall = frame[frame.subset == "all"]
    metrics = [m for m in metric_table.headline() if m.name in board.columns]
    header = ["generator", "n", "failed", "missing", "coverage", *(f"{m.name} {m.arrow}" for m in metrics)]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    for _, rec in board.iterrows():
        g = str(rec["generator"])
        rows = overall[overall.generator == g].set_index("metric")
        cells = [markdown_label(g, coverage), str(rec["n"]), count_text(float(rec["failed"])), count_text(float(rec["missing"]))]
        cells.append(coverage_text(float(rec["coverage"])))
        cells += [cell(rows.loc[m.name] if m.name in rows.index else None, decimals) for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    demo = overall["evaluator"].str.startswith("demo:").any()
    lines += [
        "",
        "Values: point estimate [95 % bootstrap CI over cases]; `real` is the real test images (reference row).",
        COUNTS_NOTE,
    ]
    if footnote := mark_footnote(coverage):
        lines.append(footnote)
    if units := unit_note(frame):
        lines.append(f"Each metric's n in results.csv counts {units}.")
    if notes := evaluator_notes(frame):
        lines.append("Evaluators: " + "; ".join(notes) + ".")
    if unverified:
        lines.append(
            "Unverified weights (no published hash to check the file against; its sha256 is in results.json): "
            + "; ".join(unverified)
            + "."
        )
    if demographics:
        lines.append(f"{DEMOGRAPHICS_NOTE} " + "; ".join(demographics) + ".")
    if demo:
        lines.append(
            "**Demo evaluators** (`demo:`): small networks trained on synthetic phantoms. These numbers are NOT "
            "Inception-FID or torchxrayvision scores and are not comparable with published results."
        )
    return "\n".join(lines) + "\n"


def write_leaderboard(
    out: Path,
    frame: pd.DataFrame,
    decimals: int = 3,
    coverage: Mapping[str, Coverage] = NO_COVERAGE,
    *,
    unverified: Sequence[str] = (),
    demographics: Sequence[str] = (),
) -> tuple[Path, Path]:
    csv_path, md_path = out / "leaderboard.csv", out / "leaderboard.md"
    write_text_atomic(csv_path, to_csv(leaderboard(frame, coverage)))
    write_text_atomic(md_path, markdown(frame, decimals, coverage, unverified=unverified, demographics=demographics))
    return csv_path, md_path
