"""The paper tables as data: sources, cells with their estimate and mark, rows, footnotes; the
best / second marking with ties by overlapping CIs; Markdown and CSV rendering.

A table is built once (:mod:`xreal_bench.reports.tables`) and rendered three ways — Markdown and
CSV here, LaTeX in :mod:`xreal_bench.reports.latex` — so the three never disagree. Every text that
comes from data (names, labels, evaluator names, run labels) is escaped by the renderer:
:func:`xreal_bench.tables.markdown_cell`, :func:`xreal_bench.tables.latex_text`,
:func:`xreal_bench.tables.to_csv`. A footnote is a tuple of fragments; a :class:`Data` fragment
is data (escaped in Markdown), the rest is the suite's own text.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import pandas as pd

from xreal_bench.reports.coverage import is_marked
from xreal_bench.reports.runs import REFERENCE, Run
from xreal_bench.tables import markdown_cell, to_csv

Mark = Literal["", "best", "second"]
Direction = Literal["lower", "higher"]
Compare = Literal["columns", "rows"]
CIStyle = Literal["brackets", "pm"]
MISSING = "–"
REFERENCE_LABEL = "Real images"


class Data(str):
    """A footnote fragment that comes from data (escaped wherever it is rendered)."""


@dataclass(frozen=True)
class Symbol:
    """A footnote fragment written differently in text and in LaTeX (``†`` / ``$^\\dagger$``)."""

    text: str
    latex: str


Note = tuple[str | Symbol, ...]
DAGGER = Symbol("†", "$^\\dagger$")
ARROWS = {"lower": Symbol("↓", "$\\downarrow$"), "higher": Symbol("↑", "$\\uparrow$")}


@dataclass(frozen=True, kw_only=True)
class Source:
    """One generator of one run, as a table row (or column) names it."""

    run: Run
    generator: str
    label: str  # plain text
    group: str

    @property
    def reference(self) -> bool:
        return self.generator == REFERENCE

    @property
    def below_coverage(self) -> bool:
        return is_marked(self.generator, self.run.coverage)


@dataclass(frozen=True, kw_only=True)
class Estimate:
    """A value with its interval (NaN: none) and what ``n`` counts."""

    value: float
    low: float = math.nan
    high: float = math.nan
    n: float = math.nan
    n_unit: str = ""

    @property
    def finite(self) -> bool:
        return math.isfinite(self.value)

    @property
    def has_ci(self) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high)


@dataclass(frozen=True, kw_only=True)
class Cell:
    """One number of a table: whose, of what, its estimate (None: not computed) and its mark."""

    source: Source
    metric: str  # result row name (or a reader criterion)
    subset: str = "all"
    estimate: Estimate | None = None
    direction: Direction = "higher"
    mark: Mark = ""


@dataclass(frozen=True, kw_only=True)
class Column:
    text: str  # plain text header (Markdown, CSV)
    latex: str  # LaTeX header (built from the metric table or escaped)


@dataclass(frozen=True, kw_only=True)
class Row:
    label: str  # plain text
    cells: tuple[Cell, ...]
    group: str = ""  # the heading the row sits under ("" none)
    dagger: bool = False  # the row's source is below its minimum coverage


@dataclass(frozen=True, kw_only=True)
class PaperTable:
    """``compare``: along which axis cells compete for best / second (each column, or each row)."""

    name: str  # file stem
    caption: str  # plain text
    corner: str  # header of the label column
    columns: tuple[Column, ...]
    rows: tuple[Row, ...]
    notes: tuple[Note, ...] = ()
    compare: Compare = "columns"

    @property
    def groups(self) -> list[str]:
        return list(dict.fromkeys(r.group for r in self.rows))


def ties(a: Estimate, b: Estimate) -> bool:
    """Equal values, or (both with CIs) overlapping intervals."""
    if a.value == b.value:
        return True
    return a.has_ci and b.has_ci and a.low <= b.high and b.low <= a.high


def tier(cells: Sequence[Cell], candidates: list[int]) -> set[int]:
    """The best of ``candidates`` and every candidate tied with it."""
    if not candidates:
        return set()
    sign = 1 if cells[candidates[0]].direction == "lower" else -1
    top = min(candidates, key=lambda i: sign * _estimate(cells[i]).value)
    return {i for i in candidates if ties(_estimate(cells[i]), _estimate(cells[top]))}


def _estimate(cell: Cell) -> Estimate:
    assert cell.estimate is not None
    return cell.estimate


def marks(cells: Sequence[Cell]) -> list[Mark]:
    """Best and second of one comparison line: the real images never compete, nor does a source below
    ``metrics.min_coverage`` (its numbers rest on part of the cases) or a missing or NaN value."""
    competing = [
        i
        for i, c in enumerate(cells)
        if not c.source.reference and not c.source.below_coverage and c.estimate is not None and c.estimate.finite
    ]
    best = tier(cells, competing)
    second = tier(cells, [i for i in competing if i not in best])
    return ["best" if i in best else "second" if i in second else "" for i in range(len(cells))]


def with_marks(table: PaperTable) -> PaperTable:
    """``table`` with every cell's mark set along its comparison axis."""
    grid = [list(r.cells) for r in table.rows]
    if table.compare == "rows":
        lines = [[(i, j) for j in range(len(row))] for i, row in enumerate(grid)]
    else:
        lines = [[(i, j) for i in range(len(grid))] for j in range(len(table.columns))]
    for line in lines:
        for (i, j), mark in zip(line, marks([grid[i][j] for i, j in line])):
            grid[i][j] = replace(grid[i][j], mark=mark)
    return replace(table, rows=tuple(replace(r, cells=tuple(cells)) for r, cells in zip(table.rows, grid)))


