"""Seeded percentile bootstrap confidence intervals over cases.

Two forms:

- :func:`bootstrap_ci` — the mean of per-case values (MS-SSIM, Dice), vectorised.
- :func:`bootstrap_statistic` — any statistic of a resampled index set (AUC/F1 macro from
  per-image scores, FID from per-image features).

With ``groups`` (one id per sample, e.g. the case id when a case has several samples), whole
groups are resampled with replacement and their samples stay together; otherwise each sample
is its own group. Groups are numbered in sorted order of their ids and resample *b* draws group
positions ``case_picks(G, B, seed)[b]``: the same seed gives the same resamples, hence the same
interval, and two sources with the same groups (the cases they cover) are resampled in pairs —
draw *b* of one and draw *b* of the other rest on the same cases.

Every interval keeps its resampled statistics (:attr:`BootstrapCI.draws`); ``evaluate`` stores
them in ``bootstrap.npz`` for rank intervals and paired comparisons.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class BootstrapCI:
    """Point estimate on all data and the percentile interval of the resampled statistic."""

    estimate: float
    low: float
    high: float
    confidence: float
    n_resamples: int
    n_failed: int = 0  # resamples whose statistic was NaN (left out of the percentiles)
    #: The resampled statistics the percentiles were taken from (bias-corrected where the interval is), NaN where undefined.
    draws: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False, compare=False)


def group_members(n: int, groups: Sequence | np.ndarray | None) -> list[np.ndarray]:
    """Sample indices of each group, groups in sorted order of their ids; one group per sample if None."""
    if groups is None:
        return [np.array([i]) for i in range(n)]
    groups = np.asarray(groups)
    if groups.shape != (n,):
        raise ValueError(f"groups must have one entry per sample ({n}), got shape {groups.shape}")
    _, inverse = np.unique(groups, return_inverse=True)
    return np.split(np.argsort(inverse, kind="stable"), np.cumsum(np.bincount(inverse))[:-1])


def case_picks(n_groups: int, n_resamples: int, seed: int) -> np.ndarray:
    """``[n_resamples, n_groups]`` group positions drawn with replacement: row *b* is resample *b*."""
    return np.random.default_rng(seed).integers(0, n_groups, size=(n_resamples, n_groups))


def multiplicities(n_groups: int, n_resamples: int, seed: int) -> np.ndarray:
    """``[n_resamples, n_groups]`` float64: how often resample *b* draws each group (rows of :func:`case_picks`)."""
    picks = case_picks(n_groups, n_resamples, seed)
    flat = (picks + n_groups * np.arange(n_resamples)[:, None]).ravel()
    return np.bincount(flat, minlength=n_resamples * n_groups).reshape(n_resamples, n_groups).astype(np.float64)


def sample_weights(n: int, n_resamples: int, seed: int, groups=None) -> np.ndarray:
    """``[n_resamples, n]`` float64: how often resample *b* draws each sample (its group's multiplicity)."""
    group_of = np.empty(n, dtype=np.int64)
    for g, members in enumerate(group_members(n, groups)):
        group_of[members] = g
    return multiplicities(int(group_of.max()) + 1 if n else 0, n_resamples, seed)[:, group_of]


def resample_indices(n: int, n_resamples: int, seed: int, groups=None):
    """Yield ``n_resamples`` sample-index arrays, each from groups drawn with replacement."""
    members = group_members(n, groups)
    for picks in case_picks(len(members), n_resamples, seed):
        yield np.concatenate([members[g] for g in picks])


def percentile_interval(stats: np.ndarray, confidence: float) -> tuple[float, float, int]:
    ok = stats[~np.isnan(stats)]
    if ok.size == 0:
        return float("nan"), float("nan"), int(stats.size)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.percentile(ok, [100 * alpha, 100 * (1 - alpha)])
    return float(low), float(high), int(stats.size - ok.size)


def check_args(n: int, n_resamples: int, confidence: float) -> None:
    if n < 1:
        raise ValueError("bootstrap needs at least one sample")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def bootstrap_ci(
    values,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    groups=None,
) -> BootstrapCI:
    """Interval for the mean of per-sample ``values`` (NaN not allowed: drop excluded cases first).

    With ``groups`` the statistic of a resample is the mean over all samples of the drawn
    groups (a group drawn twice counts twice).
    """
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    check_args(values.size, n_resamples, confidence)
    if np.isnan(values).any():
        raise ValueError(
            f"{int(np.isnan(values).sum())} of {values.size} values are NaN; drop excluded cases before bootstrapping"
        )
    members = group_members(values.size, groups)
    sums = np.array([values[m].sum() for m in members])
    counts = np.array([m.size for m in members], dtype=np.float64)
    picks = case_picks(len(members), n_resamples, seed)
    stats = sums[picks].sum(axis=1) / counts[picks].sum(axis=1)
    low, high, failed = percentile_interval(stats, confidence)
    return BootstrapCI(float(values.mean()), low, high, confidence, n_resamples, failed, stats)


def bootstrap_statistic(
    n: int,
    statistic: Callable[[np.ndarray], float],
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    groups=None,
    progress: bool = False,
    bias_corrected: bool = False,
) -> BootstrapCI:
    """Interval for ``statistic(indices)`` where ``indices`` selects samples ``0..n-1``.

    The estimate is ``statistic(arange(n))``. A resample whose statistic is NaN (e.g. every
    class skipped) is counted in ``n_failed`` and left out of the percentiles.

    ``bias_corrected`` shifts the resampled statistics by their bias (their mean minus the
    estimate) before taking percentiles. Use it for statistics that resampling with replacement
    biases, such as FID: duplicated samples shrink the effective sample size, and FID grows as
    the sample shrinks, so the plain percentile interval can lie entirely above the estimate.
    """
    check_args(n, n_resamples, confidence)
    estimate = float(statistic(np.arange(n)))
    resamples = resample_indices(n, n_resamples, seed, groups)
    if progress:
        from tqdm import tqdm

        resamples = tqdm(resamples, total=n_resamples, desc="bootstrap", unit="resample")
    stats = np.array([float(statistic(idx)) for idx in resamples])
    if bias_corrected and not np.isnan(stats).all():
        stats = stats - (np.nanmean(stats) - estimate)
    low, high, failed = percentile_interval(stats, confidence)
    return BootstrapCI(estimate, low, high, confidence, n_resamples, failed, stats)
