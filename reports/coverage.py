"""Coverage in the reports: each source's counts, the marker of a source below ``metrics.min_coverage``
and the footnotes that explain both.

Counts come from ``results.json``'s coverage records (:func:`xreal_bench.results.read_coverage`);
without them (results written elsewhere) ``n`` is the largest ``n`` of a source's rows and
``failed``/``missing`` come from ``results.csv``, with coverage unknown and no marker.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from xreal_bench.coverage import Coverage

MARK = "†"
COUNTS_NOTE = (
    "n: images scored; failed: generation failures and undecodable files; missing: planned images without a file; "
    "coverage: share of the cases with a scored image. Every metric is computed on the cases a generator covers, "
    "real side included (results.json: coverage.rule)."
)


@dataclass(frozen=True)
class Counts:
    """What a report row shows about a source's images."""

    n: int
    failed: float  # NaN: unknown
    missing: float
    coverage: float
    marked: bool
    note: str  # why it is marked ("" if not)


def counts(frame: pd.DataFrame, generator: str, coverage: Mapping[str, Coverage]) -> Counts:
    record = coverage.get(generator)
    if record is not None:
        note = ""
        if record.below_min_coverage:
            note = (
                f"{MARK} coverage {record.coverage:.3f} < metrics.min_coverage {record.min_coverage:g}: "
                f"scored on {record.covered_cases} of {record.cases} cases"
            )
        return Counts(record.evaluated, record.failed, record.missing, record.coverage, record.below_min_coverage, note)
    rows = frame[frame.generator == generator]
    first = rows.iloc[0] if len(rows) else None
    n = int(rows["n"].max()) if len(rows) else 0
    failed = float(first["failed"]) if first is not None else math.nan
    missing = float(first["missing"]) if first is not None else math.nan
    return Counts(n, failed, missing, math.nan, False, "")


def is_marked(generator: str, coverage: Mapping[str, Coverage]) -> bool:
    record = coverage.get(generator)
    return record is not None and record.below_min_coverage


def label(generator: str, coverage: Mapping[str, Coverage]) -> str:
    """The source's name, with † when it is below its minimum coverage."""
    return generator + MARK if is_marked(generator, coverage) else generator


def count_text(value: float) -> str:
    return "–" if math.isnan(value) else str(int(value))


def coverage_text(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.3f}"


def mark_text(coverage: Mapping[str, Coverage]) -> str:
    """Why sources are marked: ``coverage below metrics.min_coverage = 0.95: noise (23 of 64 cases, ...)`` ("" if none)."""
    marked = {name: c for name, c in coverage.items() if c.below_min_coverage}
    if not marked:
        return ""
    threshold = min(c.min_coverage for c in marked.values())
    which = ", ".join(
        f"{name} ({c.covered_cases} of {c.cases} cases, {c.failed} failed, {c.missing} missing)" for name, c in marked.items()
    )
    return f"coverage below metrics.min_coverage = {threshold:g}: {which}; its numbers rest on the cases it covers only."


def mark_footnote(coverage: Mapping[str, Coverage]) -> str:
    text = mark_text(coverage)
    return f"{MARK} {text}" if text else ""


def loss_footnote(coverage: Mapping[str, Coverage]) -> str:
    """The failed and missing images of every source with any ("" if none) — for tables without count columns."""
    lossy = {name: c for name, c in coverage.items() if c.failed or c.missing}
    if not lossy:
        return ""
    return (
        "Failed / missing images of planned: "
        + "; ".join(f"{name} {c.failed} / {c.missing} of {c.planned}" for name, c in lossy.items())
        + "."
    )
