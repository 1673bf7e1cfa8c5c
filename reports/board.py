"""The merged leaderboard for people: its cells (:func:`display_table`: text and the key it sorts by),
footnotes (:func:`notes`), Markdown and CSV. The HTML page (:mod:`xreal_bench.reports.html_page`) shows the
same cells and notes, so every format says the same thing.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from xreal_bench.metrics import table as metric_table
from xreal_bench.reports.coverage import COUNTS_NOTE, MARK, count_text, coverage_text, mark_text
from xreal_bench.reports.leaderboard import DEMOGRAPHICS_NOTE
from xreal_bench.reports.merge import Merged, Section
from xreal_bench.reports.ranks import NOT_PAIRED, rank_text
from xreal_bench.reports.runs import Run
from xreal_bench.reports.table_model import MISSING, Estimate, fmt, value_text
from xreal_bench.results import read_demographics_fallbacks, read_unverified_weights
from xreal_bench.tables import markdown_cell

DEMO_WARNING = (
    "Demo evaluators (demo:): small networks trained on synthetic phantoms. These numbers are NOT Inception-FID or "
    "torchxrayvision scores and are not comparable with published results."
)
TEXT_COLUMNS = (("Group", "group"), ("Run", "run_id"), ("Date", "date"), ("Seeds", "seeds"))
UNVERIFIED_NOTE = "Unverified weights (no published hash to check the file against; its sha256 is in results.json)"

SortKey = float | str


@dataclass(frozen=True)
class Cell:
    text: str
    sort: SortKey  # a number (NaN: no value, sorted last) or text


@dataclass(frozen=True)
class Header:
    text: str
    numeric: bool


def number(value: object) -> float:
    """``value`` as a float (numpy numbers included); NaN when it is not a number."""
    return float(value) if isinstance(value, numbers.Real) else math.nan


def metric_cell(row: pd.Series, metric: str, decimals: int) -> Cell:
    """``value [low, high]`` (``; SD s`` over seeds); ``–`` when there is no value."""
    value = number(row.get(metric))
    if math.isnan(value):
        return Cell(MISSING, math.nan)
    low, high = number(row.get(f"{metric}_ci_low")), number(row.get(f"{metric}_ci_high"))
    text = value_text(Estimate(value=value, low=low, high=high), decimals=decimals, ci="brackets")
    spread = number(row.get(f"{metric}_spread"))
    if not math.isnan(spread):
        text += f"; SD {fmt(spread, decimals)}"
    return Cell(text, value)


def display_table(
    section: Section, metrics: Sequence[metric_table.Metric], decimals: int
) -> tuple[list[Header], list[list[Cell]]]:
    """Headers and cells of a section's board: rank, tie, entry (``†`` below ``metrics.min_coverage``), text columns,
    the counts (``n``, failed, missing, coverage), then each metric."""
    headers = [Header("Rank", True), Header("Tie", False), Header("Entry", False)]
    headers += [*(Header(h, False) for h, _ in TEXT_COLUMNS), *(Header(h, True) for h in ("n", "failed", "missing", "coverage"))]
    headers += [Header(f"{m.display} {m.arrow}", True) for m in metrics]
    rows = []
    for _, row in section.board.iterrows():
        entry = str(row["entry"]) + (MARK if row["below_min_coverage"] else "")
        cells = [Cell(rank_text(row.to_dict()), number(row["rank"])), Cell(str(row["tie"]), str(row["tie"])), Cell(entry, entry)]
        cells += [Cell(str(row[key]), str(row[key])) for _, key in TEXT_COLUMNS]
        cells.append(Cell(str(row["n"]), number(row["n"])))
        cells += [Cell(count_text(number(row[key])), number(row[key])) for key in ("failed", "missing")]
        cells.append(Cell(coverage_text(number(row["coverage"])), number(row["coverage"])))
        cells += [metric_cell(row, m.name, decimals) for m in metrics]
        rows.append(cells)
    return headers, rows


def evaluators(merged: Merged) -> list[str]:
    """``<display>: <evaluator>, ...`` per metric shown, from the runs' result rows."""
    lines = []
    for m in merged.metrics:
        names = sorted(
            {e for r in merged.runs for e in r.frame.loc[(r.frame.metric == m.name) & (r.frame.subset == "all"), "evaluator"]}
        )
        if names:
            lines.append(f"{m.display}: {', '.join(names)}")
    return lines


def level(merged: Merged) -> str:
    """The CI level of the sections' runs: ``95 %``, or per section when sections differ."""
    levels = {s.title: f"{100 * s.confidence:g} %" for s in merged.sections}
    if len(set(levels.values())) == 1:
        return next(iter(levels.values()))
    return "level per section: " + ", ".join(f"{title} {value}" for title, value in levels.items())


def entry_notes(merged: Merged, column: str) -> list[str]:
    """``<entries>: <note>.`` for each distinct note of ``column`` (its entries joined)."""
    entries_by_note: dict[str, list[str]] = {}
    for section in merged.sections:
        for entry, note in zip(section.board["entry"], section.board[column]):
            if note:
                entries_by_note.setdefault(str(note), []).append(str(entry))
    return [f"{'; '.join(entries)}: {note}." for note, entries in entries_by_note.items()]


