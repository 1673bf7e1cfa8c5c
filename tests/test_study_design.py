"""The study design functions: stratified selection, Latin squares, per-reader source tables, spacing,
duplicates, the held-out real-or-generated block."""

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


def round_counts(table: list[list[int]], n_sources: int) -> list[Counter]:
    return [Counter(row[j] for row in table) for j in range(n_sources)]


@pytest.mark.parametrize("n_cases,n_sources", [(12, 4), (8, 4), (9, 3), (7, 3), (6, 2), (5, 5), (1, 3)])
def test_source_table_is_balanced_for_every_seed(n_cases, n_sources):
    for seed in range(40):
        table = design.source_table(n_cases, n_sources, np.random.default_rng(seed))
        assert sorted(table.symbols) == list(range(n_sources))
        assert len(table.sources) == n_cases
        for row in table.sources:  # every case shows every source once, one per round
            assert sorted(row) == list(range(n_sources))
        for counts in round_counts(table.sources, n_sources):  # every round: each source n/S times (+-1)
            values = [counts.get(s, 0) for s in range(n_sources)]
            assert max(values) - min(values) <= 1, (seed, values)
            if n_cases % n_sources == 0:
                assert set(values) == {n_cases // n_sources}


def test_source_table_differs_between_readers_and_real_is_not_symbol_zero():
    tables = [design.source_table(12, 4, np.random.default_rng(seed)) for seed in range(200)]
    symbols = Counter(t.symbols[0] for t in tables)  # the symbol of source 0 ('real')
    assert set(symbols) == {0, 1, 2, 3} and min(symbols.values()) > 30
    assert len({tuple(map(tuple, t.sources)) for t in tables}) == 200
    # the swaps break the square's rows: cases show more than the square's 4 row patterns
    patterns = [len({tuple(row) for row in t.sources}) for t in tables]
    assert np.mean(patterns) > 6
    # over readers, real stands in every round of a case equally often
    first_case_round = Counter(t.sources[0].index(0) for t in tables)
    assert set(first_case_round) == {0, 1, 2, 3} and min(first_case_round.values()) > 30


@pytest.mark.parametrize("configured,n_cases,expected", [(0, 12, 6), (0, 3, 2), (0, 2, 2), (0, 1, 1), (5, 12, 5), (30, 12, 12)])
def test_case_gap_automatic_and_capped(configured, n_cases, expected):
    assert design.case_gap(configured, n_cases) == expected


@pytest.mark.parametrize("n_cases,n_rounds,gap", [(12, 4, 6), (12, 4, 12), (7, 3, 2), (6, 3, 3), (2, 3, 2), (1, 3, 1)])
def test_round_orders_keep_the_gap_for_every_seed(n_cases, n_rounds, gap):
    for seed in range(50):
        orders = design.round_orders(n_cases, n_rounds, gap, np.random.default_rng(seed))
        assert len(orders) == n_rounds and all(sorted(o) == list(range(n_cases)) for o in orders)
        flat = [k for order in orders for k in order]
        if n_cases > 1:
            assert design.smallest_gap(flat) >= gap
    if n_cases > gap:  # below the cap the rounds are not one fixed order repeated
        assert len({tuple(design.round_orders(n_cases, n_rounds, gap, np.random.default_rng(s))[1]) for s in range(20)}) > 1
    with pytest.raises(ValueError, match="gap must be"):
        design.round_orders(n_cases, n_rounds, n_cases + 1, np.random.default_rng(0))


def test_smallest_gap():
    assert design.smallest_gap(["a", "b", "a", "c", "b"]) == 2
    assert design.smallest_gap(["a", "b"]) is None


def test_duplicates_count_spread_and_gap():
    assert design.duplicate_count(36, 0.1) == 4
    assert design.duplicate_count(36, 0.0) == 0
    assert design.duplicate_count(3, 0.01) == 1
    sources = [i % 3 for i in range(30)]
    chosen = design.choose_duplicates(sources, 6, np.random.default_rng(0))
    assert len(set(chosen)) == 6
    assert Counter(sources[i] for i in chosen) == {0: 2, 1: 2, 2: 2}


@pytest.mark.parametrize("n_cases,n_sources,n_dups", [(12, 4, 5), (6, 3, 4), (4, 2, 2)])
def test_planted_duplicates_keep_the_case_gap_for_every_seed(n_cases, n_sources, n_dups):
    gap = design.case_gap(0, n_cases)
    for seed in range(40):
        rng = np.random.default_rng(seed)
        orders = design.round_orders(n_cases, n_sources, gap, rng)
        sequence = [(k, j) for j, order in enumerate(orders) for k in order]
        repeats = [(sequence[i], (sequence[i][0], f"dup{i}")) for i in rng.choice(len(sequence), n_dups, replace=False)]
        planted = design.plant_duplicates(sequence, repeats, rng, gap=gap, key=lambda item: item[0])
        assert len(planted) == len(sequence) + n_dups and set(sequence) <= set(planted)
        assert design.smallest_gap([k for k, _ in planted]) >= gap, seed


def test_plant_duplicates_prefers_a_third_of_the_block_from_the_original():
    seq = [f"i{k}" for k in range(30)]
    for seed in range(20):
        planted = design.plant_duplicates(seq, [("i5", "d5")], np.random.default_rng(seed), gap=1, key=lambda x: x[1:])
        assert abs(planted.index("d5") - planted.index("i5")) >= 10


def test_plant_duplicates_uses_the_farthest_place_when_the_gap_cannot_hold():
    planted = design.plant_duplicates(["a", "b"], [("a", "a2")], np.random.default_rng(0), gap=50, key=lambda x: x[0])
    assert planted == ["a", "b", "a2"]


@pytest.mark.parametrize("n,generators,fraction,n_real", [(12, 3, 0.5, 6), (12, 2, 0.25, 3), (5, 2, 0.5, 3), (2, 1, 0.9, 1)])
def test_turing_sources_share_and_generator_balance(n, generators, fraction, n_real):
    for seed in range(10):
        sources = design.turing_sources(n, generators, fraction, np.random.default_rng(seed))
        counts = Counter(sources)
        assert len(sources) == n and counts[0] == n_real
        generated = [counts.get(g, 0) for g in range(1, generators + 1)]
        assert sum(generated) == n - n_real and max(generated) - min(generated) <= 1
    with pytest.raises(ValueError, match="needs at least one generator"):
        design.turing_sources(3, 0, 0.5, np.random.default_rng(0))
