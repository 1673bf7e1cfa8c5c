"""Placeholder of the issue-15 groundwork: replaced by its implementation."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from xreal_bench.metrics.context import ResultRow, ScoringContext, Subset
    from xreal_bench.metrics.table import Metric


def vendi_rows(ctx: ScoringContext, metric: Metric, subset: Subset) -> list[ResultRow]:
    return []