def shown_generators(section: Section, run: Run) -> list[str]:
    """The generators whose rows in ``section`` come (in part) from ``run``."""
    return list(
        dict.fromkeys(
            str(g)
            for g, entry in zip(section.board["generator"], section.board["entry"])
            if run in section.sources.get(str(entry), ())
        )
    )


def coverage_notes(merged: Merged) -> list[str]:
    """Per run with a shown generator below ``metrics.min_coverage``: † and why (:func:`reports.coverage.mark_text`)."""
    lines = []
    for section in merged.sections:
        for run in section.runs:
            shown = {g: run.coverage[g] for g in shown_generators(section, run) if g in run.coverage}
            if text := mark_text(shown):
                lines.append(f"{MARK} run {run.run_id}: {text} Not ranked.")
    return lines


def run_notes(merged: Merged) -> list[str]:
    """Each run's unverified weights and images prompted with fallback demographics (as the per-run leaderboard)."""
    lines = []
    for run in merged.runs:
        if unverified := read_unverified_weights(run.path):
            lines.append(f"{UNVERIFIED_NOTE}, run {run.run_id}: " + "; ".join(unverified) + ".")
        if fallbacks := read_demographics_fallbacks(run.path):
            lines.append(f"{DEMOGRAPHICS_NOTE} run {run.run_id}: " + "; ".join(fallbacks) + ".")
    return lines


def notes(merged: Merged) -> list[str]:
    """The footnotes, plain text: what values, counts, ranks, ties and seed rows mean, coverage marks, rank and CI
    notes, evaluators, unverified weights, fallback demographics, demo warning."""
    ranking = metric_table.metric(merged.rank_metric)
    ci = level(merged)
    lines = [
        f"Values: point estimate [{ci} bootstrap CI over cases]; – no value. "
        "real: the real test images (reference row, not ranked).",
        COUNTS_NOTE,
        f"Rank: by {ranking.display} {ranking.arrow} from the point estimates; [low, high]: the {ci} interval of the ranks "
        "over the bootstrap resamples (the entries ranked within each resample). Ties: entries share a label (T1, T2, "
        "...) when a chain of overlapping rank intervals links them (A overlaps B and B overlaps C: A, B and C share "
        "one label even if A and C do not overlap).",
    ]
    if any(c.endswith("_spread") for s in merged.sections for c in s.board.columns):
        lines.append(
            "Rows over several seeds (runs identical but for run.seed): value = mean over the seeds; SD = their "
            "standard deviation; n, failed, missing = summed over the seeds' runs, coverage = the lowest; CI = "
            "percentile interval of the seeds' bootstrap draws averaged per resample index, given only where every "
            "seed's run drew the same resamples (same bootstrap seed and covered cases; the paired bootstrap of the "
            "mean over seeds), else no CI."
        )
    lines += coverage_notes(merged)
    if any(str(n).startswith(NOT_PAIRED) for s in merged.sections for n in s.board["rank_note"]):
        lines.append(
            "Rank intervals compare entries resample by resample; where entries' runs drew different resamples "
            "(another bootstrap seed or other covered cases) their draws are not paired, so the interval ignores "
            "their correlation and is conservative (wider than a paired one)."
        )
    lines += entry_notes(merged, "rank_note") + entry_notes(merged, "ci_note")
    if found := evaluators(merged):
        lines.append("Evaluators: " + "; ".join(found) + ".")
    lines += run_notes(merged)
    if merged.demo:
        lines.append(DEMO_WARNING)
    return lines


def section_intro(section: Section) -> list[str]:
    """The section's runs, and how it differs from the first section."""
    lines = ["Runs: " + "; ".join(f"{r.run_id} ({r.path})" for r in section.runs)]
    lines += [f"Not comparable with section 1: {d.message()}" for d in section.differences]
    return lines


def markdown(merged: Merged, decimals: int = 3) -> str:
    """The leaderboard in Markdown: one table per section, then the footnotes (data text escaped)."""
    out = ["# Leaderboard", ""]
    if merged.demo:
        out += [f"**{markdown_cell(DEMO_WARNING)}**", ""]
    for section in merged.sections:
        headers, rows = display_table(section, merged.metrics, decimals)
        out += [f"## {markdown_cell(section.title)}", ""]
        out += [markdown_cell(line) + "  " for line in section_intro(section)] + [""]
        out.append("| " + " | ".join(markdown_cell(h.text) for h in headers) + " |")
        out.append("|" + "|".join("---:" if h.numeric else "---" for h in headers) + "|")
        out += ["| " + " | ".join(markdown_cell(c.text) for c in row) + " |" for row in rows]
        out.append("")
    out += [markdown_cell(line) + "  " for line in notes(merged)]
    return "\n".join(out) + "\n"


def csv_frame(merged: Merged) -> pd.DataFrame:
    """Every section's board with a leading ``section`` column (plain values, CI and rank columns)."""
    frames = [s.board.assign(section=s.title) for s in merged.sections]
    frame = pd.concat(frames, ignore_index=True)
    return frame[["section", *(c for c in frame.columns if c != "section")]]
