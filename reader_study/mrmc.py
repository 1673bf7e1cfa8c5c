"""Multi-reader multi-case (MRMC) ROC analysis: Obuchowski-Rockette (OR) with Hillis' degrees of freedom.

Input is one row per read: ``reader``, ``treatment`` (a modality, or a generator), ``case``, ``truth``
(1 = positive) and ``rating`` (higher = more sure the case is positive). A case may hold several
images (rows) of either truth; it is the unit that is resampled.

- :func:`empirical_auc`: Mann-Whitney statistic, ties count 1/2 (the trapezoidal area under the
  empirical ROC curve).
- :func:`fit_auc`: every (treatment, reader) AUC and their covariance matrix, by the jackknife over
  cases (any design: deleting a case a pair did not read leaves that pair's AUC unchanged, and the
  factor is ``(n - 1) / n`` over all ``n`` cases of the analysis) or by DeLong et al. (1988)
  (factorial designs with one image per case).
- :func:`or_analysis`: Obuchowski & Rockette (1995) with readers and cases random (F test with
  Hillis 2007 denominator degrees of freedom), readers fixed (chi-square / z) or cases fixed
  (conventional treatment x reader ANOVA); pairwise treatment differences and single-treatment
  intervals with a test of each treatment's AUC against ``null_auc``; OR variance components.
  Negative covariance differences are truncated at zero as in Hillis (2007).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats

COLUMNS = ("reader", "treatment", "case", "truth", "rating")
Covariance = Literal["jackknife", "DeLong"]
#: Which factors are random: both (results apply to new readers and new cases), cases only
#: (fixed readers: these readers, new cases) or readers only (fixed cases: new readers, these cases).
Random = Literal["readers and cases", "cases", "readers"]


def wins(positives: np.ndarray, negatives: np.ndarray) -> np.ndarray:
    """``positives x negatives`` kernel: 1 where the positive is rated higher, 1/2 on ties, else 0."""
    x, y = np.asarray(positives, float)[:, None], np.asarray(negatives, float)[None, :]
    return (x > y) + 0.5 * (x == y)


def empirical_auc(positives: Sequence[float] | np.ndarray, negatives: Sequence[float] | np.ndarray) -> float:
    """Area under the empirical ROC curve (Mann-Whitney, ties 1/2)."""
    if len(positives) == 0 or len(negatives) == 0:
        raise ValueError("an AUC needs at least one positive and one negative rating")
    return float(wins(np.asarray(positives), np.asarray(negatives)).mean())


@dataclass(frozen=True)
class AUCFit:
    """AUCs of every treatment x reader and their covariance matrix (index ``treatment * r + reader``)."""

    treatments: tuple[str, ...]
    readers: tuple[str, ...]
    auc: np.ndarray
    covariance: np.ndarray
    method: Covariance
    n_cases: int
    n_positive: int
    n_negative: int


@dataclass(frozen=True)
class Group:
    """The reads of one treatment x reader: ratings and case indices of positives and negatives."""

    pos: np.ndarray
    neg: np.ndarray
    pos_case: np.ndarray
    neg_case: np.ndarray


def prepare(data: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in COLUMNS if c not in data.columns]
    if missing:
        raise ValueError(f"MRMC data lacks columns {missing}")
    frame = data[list(COLUMNS)].copy()
    if frame[["truth", "rating"]].isna().any().any():
        raise ValueError("MRMC data has missing truth or rating values")
    for column in ("reader", "treatment", "case"):
        frame[column] = frame[column].astype(str)
    frame["truth"] = frame["truth"].astype(int).astype(bool)
    frame["rating"] = frame["rating"].astype(float)
    return frame


def codes(frame: pd.DataFrame, column: str, levels: Sequence[str]) -> np.ndarray:
    return pd.Categorical(frame[column], categories=list(levels)).codes.astype(int)


def groups(frame: pd.DataFrame, treatments: tuple[str, ...], readers: tuple[str, ...], cases: list[str]) -> list[Group]:
    """One :class:`Group` per treatment x reader (treatment-major order)."""
    key = codes(frame, "treatment", treatments) * len(readers) + codes(frame, "reader", readers)
    case = codes(frame, "case", cases)
    truth, rating = frame["truth"].to_numpy(bool), frame["rating"].to_numpy(float)
    out = []
    for g, (treatment, reader) in enumerate(itertools.product(treatments, readers)):
        pos, neg = (key == g) & truth, (key == g) & ~truth
        if not pos.any() or not neg.any():
            raise ValueError(f"treatment {treatment!r}, reader {reader!r}: needs positive and negative cases")
        out.append(Group(rating[pos], rating[neg], case[pos], case[neg]))
    return out


def jackknife_values(group: Group, n_cases: int) -> np.ndarray:
    """The group's AUC with each case deleted in turn (closed form from the kernel's row and column sums)."""
    kernel = wins(group.pos, group.neg)
    m, n = kernel.shape
    row = np.bincount(group.pos_case, weights=kernel.sum(axis=1), minlength=n_cases)
    col = np.bincount(group.neg_case, weights=kernel.sum(axis=0), minlength=n_cases)
    same = group.pos_case[:, None] == group.neg_case[None, :]
    within = np.bincount(np.broadcast_to(group.pos_case[:, None], kernel.shape)[same], kernel[same], minlength=n_cases)
    pairs_left = (m - np.bincount(group.pos_case, minlength=n_cases)) * (n - np.bincount(group.neg_case, minlength=n_cases))
    if (pairs_left == 0).any():
        raise ValueError("the jackknife needs at least two positive and two negative cases per treatment and reader")
    return (kernel.sum() - row - col + within) / pairs_left


def is_factorial(data: pd.DataFrame) -> bool:
    """Every treatment x reader read the same cases, each case once (one image, one truth)."""
    return factorial(prepare(data))


def factorial(frame: pd.DataFrame) -> bool:
    treatments, readers = frame["treatment"].unique(), frame["reader"].unique()
    cases = frame["case"].unique()
    case = codes(frame, "case", cases)
    cell = (codes(frame, "treatment", treatments) * len(readers) + codes(frame, "reader", readers)) * len(cases) + case
    if len(np.unique(cell)) != len(frame):
        return False
    reads = np.bincount(case, minlength=len(cases))
    positives = np.bincount(case, weights=frame["truth"].to_numpy(float), minlength=len(cases))
    return bool((reads == len(treatments) * len(readers)).all() and ((positives == 0) | (positives == reads)).all())


def delong_covariance(parts: list[Group]) -> np.ndarray:
    """DeLong et al. (1988): structural components over positives and negatives (factorial design)."""
    v10, v01 = [], []
    for group in parts:
        order_pos, order_neg = np.argsort(group.pos_case), np.argsort(group.neg_case)
        kernel = wins(group.pos[order_pos], group.neg[order_neg])
        auc = kernel.mean()
        v10.append(kernel.mean(axis=1) - auc)
        v01.append(kernel.mean(axis=0) - auc)
    a, b = np.column_stack(v10), np.column_stack(v01)
    m, n = a.shape[0], b.shape[0]
    if m < 2 or n < 2:
        raise ValueError("DeLong's covariance needs at least two positive and two negative cases")
    return a.T @ a / ((m - 1) * m) + b.T @ b / ((n - 1) * n)


def fit_auc(data: pd.DataFrame, *, covariance: Covariance = "jackknife", treatments: Sequence[str] | None = None) -> AUCFit:
    """AUC of every treatment x reader and their covariances (``treatments`` fixes their order)."""
    frame = prepare(data)
    order = tuple(str(t) for t in treatments) if treatments is not None else tuple(sorted(frame["treatment"].unique()))
    frame = frame[frame["treatment"].isin(order)]
    readers = tuple(sorted(frame["reader"].unique()))
    cases = sorted(frame["case"].unique())
    parts = groups(frame, order, readers, cases)
    auc = np.array([wins(g.pos, g.neg).mean() for g in parts]).reshape(len(order), len(readers))
    if covariance == "DeLong":
        if not factorial(frame):
            raise ValueError("DeLong's covariance needs a factorial design (every reader reads every case once)")
        matrix = delong_covariance(parts)
    elif covariance == "jackknife":
        values = np.column_stack([jackknife_values(g, len(cases)) for g in parts])
        centred = values - values.mean(axis=0)
        matrix = (len(cases) - 1) / len(cases) * centred.T @ centred
    else:
        raise ValueError(f"unknown covariance method {covariance!r} (jackknife or DeLong)")
    positives = frame[frame["truth"]]["case"].nunique()
    negatives = frame[~frame["truth"]]["case"].nunique()
    return AUCFit(order, readers, auc, matrix, covariance, len(cases), positives, negatives)


# -- Obuchowski-Rockette -----------------------------------------------------------------------
@dataclass(frozen=True)
class VarianceComponents:
    """OR variance components (ANOVA estimates, may be negative); NaN where the design has none."""

    var_r: float
    var_tr: float
    cov1: float  # same reader, different treatments
    cov2: float  # same treatment, different readers
    cov3: float  # different treatments and readers
    var_error: float

    @property
    def correlations(self) -> tuple[float, float, float]:
        with np.errstate(divide="ignore", invalid="ignore"):
            var = np.float64(self.var_error)
            return float(self.cov1 / var), float(self.cov2 / var), float(self.cov3 / var)


@dataclass(frozen=True)
class Interval:
    """An estimate with its standard error, degrees of freedom (inf = normal) and a test against ``null``."""

    label: str
    estimate: float
    se: float
    df: float
    ci_low: float
    ci_high: float
    null: float
    statistic: float
    p: float


@dataclass(frozen=True)
class GlobalTest:
    """Test of equal AUCs over all treatments: ``F`` (df1, df2) or, with df2 = inf, chi-square = df1 x statistic."""

    ms_t: float
    denominator: float
    statistic: float
    df1: float
    df2: float
    p: float

    @property
    def chi_square(self) -> float:
        return self.statistic * self.df1


@dataclass(frozen=True)
class ORResult:
    fit: AUCFit
    random: Random
    confidence: float
    components: VarianceComponents
    test: GlobalTest | None  # None with a single treatment
    differences: tuple[Interval, ...]  # every pair "a - b" in treatment order
    treatments: tuple[Interval, ...]  # reader-averaged AUC per treatment, tested against the null AUC
    reader_differences: tuple[Interval, ...]  # per reader and pair (fixed readers only)


def mean_squares(auc: np.ndarray) -> tuple[float, float, float]:
    """MS(T), MS(R) and MS(T*R) of the ``treatments x readers`` AUC table."""
    t, r = auc.shape
    grand = auc.mean()
    by_t, by_r = auc.mean(axis=1), auc.mean(axis=0)
    ms_t = r * ((by_t - grand) ** 2).sum() / (t - 1) if t > 1 else np.nan
    ms_r = t * ((by_r - grand) ** 2).sum() / (r - 1) if r > 1 else np.nan
    resid = auc - by_t[:, None] - by_r[None, :] + grand
    ms_tr = (resid**2).sum() / ((t - 1) * (r - 1)) if t > 1 and r > 1 else np.nan
    return float(ms_t), float(ms_r), float(ms_tr)


def covariance_averages(covariance: np.ndarray, t: int, r: int) -> tuple[float, float, float, float]:
    """Var(error), Cov1, Cov2, Cov3: means of the matching entries of the covariance matrix."""
    treatment, reader = np.repeat(np.arange(t), r), np.tile(np.arange(r), t)
    same_t = treatment[:, None] == treatment[None, :]
    same_r = reader[:, None] == reader[None, :]

    def mean(mask: np.ndarray) -> float:
        return float(covariance[mask].mean()) if mask.any() else np.nan

    return float(np.diag(covariance).mean()), mean(~same_t & same_r), mean(same_t & ~same_r), mean(~same_t & ~same_r)


def components(fit: AUCFit) -> VarianceComponents:
    t, r = fit.auc.shape
    _, ms_r, ms_tr = mean_squares(fit.auc)
    var, cov1, cov2, cov3 = covariance_averages(fit.covariance, t, r)
    if t == 1:
        return VarianceComponents(ms_r - var + cov2, np.nan, cov1, cov2, cov3, var)
    var_tr = ms_tr - var + cov1 + cov2 - cov3
    var_r = (ms_r - var_tr - var - (t - 1) * cov1 + cov2 + (t - 1) * cov3) / t
    return VarianceComponents(var_r, var_tr, cov1, cov2, cov3, var)


def interval(label: str, estimate: float, se: float, df: float, confidence: float, null: float = 0.0) -> Interval:
    dist = stats.norm if np.isinf(df) else stats.t(df)
    with np.errstate(divide="ignore", invalid="ignore"):
        half = dist.ppf((1 + confidence) / 2) * se
        statistic = np.float64(estimate - null) / np.float64(se)
    p = np.nan if np.isnan(statistic) else float(2 * dist.sf(abs(statistic)))
    return Interval(
        label, float(estimate), float(se), float(df), float(estimate - half), float(estimate + half), null, float(statistic), p
    )


def truncated(value: float) -> float:
    """``max(value, 0)``, and 0 where the design has no such term (NaN, e.g. Cov2 with one reader)."""
    return value if value > 0 else 0.0


def hillis_df(denominator: float, mean_square: float, df: float) -> float:
    """Satterthwaite-type df of ``denominator`` when only ``mean_square`` (with ``df``) is random (Hillis 2007)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.float64(denominator) ** 2 / (np.float64(mean_square) ** 2 / df))


