"""Label fidelity of generated images: per-class AUC and F1 of a pathology classifier.

Inputs are classifier scores ``[N, C]`` (probabilities in the representation the thresholds
use, see below) and labels ``[N, C]`` with 1 positive, 0 negative, and -1 or NaN = ignore
(masked per class, never passed to scikit-learn).

- AUC per class (``sklearn.metrics.roc_auc_score``) on the class's valid entries. A class with
  fewer than 2 valid entries or a single label value is **skipped** and reported with the
  reason; ``auc_macro`` averages the evaluated classes only.
- F1 per class (``sklearn.metrics.f1_score``, ``zero_division=0.0`` by default: a class
  predicted nowhere scores 0) with the prediction ``score >= threshold``. Classes without
  positive labels or without a threshold are skipped and reported; ``f1_macro`` averages the
  evaluated classes.
- Thresholds (:func:`fit_thresholds`) come from a named policy, recorded with the results:
  ``"calibrated"`` the classifier's own operating points (torchxrayvision ``op_threshs``,
  Youden-J on their validation data); ``"youden"`` / ``"f1"`` fitted per class on **real**
  images of another split (never on generated images, never on the evaluated test images);
  ``"fixed"`` one value for all classes.

Score representation: raw sigmoid probabilities, with the calibrated thresholds in the same
space (torchxrayvision's ``op_norm`` maps exactly these thresholds to 0.5, so
``p >= op_thresh`` is the same decision as ``op_norm(p) >= 0.5``; AUC is unaffected).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from sklearn.metrics import f1_score, precision_recall_curve, roc_auc_score, roc_curve

from xreal_bench.metrics.bootstrap import percentile_interval, sample_weights

THRESHOLD_POLICIES: tuple[str, ...] = ("calibrated", "youden", "f1", "fixed")
IGNORE_LABEL = -1


@dataclass(frozen=True)
class Thresholds:
    """Per-class decision thresholds (predict positive when ``score >= value``) and their origin."""

    values: dict[str, float]
    policy: str
    source: str
    unfitted: dict[str, str] = field(default_factory=dict)  # label -> why it has no threshold


@dataclass(frozen=True)
class ClassificationResult:
    """Per-class AUC/F1 on the evaluated classes, skipped classes with reasons, macro means."""

    auc: dict[str, float]
    f1: dict[str, float]
    n_positive: dict[str, int]
    n_valid: dict[str, int]
    skipped_auc: dict[str, str]
    skipped_f1: dict[str, str]
    auc_macro: float
    f1_macro: float
    thresholds: Thresholds
    zero_division: float


def check_inputs(scores, labels, label_names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Validate shapes and values; labels come back as float with NaN for 'ignore'."""
    scores = np.asarray(scores.detach().cpu() if hasattr(scores, "detach") else scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    if scores.ndim != 2 or labels.shape != scores.shape or scores.shape[1] != len(label_names):
        raise ValueError(
            f"scores {scores.shape} and labels {labels.shape} must both be [N, C] with C = {len(label_names)} label names"
        )
    if len(set(label_names)) != len(label_names):
        raise ValueError(f"duplicate label names: {list(label_names)}")
    labels = np.where(labels == IGNORE_LABEL, np.nan, labels)
    bad = ~np.isnan(labels) & (labels != 0) & (labels != 1)
    if bad.any():
        raise ValueError(f"labels must be 1, 0, -1 (ignore) or NaN; found {sorted(set(labels[bad].tolist()))[:5]}")
    if not np.isfinite(scores[~np.isnan(labels)]).all():
        raise ValueError("scores contain NaN or infinite values at labelled entries")
    return scores, labels


def valid_entries(scores: np.ndarray, labels: np.ndarray, c: int) -> tuple[np.ndarray, np.ndarray]:
    keep = ~np.isnan(labels[:, c])
    return labels[keep, c].astype(int), scores[keep, c]


def youden_threshold(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Threshold maximising TPR - FPR (ties: the highest threshold)."""
    fpr, tpr, thresholds = roc_curve(y_true, scores, drop_intermediate=False)
    j = (tpr - fpr)[1:]  # the first point is "predict nothing" at threshold +inf
    return float(thresholds[1:][int(np.argmax(j))])


def f1_threshold(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Threshold maximising F1 of ``score >= t`` over the observed scores (ties: the highest)."""
    precision, recall, thresholds = precision_recall_curve(y_true, scores, drop_intermediate=False)
    precision, recall = precision[:-1], recall[:-1]  # the last point has no threshold
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    best = np.flatnonzero(f1 == f1.max())
    return float(thresholds[best].max())


def fit_thresholds(
    scores,
    labels,
    label_names: Sequence[str],
    policy: str,
    *,
    calibrated: Mapping[str, float] | None = None,
    fixed: float = 0.5,
    source: str = "",
) -> Thresholds:
    """Thresholds for ``label_names`` under ``policy`` (see module docstring).

    ``scores``/``labels`` are REAL images of a split other than the evaluated one (used by
    ``"youden"`` and ``"f1"`` only; pass ``None`` otherwise). ``calibrated`` is the
    classifier's ``calibrated_thresholds``. ``source`` describes where the data came from
    (e.g. ``"real images, validate split, n=1234"``) and is recorded with the results.
    """
    names = list(label_names)
    if policy == "fixed":
        if not 0.0 <= fixed <= 1.0:
            raise ValueError(f"fixed threshold must be in [0, 1], got {fixed}")
        return Thresholds({n: float(fixed) for n in names}, policy, source or f"fixed threshold {fixed}")
    if policy == "calibrated":
        if calibrated is None:
            raise ValueError(
                "threshold policy 'calibrated' needs the classifier's calibrated_thresholds; this classifier has none"
            )
        values = {n: float(calibrated[n]) for n in names if n in calibrated}
        unfitted = {n: "the classifier has no calibrated threshold for it" for n in names if n not in calibrated}
        return Thresholds(values, policy, source or "classifier's calibrated operating points", unfitted)
    if policy not in ("youden", "f1"):
        raise ValueError(f"unknown threshold policy {policy!r}; choose one of {', '.join(THRESHOLD_POLICIES)}")
    if scores is None or labels is None:
        raise ValueError(f"threshold policy {policy!r} needs scores and labels of real images from another split")
    if not source:
        raise ValueError(f"threshold policy {policy!r}: say which real images the thresholds are fitted on (source=...)")
    scores, labels = check_inputs(scores, labels, names)
    fit = youden_threshold if policy == "youden" else f1_threshold
    values, unfitted = {}, {}
    for c, name in enumerate(names):
        y, s = valid_entries(scores, labels, c)
        if y.size < 2 or np.unique(y).size < 2:
            unfitted[name] = f"needs both positive and negative real labels to fit (has {int(y.sum())} positive of {y.size})"
            continue
        values[name] = fit(y, s)
    return Thresholds(values, policy, source, unfitted)


def evaluate_classification(
    scores,
    labels,
    label_names: Sequence[str],
    thresholds: Thresholds,
    zero_division: float = 0.0,
) -> ClassificationResult:
    """Per-class AUC and F1 of ``scores`` against ``labels`` and their macro averages."""
    names = list(label_names)
    scores, labels = check_inputs(scores, labels, names)
    auc, f1, n_pos, n_valid, skipped_auc, skipped_f1 = {}, {}, {}, {}, {}, {}
    for c, name in enumerate(names):
        y, s = valid_entries(scores, labels, c)
        n_valid[name], n_pos[name] = int(y.size), int(y.sum())
        if y.size < 2:
            skipped_auc[name] = f"fewer than 2 labelled images ({y.size})"
        elif np.unique(y).size < 2:
            skipped_auc[name] = f"only {'positive' if y[0] == 1 else 'negative'} labels ({y.size})"
        else:
            auc[name] = float(roc_auc_score(y, s))
        if name not in thresholds.values:
            skipped_f1[name] = f"no threshold ({thresholds.unfitted.get(name, 'not in the thresholds')})"
        elif n_pos[name] == 0:
            skipped_f1[name] = f"no positive labels ({y.size} labelled)"
        else:
            pred = (s >= thresholds.values[name]).astype(int)
            f1[name] = float(f1_score(y, pred, zero_division=zero_division))
    return ClassificationResult(
        auc=auc,
        f1=f1,
        n_positive=n_pos,
        n_valid=n_valid,
        skipped_auc=skipped_auc,
        skipped_f1=skipped_f1,
        auc_macro=float(np.mean(list(auc.values()))) if auc else float("nan"),
        f1_macro=float(np.mean(list(f1.values()))) if f1 else float("nan"),
        thresholds=thresholds,
        zero_division=zero_division,
    )


@dataclass(frozen=True)
class ClassificationCI:
    """Percentile bootstrap intervals ``(low, high)`` per class and for the macro averages, and the
    resampled statistics behind each (``[resamples]``, NaN where a resample leaves it undefined)."""

    auc: dict[str, tuple[float, float]]
    f1: dict[str, tuple[float, float]]
    auc_macro: tuple[float, float]
    f1_macro: tuple[float, float]
    auc_draws: dict[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)
    f1_draws: dict[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)
    auc_macro_draws: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False, compare=False)
    f1_macro_draws: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False, compare=False)


