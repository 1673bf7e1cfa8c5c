"""Metrics from per-image evaluator outputs: one :class:`ResultRow` per (generator, metric, subset).

Point estimates and seeded bootstrap CIs over cases (a case's samples resampled together).
FID uses the exactly merged streaming statistics for the headline value; per-pathology
subsets and FID bootstrap use per-image features. Classification thresholds come from
:func:`xreal_bench.metrics.classification.fit_thresholds` on real images only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from xreal_bench.metrics.bootstrap import bootstrap_ci, bootstrap_statistic
from xreal_bench.metrics.classification import Thresholds, bootstrap_classification, evaluate_classification
from xreal_bench.metrics.dice import STRUCTURES
from xreal_bench.metrics.engine import SourceOutputs
from xreal_bench.metrics.fid import fid_from_stats, frechet_distance, kid
from xreal_bench.metrics.stats import FeatureStats
from xreal_bench.metrics.suite import Suite
from xreal_bench.labels import CHEXPERT_LABELS, NON_PATHOLOGY_LABELS, XREAL_LABELS, label_index
from xreal_bench.types import Case

FEATURE_METRICS = {"fid": "features", "kid": "features", "fid_xrv": "domain_features"}
PATHOLOGIES = tuple(n for n in CHEXPERT_LABELS if n not in NON_PATHOLOGY_LABELS)


@dataclass
class ResultRow:
    generator: str
    metric: str
    value: float
    ci_low: float = float("nan")
    ci_high: float = float("nan")
    n: int = 0
    subset: str = "all"
    evaluator: str = ""
    note: str = ""


@dataclass
class ScoringSettings:
    enabled: Sequence[str]
    bootstrap: int
    fid_bootstrap: int
    confidence: float
    seed: int
    subsets: bool
    min_subset_n: int
    kid_subsets: int
    kid_subset_size: int
    label_set: Sequence[str]
    f1_zero_division: float


def evaluated_labels(label_set: Sequence[str], classifier_labels: Sequence[str]) -> list[str]:
    """The labels F1/AUC average over: ``classifier`` (all it outputs), ``xreal`` (the paper's seven), or names."""
    wanted: list[str] = []
    for item in label_set:
        names = classifier_labels if item == "classifier" else XREAL_LABELS if item == "xreal" else [item]
        wanted += [n for n in names if n not in wanted]
    return [n for n in wanted if n in classifier_labels]


def ci_row(generator: str, metric: str, ci, n: int, evaluator: str, subset: str = "all", note: str = "") -> ResultRow:
    return ResultRow(generator, metric, ci.estimate, ci.low, ci.high, n, subset, evaluator, note)


def mean_row(generator, metric, values, groups, s: ScoringSettings, evaluator, subset="all", note="") -> ResultRow | None:
    """Mean of per-image values (NaN excluded and counted) with a grouped bootstrap CI."""
    values = np.asarray(values, dtype=np.float64)
    keep = ~np.isnan(values)
    if not keep.any():
        return None
    excluded = int((~keep).sum())
    if excluded:
        note = "; ".join(filter(None, [note, f"{excluded} undefined (both masks empty) excluded"]))
    v, g = values[keep], np.asarray(groups)[keep]
    if s.bootstrap:
        ci = bootstrap_ci(v, s.bootstrap, s.confidence, s.seed, groups=g)
        return ci_row(generator, metric, ci, len(set(g)), evaluator, subset, note)
    return ResultRow(generator, metric, float(v.mean()), n=len(set(g)), subset=subset, evaluator=evaluator, note=note)


def score(
    generator: str,
    gen: SourceOutputs,
    real: SourceOutputs,
    cases: dict[str, Case],
    suite: Suite,
    s: ScoringSettings,
    thresholds: Thresholds | None,
) -> list[ResultRow]:
    """Every enabled metric (and its per-pathology subsets) for one generator's outputs."""
    rows: list[ResultRow] = []
    if not gen.keys:
        return rows
    groups = np.asarray(gen.case_ids)
    subsets = [("all", np.arange(len(gen.keys)))]
    if s.subsets:
        positives = np.array([[cases[c].labels[label_index(p)] == 1 for p in PATHOLOGIES] for c in gen.case_ids])
        for j, p in enumerate(PATHOLOGIES):
            idx = np.flatnonzero(positives[:, j])
            if len(set(groups[idx])) >= s.min_subset_n:
                subsets.append((p, idx))
    real_index = {k[0]: i for i, k in enumerate(real.keys)}
    for subset, idx in subsets:
        for metric, role in FEATURE_METRICS.items():
            # The reference row has no distance to itself: FID/KID of real vs real is left out.
            if metric in s.enabled and role in gen.features and gen is not real:
                rows += feature_rows(generator, metric, gen, real, real_index, idx, subset, suite, s)
        if "ms_ssim" in s.enabled and gen.ms_ssim is not None:
            row = mean_row(generator, "ms_ssim", gen.ms_ssim[idx], groups[idx], s, suite.label("ms_ssim"), subset)
            rows += [row] if row else []
        if "dice" in s.enabled and gen.dice:
            for structure in (*STRUCTURES, "dice"):
                metric = "dice" if structure == "dice" else f"dice_{structure}"
                row = mean_row(generator, metric, gen.dice[structure][idx], groups[idx], s, suite.label(metric), subset)
                rows += [row] if row else []
    if "ms_ssim_diversity" in s.enabled and gen.diversity:
        values = np.array(list(gen.diversity.values()))
        row = mean_row(generator, "ms_ssim_diversity", values, list(gen.diversity), s, "pixels", note="lower = more diverse")
        rows += [row] if row else []
    if {"f1_macro", "auc_macro"} & set(s.enabled) and gen.scores is not None and suite.classifier is not None:
        rows += classification_rows(generator, gen, cases, suite, s, thresholds)
    return rows


def feature_rows(generator, metric, gen, real, real_index, idx, subset, suite, s: ScoringSettings) -> list[ResultRow]:
    role = FEATURE_METRICS[metric]
    evaluator = suite.label(metric)
    g_feat = gen.features[role][idx]
    r_idx = np.array(sorted({real_index[gen.keys[i][0]] for i in idx if gen.keys[i][0] in real_index}))
    n = len(idx)
    if n < 2 or len(r_idx) < 2:
        return []
    r_feat = real.features[role][r_idx]
    if metric == "kid":
        result = kid(r_feat, g_feat, s.kid_subsets, s.kid_subset_size, seed=s.seed)
        return [ResultRow(generator, "kid", result.mean, n=n, subset=subset, evaluator=evaluator, note=f"unbiased MMD² (<= 0: indistinguishable); std over subsets {result.std:.3g}")]
    if subset == "all":
        value = fid_from_stats(real.stats[role], gen.stats[role])  # exactly merged streaming statistics
    else:
        value = fid_from_stats(FeatureStats.from_features(r_feat), FeatureStats.from_features(g_feat))
    note = f"n < feature dim {g_feat.shape[1]}: covariance singular, FID biased" if n <= g_feat.shape[1] else ""
    if not s.fid_bootstrap:
        return [ResultRow(generator, metric, value, n=n, subset=subset, evaluator=evaluator, note="; ".join(filter(None, [note, "CI off (metrics.fid_bootstrap = 0)"])))]
    case_of = np.asarray([gen.keys[i][0] for i in idx])
    real_rows = {c: real_index[c] for c in set(case_of) if c in real_index}

    def statistic(sel: np.ndarray) -> float:
        chosen = case_of[sel]
        r = real.features[role][[real_rows[c] for c in chosen if c in real_rows]]
        return frechet_distance(*moments(r), *moments(g_feat[sel]))

    ci = bootstrap_statistic(n, statistic, s.fid_bootstrap, s.confidence, s.seed, groups=case_of, bias_corrected=True)
    note = "; ".join(filter(None, [note, "bias-corrected bootstrap CI"]))
    return [ResultRow(generator, metric, value, max(ci.low, 0.0), ci.high, n, subset, evaluator, note)]


def moments(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    stats = FeatureStats.from_features(features)
    return stats.mean(), stats.cov()


def classification_rows(generator, gen: SourceOutputs, cases, suite: Suite, s: ScoringSettings, thresholds) -> list[ResultRow]:
    """Macro and per-class AUC/F1 (scikit-learn) with bootstrap CIs from one vectorised set of resamples."""
    names = evaluated_labels(s.label_set, suite.classifier.labels)
    columns = [suite.classifier.labels.index(n) for n in names]
    scores = gen.scores[:, columns]
    labels = np.array([[cases[c].labels[label_index(n)] for n in names] for c in gen.case_ids], dtype=np.float64)
    groups = np.asarray(gen.case_ids)
    result = evaluate_classification(scores, labels, names, thresholds, s.f1_zero_division)
    nan2 = (float("nan"), float("nan"))
    ci = bootstrap_classification(scores, labels, names, thresholds, s.bootstrap, s.confidence, s.seed, groups, s.f1_zero_division) if s.bootstrap else None
    evaluator = suite.label("f1_macro")
    source = f"thresholds: {thresholds.policy} ({thresholds.source})"
    rows: list[ResultRow] = []
    for kind in ("auc", "f1"):
        if f"{kind}_macro" not in s.enabled:
            continue
        per_class = result.auc if kind == "auc" else result.f1
        skipped = result.skipped_auc if kind == "auc" else result.skipped_f1
        class_ci = (ci.auc if kind == "auc" else ci.f1) if ci else {}
        skipped_note = f"skipped: {', '.join(f'{k} ({v})' for k, v in skipped.items())}" if skipped else ""
        note = "; ".join(filter(None, [source if kind == "f1" else "", skipped_note]))
        if per_class:
            macro = result.auc_macro if kind == "auc" else result.f1_macro
            low, high = (ci.auc_macro if kind == "auc" else ci.f1_macro) if ci else nan2
            rows.append(ResultRow(generator, f"{kind}_macro", macro, low, high, len(set(groups)), "all", evaluator, note))
        for name, value in per_class.items():
            low, high = class_ci.get(name, nan2)
            rows.append(ResultRow(generator, f"{kind}/{name}", value, low, high, result.n_valid[name], "all", evaluator, f"{result.n_positive[name]} positive"))
    return rows
