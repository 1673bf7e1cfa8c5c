"""Scoring: one generator's evaluator outputs to :class:`ResultRow` values, metric by metric.

Each enabled metric of :mod:`xreal_bench.metrics.table` is computed by its entry's compute
function, on ``all``, for metrics with per-subset rows on each pathology subset, and for metrics
with per-subgroup rows on each demographic subgroup (``sex:female``, ``age:40-60``, ...;
:mod:`xreal_bench.subgroups`) with their fairness gaps (:mod:`xreal_bench.metrics.fairness`),
over the cases the generator covers (the rule in :mod:`xreal_bench.metrics.compute`). Point estimates
come with seeded bootstrap CIs over cases (a case's samples resampled together). A source with
no scored image keeps one NaN row per enabled metric (``n = 0``), so it stays in every table.

:func:`per_image_frame` gives the per-image values the rows average (``per_image.csv``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from xreal_bench.metrics import table
from xreal_bench.metrics.context import ResultRow, ScoringContext, ScoringSettings
from xreal_bench.metrics.fairness import gap_rows
from xreal_bench.subgroups import is_subgroup_subset

NAN = float("nan")
#: Column prefix of the classifier's probability for a label in ``per_image.csv``.
SCORE_PREFIX = "score/"

if TYPE_CHECKING:
    from xreal_bench.metrics.classification import Thresholds
    from xreal_bench.metrics.engine import SourceOutputs
    from xreal_bench.metrics.suite import Suite
    from xreal_bench.types import Case


def score(
    generator: str,
    gen: SourceOutputs,
    *,
    real: SourceOutputs,
    cases: dict[str, Case],
    suite: Suite,
    settings: ScoringSettings,
    thresholds: Thresholds | None,
) -> list[ResultRow]:
    """Every enabled metric (its per-pathology subsets, subgroups and fairness gaps) for one generator's outputs."""
    if not gen.keys:
        note = "not computed: no image of this source could be scored"
        return [
            ResultRow(
                generator,
                m.name,
                NAN,
                n=0,
                evaluator=suite.label(m.name, embedding=settings.embedding),
                note=note,
                n_unit=m.n_unit,
            )
            for m in table.enabled(settings.enabled)
        ]
    ctx = ScoringContext(generator, gen, real, cases, suite, settings, thresholds)
    case_counts = {name: len(set(ctx.groups[idx])) for name, idx in ctx.subgroups}
    rows: list[ResultRow] = []
    for metric in table.enabled(settings.enabled):
        if metric.compute is None:
            raise ValueError(f"metric {metric.name!r} is selectable but has no compute function")
        subsets = ctx.subsets if metric.per_subset else ctx.subsets[:1]
        if metric.per_subgroup:
            subsets += ctx.subgroups
        found = [row for subset in subsets for row in metric.compute(ctx, metric, subset)]
        if metric.size_biased:  # subgroups differ in size: a gap would measure their sizes
            rows += [with_size_note(row) if is_subgroup_subset(row.subset) else row for row in found]
        else:
            rows += found + gap_rows(found, case_counts, confidence=settings.confidence)
    return rows


#: On a size-biased metric's subgroup rows.
SIZE_NOTE = "moves with n: compare subgroups only at equal n (no fairness gap)"


def with_size_note(row: ResultRow) -> ResultRow:
    return replace(row, note="; ".join(filter(None, [row.note, SIZE_NOTE])))


def per_image_values(outputs: SourceOutputs, entry: table.Metric) -> np.ndarray | None:
    """An entry's value for each image of ``outputs`` (None: it has no per-image values there)."""
    if entry.pixels == "paired":
        return outputs.ms_ssim
    if entry.role == "segmenter":
        return outputs.dice.get(entry.key)
    return outputs.extra.get(entry.key)


def per_image_frame(
    generator: str, outputs: SourceOutputs, *, enabled: Iterable[str], classifier_labels: Sequence[str]
) -> pd.DataFrame:
    """One row per scored image of a source: ``generator``, ``case_id``, ``sample_index``, each enabled entry's per-image value
    (named after the entry, parts before their metric; NaN where undefined) and the classifier's
    probabilities ``score/<label>`` (float64, as scoring used them)."""
    columns: dict[str, object] = {
        "generator": [generator] * len(outputs.keys),
        "case_id": [k[0] for k in outputs.keys],
        "sample_index": np.array([k[1] for k in outputs.keys], dtype=np.int64),
    }
    for metric in table.enabled(enabled):
        for entry in (*metric.parts, metric):
            values = per_image_values(outputs, entry)
            if values is not None:
                columns[entry.name] = np.asarray(values, dtype=np.float64)
    if outputs.scores is not None:
        for j, label in enumerate(classifier_labels):
            columns[f"{SCORE_PREFIX}{label}"] = outputs.scores[:, j].astype(np.float64)
    return pd.DataFrame(columns)
