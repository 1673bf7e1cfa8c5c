"""Compute functions of the metric table: ``compute(ctx, metric, subset) -> rows``.

Each reads the evaluator outputs its metric needs from the :class:`ScoringContext` and returns
its rows for one subset (none when those outputs are missing). Names, evaluators, resamples and
``n`` come from the metric's table entry, never from a name written here.

Coverage rule (:data:`xreal_bench.coverage.COVERAGE_RULE`, recorded in ``results.json``): every
metric of a generator is computed on the cases it covers — the cases with at least one scored
image — real side included, for the point estimate and the CI alike. FID and KID compare the
generated features with the real features of the covered cases, each case once: the FID point
estimate uses the exactly merged streaming statistics of all real cases when the generator
covers every one of them, and otherwise the float64 statistics of the covered cases' per-case
real features; the FID bootstrap resamples covered cases, each drawn case's real features once
per draw; per-pathology subsets and demographic subgroups use the real cases of the subset's generated
images. Paired
MS-SSIM and Dice pair each image with its own case, diversity is per covered case, F1 and AUC
use the covered cases' labels (per subset: the subset's images and their cases' labels). Nothing is imputed for uncovered cases: they are counted
(``failed``, ``missing``, coverage) next to the numbers.

Classification thresholds come from :func:`xreal_bench.metrics.classification.fit_thresholds`
on real images only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from xreal_bench.metrics.bootstrap import bootstrap_statistic, percentile_interval
from xreal_bench.metrics.context import NO_CI, Classification, ResultRow, ScoringContext, Subset, count
from xreal_bench.metrics.fid import FD_INFINITY_MIN_IMAGES, fd_infinity, fid_from_stats, frechet_distance, kid, kid_bootstrap
from xreal_bench.metrics.stats import FeatureStats

if TYPE_CHECKING:
    from xreal_bench.metrics.table import Metric


def covered_real_rows(ctx: ScoringContext, idx: np.ndarray) -> np.ndarray:
    """Rows of the real outputs of the cases of generated images ``idx``, each case once."""
    return np.array(sorted({ctx.real_index[c] for c in ctx.groups[idx] if c in ctx.real_index}), dtype=np.int64)


def feature_pair(ctx: ScoringContext, metric: Metric, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Generated features of ``idx`` and real features of their cases (None: fewer than 2 of either).

    The reference row has no distance to itself: distributions of real vs real are left out.
    """
    role = feature_role(metric, ctx)
    if ctx.is_reference or role not in ctx.gen.features:
        return None
    r_idx = covered_real_rows(ctx, idx)
    if len(idx) < 2 or len(r_idx) < 2:
        return None
    return ctx.gen.features[role][idx], ctx.real.features[role][r_idx]


def feature_role(metric: Metric, ctx: ScoringContext | None = None) -> str:
    """The feature space a metric compares: its table entry's evaluator role, ``embedding`` resolved
    to the role ``metrics.embedding`` names."""
    if metric.role is None:
        raise ValueError(f"metric {metric.name!r} compares features but declares no evaluator role")
    if metric.role == "embedding":
        if ctx is None:
            raise ValueError(f"metric {metric.name!r} uses the embedding features: pass the scoring context")
        return ctx.settings.embedding
    return metric.role


