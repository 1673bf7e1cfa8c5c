"""Placeholder of the issue-15 groundwork: replaced by its implementation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from xreal_bench.metrics.context import ResultRow


def encoder_agreement(rows: Sequence[ResultRow], *, confidence: float) -> list[dict]:
    return []
