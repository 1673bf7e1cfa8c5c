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
from xreal_bench.reports.leaderboard import fmt
from xreal_bench.reports.merge import Merged, Section
from xreal_bench.reports.ranks import rank_text
from xreal_bench.tables import markdown_cell

DEMO_WARNING = (
    "Demo evaluators (demo:): small networks trained on synthetic phantoms. These numbers are NOT Inception-FID or "
    "torchxrayvision scores and are not comparable with published results."
)
TEXT_COLUMNS = (("Tie", "tie"), ("Entry", "entry"), ("Group", "group"), ("Run", "run_id"), ("Date", "date"), ("Seeds", "seeds"))

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
        return Cell("–", math.nan)
    text = fmt(value, decimals)
    low, high = number(row.get(f"{metric}_ci_low")), number(row.get(f"{metric}_ci_high"))
    if not (math.isnan(low) or math.isnan(high)):
        text += f" [{fmt(low, decimals)}, {fmt(high, decimals)}]"
    spread = number(row.get(f"{metric}_spread"))
    if not math.isnan(spread):
        text += f"; SD {fmt(spread, decimals)}"
    return Cell(text, value)


def display_table(
    section: Section, metrics: Sequence[metric_table.Metric], decimals: int
) -> tuple[list[Header], list[list[Cell]]]:
    """Headers and cells of a section's board: rank, text columns, ``n``, then each metric."""
    headers = [Header("Rank", True), *(Header(h, False) for h, _ in TEXT_COLUMNS), Header("n", True)]
    headers += [Header(f"{m.display} {m.arrow}", True) for m in metrics]
    rows = []
    for _, row in section.board.iterrows():
        cells = [Cell(rank_text(row.to_dict()), number(row["rank"]))]
        cells += [Cell(str(row[key]), str(row[key])) for _, key in TEXT_COLUMNS]
        cells.append(Cell(str(row["n"]), number(row["n"])))
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


def notes(merged: Merged) -> list[str]:
    """The footnotes, plain text: what values, ranks, ties and seed rows mean, evaluators, rank notes, demo warning."""
    ranking = metric_table.metric(merged.rank_metric)
    confidence = merged.runs[0].provenance.get("bootstrap", {}).get("confidence", 0.95)
    lines = [
        f"Values: point estimate [{100 * confidence:g} % bootstrap CI over cases]; – no value. "
        "n: images scored in the entry's (first) run. real: the real test images (reference row, not ranked).",
        f"Rank: by {ranking.display} {ranking.arrow} from the point estimates; [low, high]: the {100 * confidence:g} % "
        "interval of the ranks over the bootstrap resamples. Entries with the same tie label (T1, T2, ...) have "
        "overlapping rank intervals.",
    ]
    if any(c.endswith("_spread") for s in merged.sections for c in s.board.columns):
        lines.append(
            "Rows over several seeds (runs identical but for run.seed): value = mean over the seeds; SD = their "
            "standard deviation; CI = percentile interval of the seeds' bootstrap draws averaged per resample index."
        )
    entries_by_note: dict[str, list[str]] = {}
    for section in merged.sections:
        for entry, note in zip(section.board["entry"], section.board["rank_note"]):
            if note:
                entries_by_note.setdefault(str(note), []).append(str(entry))
    lines += [f"{'; '.join(entries)}: {note}." for note, entries in entries_by_note.items()]
    if found := evaluators(merged):
        lines.append("Evaluators: " + "; ".join(found) + ".")
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
