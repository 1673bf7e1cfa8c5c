"""Patient subgroups: the one rule that puts a case in a sex, age band and race subgroup, and names them.

- **sex**: ``female`` / ``male`` as the data layer records them (:class:`~xreal_bench.types.Demographics`).
- **age band**: the age in whole years at the study against increasing edges (``metrics.age_edges``, default
  ``[0, 40, 60, 80]``): ``0-40`` for 0 <= age < 40, ..., ``80+`` from the last edge.
- **race**: RoentGen v2's vocabulary (``WHITE``, ``BLACK``, ``ASIAN``, ``HISPANIC``;
  :mod:`xreal_bench.data.demographics`).
- ``unknown`` where the value is missing (no demographics, an empty field, an age below the first edge).

A subgroup is a result-row subset named ``<attribute>:<value>`` (``sex:female``, ``age:40-60``,
``race:WHITE``, ``sex:unknown``); the fairness gap over an attribute's known subgroups is the subset
``<attribute>:gap``. ``all`` and the pathology subsets (CheXpert label names) never contain ``:``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from xreal_bench.types import Case, Demographics

ATTRIBUTES = ("sex", "age", "race")
AGE_EDGES = (0, 40, 60, 80)
UNKNOWN = "unknown"
GAP = "gap"
SEPARATOR = ":"


@dataclass(frozen=True)
class Subgroup:
    """One subgroup of one attribute (``value`` ``unknown`` for the cases without it)."""

    attribute: str  # of ATTRIBUTES
    value: str  # "female", "40-60", "WHITE", "unknown"

    @property
    def subset(self) -> str:
        """Its name in ``results.csv``'s ``subset`` column."""
        return f"{self.attribute}{SEPARATOR}{self.value}"

    @property
    def known(self) -> bool:
        return self.value != UNKNOWN


def age_band(age: int | None, edges: Sequence[int] = AGE_EDGES) -> str:
    """``40-60`` for 40 <= age < 60; ``80+`` from the last edge; ``unknown`` without an age or below the first edge."""
    if age is None or age < edges[0]:
        return UNKNOWN
    for low, high in zip(edges, edges[1:]):
        if low <= age < high:
            return f"{low}-{high}"
    return f"{edges[-1]}+"


def subgroups_of(people: Demographics | None, *, age_edges: Sequence[int] = AGE_EDGES) -> tuple[Subgroup, ...]:
    """A case's subgroup for each attribute, in :data:`ATTRIBUTES` order."""
    return (
        Subgroup("sex", (people.sex if people else "") or UNKNOWN),
        Subgroup("age", age_band(people.age if people else None, age_edges)),
        Subgroup("race", (people.race if people else "") or UNKNOWN),
    )


def case_subgroups(cases: Mapping[str, Case], *, age_edges: Sequence[int] = AGE_EDGES) -> dict[str, tuple[Subgroup, ...]]:
    """Each case's subgroups; empty when no case carries demographics."""
    if not any(case.demographics is not None for case in cases.values()):
        return {}
    return {case_id: subgroups_of(case.demographics, age_edges=age_edges) for case_id, case in cases.items()}


def gap_subset(attribute: str) -> str:
    """The subset name of an attribute's fairness gap (``sex:gap``)."""
    return f"{attribute}{SEPARATOR}{GAP}"


def parse_subset(subset: str) -> Subgroup | None:
    """``sex:female`` -> its subgroup (``sex:gap`` -> value ``gap``); None for ``all``, a pathology or anything else."""
    attribute, sep, value = subset.partition(SEPARATOR)
    return Subgroup(attribute, value) if sep and attribute in ATTRIBUTES and value else None


def is_subgroup_subset(subset: str) -> bool:
    """A demographic subgroup or fairness-gap subset (not ``all``, not a pathology)."""
    return parse_subset(subset) is not None


def is_pathology_subset(subset: str) -> bool:
    """A per-pathology subset: neither ``all`` nor a demographic subgroup or gap."""
    return subset != "all" and not is_subgroup_subset(subset)


def order_key(subgroup: Subgroup) -> tuple:
    """Attributes in :data:`ATTRIBUTES` order; age bands by their lower bound, other values by name; ``unknown``,
    then ``gap`` last."""
    attribute = ATTRIBUTES.index(subgroup.attribute) if subgroup.attribute in ATTRIBUTES else len(ATTRIBUTES)
    tail = 2 if subgroup.value == GAP else 1 if subgroup.value == UNKNOWN else 0
    low = subgroup.value.split("-")[0].rstrip("+")
    age = int(low) if subgroup.attribute == "age" and low.isdigit() else -1
    return (attribute, tail, age, subgroup.value)


def ordered(subgroups: Iterable[Subgroup]) -> list[Subgroup]:
    """Subgroups in display order (:func:`order_key`), each once."""
    return sorted(set(subgroups), key=order_key)
