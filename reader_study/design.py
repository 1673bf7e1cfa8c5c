"""The study design as pure, seeded functions (no files, no database).

- :func:`select_cases`: N cases stratified by primary pathology, as equal per stratum as the
  strata allow (round robin over strata in a seeded order, seeded order inside each stratum).
- :func:`balanced_latin_square`: a Williams design; every source takes every ordinal position
  equally often, and (for an even number of sources) each source follows every other equally often.
- :func:`rating_order`: one reader's order of the (case, source) rating items. Items come in
  rounds; in each round every case appears once, with the source given by the case's row of the
  Latin square (row offset by the reader index). So the images of one case are a round apart,
  and no source is systematically first, neither within a case nor within a round.
- :func:`plant_duplicates`: insert planted repeats at least ``min_gap`` positions from their original.
- :func:`turing_pairs` / :func:`shuffle_apart`: the visual Turing test block (each case's real
  image and one generated image, generators balanced; the two never adjacent).
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Hashable, Sequence
from typing import TypeVar

import numpy as np

T = TypeVar("T")

NO_FINDING = "No Finding"


def primary_pathology(positives: Sequence[str]) -> str:
    """The stratum of a case: its first positive pathology (CheXpert order), else "No Finding"."""
    return positives[0] if positives else NO_FINDING


def select_cases(strata: dict[str, str], n: int, rng: np.random.Generator) -> list[str]:
    """Choose ``n`` case ids from ``strata`` (case id -> stratum), balanced over strata.

    Strata are visited round robin in a seeded order, each contributing its next case (cases
    within a stratum in seeded order) until ``n`` are chosen; empty strata drop out.
    """
    if n > len(strata):
        raise ValueError(f"asked for {n} cases but only {len(strata)} are eligible")
    groups: dict[str, list[str]] = defaultdict(list)
    for case_id in sorted(strata):
        groups[strata[case_id]].append(case_id)
    queues = []
    for name in sorted(groups):
        members = groups[name]
        queues.append([members[i] for i in rng.permutation(len(members))])
    queues = [queues[i] for i in rng.permutation(len(queues))]
    chosen: list[str] = []
    while len(chosen) < n:
        for queue in queues:
            if queue and len(chosen) < n:
                chosen.append(queue.pop(0))
    return chosen


def balanced_latin_square(n: int) -> list[list[int]]:
    """Williams design for ``n`` treatments: ``n`` rows if ``n`` is even, ``2n`` if odd.

    Row ``i`` of the base square is ``(i + [0, 1, n-1, 2, n-2, ...]) mod n``; for odd ``n`` the
    mirrored rows are appended so first-order carry-over is balanced too.
    """
    if n < 1:
        raise ValueError(f"need at least one treatment, got {n}")
    base, low, high = [0], 1, n - 1
    while len(base) < n:
        base.append(low)
        low += 1
        if len(base) < n:
            base.append(high)
            high -= 1
    rows = [[(b + i) % n for b in base] for i in range(n)]
    if n % 2 == 1 and n > 1:
        rows += [row[::-1] for row in rows]
    return rows


def rating_order(n_cases: int, n_sources: int, reader_index: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """One reader's order of rating items as ``(case index, source index)`` pairs.

    Round ``j`` shows every case once, case ``k`` with source ``square[(k + reader) % rows][j]``;
    cases are shuffled inside each round, and a round never starts with the case that ended
    the previous one.
    """
    square = balanced_latin_square(n_sources)
    order: list[tuple[int, int]] = []
    for j in range(n_sources):
        cases = [int(k) for k in rng.permutation(n_cases)]
        if order and n_cases > 1 and cases[0] == order[-1][0]:
            swap = int(rng.integers(1, n_cases))
            cases[0], cases[swap] = cases[swap], cases[0]
        order += [(k, square[(k + reader_index) % len(square)][j]) for k in cases]
    return order


def duplicate_count(n_items: int, fraction: float) -> int:
    """How many planted duplicates: ``round(fraction * n)``, at least one when fraction > 0 and n >= 2."""
    if fraction <= 0 or n_items < 2:
        return 0
    return max(1, round(fraction * n_items))


def choose_duplicates(sources: Sequence[int], count: int, rng: np.random.Generator) -> list[int]:
    """Indices of ``count`` items to repeat, spread evenly over sources (round robin, seeded)."""
    by_source: dict[int, list[int]] = defaultdict(list)
    for index, source in enumerate(sources):
        by_source[source].append(index)
    queues = [[by_source[s][i] for i in rng.permutation(len(by_source[s]))] for s in sorted(by_source)]
    chosen: list[int] = []
    while len(chosen) < count:
        for queue in queues:
            if queue and len(chosen) < count:
                chosen.append(queue.pop(0))
    return chosen


def plant_duplicates(sequence: list[T], repeats: list[tuple[T, T]], rng: np.random.Generator, min_gap: int) -> list[T]:
    """Insert each ``(original, duplicate)``'s duplicate at a random place >= ``min_gap`` away.

    Insertions only push items apart, so every earlier pair keeps its distance. ``min_gap`` is
    capped at ``(len + 1) // 2`` so a place always exists.
    """
    result = list(sequence)
    for original, duplicate in repeats:
        p = result.index(original)
        gap = max(1, min(min_gap, (len(result) + 1) // 2))
        # inserting at i puts the duplicate at i; the original moves to p + 1 when i <= p
        slots = [i for i in range(len(result) + 1) if (i > p and i - p >= gap) or (i <= p and p + 1 - i >= gap)]
        result.insert(int(slots[rng.integers(len(slots))]), duplicate)
    return result


def turing_pairs(n_cases: int, n_generators: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """Each case's real image (source 0) and one generated image (sources 1..G, balanced)."""
    if n_generators < 1:
        raise ValueError("the visual Turing test needs at least one generator")
    perm = rng.permutation(n_cases)
    pairs: list[tuple[int, int]] = []
    for k in range(n_cases):
        pairs += [(k, 0), (k, 1 + int(perm[k]) % n_generators)]
    return pairs


def shuffle_apart(items: list[T], key, rng: np.random.Generator, attempts: int = 200) -> list[T]:
    """Shuffle so that no two neighbours share ``key(item)`` when that is possible."""
    best: list[T] = list(items)
    best_clashes = len(items)
    for _ in range(attempts):
        order = [items[i] for i in rng.permutation(len(items))]
        clashes = adjacent_clashes(order, key)
        if clashes < best_clashes:
            best, best_clashes = order, clashes
        if clashes == 0:
            break
    return best


def adjacent_clashes(order: Sequence[T], key) -> int:
    keys: list[Hashable] = [key(x) for x in order]
    return sum(a == b for a, b in itertools.pairwise(keys))