def fmt(value: float, decimals: int) -> str:
    return MISSING if not math.isfinite(value) else f"{value:.{decimals}f}"


def value_text(estimate: Estimate | None, *, decimals: int, ci: CIStyle, pm: str = "±", missing: str = MISSING) -> str:
    """``0.712 [0.701, 0.723]`` or ``0.712 ± 0.011`` (half the interval's width); ``missing`` when not computed."""
    if estimate is None or not estimate.finite:
        return missing
    text = fmt(estimate.value, decimals)
    if not estimate.has_ci:
        return text
    if ci == "pm":
        return f"{text} {pm} {fmt((estimate.high - estimate.low) / 2, decimals)}"
    return f"{text} [{fmt(estimate.low, decimals)}, {fmt(estimate.high, decimals)}]"


def note_markdown(note: Note) -> str:
    return "".join(
        part.text if isinstance(part, Symbol) else markdown_cell(part) if isinstance(part, Data) else part for part in note
    )


def note_text(note: Note) -> str:
    return "".join(part.text if isinstance(part, Symbol) else part for part in note)


def markdown_table(table: PaperTable, *, decimals: int, ci: CIStyle) -> str:
    """Caption, the pipe table (group headings as bold rows; best **bold**, second <u>underlined</u>) and footnotes."""
    width = len(table.columns) + 1
    lines = [
        f"**{markdown_cell(table.caption)}**",
        "",
        "| " + " | ".join(markdown_cell(h) for h in [table.corner, *(c.text for c in table.columns)]) + " |",
        "|---|" + "---:|" * (width - 1),
    ]
    for group in table.groups:
        if group:
            lines.append(f"| **{markdown_cell(group)}** |" + " |" * (width - 1))
        for row in (r for r in table.rows if r.group == group):
            label = markdown_cell(row.label) + (DAGGER.text if row.dagger else "")
            cells = [markdown_mark(value_text(c.estimate, decimals=decimals, ci=ci), c.mark) for c in row.cells]
            lines.append("| " + " | ".join([label, *cells]) + " |")
    lines.append("")
    lines += [note_markdown(n) + "  " for n in table.notes]
    return "\n".join(lines).rstrip() + "\n"


def markdown_mark(text: str, mark: Mark) -> str:
    return f"**{text}**" if mark == "best" else f"<u>{text}</u>" if mark == "second" else text


def csv_frame(table: PaperTable) -> pd.DataFrame:
    """One tidy line per cell: whose number, of what, value, interval, n and its unit, mark."""
    records = []
    for row in table.rows:
        for column, cell in zip(table.columns, row.cells):
            e = cell.estimate
            records.append(
                {
                    "row": row.label,
                    "column": column.text,
                    "generator": cell.source.generator,
                    "run_id": cell.source.run.run_id,
                    "run": cell.source.run.label,
                    "group": cell.source.group,
                    "metric": cell.metric,
                    "subset": cell.subset,
                    "value": e.value if e else math.nan,
                    "ci_low": e.low if e else math.nan,
                    "ci_high": e.high if e else math.nan,
                    "n": e.n if e else math.nan,
                    "n_unit": e.n_unit if e else "",
                    "mark": cell.mark,
                    "below_min_coverage": cell.source.below_coverage,
                }
            )
    frame = pd.DataFrame(records)
    if not frame.empty:
        frame["n"] = frame["n"].astype("Int64")
    return frame


def csv_table(table: PaperTable) -> str:
    return to_csv(csv_frame(table))
