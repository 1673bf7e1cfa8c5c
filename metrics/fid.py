"""Fréchet distance (FID) and kernel distance (KID) between two feature distributions.

Everything is float64. The Fréchet distance uses ``tr sqrt(S1 S2) = Σ sqrt(λ_i)`` with
``λ_i`` the eigenvalues of the symmetric positive semi-definite matrix
``sqrt(S1) S2 sqrt(S1)`` (same spectrum as ``S1 S2``). Symmetric eigen-decompositions
(``numpy.linalg.eigh``) stay real and stable for singular or near-singular covariances (fewer
samples than dimensions), where ``scipy.linalg.sqrtm`` returns complex parts or fails and
pytorch-fid / clean-fid resort to adding ``eps * I``. The value matches ``sqrtm``-based
FID to ~1e-9 relative on well-conditioned inputs (see ``tests/test_metric_math.py``).

FID is biased by sample size: always report ``n`` with it, and prefer :func:`kid` or
bootstrap intervals for small subsets.

KID's interval (:class:`CaseKernelSums`, :func:`kid_bootstrap`) is a bias-corrected bootstrap over
cases of the unbiased MMD² U-statistic on *all* pairs — the quantity the subset mean of :func:`kid`
estimates — made exact and cheap by case-level kernel block sums: with ``S[c, d]`` the kernel
summed over the images of cases ``c`` and ``d`` and ``m`` the multiplicities of a resample, the
sum over pairs of distinct positions of the resampled sample is ``mᵀ S m − Σ_c m_c diag_c``, so
every resample is a few matrix products (vectorised over resamples). Memory: three ``C x C`` float64 matrices for ``C``
cases (5,000 cases: 600 MB); time: one pass over all kernel pairs (chunked) plus ``O(B C²)``. The sums take any
:class:`Kernel` (KID's polynomial kernel; CMMD's Gaussian kernel in :mod:`xreal_bench.metrics.cmmd`) and give the
unbiased U-statistic (KID) or the biased V-statistic over all pairs, diagonal included (CMMD).

FD∞ (:func:`fd_infinity`, Chong & Forsyth 2020, "Effectively unbiased FID and Inception Score and where to find
them"): FD's bias is close to linear in 1/N, so FD at several generated-sample sizes N_i, fitted linearly against
1/N_i, extrapolates to N = ∞ (the intercept).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Protocol

import numpy as np

from xreal_bench.metrics.bootstrap import BootstrapCI, check_args, multiplicities, percentile_interval
from xreal_bench.metrics.stats import FeatureStats, as_float64_matrix


def psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix (negative rounding eigenvalues set to 0)."""
    eigvals, eigvecs = np.linalg.eigh((matrix + matrix.T) / 2)
    return (eigvecs * np.sqrt(np.clip(eigvals, 0.0, None))) @ eigvecs.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray, root1: np.ndarray | None = None) -> float:
    """``tr sqrt(sigma1 @ sigma2)`` for symmetric PSD matrices, via ``sqrt(S1) S2 sqrt(S1)`` (``root1``: ``sqrt(S1)``
    when already known)."""
    root1 = psd_sqrt(sigma1) if root1 is None else root1
    middle = root1 @ sigma2 @ root1
    eigvals = np.linalg.eigvalsh((middle + middle.T) / 2)
    return float(np.sqrt(np.clip(eigvals, 0.0, None)).sum())


def frechet_distance(mu1, sigma1, mu2, sigma2, *, root1: np.ndarray | None = None) -> float:
    """``|mu1 - mu2|² + tr(S1) + tr(S2) - 2 tr sqrt(S1 S2)`` in float64 (``root1``: ``sqrt(S1)`` when already known).

    May be a tiny negative number (rounding) for identical inputs; it is returned as is.
    """
    mu1, mu2 = np.asarray(mu1, dtype=np.float64), np.asarray(mu2, dtype=np.float64)
    sigma1, sigma2 = np.asarray(sigma1, dtype=np.float64), np.asarray(sigma2, dtype=np.float64)
    d = mu1.shape[0] if mu1.ndim == 1 else -1
    if mu1.ndim != 1 or mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(
            f"shape mismatch: mu1 {mu1.shape}, sigma1 {sigma1.shape}, mu2 {mu2.shape}, sigma2 {sigma2.shape} "
            "(need [d], [d, d], [d], [d, d])"
        )
    for name, arr in (("mu1", mu1), ("sigma1", sigma1), ("mu2", mu2), ("sigma2", sigma2)):
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} contains NaN or infinite values")
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt_product(sigma1, sigma2, root1))


