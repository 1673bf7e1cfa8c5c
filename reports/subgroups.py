"""Per-subgroup result rows for the reports: which metrics the runs scored per sex, age band and race, and their
fairness gaps.

``evaluate`` computes every metric per subgroup and the gaps (:mod:`xreal_bench.metrics.scoring`, subset names by
the one rule of :mod:`xreal_bench.subgroups`); the reports only read those rows from ``results.csv``, never
recompute them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from xreal_bench.reports.runs import Run
from xreal_bench.subgroups import Subgroup, case_subgroups, ordered, parse_subset


def subgroups_by_row(keys: Iterable[tuple[str, str, str]]) -> dict[str, list[Subgroup]]:
    """Result row name -> its subgroups and gaps in display order, from ``(generator, metric, subset)`` keys."""
    found: dict[str, set[Subgroup]] = {}
    for _, metric, subset in keys:
        subgroup = parse_subset(subset)
        if subgroup is not None:
            found.setdefault(metric, set()).add(subgroup)
    return {metric: ordered(subgroups) for metric, subgroups in found.items()}


def have_demographics(runs: Sequence[Run]) -> bool:
    """Whether any run's cases carry demographics (so subgroup rows could have been scored)."""
    return any(case_subgroups({c: facts.case for c, facts in run.cases.items()}) for run in runs)
