"""Encoder agreement: do two Fréchet distances (two encoders) rank the generators alike?

For each pair of Fréchet-distance metrics in the rows (:func:`xreal_bench.metrics.table.frechet_distances`),
Kendall's τ-b (``scipy.stats.kendalltau``) between the generators' values on subset ``all`` — the same as
between their rankings, both lower-is-better. The reference row (``real``) and generators without a finite
value on either metric are left out; fewer than 3 generators: no τ, with the reason.

CI: the generators' bootstrap draws are paired — every FD bootstrap of a run resamples the same case
positions (``case_picks`` with ``metrics.bootstrap_seed``) — so draw *b* of every generator on both metrics
rests on the same resample: τ per draw index *b*, and the percentile interval of those τ. A draw index where
a generator's draw is NaN, or where every generator ties on a metric, is left out. No CI (``None``) when a
metric has no draws (``metrics.fid_bootstrap = 0``) or their counts differ.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import combinations
from typing import TYPE_CHECKING

import numpy as np
from scipy.stats import kendalltau

from xreal_bench.metrics.bootstrap import percentile_interval
from xreal_bench.metrics.table import frechet_distances
from xreal_bench.names import RESERVED_GENERATOR_NAMES

if TYPE_CHECKING:
    from xreal_bench.metrics.context import ResultRow

MIN_GENERATORS = 3


def finite_or_none(value: float) -> float | None:
    """JSON-safe: non-finite numbers become ``None``."""
    return float(value) if math.isfinite(value) else None


def tau_b(a, b) -> float:
    """Kendall's τ-b of two equally long sequences (NaN when one is constant)."""
    return float(kendalltau(a, b).statistic)


def paired_taus(draws_a: np.ndarray, draws_b: np.ndarray) -> np.ndarray:
    """τ per draw index of ``[generators, B]`` draws of two metrics (NaN where a generator's draw is NaN)."""
    taus = np.full(draws_a.shape[1], np.nan)
    for b in range(draws_a.shape[1]):
        x, y = draws_a[:, b], draws_b[:, b]
        if np.isfinite(x).all() and np.isfinite(y).all():
            taus[b] = tau_b(x, y)
    return taus


def stacked_draws(rows: Sequence[ResultRow], generators: Sequence[str]) -> tuple[np.ndarray | None, str]:
    """``[generators, B]`` draws of one metric's rows (None and why when one has none or the counts differ)."""
    by_generator = {r.generator: r.draws for r in rows}
    draws = [by_generator[g] for g in generators]
    if any(d is None or len(d) == 0 for d in draws):
        return None, "no bootstrap draws"
    if len({len(d) for d in draws if d is not None}) > 1:
        return None, "bootstrap draw counts differ"
    return np.vstack([np.asarray(d, dtype=np.float64) for d in draws if d is not None]), ""


def pair_agreement(a: str, b: str, rows_a: Sequence[ResultRow], rows_b: Sequence[ResultRow], confidence: float) -> dict:
    """τ between two metrics' generator values with its paired-draw CI (see the module docstring)."""
    value_a = {r.generator: r.value for r in rows_a if math.isfinite(r.value)}
    value_b = {r.generator: r.value for r in rows_b if math.isfinite(r.value)}
    generators = sorted(set(value_a) & set(value_b))
    record: dict = {"a": a, "b": b, "tau": None, "ci_low": None, "ci_high": None}
    record.update(n_generators=len(generators), resamples=0, note="")
    if len(generators) < MIN_GENERATORS:
        record["note"] = f"skipped: {len(generators)} generators with both values (need {MIN_GENERATORS})"
        return record
    record["tau"] = finite_or_none(tau_b([value_a[g] for g in generators], [value_b[g] for g in generators]))
    if record["tau"] is None:
        record["note"] = "tau undefined: every generator ties on one metric"
        return record
    draws_a, why_a = stacked_draws([r for r in rows_a if r.generator in value_a], generators)
    draws_b, why_b = stacked_draws([r for r in rows_b if r.generator in value_b], generators)
    if draws_a is None or draws_b is None or draws_a.shape != draws_b.shape:
        reason = why_a or why_b or "bootstrap draw counts differ between the metrics"
        record["note"] = f"Kendall tau-b over {len(generators)} generators; no CI ({reason})"
        return record
    taus = paired_taus(draws_a, draws_b)
    low, high, failed = percentile_interval(taus, confidence)
    record.update(ci_low=finite_or_none(low), ci_high=finite_or_none(high), resamples=int(len(taus) - failed))
    record["note"] = (
        f"Kendall tau-b over {len(generators)} generators; {100 * confidence:g} % percentile CI of tau per paired bootstrap "
        f"draw ({len(taus) - failed} of {len(taus)} draws defined)"
    )
    return record


def encoder_agreement(rows: Sequence[ResultRow], *, confidence: float) -> list[dict]:
    """One record per pair of Fréchet-distance metrics present on subset ``all``: ``a``, ``b``, ``tau``, ``ci_low``,
    ``ci_high`` (None: not computed), ``n_generators``, ``resamples`` (draws behind the CI), ``note``."""
    by_metric: dict[str, list[ResultRow]] = {}
    for row in rows:
        if row.subset == "all" and row.generator not in RESERVED_GENERATOR_NAMES:
            by_metric.setdefault(row.metric, []).append(row)
    present = [m.name for m in frechet_distances() if m.name in by_metric]
    return [pair_agreement(a, b, by_metric[a], by_metric[b], confidence) for a, b in combinations(present, 2)]