def fid_from_stats(a: FeatureStats, b: FeatureStats) -> float:
    """Fréchet distance between two sets of streaming statistics (each needs n >= 2)."""
    if a.dim != b.dim:
        raise ValueError(f"feature dimensions differ: {a.dim} vs {b.dim} (statistics from different extractors?)")
    return frechet_distance(a.mean(), a.cov(), b.mean(), b.cov())


class KID(NamedTuple):
    """Kernel distance over random subsets: mean and (population) standard deviation."""

    mean: float
    std: float


def polynomial_kernel(x: np.ndarray, y: np.ndarray, degree: int, gamma: float, coef0: float) -> np.ndarray:
    return (x @ y.T * gamma + coef0) ** degree


def unbiased_mmd2(k_xx: np.ndarray, k_xy: np.ndarray, k_yy: np.ndarray) -> float:
    """Unbiased MMD² estimate from kernel matrices of two equal-size subsets."""
    m = k_xx.shape[0]
    off_diag = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(off_diag - 2.0 * k_xy.sum() / (m * m))


def kid(
    features_a,
    features_b,
    subsets: int = 100,
    subset_size: int = 1000,
    degree: int = 3,
    gamma: float | None = None,
    coef0: float = 1.0,
    seed: int = 0,
) -> KID:
    """Kernel Inception Distance as defined by torch-fidelity (polynomial kernel, unbiased MMD²).

    Each of ``subsets`` rounds draws ``m`` rows without replacement from each side (a
    ``numpy.random.RandomState(seed)``, A then B, as torch-fidelity does) and computes the
    unbiased MMD² with ``k(x, y) = (gamma xᵀy + coef0)^degree``, ``gamma = 1/d`` by default.
    ``m = min(subset_size, n_a, n_b)``: the subset size is clipped to the smaller side (where
    torch-fidelity raises instead), so small per-pathology subsets still get a value.
    """
    a, b = as_float64_matrix(features_a, "features_a"), as_float64_matrix(features_b, "features_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature dimensions differ: {a.shape[1]} vs {b.shape[1]}")
    m = min(subset_size, a.shape[0], b.shape[0])
    if m < 2:
        raise ValueError(f"KID needs at least 2 samples on each side, got {a.shape[0]} and {b.shape[0]}")
    if subsets < 1:
        raise ValueError(f"subsets must be >= 1, got {subsets}")
    gamma = 1.0 / a.shape[1] if gamma is None else gamma
    rng = np.random.RandomState(seed)
    values = np.empty(subsets)
    for i in range(subsets):
        x = a[rng.choice(a.shape[0], m, replace=False)]
        y = b[rng.choice(b.shape[0], m, replace=False)]
        values[i] = unbiased_mmd2(
            polynomial_kernel(x, x, degree, gamma, coef0),
            polynomial_kernel(x, y, degree, gamma, coef0),
            polynomial_kernel(y, y, degree, gamma, coef0),
        )
    return KID(float(values.mean()), float(values.std()))


#: Kernel entries computed at once while summing kernel blocks (float64: 32 MiB).
KERNEL_CHUNK = 1 << 22


