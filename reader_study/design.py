"""The study design as pure, seeded functions (no files, no database).

Study level (drawn from the public ``[study] seed``; the same for every reader):

- :func:`select_cases`: N cases stratified by primary pathology.
- :func:`choose_duplicates`: which rating items are repeated, spread evenly over sources.
- :func:`turing_sources`: the held-out real-or-generated block, one image per case: real with
  the configured share, the rest split evenly over the generators.

Reader level (drawn from the reader's own secret seed, see ``builder.Design.reader``):

- :func:`source_table`: which source each case shows in each round. It starts from a Williams
  square under a random source -> symbol mapping (so ``real`` is not symbol 0) with a random
  square row per case, then applies many random *balanced swaps* (two cases exchange the same
  two sources between the same two rounds), so cases do not share one row pattern and knowing
  where a source sits in one case says nothing certain about another. What holds exactly, for
  every reader: every case shows every source once, one per round; in every round every source
  appears equally often (``n_cases / n_sources`` times; when that is not whole, the counts differ
  by at most one); and the table's distribution is the same under any relabelling of sources,
  so the round (hence the position) of the real image within its case is, given where every
  other source is, a fair coin between the slots left. First-order carry-over between a case's
  rounds is randomised (balanced on average over readers), no longer balanced exactly per reader.
- :func:`round_orders`: the case order of each round; a case's image in the next round stands
  at least ``gap`` items after its image in this round, so a case's images are spread apart and
  interleaved with other cases.
- :func:`plant_duplicates`: planted repeats, at least ``gap`` items from every image of their
  case (and, where possible, a third of the block from their original).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

T = TypeVar("T")

NO_FINDING = "No Finding"

#: Balanced swaps proposed per table cell (see :func:`source_table`).
SWAPS_PER_CELL = 40


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


@dataclass(frozen=True)
class SourceTable:
    """One reader's sources per case and round (indices into the study's source list)."""

    symbols: list[int]  # symbols[s]: the Latin-square symbol source s starts as (random per reader)
    start_rows: list[int]  # start_rows[k]: the Williams row case k starts from
    sources: list[list[int]]  # sources[k][j]: the source case k shows in round j


def source_table(n_cases: int, n_sources: int, rng: np.random.Generator) -> SourceTable:
    """A random balanced case x round table of sources (see the module docstring for what holds)."""
    square = balanced_latin_square(n_sources)
    symbols = [int(x) for x in rng.permutation(n_sources)]
    source_of = {symbol: source for source, symbol in enumerate(symbols)}
    # Rows are dealt one Latin square at a time (the Williams design is one square for an even
    # number of sources, two for an odd one), so any leftover rows come from one square and
    # every round's counts stay within one of each other.
    squares = [list(range(i, i + n_sources)) for i in range(0, len(square), n_sources)]
    dealt: list[int] = []
    while len(dealt) < n_cases:
        for which in rng.permutation(len(squares)):
            dealt += [squares[which][i] for i in rng.permutation(n_sources)]
    start_rows = [0] * n_cases
    for case, row in zip(rng.permutation(n_cases), dealt, strict=False):
        start_rows[int(case)] = row
    table = [[source_of[symbol] for symbol in square[row]] for row in start_rows]
    proposals = SWAPS_PER_CELL * n_cases * n_sources
    cases = rng.integers(n_cases, size=(proposals, 2)).tolist()
    rounds = rng.integers(n_sources, size=(proposals, 2)).tolist()
    for (c1, c2), (a, b) in zip(cases, rounds, strict=True):
        first, second = table[c1], table[c2]
        if first[a] == second[b] and first[b] == second[a] and first[a] != first[b]:
            first[a], first[b] = first[b], first[a]
            second[a], second[b] = second[b], second[a]
    return SourceTable(symbols, start_rows, table)


def case_gap(configured: int, n_cases: int) -> int:
    """The least distance between two images of one case: ``configured``, or when 0 the automatic
    ``max(2, n_cases // 2)``; capped at ``n_cases`` (the most a round structure allows)."""
    wanted = configured or max(2, n_cases // 2)
    return max(1, min(wanted, n_cases))


def round_orders(n_cases: int, n_rounds: int, gap: int, rng: np.random.Generator) -> list[list[int]]:
    """Case order of each round; each case's next image stands >= ``gap`` items after its last one.

    Round 0 is a random order. In the next round, slot ``p`` takes a random case among those not
    yet placed whose distance ``n_cases - previous + p`` is at least ``gap``; for ``gap <= n_cases``
    there are always ``n_cases - gap + 1`` such cases, so the construction never gets stuck.
    """
    if not 1 <= gap <= max(1, n_cases):
        raise ValueError(f"gap must be 1..{n_cases}, got {gap}")
    orders = [[int(k) for k in rng.permutation(n_cases)]]
    for _ in range(1, n_rounds):
        previous = {case: p for p, case in enumerate(orders[-1])}
        remaining = list(orders[-1])
        order: list[int] = []
        for slot in range(n_cases):
            eligible = [k for k in remaining if n_cases - previous[k] + slot >= gap]
            pick = eligible[int(rng.integers(len(eligible)))]
            remaining.remove(pick)
            order.append(pick)
        orders.append(order)
    return orders


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


def plant_duplicates(
    sequence: list[T], repeats: list[tuple[T, T]], rng: np.random.Generator, *, gap: int, key: Callable[[T], Hashable]
) -> list[T]:
    """Insert each ``(original, duplicate)``'s duplicate at a random place >= ``gap`` items from
    every item with the same ``key`` (its case), preferring places a third of the block or more
    from its original. Where no place keeps ``gap`` (tiny studies), the places farthest from the
    case's other images are used. Insertions only push items apart, so earlier spacing holds.
    """
    result = list(sequence)
    far = len(sequence) // 3
    for original, duplicate in repeats:
        same = [p for p, item in enumerate(result) if key(item) == key(duplicate)]
        at = result.index(original)
        # inserting at slot i puts the duplicate at i and moves items at p >= i to p + 1
        spacing = [min((i - p if p < i else p + 1 - i) for p in same) for i in range(len(result) + 1)]
        need = min(gap, max(spacing))
        slots = [i for i, s in enumerate(spacing) if s >= need]
        preferred = [i for i in slots if (i - at if at < i else at + 1 - i) >= far]
        choice = preferred or slots
        result.insert(choice[int(rng.integers(len(choice)))], duplicate)
    return result


def smallest_gap(keys: Sequence[Hashable]) -> int | None:
    """The least distance between two equal keys in ``keys`` (``None`` if all differ)."""
    last: dict[Hashable, int] = {}
    best: int | None = None
    for position, key in enumerate(keys):
        if key in last:
            distance = position - last[key]
            best = distance if best is None else min(best, distance)
        last[key] = position
    return best


def turing_sources(n_cases: int, n_generators: int, real_fraction: float, rng: np.random.Generator) -> list[int]:
    """The source of each held-out case's one image: 0 (real) for ``round(real_fraction * n)``
    cases (at least one of each kind when ``n >= 2``), generators 1..G for the rest, split evenly
    (round robin from a seeded start), all in seeded random order."""
    if n_generators < 1:
        raise ValueError("the real-or-generated block needs at least one generator")
    n_real = int(real_fraction * n_cases + 0.5)
    if n_cases >= 2:
        n_real = min(max(n_real, 1), n_cases - 1)
    start = int(rng.integers(n_generators))
    generated = [1 + (start + i) % n_generators for i in range(n_cases - n_real)]
    sources = [0] * n_real + generated
    return [sources[int(i)] for i in rng.permutation(n_cases)]
