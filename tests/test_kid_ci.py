"""KID's confidence interval: the case bootstrap of the all-pairs unbiased MMD² from case kernel block sums,
checked against a brute-force U-statistic on explicitly resampled index arrays."""

from __future__ import annotations

import numpy as np
import pytest

from xreal_bench.metrics.bootstrap import bootstrap_ci, multiplicities, percentile_interval
from xreal_bench.metrics.fid import CaseKernelSums, kid, kid_bootstrap


def kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def brute_mmd2(gen: np.ndarray, real: np.ndarray) -> float:
    """The unbiased MMD² U-statistic written out: mean over pairs of distinct positions within each side."""
    n, m = len(gen), len(real)
    k_gg, k_rr = kernel(gen, gen), kernel(real, real)
    within_g = (k_gg.sum() - np.trace(k_gg)) / (n * (n - 1))
    within_r = (k_rr.sum() - np.trace(k_rr)) / (m * (m - 1))
    return float(within_g + within_r - 2.0 * kernel(gen, real).mean())


def expand(case: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Row indices of a sample drawing case ``c`` ``counts[c]`` times (every row of a drawn case, each time)."""
    return np.concatenate([np.tile(np.flatnonzero(case == c), int(k)) for c, k in enumerate(counts)] or [np.zeros(0, int)])


def toy_run(n_cases: int, *, seed: int, shift: float = 0.0, dim: int = 6, max_samples: int = 3):
    """Generated features with 1..max_samples images per case (shuffled order), one real image per case but
    one case without a real image."""
    rng = np.random.default_rng(seed)
    per_case = rng.integers(1, max_samples + 1, size=n_cases)
    gen_case = rng.permutation(np.repeat(np.arange(n_cases), per_case))
    gen = rng.normal(size=(len(gen_case), dim)) + shift
    real_case = np.delete(np.arange(n_cases), n_cases // 2)
    real = rng.normal(size=(len(real_case), dim))
    return gen, gen_case, real, real_case


def test_block_sums_give_the_brute_force_u_statistic_for_every_resample(monkeypatch):
    monkeypatch.setattr("xreal_bench.metrics.fid.KERNEL_CHUNK", 7)  # several chunks, cases split across them
    gen, gen_case, real, real_case = toy_run(9, seed=1)
    sums = CaseKernelSums.of(gen, gen_case, real, real_case, 9)
    assert sums.all_pairs() == pytest.approx(brute_mmd2(gen, real), abs=1e-9)
    draws = multiplicities(9, 40, seed=3)
    ours = sums.mmd2(draws)
    for b, counts in enumerate(draws):
        expected = brute_mmd2(gen[expand(gen_case, counts)], real[expand(real_case, counts)])
        assert ours[b] == pytest.approx(expected, abs=1e-9), b
    # a subset of cases is the brute force on those cases' rows
    cases = np.array([0, 2, 4, 5, 8])
    part = sums.subset(cases)
    keep_g, keep_r = np.isin(gen_case, cases), np.isin(real_case, cases)
    assert part.all_pairs() == pytest.approx(brute_mmd2(gen[keep_g], real[keep_r]), abs=1e-9)


def test_a_resample_with_fewer_than_two_images_on_a_side_is_undefined():
    gen, gen_case, real, real_case = toy_run(4, seed=2, max_samples=1)
    sums = CaseKernelSums.of(gen, gen_case, real, real_case, 4)
    one_case = np.array([[0.0, 4.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])  # case 1 alone: four copies of one image
    out = sums.mmd2(one_case)
    expected = brute_mmd2(gen[expand(gen_case, one_case[0])], real[expand(real_case, one_case[0])])
    assert np.isfinite(out[1]) and out[0] == pytest.approx(expected, abs=1e-9)
    only_case_2 = np.array([[0.0, 0.0, 1.0, 0.0]])  # case 2 has no real image (toy_run drops n // 2)
    assert np.isnan(sums.mmd2(only_case_2)[0])


def test_interval_covers_the_subset_mean_on_shifted_data_and_shrinks_with_more_cases():
    widths = []
    for n_cases in (30, 240):
        gen, gen_case, real, real_case = toy_run(n_cases, seed=4, shift=0.4, max_samples=2)
        point = kid(real, gen, subsets=20, subset_size=20, seed=0).mean
        sums = CaseKernelSums.of(gen, gen_case, real, real_case, n_cases)
        ci = kid_bootstrap(sums, point, 300, 0.95, seed=0)
        assert ci.estimate == point and ci.low < point < ci.high
        assert ci.low > 0  # the shift is detected: the interval excludes 0
        assert (ci.low, ci.high) == percentile_interval(ci.draws, 0.95)[:2]
        # the draws are the resampled all-pairs statistic shifted to have the point estimate as their mean
        raw = sums.mmd2(multiplicities(n_cases, 300, seed=0))
        np.testing.assert_allclose(ci.draws - raw, point - raw.mean(), atol=1e-12)
        assert ci.draws.mean() == pytest.approx(point, abs=1e-12)
        widths.append(ci.high - ci.low)
    assert widths[1] < 0.6 * widths[0]  # ~ 1/sqrt(8)


def test_bias_correction_keeps_the_truth_of_identical_distributions_inside_the_interval():
    """A case drawn twice pairs copies of one image: the resampled all-pairs MMD² is biased upwards, and its
    plain percentile interval misses the true 0 of two identical distributions; the corrected one covers it."""
    covered = plain_covered = 0
    for rep in range(40):
        gen, gen_case, real, real_case = toy_run(60, seed=100 + rep, max_samples=2)
        sums = CaseKernelSums.of(gen, gen_case, real, real_case, 60)
        ci = kid_bootstrap(sums, sums.all_pairs(), 200, 0.95, seed=rep)
        covered += ci.low <= 0.0 <= ci.high
        low, high, _ = percentile_interval(sums.mmd2(multiplicities(60, 200, seed=rep)), 0.95)
        plain_covered += low <= 0.0 <= high
    assert covered >= 38 and plain_covered <= 10  # seeded: 40 and 8


def test_resample_b_draws_the_same_cases_as_the_mean_bootstrap():
    """Case multiplicities are the rows of the same draws every other interval of the run uses."""
    values = np.random.default_rng(5).uniform(size=12)
    weights = multiplicities(12, 50, seed=9)
    np.testing.assert_allclose(bootstrap_ci(values, 50, seed=9).draws, weights @ values / 12, rtol=1e-12)
