"""The study design functions: stratified selection, Latin squares, orders, duplicates, Turing block."""

import itertools
from collections import Counter

import numpy as np
import pytest

from xreal_bench.reader_study import design


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6])
def test_balanced_latin_square_is_latin_and_williams(n):
    rows = design.balanced_latin_square(n)
    assert len(rows) == (2 * n if n % 2 and n > 1 else n)
    for row in rows:
        assert sorted(row) == list(range(n))
    # every treatment in every ordinal position equally often
    for position in range(n):
        counts = Counter(row[position] for row in rows)
        assert set(counts.values()) == {len(rows) // n}
    # first-order carry-over balance: each ordered pair (a, b), a != b, follows equally often
    if n > 1:
        pairs = Counter((row[i], row[i + 1]) for row in rows for i in range(n - 1))
        assert len(pairs) == n * (n - 1)
        assert len(set(pairs.values())) == 1


def test_select_cases_balances_strata_and_is_seeded():
    strata = {f"c{i:02d}": s for i, s in enumerate(["A"] * 10 + ["B"] * 3 + ["C"] * 7)}
    chosen = design.select_cases(strata, 9, np.random.default_rng(1))
    assert len(set(chosen)) == 9
    assert Counter(strata[c] for c in chosen) == {"A": 3, "B": 3, "C": 3}
    more = design.select_cases(strata, 15, np.random.default_rng(1))
    assert Counter(strata[c] for c in more) == {"A": 6, "B": 3, "C": 6}  # B runs out, others share the rest
    assert chosen == design.select_cases(strata, 9, np.random.default_rng(1))
    assert chosen != design.select_cases(strata, 9, np.random.default_rng(2))
    with pytest.raises(ValueError, match="only 20 are eligible"):
        design.select_cases(strata, 21, np.random.default_rng(0))


def test_primary_pathology():
    assert design.primary_pathology(["Edema", "Pneumonia"]) == "Edema"
    assert design.primary_pathology([]) == "No Finding"


@pytest.mark.parametrize("n_sources,n_cases", [(3, 12), (4, 8), (2, 6)])
def test_rating_order_balance(n_sources, n_cases):
    rows = len(design.balanced_latin_square(n_sources))
    for reader in range(3):
        order = design.rating_order(n_cases, n_sources, reader, np.random.default_rng(reader))
        assert sorted(order) == [(k, s) for k in range(n_cases) for s in range(n_sources)]
        for j in range(n_sources):  # round j: every case once, sources balanced
            block = order[j * n_cases : (j + 1) * n_cases]
            assert sorted(k for k, _ in block) == list(range(n_cases))
            if n_cases % rows == 0:
                assert set(Counter(s for _, s in block).values()) == {n_cases // n_sources}
        # no case twice in a row, so the same case's images are never neighbours
        assert all(a[0] != b[0] for a, b in itertools.pairwise(order))
    # which source a case shows first rotates between readers
    first = [dict(design.rating_order(n_cases, n_sources, r, np.random.default_rng(9))[:n_cases]) for r in range(2)]
    assert first[0] != first[1]


def test_duplicates_count_spread_and_gap():
    assert design.duplicate_count(36, 0.1) == 4
    assert design.duplicate_count(36, 0.0) == 0
    assert design.duplicate_count(3, 0.01) == 1
    sources = [i % 3 for i in range(30)]
    chosen = design.choose_duplicates(sources, 6, np.random.default_rng(0))
    assert len(set(chosen)) == 6
    assert Counter(sources[i] for i in chosen) == {0: 2, 1: 2, 2: 2}

    seq = [f"i{k}" for k in range(30)]
    repeats = [(seq[i], f"d{i}") for i in chosen]
    planted = design.plant_duplicates(seq, repeats, np.random.default_rng(3), min_gap=10)
    assert len(planted) == 36 and set(seq) <= set(planted)
    for original, dup in repeats:
        assert abs(planted.index(original) - planted.index(dup)) >= 10


def test_plant_duplicates_caps_gap_so_short_sequences_still_get_one():
    planted = design.plant_duplicates(["a", "b"], [("a", "a2")], np.random.default_rng(0), min_gap=50)
    assert sorted(planted) == ["a", "a2", "b"]


def test_turing_pairs_balanced():
    pairs = design.turing_pairs(12, 3, np.random.default_rng(0))
    assert Counter(s for _, s in pairs) == {0: 12, 1: 4, 2: 4, 3: 4}
    assert all(Counter(k for k, _ in pairs)[k] == 2 for k in range(12))
    with pytest.raises(ValueError):
        design.turing_pairs(3, 0, np.random.default_rng(0))


def test_shuffle_apart_separates_same_key():
    items = [(k, s) for k in range(10) for s in range(2)]
    order = design.shuffle_apart(items, key=lambda x: x[0], rng=np.random.default_rng(4))
    assert sorted(order) == sorted(items)
    assert design.adjacent_clashes(order, key=lambda x: x[0]) == 0
