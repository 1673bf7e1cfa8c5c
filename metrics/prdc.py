"""Precision, recall, density and coverage (Naeem et al. 2020, "Reliable Fidelity and Diversity Metrics for
Generative Models"), exactly as their ``prdc`` package (``compute_prdc(real, fake, k)``) defines them.

With Euclidean distances, ``r_i`` the distance of real sample ``i`` to its k-th nearest real neighbour and
``s_j`` that of generated sample ``j`` among the generated (the (k+1)-th smallest distance of the row, the
sample itself at 0 counted first), and strict ``<`` throughout:

- precision = share of *generated* samples inside some real ball ``B(real_i, r_i)`` (fidelity);
- recall = share of *real* samples inside some generated ball ``B(gen_j, s_j)`` (diversity);
- density = mean over generated samples of the number of real balls holding them, divided by k;
- coverage = share of real samples whose own ball holds at least one generated sample.

Orientation: precision is about the generated samples, recall about the real ones (Kynkäänniemi et al. 2019;
Naeem et al. 2020, Eq. 1-4). torch-fidelity's ``prc`` has the sides swapped (toshas/torch-fidelity issue #58,
open; fix proposed in PR #66): a collapsed model gets precision ~0 and recall ~1 there.

Memory: distances in float64 blocks of :data:`DISTANCE_CHUNK` entries (32 MiB), never the full matrices, plus
float64 copies of the two feature sets (5,000 x 1,024 features: 40 MB each). Time: three passes over
``n x n``-sized distance blocks (about 1 s per 2,000 x 2,000 at d = 1,024 on 2 busy CPU cores); the bootstrap is
one ``B x C`` matrix product per metric.

CI: a case bootstrap (``case_picks`` over the sorted covered cases of the subset, ``metrics.bootstrap_seed``)
of the per-sample contributions — a generated sample's inside-indicator and ball count, a real sample's
inside- and covered-indicator — with the radii held at their full-sample values. Resampling the points and
recomputing the radii would put a case drawn twice at distance 0 from its copy: the k-NN radii shrink and
every metric moves for that reason alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from xreal_bench.metrics.bootstrap import multiplicities, percentile_interval
from xreal_bench.metrics.compute import covered_real_rows, feature_pair, feature_role
from xreal_bench.metrics.context import count

if TYPE_CHECKING:
    from xreal_bench.metrics.context import ResultRow, ScoringContext, Subset
    from xreal_bench.metrics.table import Metric

#: Distances computed at once (float64: 32 MiB).
DISTANCE_CHUNK = 1 << 22


def distances(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Euclidean distances of the rows of ``x`` to those of ``y`` in float64 (``|x|² + |y|² - 2 xᵀy``, clipped at 0)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    squared = (x * x).sum(axis=1)[:, None] + (y * y).sum(axis=1)[None, :] - 2.0 * (x @ y.T)
    return np.sqrt(np.maximum(squared, 0.0))


def chunks(n_rows: int, n_columns: int):
    """Row slices of an ``n_rows x n_columns`` matrix holding at most :data:`DISTANCE_CHUNK` entries each."""
    step = max(1, DISTANCE_CHUNK // max(1, n_columns))
    for start in range(0, n_rows, step):
        yield slice(start, min(start + step, n_rows))


def knn_radii(x: np.ndarray, k: int) -> np.ndarray:
    """Distance of each row to its k-th nearest other row (the (k+1)-th smallest of its row, itself at 0 first)."""
    if len(x) <= k:
        raise ValueError(f"k-NN radii need more than k = {k} samples, got {len(x)}")
    out = np.empty(len(x))
    for rows in chunks(len(x), len(x)):
        block = distances(x[rows], x)
        block[np.arange(block.shape[0]), np.arange(rows.start, rows.stop)] = 0.0
        out[rows] = np.partition(block, k, axis=1)[:, k]
    return out


@dataclass(frozen=True)
class Manifolds:
    """Per-sample contributions of two feature sets to the four metrics (radii at their full-sample values)."""

    k: int
    gen_inside: np.ndarray  # [N_gen] bool: inside some real ball (precision)
    gen_balls: np.ndarray  # [N_gen] int: real balls holding it (density x k)
    real_inside: np.ndarray  # [N_real] bool: inside some generated ball (recall)
    real_covered: np.ndarray  # [N_real] bool: its own ball holds a generated sample (coverage)

    @classmethod
    def of(cls, real: np.ndarray, gen: np.ndarray, k: int) -> Manifolds:
        real, gen = np.asarray(real, dtype=np.float64), np.asarray(gen, dtype=np.float64)
        real_radii, gen_radii = knn_radii(real, k), knn_radii(gen, k)
        balls = np.zeros(len(gen), dtype=np.int64)
        real_inside = np.zeros(len(real), dtype=bool)
        real_covered = np.zeros(len(real), dtype=bool)
        for rows in chunks(len(real), len(gen)):
            block = distances(real[rows], gen)  # [real rows, generated]
            balls += (block < real_radii[rows, None]).sum(axis=0)
            real_inside[rows] = (block < gen_radii[None, :]).any(axis=1)
            real_covered[rows] = block.min(axis=1) < real_radii[rows]
        return cls(k, balls > 0, balls, real_inside, real_covered)

    def values(self) -> dict[str, np.ndarray]:
        """Each metric's per-sample contributions (their mean is the metric), by the metric's side."""
        return {
            "precision": self.gen_inside.astype(np.float64),
            "density": self.gen_balls / self.k,
            "recall": self.real_inside.astype(np.float64),
            "coverage": self.real_covered.astype(np.float64),
        }


def prdc(real, generated, k: int = 5) -> dict[str, float]:
    """The four metrics of two feature sets (``prdc.compute_prdc(real, generated, k)``'s values)."""
    manifolds = Manifolds.of(np.asarray(real), np.asarray(generated), k)
    return {name: float(v.mean()) for name, v in manifolds.values().items()}


#: The :meth:`Manifolds.values` keys averaged over the generated samples (the others: over the real ones).
GENERATED_SIDE = ("precision", "density")


def contribution_of(metric: Metric) -> str:
    """The :meth:`Manifolds.values` key a table entry reports (its ``output_key``)."""
    if metric.key not in ("precision", "density", "recall", "coverage"):
        raise ValueError(f"metric {metric.name!r} names no PRDC value (output_key {metric.key!r})")
    return metric.key


@dataclass(frozen=True)
class SubsetManifolds:
    """One (generator, subset)'s manifolds and the sorted covered-case position of every sample of each side."""

    manifolds: Manifolds
    gen_case: np.ndarray
    real_case: np.ndarray
    n_cases: int


def subset_manifolds(ctx: ScoringContext, metric: Metric, subset: Subset) -> SubsetManifolds | None:
    """Computed once per (generator, subset, role, k) and kept in ``ctx.memo``; None when either side has k or fewer."""
    name, idx = subset
    key = ("prdc", name, feature_role(metric, ctx), ctx.settings.prdc_k)
    if key not in ctx.memo:
        pair, k = feature_pair(ctx, metric, idx), ctx.settings.prdc_k
        if pair is None or min(len(pair[0]), len(pair[1])) <= k:
            ctx.memo[key] = None
        else:
            cases = sorted(set(ctx.groups[idx]))
            position = {c: p for p, c in enumerate(cases)}
            real_ids = [ctx.real.keys[r][0] for r in covered_real_rows(ctx, idx)]
            ctx.memo[key] = SubsetManifolds(
                Manifolds.of(pair[1], pair[0], k),
                np.array([position[c] for c in ctx.groups[idx]], dtype=np.int64),
                np.array([position[c] for c in real_ids], dtype=np.int64),
                len(cases),
            )
    return ctx.memo[key]


def prdc_rows(ctx: ScoringContext, metric: Metric, subset: Subset) -> list[ResultRow]:
    """The row of ``metric`` (one of the four) for ``subset``; none for the reference row or with k or fewer samples."""
    found = subset_manifolds(ctx, metric, subset)
    if found is None:
        return []
    name, idx = subset
    which = contribution_of(metric)
    values = found.manifolds.values()[which]
    case = found.gen_case if which in GENERATED_SIDE else found.real_case
    side = "generated" if which in GENERATED_SIDE else "real"
    n = count(metric.n_unit, ctx.groups[idx])
    note = f"k = {found.manifolds.k}, mean over {len(values)} {side} samples (Naeem et al. 2020)"
    resamples = ctx.resamples(metric)
    if not resamples:
        return [ctx.row(metric, float(values.mean()), subset=name, n=n, note=f"{note}; CI off (metrics.{metric.ci} = 0)")]
    weights = multiplicities(found.n_cases, resamples, ctx.settings.seed)
    sums = np.bincount(case, weights=values, minlength=found.n_cases)
    sizes = np.bincount(case, minlength=found.n_cases).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        draws = (weights @ sums) / (weights @ sizes)  # NaN: a resample without a sample of this side
    low, high, _ = percentile_interval(draws, ctx.settings.confidence)
    note += "; case bootstrap CI of the per-sample contributions, k-NN radii held at their full-sample values"
    return [ctx.row(metric, float(values.mean()), subset=name, n=n, note=note, ci=(low, high), draws=draws)]
