"""Vendi score (Friedman & Dieng 2023, "The Vendi Score: A Diversity Evaluation Metric for Machine Learning"):
the effective number of distinct samples of one set.

With the cosine kernel on L2-normalised features ``x̂_i`` and ``K_ij = x̂_iᵀx̂_j``, VS = exp(H(λ)), the
exponential of the Shannon entropy of the eigenvalues λ of ``K / n``. The nonzero eigenvalues of
``K / n = X̂ X̂ᵀ / n`` are those of the d x d matrix ``X̂ᵀ X̂ / n``, so the score costs O(n d² + d³), not
O(n³) (the ``vendi-score`` package's ``score_dual``); the smaller of the two sides is used. Between 1
(all samples alike) and min(n, d).

A resample with duplicates is a weighted set: with weights ``p`` (multiplicities / their sum) the Vendi
score of the multiset equals that of ``diag(√p) K diag(√p)``, whose nonzero spectrum is that of
``X̂ᵀ diag(p) X̂`` — so a resample costs one weighted d x d product over its distinct samples.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from xreal_bench.metrics.bootstrap import bootstrap_statistic, percentile_interval
from xreal_bench.metrics.compute import feature_role
from xreal_bench.metrics.context import count

if TYPE_CHECKING:
    from xreal_bench.metrics.context import ResultRow, ScoringContext, Subset
    from xreal_bench.metrics.table import Metric


def normalised(features) -> np.ndarray:
    """float64 rows divided by their L2 norm (zero rows stay zero, as scikit-learn's ``normalize``)."""
    x = np.asarray(features, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def vendi_score(features, weights=None) -> float:
    """Vendi score of the rows of ``features`` with the cosine kernel; ``weights``: how often each row counts."""
    x = normalised(features)
    p = np.full(len(x), 1.0 / len(x)) if weights is None else np.asarray(weights, dtype=np.float64) / np.sum(weights)
    keep = p > 0
    x, p = x[keep], p[keep]
    if len(x) <= x.shape[1]:
        scaled = x * np.sqrt(p)[:, None]
        spectrum = np.linalg.eigvalsh(scaled @ scaled.T)
    else:
        spectrum = np.linalg.eigvalsh((x * p[:, None]).T @ x)
    positive = spectrum[spectrum > 0]
    return float(np.exp(-(positive * np.log(positive)).sum()))


def vendi_rows(ctx: ScoringContext, metric: Metric, subset: Subset) -> list[ResultRow]:
    """Vendi score of the source's images of ``subset`` (generated set, or the real images for the reference row)."""
    name, idx = subset
    role = feature_role(metric, ctx)
    if role not in ctx.gen.features or len(idx) < 2:
        return []
    x = normalised(ctx.gen.features[role][idx])
    n = count(metric.n_unit, ctx.groups[idx])
    note = "cosine kernel, exp(entropy of the eigenvalues of K/n) (Friedman & Dieng 2023)"
    resamples = ctx.resamples(metric)
    if not resamples:
        return [ctx.row(metric, vendi_score(x), subset=name, n=n, note=f"{note}; CI off (metrics.{metric.ci} = 0)")]

    def statistic(sel: np.ndarray) -> float:
        drawn, times = np.unique(sel, return_counts=True)
        return vendi_score(x[drawn], times)

    s = ctx.settings
    ci = bootstrap_statistic(len(idx), statistic, resamples, s.confidence, s.seed, groups=ctx.groups[idx], bias_corrected=True)
    draws = np.maximum(ci.draws, 1.0)  # at least one distinct sample
    low, high, _ = percentile_interval(draws, s.confidence)
    note += (
        "; bias-corrected case bootstrap CI (a resample's duplicates are weights: it holds ~63 % distinct cases, "
        "so its Vendi score is lower for that reason alone; draws shifted to the estimate)"
    )
    return [ctx.row(metric, ci.estimate, subset=name, n=n, note=note, ci=(low, high), draws=draws)]