class Kernel(Protocol):
    """A positive-definite kernel: all pairs of rows of two float64 matrices, and each row with itself."""

    def __call__(self, x: np.ndarray, y: np.ndarray) -> np.ndarray: ...

    def diagonal(self, x: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class KIDKernel:
    """KID's kernel ``(xᵀy / d + 1)³`` (torch-fidelity's defaults, as :func:`kid` uses)."""

    def __call__(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return polynomial_kernel(x, y, 3, 1.0 / x.shape[1], 1.0)

    def diagonal(self, x: np.ndarray) -> np.ndarray:
        return (np.einsum("ij,ij->i", x, x) / x.shape[1] + 1.0) ** 3


KID_KERNEL = KIDKernel()


def case_starts(case: np.ndarray) -> np.ndarray:
    """Start of each run of equal values in ``case`` (sorted)."""
    return np.flatnonzero(np.r_[True, case[1:] != case[:-1]])


def block_sums(
    x: np.ndarray, x_case: np.ndarray, y: np.ndarray, y_case: np.ndarray, n_cases: int, kernel: Kernel = KID_KERNEL
) -> np.ndarray:
    """``S[c, d] = Σ_{i of case c, j of case d} k(x_i, y_j)``; ``x_case`` / ``y_case`` sorted case positions;
    at most :data:`KERNEL_CHUNK` kernel entries in memory at once."""
    out = np.zeros((n_cases, n_cases))
    if not len(x) or not len(y):
        return out
    y_starts = case_starts(y_case)
    rows = max(1, KERNEL_CHUNK // len(y))
    for start in range(0, len(x), rows):
        stop = min(start + rows, len(x))
        by_y_case = np.add.reduceat(kernel(x[start:stop], y), y_starts, axis=1)  # [rows, cases of y]
        x_starts = case_starts(x_case[start:stop])
        out[np.ix_(x_case[start:stop][x_starts], y_case[y_starts])] += np.add.reduceat(by_y_case, x_starts, axis=0)
    return out


@dataclass(frozen=True)
class CaseKernelSums:
    """A kernel (KID's by default) summed within and between the cases of a generated and a real feature set.

    Case ``c`` has ``gen_count[c]`` generated and ``real_count[c]`` real images; ``gg``, ``rr``,
    ``rg`` are the block sums (generated-generated, real-real, real-generated) and ``gen_self`` /
    ``real_self`` each case's ``Σ_i k(x_i, x_i)``.
    """

    gen_count: np.ndarray
    real_count: np.ndarray
    gen_self: np.ndarray
    real_self: np.ndarray
    gg: np.ndarray
    rr: np.ndarray
    rg: np.ndarray

    @classmethod
    def of(
        cls,
        gen: np.ndarray,
        gen_case: np.ndarray,
        real: np.ndarray,
        real_case: np.ndarray,
        n_cases: int,
        kernel: Kernel = KID_KERNEL,
    ) -> CaseKernelSums:
        """Sums over ``n_cases`` cases; ``gen_case`` / ``real_case`` give each feature row's case position."""
        g, r = as_float64_matrix(gen, "gen"), as_float64_matrix(real, "real")
        if g.shape[1] != r.shape[1]:
            raise ValueError(f"feature dimensions differ: {g.shape[1]} vs {r.shape[1]}")
        g_order, r_order = np.argsort(gen_case, kind="stable"), np.argsort(real_case, kind="stable")
        g, gc = g[g_order], np.asarray(gen_case)[g_order]
        r, rc = r[r_order], np.asarray(real_case)[r_order]

        def self_sums(x: np.ndarray, case: np.ndarray) -> np.ndarray:
            return np.bincount(case, weights=kernel.diagonal(x), minlength=n_cases)

        return cls(
            gen_count=np.bincount(gc, minlength=n_cases).astype(np.float64),
            real_count=np.bincount(rc, minlength=n_cases).astype(np.float64),
            gen_self=self_sums(g, gc),
            real_self=self_sums(r, rc),
            gg=block_sums(g, gc, g, gc, n_cases, kernel),
            rr=block_sums(r, rc, r, rc, n_cases, kernel),
            rg=block_sums(r, rc, g, gc, n_cases, kernel),
        )

    def subset(self, cases: np.ndarray) -> CaseKernelSums:
        """The sums restricted to the case positions ``cases`` (in that order)."""
        block = np.ix_(cases, cases)
        return CaseKernelSums(
            self.gen_count[cases],
            self.real_count[cases],
            self.gen_self[cases],
            self.real_self[cases],
            self.gg[block],
            self.rr[block],
            self.rg[block],
        )

    def mmd2(self, m: np.ndarray, *, unbiased: bool = True) -> np.ndarray:
        """MMD² on all pairs of the sample drawing case ``c`` ``m[b, c]`` times, per row ``b``: the unbiased
        U-statistic (pairs of distinct positions; NaN where a side has fewer than 2 images) or the biased
        V-statistic (every pair, a position with itself included; NaN where a side is empty)."""
        m = np.atleast_2d(np.asarray(m, dtype=np.float64))
        n_g, n_r = m @ self.gen_count, m @ self.real_count
        gg = np.einsum("bc,bc->b", m @ self.gg, m)
        rr = np.einsum("bc,bc->b", m @ self.rr, m)
        rg = np.einsum("bc,bc->b", m @ self.rg, m)
        if unbiased:
            gg, rr = gg - m @ self.gen_self, rr - m @ self.real_self
            pairs_g, pairs_r, least = n_g * (n_g - 1), n_r * (n_r - 1), 2
        else:
            pairs_g, pairs_r, least = n_g * n_g, n_r * n_r, 1
        ok = (n_g >= least) & (n_r >= least)
        with np.errstate(invalid="ignore", divide="ignore"):
            value = gg / pairs_g + rr / pairs_r - 2.0 * rg / (n_g * n_r)
        return np.where(ok, value, np.nan)

    def all_pairs(self, *, unbiased: bool = True) -> float:
        """MMD² (:meth:`mmd2`) on all pairs of the full sample (every case once)."""
        return float(self.mmd2(np.ones(len(self.gen_count)), unbiased=unbiased)[0])


def kid_bootstrap(sums: CaseKernelSums, estimate: float, n_resamples: int, confidence: float, seed: int) -> BootstrapCI:
    """KID's interval: the all-pairs unbiased MMD² of each case resample (:func:`multiplicities`, the same case
    positions as every other bootstrap of the run), bias-corrected as FID's: shifted so that their mean is ``estimate``.

    Resampling biases the all-pairs statistic upwards (a case drawn twice pairs copies of the same image,
    whose kernel value is large) by about one standard error: for two identical distributions (60 cases
    of 2 images, 150 simulated runs) the uncorrected percentile interval contained the true 0 in 3 runs,
    the corrected one in all 150 (``tests/test_kid_ci.py`` checks 40 runs). The draws are the shifted
    statistics.
    """
    return mmd_bootstrap(sums, estimate, n_resamples, confidence, seed, unbiased=True)


def mmd_bootstrap(
    sums: CaseKernelSums,
    estimate: float,
    n_resamples: int,
    confidence: float,
    seed: int,
    *,
    unbiased: bool,
    floor: float | None = None,
) -> BootstrapCI:
    """The case bootstrap of the all-pairs MMD² (U- or V-statistic) shifted so that the draws' mean is ``estimate``;
    ``floor``: draws below it (a squared norm below 0) count as it."""
    check_args(len(sums.gen_count), n_resamples, confidence)
    raw = sums.mmd2(multiplicities(len(sums.gen_count), n_resamples, seed), unbiased=unbiased)
    draws = raw - (np.nanmean(raw) - estimate) if not np.isnan(raw).all() else raw
    if floor is not None:
        draws = np.where(np.isnan(draws), draws, np.maximum(draws, floor))
    low, high, failed = percentile_interval(draws, confidence)
    return BootstrapCI(estimate, low, high, confidence, n_resamples, failed, draws)


class FDInfinity(NamedTuple):
    """FD∞: the intercept of the linear fit of FD against 1/N over generated subsample sizes ``sizes``."""

    value: float
    sizes: np.ndarray
    distances: np.ndarray


#: Generated images from which an FD row gets the FD∞ note, and the subsample sizes it fits.
FD_INFINITY_MIN_IMAGES = 200
FD_INFINITY_SIZES = 5


def fd_infinity(gen: np.ndarray, real_mean: np.ndarray, real_cov: np.ndarray, *, seed: int) -> FDInfinity:
    """Chong & Forsyth's FD∞ against fixed real moments: FD of the first ``N_i`` images of one seeded permutation
    for :data:`FD_INFINITY_SIZES` sizes evenly spaced from ``N/5`` to ``N`` (their 5k..50k spans the same ratio),
    fitted by least squares as ``FD = FD∞ + b / N``. Only the generated side's size is extrapolated; the real
    moments keep their own sample size. Cost: one pass of moment updates over the images (nested subsamples)
    and one ``d x d`` eigen-decomposition per size (``sqrt`` of the real covariance computed once)."""
    n = len(gen)
    sizes = np.unique(np.linspace(max(2, n // 5), n, FD_INFINITY_SIZES).round().astype(np.int64))
    if len(sizes) < 2:
        raise ValueError(f"FD∞ needs at least two subsample sizes, got {n} images")
    order = np.random.default_rng(seed).permutation(n)
    root = psd_sqrt(np.asarray(real_cov, dtype=np.float64))
    stats, taken = FeatureStats.empty(gen.shape[1]), 0
    distances = np.empty(len(sizes))
    for k, size in enumerate(sizes):
        stats.update(gen[order[taken:size]])
        taken = size
        distances[k] = frechet_distance(real_mean, real_cov, stats.mean(), stats.cov(), root1=root)
    _, intercept = np.polyfit(1.0 / sizes, distances, 1)
    return FDInfinity(float(intercept), sizes, distances)
