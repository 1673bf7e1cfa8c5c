"""Fairness gaps: for each result row name and attribute, the largest minus the smallest value over the
attribute's known subgroups (subset ``<attribute>:gap``, :mod:`xreal_bench.subgroups`).

A gap needs at least two known subgroups with a finite value; ``unknown`` subgroups never enter it. Its
``n`` counts the cases of those subgroups (a row counting cases: the cases behind its value; a row counting
images: the subgroup's covered cases). Its CI is the percentile interval of ``max_g draw_g[b] - min_g
draw_g[b]`` over resamples *b*: subgroups are disjoint sets of cases, each resampled within itself, so the
per-index difference is a draw of a stratified bootstrap of the gap. A resample in which any subgroup is
undefined gives an undefined gap draw; without draws for every subgroup, or with unequal draw counts, the
gap has no CI (the note says why).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from xreal_bench.metrics.bootstrap import percentile_interval
from xreal_bench.metrics.context import ResultRow
from xreal_bench.subgroups import ATTRIBUTES, GAP, Subgroup, gap_subset, order_key, parse_subset


def gap_rows(rows: Sequence[ResultRow], case_counts: Mapping[str, int], *, confidence: float) -> list[ResultRow]:
    """One gap row per (row name, attribute) with two or more known subgroup rows among ``rows``.

    ``case_counts``: covered cases of each subgroup subset (the ``n`` of rows that count images).
    """
    members: dict[tuple[str, str], list[tuple[Subgroup, ResultRow]]] = {}
    for row in rows:
        subgroup = parse_subset(row.subset)
        if subgroup is None or not subgroup.known or subgroup.value == GAP or not math.isfinite(row.value):
            continue
        members.setdefault((row.metric, subgroup.attribute), []).append((subgroup, row))
    out = []
    for (metric, attribute), found in sorted(members.items(), key=lambda item: ATTRIBUTES.index(item[0][1])):
        if len(found) >= 2:
            out.append(gap_row(metric, attribute, sorted(found, key=lambda pair: order_key(pair[0])), case_counts, confidence))
    return out


def gap_row(
    metric: str,
    attribute: str,
    found: Sequence[tuple[Subgroup, ResultRow]],
    case_counts: Mapping[str, int],
    confidence: float,
) -> ResultRow:
    subgroups, rows = [s for s, _ in found], [r for _, r in found]
    values = np.array([r.value for r in rows])
    top, bottom = int(np.argmax(values)), int(np.argmin(values))
    n = sum(r.n if r.n_unit == "cases" else case_counts[s.subset] for s, r in found)
    note = (
        f"max {subgroups[top].value} ({values[top]:.4g}) - min {subgroups[bottom].value} ({values[bottom]:.4g}) "
        f"over {len(rows)} known {attribute} subgroups"
    )
    low = high = float("nan")
    draws = None
    sizes = {len(r.draws) if r.draws is not None else 0 for r in rows}
    if 0 in sizes:
        lacking = ", ".join(s.value for s, r in found if r.draws is None or not len(r.draws))
        note += f"; no CI: no bootstrap draws for {lacking}"
    elif len(sizes) > 1:
        note += f"; no CI: the subgroups' draw counts differ ({', '.join(str(k) for k in sorted(sizes))})"
    else:
        stacked = np.stack([np.asarray(r.draws, dtype=np.float64) for r in rows])
        draws = stacked.max(axis=0) - stacked.min(axis=0)  # NaN in any subgroup's draw: NaN gap draw
        low, high, undefined = percentile_interval(draws, confidence)
        note += "; stratified bootstrap CI (subgroup draws index by index)"
        if undefined:
            note += f", {undefined} undefined resamples left out"
    evaluator = rows[0].evaluator
    return ResultRow(
        rows[0].generator,
        metric,
        float(values[top] - values[bottom]),
        low,
        high,
        n,
        gap_subset(attribute),
        evaluator,
        note,
        n_unit="cases",
        draws=draws,
    )
