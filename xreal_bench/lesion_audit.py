"""Placeholder of the issue-15 groundwork: replaced by its implementation."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from xreal_bench.evaluation import BesidePass
    from xreal_bench.metrics.suite import Suite
    from xreal_bench.pipeline import Session


def lesion_audit(session: Session, suite: Suite, progress: bool) -> BesidePass | None:
    return None