def moments(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    stats = FeatureStats.from_features(features)
    return stats.mean(), stats.cov()


def frechet_rows(ctx: ScoringContext, metric: Metric, subset: Subset) -> list[ResultRow]:
    """Fréchet distance of generated vs real features, with a bias-corrected bootstrap CI over cases."""
    name, idx = subset
    pair = feature_pair(ctx, metric, idx)
    if pair is None:
        return []
    g_feat, r_feat = pair
    role, n = feature_role(metric, ctx), count(metric.n_unit, ctx.groups[idx])
    every_case = len(r_feat) == len(ctx.real.keys)
    # the exactly merged streaming statistics of all real cases, else the covered cases' real features (float64)
    r_stats = ctx.real.stats[role] if name == "all" and every_case else FeatureStats.from_features(r_feat)
    g_stats = ctx.gen.stats[role] if name == "all" else FeatureStats.from_features(g_feat)
    value = fid_from_stats(r_stats, g_stats)
    note = f"n < feature dim {g_feat.shape[1]}: covariance singular, distance biased" if len(idx) <= g_feat.shape[1] else ""
    if name == "all" and not every_case:
        note = "; ".join(filter(None, [note, f"real side: the {len(r_feat)} covered of {len(ctx.real.keys)} real cases"]))
    if name == "all" and len(idx) >= FD_INFINITY_MIN_IMAGES:
        inf = fd_infinity(g_feat, r_stats.mean(), r_stats.cov(), seed=ctx.settings.seed)
        sizes = f"N = {inf.sizes[0]}..{inf.sizes[-1]} generated images"
        note = "; ".join(filter(None, [note, f"FD∞ ≈ {inf.value:.4g} (Chong & Forsyth 2020: linear fit of FD vs 1/N, {sizes})"]))
    resamples = ctx.resamples(metric)
    if not resamples:
        note = "; ".join(filter(None, [note, f"CI off (metrics.{metric.ci} = 0)"]))
        return [ctx.row(metric, value, subset=name, n=n, note=note)]
    case_of = ctx.groups[idx]
    real_row = np.array([ctx.real_index.get(c, -1) for c in case_of], dtype=np.int64)
    _, first = np.unique(case_of, return_index=True)
    first_of_case = np.zeros(len(idx), dtype=bool)
    first_of_case[first] = True  # a drawn case contributes its real features once per draw

    def statistic(sel: np.ndarray) -> float:
        rows = real_row[sel[first_of_case[sel]]]
        r = ctx.real.features[role][rows[rows >= 0]]
        return frechet_distance(*moments(r), *moments(g_feat[sel]))

    s = ctx.settings
    ci = bootstrap_statistic(len(idx), statistic, resamples, s.confidence, s.seed, groups=case_of, bias_corrected=True)
    draws = np.maximum(ci.draws, 0.0)  # a distance: a bias-corrected draw below 0 counts as 0
    low, high, _ = percentile_interval(draws, s.confidence)
    note = "; ".join(filter(None, [note, "bias-corrected bootstrap CI"]))
    return [ctx.row(metric, value, subset=name, n=n, note=note, ci=(low, high), draws=draws)]


def kid_rows(ctx: ScoringContext, metric: Metric, subset: Subset) -> list[ResultRow]:
    """Kernel inception distance (unbiased MMD², polynomial kernel): the mean over random subsets, with a
    bias-corrected bootstrap CI over cases of the all-pairs U-statistic, centred on that mean (:func:`kid_bootstrap`)."""
    name, idx = subset
    pair = feature_pair(ctx, metric, idx)
    if pair is None:
        return []
    g_feat, r_feat = pair
    s = ctx.settings
    result = kid(r_feat, g_feat, s.kid_subsets, s.kid_subset_size, seed=s.seed)
    n = count(metric.n_unit, ctx.groups[idx])
    note = f"unbiased MMD² (<= 0: indistinguishable); std over subsets {result.std:.3g}"
    resamples = ctx.resamples(metric)
    if not resamples:
        return [ctx.row(metric, result.mean, subset=name, n=n, note=f"{note}; CI off (metrics.{metric.ci} = 0)")]
    cases = np.array(sorted({ctx.case_position[c] for c in ctx.groups[idx]}), dtype=np.int64)
    sums = ctx.kernel_sums(feature_role(metric, ctx)).subset(cases)
    ci = kid_bootstrap(sums, result.mean, resamples, s.confidence, s.seed)
    note += f"; bias-corrected case bootstrap CI of the all-pairs MMD² ({sums.all_pairs():.3g}), centred on the subset mean"
    return [ctx.row(metric, result.mean, subset=name, n=n, note=note, ci=(ci.low, ci.high), draws=ci.draws)]


def paired_ms_ssim_rows(ctx: ScoringContext, metric: Metric, subset: Subset) -> list[ResultRow]:
    """Mean MS-SSIM of each generated image with the real image of its case."""
    name, idx = subset
    if ctx.gen.ms_ssim is None:
        return []
    row = ctx.mean_row(metric, ctx.gen.ms_ssim[idx], ctx.groups[idx], subset=name)
    return [row] if row else []


def diversity_rows(ctx: ScoringContext, metric: Metric, subset: Subset) -> list[ResultRow]:
    """Mean over cases of the pairwise MS-SSIM among a case's samples (lower: more diverse)."""
    name, idx = subset
    cases = set(ctx.groups[idx])
    diversity = {case: value for case, value in ctx.gen.diversity.items() if case in cases}
    if not diversity:
        return []
    values = np.array(list(diversity.values()))
    row = ctx.mean_row(metric, values, list(diversity), subset=name, note="lower = more diverse")
    return [row] if row else []


def dice_rows(ctx: ScoringContext, metric: Metric, subset: Subset) -> list[ResultRow]:
    """Mean Dice of each structure (the metric's parts) and of their per-image mean."""
    name, idx = subset
    if not ctx.gen.dice:
        return []
    rows = [ctx.mean_row(row, ctx.gen.dice[row.key][idx], ctx.groups[idx], subset=name) for row in (*metric.parts, metric)]
    return [row for row in rows if row]


def per_image_rows(ctx: ScoringContext, metric: Metric, subset: Subset) -> list[ResultRow]:
    """Mean of per-image values computed beside the pass (``SourceOutputs.extra``: memorization, lesion
    adherence) for each part and the metric, NaN (undefined) excluded and counted."""
    name, idx = subset
    rows = []
    for entry in (*metric.parts, metric):
        values = ctx.gen.extra.get(entry.key)
        if values is not None:
            rows.append(ctx.mean_row(entry, values[idx], ctx.groups[idx], subset=name))
    return [row for row in rows if row]


class ClassIntervals(NamedTuple):
    """F1's or AUC's intervals from the classification bootstrap and the draws behind each."""

    macro: tuple[float, float]
    per_class: dict[str, tuple[float, float]]
    macro_draws: np.ndarray | None
    class_draws: dict[str, np.ndarray]


NO_INTERVALS = ClassIntervals(NO_CI, {}, None, {})


def class_rows(
    ctx: ScoringContext,
    c: Classification,
    metric: Metric,
    per_class: dict[str, float],
    skipped: dict[str, str],
    macro: float,
    ci: ClassIntervals,
    note: str,
    *,
    subset: str,
) -> list[ResultRow]:
    """The macro row (when a class was evaluated) and, on ``all`` only, one ``<prefix>/<label>`` row per evaluated
    class (``n``: its labelled cases)."""
    macro_ci, class_ci, macro_draws, class_draws = ci
    skipped_note = f"skipped: {', '.join(f'{k} ({v})' for k, v in skipped.items())}" if skipped else ""
    note = "; ".join(filter(None, [note, skipped_note]))
    rows = [ctx.row(metric, macro, subset=subset, n=c.n_cases, note=note, ci=macro_ci, draws=macro_draws)] if per_class else []
    if subset != "all":
        return rows
    evaluator = ctx.suite.label(metric.name)
    for label, value in per_class.items():
        labelled, positive = c.class_cases[label]
        rows.append(
            ResultRow(
                ctx.generator,
                f"{metric.per_class}/{label}",
                value,
                *class_ci.get(label, NO_CI),
                labelled,
                "all",
                evaluator,
                f"{positive} positive cases",
                n_unit="cases",
                draws=class_draws.get(label),
            )
        )
    return rows


def f1_rows(ctx: ScoringContext, metric: Metric, subset: Subset) -> list[ResultRow]:
    """Macro and per-class F1 of ``score >= threshold`` on the subset's images (per-class rows on ``all`` only); the
    note names the threshold policy."""
    c = ctx.classification(subset)
    if c is None:
        return []
    r, ci = c.result, c.ci
    note = f"thresholds: {r.thresholds.policy} ({r.thresholds.source})"
    intervals = ClassIntervals(ci.f1_macro, ci.f1, ci.f1_macro_draws, ci.f1_draws) if ci else NO_INTERVALS
    return class_rows(ctx, c, metric, r.f1, r.skipped_f1, r.f1_macro, intervals, note, subset=subset[0])


def auc_rows(ctx: ScoringContext, metric: Metric, subset: Subset) -> list[ResultRow]:
    """Macro and per-class ROC AUC (no thresholds needed) on the subset's images (per-class rows on ``all`` only)."""
    c = ctx.classification(subset)
    if c is None:
        return []
    r, ci = c.result, c.ci
    intervals = ClassIntervals(ci.auc_macro, ci.auc, ci.auc_macro_draws, ci.auc_draws) if ci else NO_INTERVALS
    return class_rows(ctx, c, metric, r.auc, r.skipped_auc, r.auc_macro, intervals, "", subset=subset[0])
