"""Scoring: one generator's evaluator outputs to :class:`ResultRow` values, metric by metric.

Each enabled metric of :mod:`xreal_bench.metrics.table` is computed by its entry's compute
function, on ``all`` and, for metrics with per-subset rows, on each pathology subset, over the
cases the generator covers (the rule in :mod:`xreal_bench.metrics.compute`). Point estimates
come with seeded bootstrap CIs over cases (a case's samples resampled together). A source with
no scored image keeps one NaN row per enabled metric (``n = 0``), so it stays in every table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xreal_bench.metrics import table
from xreal_bench.metrics.context import ResultRow, ScoringContext, ScoringSettings

NAN = float("nan")

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
    """Every enabled metric (and its per-pathology subsets) for one generator's outputs."""
    if not gen.keys:
        note = "not computed: no image of this source could be scored"
        return [
            ResultRow(generator, m.name, NAN, n=0, evaluator=suite.label(m.name), note=note)
            for m in table.enabled(settings.enabled)
        ]
    ctx = ScoringContext(generator, gen, real, cases, suite, settings, thresholds)
    rows: list[ResultRow] = []
    for metric in table.enabled(settings.enabled):
        for subset in ctx.subsets if metric.per_subset else ctx.subsets[:1]:
            if metric.compute is None:
                raise ValueError(f"metric {metric.name!r} is selectable but has no compute function")
            rows += metric.compute(ctx, metric, subset)
    return rows