def or_analysis(
    fit: AUCFit, *, random: Random = "readers and cases", confidence: float = 0.95, null_auc: float = 0.5
) -> ORResult:
    """Obuchowski-Rockette analysis of ``fit`` (see the module docstring for the three variants)."""
    t, r = fit.auc.shape
    if random != "cases" and r < 2:
        raise ValueError("random readers need at least two readers")
    ms_t, _, ms_tr = mean_squares(fit.auc)
    var, cov1, cov2, cov3 = covariance_averages(fit.covariance, t, r)
    means = fit.auc.mean(axis=1)
    test: GlobalTest | None = None
    pair_se = pair_df = np.nan
    if t > 1:
        if random == "readers and cases":
            den = ms_tr + r * truncated(cov2 - cov3)
            df2 = hillis_df(den, ms_tr, (t - 1) * (r - 1))
        elif random == "cases":
            den, df2 = var - cov1 + (r - 1) * truncated(cov2 - cov3), np.inf
        else:
            den, df2 = ms_tr, float((t - 1) * (r - 1))
        with np.errstate(divide="ignore", invalid="ignore"):
            statistic = np.float64(ms_t) / np.float64(den)
        p = stats.chi2.sf(statistic * (t - 1), t - 1) if np.isinf(df2) else stats.f.sf(statistic, t - 1, df2)
        test = GlobalTest(ms_t, den, statistic, t - 1, df2, float(p))
        pair_se, pair_df = np.sqrt(2 / r * den), df2
    differences = tuple(
        interval(f"{fit.treatments[a]} - {fit.treatments[b]}", means[a] - means[b], pair_se, pair_df, confidence)
        for a, b in itertools.combinations(range(t), 2)
    )
    singles = []
    for i, name in enumerate(fit.treatments):
        block = fit.covariance[i * r : (i + 1) * r, i * r : (i + 1) * r]
        var_i, _, cov2_i, _ = covariance_averages(block, 1, r)
        ms_r_i = float(fit.auc[i].var(ddof=1)) if r > 1 else np.nan
        if random == "readers and cases":
            den_i = ms_r_i + r * truncated(cov2_i)
            se, df = np.sqrt(den_i / r), hillis_df(den_i, ms_r_i, r - 1)
        elif random == "cases":
            se, df = np.sqrt((var_i + (r - 1) * truncated(cov2_i)) / r), np.inf
        else:
            se, df = np.sqrt(ms_r_i / r), float(r - 1)
        singles.append(interval(name, float(means[i]), float(se), df, confidence, null_auc))
    reader_differences: tuple[Interval, ...] = ()
    if random == "cases":
        reader_differences = tuple(
            interval(
                f"{reader}: {fit.treatments[a]} - {fit.treatments[b]}",
                fit.auc[a, j] - fit.auc[b, j],
                np.sqrt(
                    max(
                        fit.covariance[a * r + j, a * r + j]
                        + fit.covariance[b * r + j, b * r + j]
                        - 2 * fit.covariance[a * r + j, b * r + j],
                        0.0,
                    )
                ),
                np.inf,
                confidence,
            )  # fmt: skip
            for j, reader in enumerate(fit.readers)
            for a, b in itertools.combinations(range(t), 2)
        )
    return ORResult(fit, random, confidence, components(fit), test, differences, tuple(singles), reader_differences)
