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
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from xreal_bench.metrics.stats import FeatureStats, as_float64_matrix


def psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix (negative rounding eigenvalues set to 0)."""
    eigvals, eigvecs = np.linalg.eigh((matrix + matrix.T) / 2)
    return (eigvecs * np.sqrt(np.clip(eigvals, 0.0, None))) @ eigvecs.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """``tr sqrt(sigma1 @ sigma2)`` for symmetric PSD matrices, via ``sqrt(S1) S2 sqrt(S1)``."""
    root1 = psd_sqrt(sigma1)
    middle = root1 @ sigma2 @ root1
    eigvals = np.linalg.eigvalsh((middle + middle.T) / 2)
    return float(np.sqrt(np.clip(eigvals, 0.0, None)).sum())


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """``|mu1 - mu2|² + tr(S1) + tr(S2) - 2 tr sqrt(S1 S2)`` in float64.

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
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt_product(sigma1, sigma2))


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
