"""Per-image metrics by patient subgroup: sex, age band and race from ``cases.jsonl``'s demographics,
values from ``per_image.csv``.

A subgroup's value is the mean over its cases of each case's mean over samples; its interval is a
seeded percentile bootstrap over those cases (the same resample positions for every generator of
the same subgroup size, so generators are compared on paired draws). Cases whose attribute is
unknown form the subgroup ``unknown``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from xreal_bench.reports.table_model import Estimate
from xreal_bench.types import CaseFacts

AGE_EDGES = (0, 40, 60, 80)
UNKNOWN = "unknown"
ATTRIBUTES = ("sex", "age", "race")
CASES = "cases"


@dataclass(frozen=True)
class Subgroup:
    attribute: str  # of ATTRIBUTES
    value: str  # "female", "40-60", "WHITE", "unknown"


def age_band(age: int | None, edges: Sequence[int]) -> str:
    """``40-60`` for 40 <= age < 60; ``80+`` from the last edge; ``unknown`` without an age or below the first edge."""
    if age is None or age < edges[0]:
        return UNKNOWN
    for low, high in zip(edges, edges[1:]):
        if low <= age < high:
            return f"{low}-{high}"
    return f"{edges[-1]}+"


def case_subgroups(cases: Mapping[str, CaseFacts], *, age_edges: Sequence[int] = AGE_EDGES) -> dict[str, list[Subgroup]]:
    """Each case's subgroups (one per attribute); empty when no case has demographics."""
    if not any(f.case.demographics is not None for f in cases.values()):
        return {}
    out = {}
    for case_id, facts in cases.items():
        people = facts.case.demographics
        sex = (people.sex if people else "") or UNKNOWN
        race = (people.race if people else "") or UNKNOWN
        out[case_id] = [
            Subgroup("sex", sex),
            Subgroup("age", age_band(people.age if people else None, age_edges)),
            Subgroup("race", race),
        ]
    return out


def ordered(subgroups: set[Subgroup], *, age_edges: Sequence[int] = AGE_EDGES) -> list[Subgroup]:
    """Attributes in :data:`ATTRIBUTES` order; age bands in age order, others by name; ``unknown`` last."""
    bands = [age_band(edge, age_edges) for edge in age_edges]

    def key(s: Subgroup) -> tuple:
        rank = bands.index(s.value) if s.attribute == "age" and s.value in bands else 0
        return (ATTRIBUTES.index(s.attribute), s.value == UNKNOWN, rank, s.value)

    return sorted(subgroups, key=key)


def interval(values: np.ndarray, *, resamples: int, confidence: float, seed: int) -> tuple[float, float]:
    if len(values) < 2 or resamples < 1:
        return float("nan"), float("nan")
    picks = np.random.default_rng(seed).integers(0, len(values), size=(resamples, len(values)))
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(values[picks].mean(axis=1), [tail, 100 - tail])
    return float(low), float(high)


def subgroup_means(
    per_image: pd.DataFrame,
    groups: Mapping[str, Sequence[Subgroup]],
    metrics: Sequence[str],
    *,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[tuple[str, str, Subgroup], Estimate]:
    """(generator, metric, subgroup) -> case-level mean with its bootstrap CI, for each per-image ``metrics`` column."""
    out: dict[tuple[str, str, Subgroup], Estimate] = {}
    present = [m for m in metrics if m in per_image.columns]
    if not present or not groups:
        return out
    by_case = per_image.groupby(["generator", "case_id"])[present].mean()
    for generator, frame in by_case.groupby(level="generator"):
        cases = frame.droplevel("generator")
        for metric in present:
            column = cases[metric].dropna()
            members: dict[Subgroup, list[float]] = {}
            for case_id, value in column.items():
                for subgroup in groups.get(str(case_id), ()):
                    members.setdefault(subgroup, []).append(float(value))
            for subgroup, values in members.items():
                array = np.asarray(values, dtype=np.float64)
                low, high = interval(array, resamples=resamples, confidence=confidence, seed=seed)
                out[(str(generator), metric, subgroup)] = Estimate(
                    value=float(array.mean()), low=low, high=high, n=len(array), n_unit=CASES
                )
    return out
