"""CMMD (Jayasumana et al. 2024, "Rethinking FID: Towards a Better Evaluation Metric for Image Generation").

The published estimator (google-research ``cmmd/distance.py``, mirrored in sayakpaul/cmmd-pytorch
``distance.py``): the *biased* (minimum-variance, V-statistic) MMD² of Gretton et al. 2012 Eq. 5 — the mean
of the kernel over **all** pairs of each side, a point with itself included, minus twice the mean over
cross pairs — with the Gaussian RBF kernel ``exp(-|x - y|² / (2 σ²))``, σ = 10, times a scale of 1000, on
L2-normalised CLIP ViT-L/14-336 image embeddings (their ``embedding.py`` divides each embedding by its
norm; :class:`GaussianKernel` does it again, which changes nothing for normalised inputs). Squared
distances are ``|x|² + |y|² - 2 xᵀy`` as there, in float64, summed in chunks
(:data:`xreal_bench.metrics.fid.KERNEL_CHUNK` entries at once).

CI: the case bootstrap of the same V-statistic from case kernel block sums
(:class:`xreal_bench.metrics.fid.CaseKernelSums`, as KID), bias-corrected (a case drawn twice adds
self-pairs, whose kernel value is 1: resampling biases the statistic upwards) and floored at 0 (a squared
norm). Memory with a CI: three ``C x C`` float64 matrices for ``C`` covered cases (5,000 cases: 600 MB), besides
KID's; without (``metrics.fid_bootstrap = 0``) only the chunked kernel blocks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from xreal_bench.metrics.compute import feature_pair, feature_role
from xreal_bench.metrics.context import count
from xreal_bench.metrics.fid import CaseKernelSums, mmd_bootstrap

if TYPE_CHECKING:
    from xreal_bench.metrics.context import ResultRow, ScoringContext, Subset
    from xreal_bench.metrics.table import Metric

SIGMA = 10.0
SCALE = 1000.0


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows divided by their L2 norm (zero rows stay zero)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


@dataclass(frozen=True)
class GaussianKernel:
    """CMMD's kernel: ``exp(-|x̂ - ŷ|² / (2 σ²))`` on L2-normalised rows ``x̂``, ``ŷ``."""

    sigma: float = SIGMA

    def __call__(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        x, y = unit_rows(x), unit_rows(y)
        squared = (x * x).sum(axis=1)[:, None] + (y * y).sum(axis=1)[None, :] - 2.0 * (x @ y.T)
        return np.exp(-squared / (2.0 * self.sigma**2))

    def diagonal(self, x: np.ndarray) -> np.ndarray:
        return np.ones(len(x))


CMMD_KERNEL = GaussianKernel()


def cmmd(real, generated) -> float:
    """CMMD of two embedding sets (``[N, d]``, any sizes >= 1): ``SCALE`` x the biased MMD²."""
    g, r = np.asarray(generated, dtype=np.float64), np.asarray(real, dtype=np.float64)
    one_case = CaseKernelSums.of(g, np.zeros(len(g), np.int64), r, np.zeros(len(r), np.int64), 1, CMMD_KERNEL)
    return SCALE * one_case.all_pairs(unbiased=False)


def cmmd_rows(ctx: ScoringContext, metric: Metric, subset: Subset) -> list[ResultRow]:
    """CMMD of the generated embeddings of ``subset`` against the real embeddings of the same covered cases
    (each case once); none for the reference row."""
    name, idx = subset
    pair = feature_pair(ctx, metric, idx)
    if pair is None:
        return []
    n = count(metric.n_unit, ctx.groups[idx])
    note = f"biased MMD² x {SCALE:g}, Gaussian RBF σ = {SIGMA:g} on L2-normalised embeddings (Jayasumana et al. 2024)"
    resamples = ctx.resamples(metric)
    if not resamples:
        value = cmmd(pair[1], pair[0])
        return [ctx.row(metric, value, subset=name, n=n, note=f"{note}; CI off (metrics.{metric.ci} = 0)")]
    cases = np.array(sorted({ctx.case_position[c] for c in ctx.groups[idx]}), dtype=np.int64)
    sums = ctx.kernel_sums(feature_role(metric, ctx), CMMD_KERNEL).subset(cases)
    estimate = sums.all_pairs(unbiased=False)
    s = ctx.settings
    ci = mmd_bootstrap(sums, estimate, resamples, s.confidence, s.seed, unbiased=False, floor=0.0)
    note += "; bias-corrected case bootstrap CI (draws below 0 count as 0)"
    draws = SCALE * ci.draws
    return [ctx.row(metric, SCALE * estimate, subset=name, n=n, note=note, ci=(SCALE * ci.low, SCALE * ci.high), draws=draws)]