def weighted_auc(y: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUC of one class under each row of sample ``weights`` ``[B, m]`` (bootstrap multiplicities).

    The Mann-Whitney form (ties count 1/2), which equals ``roc_auc_score`` for unit weights; NaN
    for a row without both classes.
    """
    pos, neg = y == 1, y == 0
    sp, sn = scores[pos], scores[neg]
    wins = (sp[:, None] > sn[None, :]) + 0.5 * (sp[:, None] == sn[None, :])
    wp, wn = weights[:, pos], weights[:, neg]
    den = wp.sum(axis=1) * wn.sum(axis=1)
    num = np.einsum("bp,pn,bn->b", wp, wins, wn, optimize=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


def weighted_f1(y: np.ndarray, predicted: np.ndarray, weights: np.ndarray, zero_division: float) -> np.ndarray:
    """F1 of one class under each row of ``weights``; NaN for a row without positive labels."""
    tp = weights @ (predicted & (y == 1))
    fp = weights @ (predicted & (y == 0))
    fn = weights @ (~predicted & (y == 1))
    den = 2 * tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(den > 0, 2 * tp / den, zero_division)
    return np.where(tp + fn > 0, f1, np.nan)


def bootstrap_classification(
    scores,
    labels,
    label_names: Sequence[str],
    thresholds: Thresholds,
    n_resamples: int,
    confidence: float = 0.95,
    seed: int = 0,
    groups=None,
    zero_division: float = 0.0,
) -> ClassificationCI:
    """Bootstrap CIs of per-class AUC/F1 and their macro means, all from one set of resamples.

    Vectorised over resamples (each resample is a row of sample multiplicities), with the same
    skipping rules as :func:`evaluate_classification` applied per resample: a class without both
    labels has no AUC, a class without positives or without a threshold no F1; a macro mean
    averages the classes defined in that resample.
    """
    names = list(label_names)
    scores, labels = check_inputs(scores, labels, names)
    weights = sample_weights(scores.shape[0], n_resamples, seed, groups)
    auc_draws, f1_draws = {}, {}
    for c, name in enumerate(names):
        keep = ~np.isnan(labels[:, c])
        y, s, w = labels[keep, c].astype(int), scores[keep, c], weights[:, keep]
        auc_draws[name] = weighted_auc(y, s, w)
        if name in thresholds.values:
            f1_draws[name] = weighted_f1(y, s >= thresholds.values[name], w, zero_division)

    def interval(draws: np.ndarray) -> tuple[float, float]:
        low, high, _ = percentile_interval(draws, confidence)
        return low, high

    def macro(draws: dict[str, np.ndarray]) -> np.ndarray:
        if not draws:
            return np.full(n_resamples, np.nan)
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # resamples where every class is undefined
            return np.nanmean(np.stack(list(draws.values())), axis=0)

    auc_macro, f1_macro = macro(auc_draws), macro(f1_draws)
    return ClassificationCI(
        auc={k: interval(v) for k, v in auc_draws.items()},
        f1={k: interval(v) for k, v in f1_draws.items()},
        auc_macro=interval(auc_macro),
        f1_macro=interval(f1_macro),
        auc_draws=auc_draws,
        f1_draws=f1_draws,
        auc_macro_draws=auc_macro,
        f1_macro_draws=f1_macro,
    )
