"""Statistics of a finished (or running) reader study.

Units: a *rating item* is one (case, source) image; calibration items and planted duplicates
are left out of everything but the intra-reader table.

- Scores per source x criterion: n, mean, SD, median and a percentile CI from a two-way
  bootstrap that resamples readers and cases independently (both are random samples).
- Paired comparisons: for every criterion, each generator vs real and generators against each
  other, Wilcoxon signed-rank on case-level paired means (mean over readers), Holm-corrected
  within the criterion.
- Inter-reader agreement: quadratic-weighted Cohen's kappa for every reader pair (scikit-learn,
  labels 1..5), Krippendorff's alpha (ordinal, ``krippendorff`` package) over all readers, and
  the ICC (``pingouin``; two-way random, absolute agreement) on the items rated by every reader.
- Intra-reader agreement on planted duplicates: exact agreement, mean |difference|, weighted kappa.
- Mixed model per criterion: score ~ source (real = reference) + (1|reader) + (1|case) +
  (1|case:source) + (1|reader:source), crossed random effects (statsmodels ``MixedLM``, REML, Wald intervals): each generator's difference
  from real with its CI and p, and the variance components.
- Visual Turing test ("generated" is the positive class): accuracy, sensitivity, specificity
  with Wilson intervals and, per reader, a two-sided binomial test of accuracy against chance
  (always answering the block's majority class; 0.5 when half the images are real); these
  treat a reader's calls as independent and the pooled row has no test; detection rate per generator.
- Visual Turing test as an MRMC ROC study: the call and its confidence make one 10-level score
  (generated with confidence c -> 5 + c, real -> 6 - c); per generator (positives = its images,
  negatives = the block's real images) each reader's AUC and the reader-averaged AUC with an
  Obuchowski-Rockette CI (readers and cases random, Hillis df; DeLong covariances where every
  reader read every case once, else the jackknife) and a test of AUC = 0.5; generators compared
  with each other by one OR analysis (jackknife: the real images are shared, generated ones not).
- Timing per reader and block (server-side seconds from display to submit).
"""

from __future__ import annotations

import itertools
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import cohen_kappa_score

from xreal_bench import tables as safe
from xreal_bench.atomic import write_text_atomic
from xreal_bench.errors import UserFacingError
from xreal_bench.reader_study import mrmc
from xreal_bench.reader_study.criteria import CALL_GENERATED, TURING_CALL, TURING_CONFIDENCE
from xreal_bench.reader_study.layout import STUDY_DB, STUDY_JSON
from xreal_bench.reader_study.storage import Storage

REAL = "real"
SCORES = [1, 2, 3, 4, 5]

TIDY_COLUMNS = [
    "reader", "item", "case", "source", "pathology", "stratum", "criterion", "score", "order_index",
    "block", "calibration", "duplicate", "duplicate_of", "first_shown_at", "last_shown_at",
    "submitted_at", "seconds", "n_views", "revisions", "comment",
]  # fmt: skip


@dataclass
class AnalysisResult:
    out: Path
    files: list[Path]
    n_ratings: int
    n_readers: int
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    turing_fits: dict[str, mrmc.ORResult] = field(default_factory=dict)


# -- data --------------------------------------------------------------------------------------
def iso(seconds) -> str:
    if seconds is None or pd.isna(seconds):
        return ""
    return pd.Timestamp(float(seconds), unit="s", tz="UTC").isoformat(timespec="seconds")


def load_responses(study_dir: Path) -> tuple[pd.DataFrame, list[str], list[str]]:
    """The tidy long table (one row per reader x item x criterion), the sources and criteria."""
    with Storage(Path(study_dir) / STUDY_DB) as storage:
        rows = storage.unblinded_rows()
        sources = json.loads(storage.required_meta("sources"))
        criteria = [c.name for c in storage.criteria("rating")]
    df = pd.DataFrame(rows, columns=[
        "reader", "item", "case", "source", "stratum", "positives", "criterion", "score", "order_index", "block",
        "duplicate_of", "first_shown_at", "last_shown_at", "submitted_at", "seconds", "n_views", "revisions", "comment",
    ])  # fmt: skip
    df["pathology"] = [", ".join(json.loads(p)) or "No Finding" for p in df["positives"]]
    df["calibration"] = df["block"] == "calibration"
    df["duplicate"] = df["duplicate_of"].notna()
    df["duplicate_of"] = df["duplicate_of"].fillna("")
    for col in ("first_shown_at", "last_shown_at", "submitted_at"):
        df[col] = df[col].map(iso)
    return df[TIDY_COLUMNS], sources, criteria


def rating_rows(tidy: pd.DataFrame) -> pd.DataFrame:
    """Rows that count for the main analysis: rating block, no planted duplicates."""
    return tidy[(tidy["block"] == "rating") & ~tidy["duplicate"]]


def sort_by(df: pd.DataFrame, **orders: list[str]) -> pd.DataFrame:
    """Sort by the given columns in the given value orders (study order, not alphabetical)."""
    keys = {col: {v: i for i, v in enumerate(values)} for col, values in orders.items()}
    return df.sort_values(list(keys), key=lambda col: col.map(keys[col.name]), kind="stable").reset_index(drop=True)


# -- scores per source -------------------------------------------------------------------------
def bootstrap_indices(n_readers: int, n_cases: int, n_boot: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Resampled reader and case indices (``n_boot x R`` and ``n_boot x C``), drawn with replacement."""
    return rng.integers(0, n_readers, (n_boot, n_readers)), rng.integers(0, n_cases, (n_boot, n_cases))


def two_way_bootstrap_means(matrix: np.ndarray, reader_idx: np.ndarray, case_idx: np.ndarray) -> np.ndarray:
    """Mean of ``matrix[reader_idx[b]][:, case_idx[b]]`` (NaN = missing) for every resample ``b``.

    Computed with multiplicity weights instead of materialising each resampled grid.
    """
    n_boot, n_readers = reader_idx.shape
    n_cases = matrix.shape[1]
    w = np.zeros((n_boot, n_readers))
    v = np.zeros((n_boot, n_cases))
    np.add.at(w, (np.arange(n_boot)[:, None], reader_idx), 1.0)
    np.add.at(v, (np.arange(n_boot)[:, None], case_idx), 1.0)
    present = ~np.isnan(matrix)
    values = np.where(present, matrix, 0.0)
    num = np.einsum("br,rc,bc->b", w, values, v)
    den = np.einsum("br,rc,bc->b", w, present.astype(float), v)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


def score_matrix(rows: pd.DataFrame, readers: list[str], cases: list[str]) -> np.ndarray:
    """``readers x cases`` mean scores (NaN where a reader did not rate the case)."""
    table = rows.pivot_table(index="reader", columns="case", values="score", aggfunc="mean")
    return table.reindex(index=readers, columns=cases).to_numpy(dtype=float)


def summarize(
    ratings: pd.DataFrame, sources: list[str], criteria: list[str], *, n_boot: int, confidence: float, seed: int
) -> pd.DataFrame:
    readers = sorted(ratings["reader"].unique())
    cases = sorted(ratings["case"].unique())
    rng = np.random.default_rng(seed)
    r_idx, c_idx = bootstrap_indices(len(readers), len(cases), n_boot, rng) if n_boot else (None, None)
    tail = (1 - confidence) / 2 * 100
    out = []
    for criterion in criteria:
        for source in sources:
            rows = ratings[(ratings["criterion"] == criterion) & (ratings["source"] == source)]
            scores = rows["score"].to_numpy(dtype=float)
            low = high = np.nan
            if r_idx is not None and c_idx is not None and len(scores):
                means = two_way_bootstrap_means(score_matrix(rows, readers, cases), r_idx, c_idx)
                low, high = np.nanpercentile(means, [tail, 100 - tail])
            out.append(
                {
                    "source": source,
                    "criterion": criterion,
                    "n": len(scores),
                    "n_readers": rows["reader"].nunique(),
                    "n_cases": rows["case"].nunique(),
                    "mean": scores.mean() if len(scores) else np.nan,
                    "sd": scores.std(ddof=1) if len(scores) > 1 else np.nan,
                    "median": np.median(scores) if len(scores) else np.nan,
                    "ci_low": low,
                    "ci_high": high,
                }
            )
    return pd.DataFrame(out)


def per_reader(ratings: pd.DataFrame, sources: list[str], criteria: list[str], *, confidence: float) -> pd.DataFrame:
    """Each reader's mean per source x criterion with a t-interval over cases."""
    out = []
    for (reader, criterion, source), rows in ratings.groupby(["reader", "criterion", "source"]):
        x = rows["score"].to_numpy(dtype=float)
        half = np.nan
        if len(x) > 1:
            half = stats.t.ppf((1 + confidence) / 2, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))
        out.append(
            {
                "reader": reader,
                "criterion": criterion,
                "source": source,
                "n": len(x),
                "mean": x.mean(),
                "ci_low": x.mean() - half,
                "ci_high": x.mean() + half,
            }
        )
    df = pd.DataFrame(out, columns=["reader", "criterion", "source", "n", "mean", "ci_low", "ci_high"])
    return sort_by(df, criterion=criteria, source=sources)


# -- paired comparisons ------------------------------------------------------------------------
def holm(pvalues) -> np.ndarray:
    """Holm step-down adjusted p-values (NaN entries are left out of the family and stay NaN)."""
    p = np.asarray(pvalues, dtype=float)
    adjusted = np.full_like(p, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    m = len(valid)
    order = valid[np.argsort(p[valid], kind="stable")]
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, (m - rank) * p[index])
        adjusted[index] = min(1.0, running)
    return adjusted


def comparison_pairs(sources: list[str]) -> list[tuple[str, str]]:
    generators = [s for s in sources if s != REAL]
    return [(g, REAL) for g in generators] + list(itertools.combinations(generators, 2))


def paired_comparisons(ratings: pd.DataFrame, sources: list[str], criteria: list[str]) -> pd.DataFrame:
    out = []
    for criterion in criteria:
        rows = ratings[ratings["criterion"] == criterion]
        case_means = rows.pivot_table(index="case", columns="source", values="score", aggfunc="mean")
        block = []
        for a, b in comparison_pairs(sources):
            if a not in case_means or b not in case_means:
                continue
            pair = case_means[[a, b]].dropna()
            diff = (pair[a] - pair[b]).to_numpy()
            stat = p = np.nan
            note = ""
            if np.count_nonzero(diff) == 0:
                note = "no non-zero differences"
            else:
                res = stats.wilcoxon(diff)
                stat, p = float(res.statistic), float(res.pvalue)
            block.append(
                {
                    "criterion": criterion, "a": a, "b": b, "n_cases": len(diff),
                    "mean_a": pair[a].mean(), "mean_b": pair[b].mean(),
                    "mean_diff": diff.mean() if len(diff) else np.nan,
                    "median_diff": np.median(diff) if len(diff) else np.nan,
                    "wilcoxon_W": stat, "p": p, "note": note,
                }
            )  # fmt: skip
        adjusted = holm([r["p"] for r in block])
        for row, p_holm in zip(block, adjusted):
            row["p_holm"] = p_holm
        out += block
    columns = [
        "criterion",
        "a",
        "b",
        "n_cases",
        "mean_a",
        "mean_b",
        "mean_diff",
        "median_diff",
        "wilcoxon_W",
        "p",
        "p_holm",
        "note",
    ]
    return pd.DataFrame(out, columns=columns)


# -- agreement ---------------------------------------------------------------------------------
def weighted_kappa(a, b) -> float:
    """Quadratic-weighted Cohen's kappa on scores 1..5 (NaN when undefined, e.g. no variation)."""
    if len(a) == 0:
        return np.nan
    with warnings.catch_warnings():  # the undefined case is reported as NaN, no warning needed
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        return float(cohen_kappa_score(a, b, weights="quadratic", labels=SCORES, replace_undefined_by=np.nan))


def pairwise_kappa(ratings: pd.DataFrame, criteria: list[str]) -> pd.DataFrame:
    out = []
    for criterion in criteria:
        wide = ratings[ratings["criterion"] == criterion].pivot_table(index="item", columns="reader", values="score")
        for ra, rb in itertools.combinations(sorted(wide.columns), 2):
            both = wide[[ra, rb]].dropna()
            out.append(
                {"criterion": criterion, "reader_a": ra, "reader_b": rb, "n_items": len(both),
                 "kappa_quadratic": weighted_kappa(both[ra].astype(int), both[rb].astype(int)),
                 "exact_agreement": (both[ra] == both[rb]).mean() if len(both) else np.nan}
            )  # fmt: skip
    return pd.DataFrame(out, columns=["criterion", "reader_a", "reader_b", "n_items", "kappa_quadratic", "exact_agreement"])


def reliability(ratings: pd.DataFrame, criteria: list[str]) -> pd.DataFrame:
    """Krippendorff's alpha (ordinal) over all readers and the ICC on fully crossed items."""
    import krippendorff
    import pingouin

    out = []
    for criterion in criteria:
        wide = ratings[ratings["criterion"] == criterion].pivot_table(index="item", columns="reader", values="score")
        row = {"criterion": criterion, "n_readers": wide.shape[1], "n_items": wide.shape[0], "alpha_ordinal": np.nan,
               "icc_items": 0, "icc_a1": np.nan, "icc_a1_ci": "", "icc_ak": np.nan, "icc_ak_ci": "", "note": ""}  # fmt: skip
        if wide.shape[1] < 2:
            row["note"] = "needs at least two readers"
            out.append(row)
            continue
        data = wide.to_numpy(dtype=float).T  # readers x items, NaN = not rated
        try:
            row["alpha_ordinal"] = float(
                krippendorff.alpha(reliability_data=data, level_of_measurement="ordinal", value_domain=SCORES)
            )
        except ValueError as exc:  # e.g. a single distinct value overall
            row["note"] = f"alpha undefined ({exc}); "
        complete = wide.dropna()
        row["icc_items"] = len(complete)
        if len(complete) < 3:
            row["note"] += "ICC needs >= 3 items rated by every reader"
        else:
            long = complete.reset_index().melt(id_vars="item", var_name="reader", value_name="score")
            try:
                with warnings.catch_warnings():  # pingouin's pandas deprecations; 0/0 on constant ratings gives NaN
                    warnings.simplefilter("ignore", FutureWarning)
                    warnings.simplefilter("ignore", DeprecationWarning)
                    warnings.simplefilter("ignore", RuntimeWarning)
                    icc = pingouin.intraclass_corr(data=long, targets="item", raters="reader", ratings="score").set_index("Type")
                a1, ak = icc.loc["ICC(A,1)"], icc.loc["ICC(A,k)"]
                row.update(
                    icc_a1=float(a1["ICC"]),
                    icc_a1_ci=format_ci(a1["CI95"]),
                    icc_ak=float(ak["ICC"]),
                    icc_ak_ci=format_ci(ak["CI95"]),
                )
            except (ValueError, AssertionError, ZeroDivisionError) as exc:
                row["note"] += f"ICC undefined ({exc})"
        out.append(row)
    return pd.DataFrame(out)


def format_ci(ci) -> str:
    low, high = ci
    return f"[{low:.2f}, {high:.2f}]"


def intra_reader(tidy: pd.DataFrame, criteria: list[str]) -> pd.DataFrame:
    """Agreement of each reader with themself on planted duplicates."""
    rating = tidy[tidy["block"] == "rating"]
    dups = rating[rating["duplicate"]][["reader", "duplicate_of", "criterion", "score"]]
    originals = rating[~rating["duplicate"]][["reader", "item", "criterion", "score"]]
    pairs = dups.merge(
        originals,
        left_on=["reader", "duplicate_of", "criterion"],
        right_on=["reader", "item", "criterion"],
        suffixes=("_repeat", "_first"),
    )
    out = []
    for (reader, criterion), rows in pairs.groupby(["reader", "criterion"]):
        a, b = rows["score_first"].astype(int), rows["score_repeat"].astype(int)
        out.append(
            {"reader": reader, "criterion": criterion, "n_pairs": len(rows), "exact_agreement": float((a == b).mean()),
             "mean_abs_diff": float((a - b).abs().mean()), "kappa_quadratic": weighted_kappa(a, b)}
        )  # fmt: skip
    df = pd.DataFrame(out, columns=["reader", "criterion", "n_pairs", "exact_agreement", "mean_abs_diff", "kappa_quadratic"])
    return sort_by(df, criterion=criteria)


# -- visual Turing test ------------------------------------------------------------------------
def wilson(k: int, n: int, confidence: float) -> tuple[float, float]:
    if n == 0:
        return np.nan, np.nan
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def proportion(prefix: str, k: int, n: int, confidence: float) -> dict:
    low, high = wilson(k, n, confidence)
    return {f"{prefix}": k / n if n else np.nan, f"{prefix}_ci_low": low, f"{prefix}_ci_high": high}


CALL_COLUMNS = ["reader", "item", "case", "source", "call", "confidence", "score"]


def generated_score(call: pd.Series, confidence: pd.Series) -> pd.Series:
    """The call and its confidence as one 1..10 score, higher = more sure the image is generated."""
    return pd.Series(np.where(call == CALL_GENERATED, 5 + confidence, 6 - confidence), index=call.index)


def turing_calls(tidy: pd.DataFrame) -> pd.DataFrame:
    """One row per Turing answer: reader, item, case, source, call (1 = generated), confidence, score."""
    rows = tidy[tidy["block"] == "turing"]
    if rows.empty:
        return pd.DataFrame(columns=CALL_COLUMNS)
    wide = rows.pivot_table(index=["reader", "item", "case", "source"], columns="criterion", values="score")
    wide = wide.reindex(columns=[TURING_CALL, TURING_CONFIDENCE]).reset_index()
    wide = wide.rename(columns={TURING_CALL: "call", TURING_CONFIDENCE: "confidence"})
    wide["score"] = generated_score(wide["call"], wide["confidence"])
    return wide[CALL_COLUMNS]


def chance_test(correct: int, n: int, majority: int) -> float:
    """Two-sided binomial p of one reader's accuracy against always answering the majority class."""
    return float(stats.binomtest(correct, n, majority / n).pvalue) if n else np.nan


def turing_summary(calls: pd.DataFrame, confidence: float) -> pd.DataFrame:
    """Accuracy, sensitivity, specificity per reader (and pooled, descriptive only: pooled calls on
    shared images are not independent, so that row has no p; the MRMC AUC table is the test)."""
    out = []
    groups = [(reader, rows) for reader, rows in calls.groupby("reader")]
    if calls["reader"].nunique() > 1:
        groups.append(("all readers", calls))
    for reader, rows in groups:
        generated = rows["source"] != REAL
        said_generated = rows["call"] == CALL_GENERATED
        correct = int((generated == said_generated).sum())
        n = len(rows)
        tp, n_gen = int((generated & said_generated).sum()), int(generated.sum())
        tn, n_real = int((~generated & ~said_generated).sum()), int((~generated).sum())
        out.append(
            {"reader": reader, "n": n, **proportion("accuracy", correct, n, confidence),
             "chance_accuracy": max(n_gen, n_real) / n if n else np.nan,
             "p_binom_vs_chance": chance_test(correct, n, max(n_gen, n_real)) if reader != "all readers" else np.nan,
             "n_generated": n_gen, **proportion("sensitivity", tp, n_gen, confidence),
             "n_real": n_real, **proportion("specificity", tn, n_real, confidence),
             "mean_confidence": rows["confidence"].mean()}
        )  # fmt: skip
    return pd.DataFrame(out)


def turing_by_source(calls: pd.DataFrame, sources: list[str], confidence: float) -> pd.DataFrame:
    """Share of each source's images called generated (for ``real``: the false-alarm rate)."""
    out = []
    for source in sources:
        rows = calls[calls["source"] == source]
        if rows.empty:
            continue
        k = int((rows["call"] == CALL_GENERATED).sum())
        out.append(
            {
                "source": source,
                "n": len(rows),
                **proportion("called_generated", k, len(rows), confidence),
                "mean_confidence": rows["confidence"].mean(),
            }
        )
    return pd.DataFrame(out)


# -- visual Turing test as an MRMC ROC study --------------------------------------------------
AVERAGE = "reader average"


def generator_reads(calls: pd.DataFrame, generator: str) -> pd.DataFrame:
    """MRMC reads for one generator: its images (positive) and the real images, rated by the 10-level score."""
    rows = calls[calls["source"].isin([REAL, generator]) & calls["score"].notna()]
    return pd.DataFrame(
        {"reader": rows["reader"], "treatment": generator, "case": rows["case"], "truth": rows["source"] != REAL,
         "rating": rows["score"]}
    )  # fmt: skip


def usable_readers(reads: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The reads of readers with at least two positive and two negative reads per treatment, and who was left out."""
    counts = reads.groupby(["reader", "treatment"])["truth"].agg(["sum", "size"])
    enough = (counts["sum"] >= 2) & (counts["size"] - counts["sum"] >= 2)
    per_reader = enough.groupby(level="reader").all()
    keep = per_reader[per_reader].index
    return reads[reads["reader"].isin(keep)], sorted(per_reader[~per_reader].index)


def fit_generators(calls: pd.DataFrame, generators: list[str], *, confidence: float) -> mrmc.ORResult:
    """OR analysis of the generators' AUCs (one generator: DeLong if factorial; several: jackknife).

    Readers and cases are random with two or more readers; a single reader gives the fixed-reader
    analysis (z intervals)."""
    reads, _ = usable_readers(pd.concat([generator_reads(calls, g) for g in generators], ignore_index=True))
    if reads.empty:
        raise ValueError("no reader has two real and two generated images rated with confidence")
    method: mrmc.Covariance = "DeLong" if len(generators) == 1 and mrmc.is_factorial(reads) else "jackknife"
    fit = mrmc.fit_auc(reads, covariance=method, treatments=generators)
    random: mrmc.Random = "readers and cases" if len(fit.readers) > 1 else "cases"
    return mrmc.or_analysis(fit, random=random, confidence=confidence, null_auc=0.5)


def analysis_name(result: mrmc.ORResult) -> str:
    factors = "random readers and cases" if result.random == "readers and cases" else "fixed readers, random cases"
    return f"OR, {factors}, {result.fit.method}"


def turing_auc(
    calls: pd.DataFrame, sources: list[str], *, confidence: float
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, mrmc.ORResult]]:
    """Per generator: each reader's AUC (normal interval from its variance) and the reader average
    (OR interval, test of AUC = 0.5); and the OR comparison of the generators with each other."""
    generators = [s for s in sources if s != REAL and s in set(calls["source"])]
    rows, fits = [], {}
    for generator in generators:
        reads = generator_reads(calls, generator)
        kept, left_out = usable_readers(reads)
        note = f"left out (fewer than 2 real or 2 generated reads): {', '.join(left_out)}" if left_out else ""
        base = {"generator": generator, "n_generated": int(reads["truth"].sum()), "n_real": int((~reads["truth"]).sum())}
        try:
            result = fit_generators(calls, [generator], confidence=confidence)
        except ValueError as exc:
            rows.append({**base, "reader": AVERAGE, "note": f"{note}; {exc}".strip("; ")})
            continue
        fits[generator] = result
        fit = result.fit
        for j, reader in enumerate(fit.readers):
            mine = kept[kept["reader"] == reader]
            se = float(np.sqrt(fit.covariance[j, j]))
            one = mrmc.interval(reader, float(fit.auc[0, j]), se, np.inf, confidence, 0.5)
            rows.append({**base, "reader": reader, "n_generated": int(mine["truth"].sum()),
                         "n_real": int((~mine["truth"]).sum()), **interval_columns(one), "analysis": "normal, one reader"})  # fmt: skip
        average = result.treatments[0]
        rows.append({**base, "reader": AVERAGE, **interval_columns(average), "analysis": analysis_name(result), "note": note})
    columns = ["generator", "reader", "n_generated", "n_real", "auc", "se", "df", "ci_low", "ci_high", "p_vs_0.5",
               "analysis", "note"]  # fmt: skip
    table = pd.DataFrame(rows, columns=columns)
    table["note"] = table["note"].fillna("")
    return table, generator_comparison(calls, list(fits), confidence=confidence), fits


def interval_columns(estimate: mrmc.Interval) -> dict[str, float]:
    return {"auc": estimate.estimate, "se": estimate.se, "df": estimate.df, "ci_low": estimate.ci_low,
            "ci_high": estimate.ci_high, "p_vs_0.5": estimate.p}  # fmt: skip


COMPARISON_COLUMNS = ["comparison", "estimate", "se", "df", "ci_low", "ci_high", "statistic", "p", "analysis", "note"]


def generator_comparison(calls: pd.DataFrame, generators: list[str], *, confidence: float) -> pd.DataFrame:
    """Equal AUC of all generators (F, or chi-square with one reader) and every pairwise difference."""
    if len(generators) < 2:
        return pd.DataFrame(columns=COMPARISON_COLUMNS)
    try:
        result = fit_generators(calls, generators, confidence=confidence)
    except ValueError as exc:
        return pd.DataFrame([{"comparison": "all generators", "note": str(exc)}], columns=COMPARISON_COLUMNS)
    test = result.test
    assert test is not None  # two or more treatments
    name = analysis_name(result)
    finite = np.isfinite(test.df2)
    rows = [
        {"comparison": "equal AUC, all generators", "df": test.df2, "statistic": test.statistic if finite else test.chi_square,
         "p": test.p, "analysis": name,
         "note": f"F({test.df1:g}, {test.df2:.2f})" if finite else f"chi-square({test.df1:g})"}
    ]  # fmt: skip
    rows += [
        {"comparison": d.label, "estimate": d.estimate, "se": d.se, "df": d.df, "ci_low": d.ci_low, "ci_high": d.ci_high,
         "statistic": d.statistic, "p": d.p, "analysis": name, "note": "t" if np.isfinite(d.df) else "z"}
        for d in result.differences
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def turing_components(fits: dict[str, mrmc.ORResult]) -> pd.DataFrame:
    """The OR variance components of each generator's analysis (the input of ``study plan``)."""
    rows = []
    for generator, result in fits.items():
        c = result.components
        rows.append(
            {"generator": generator, "covariance": result.fit.method, "n_readers": len(result.fit.readers),
             "n_cases": result.fit.n_cases, "var_r": c.var_r, "var_error": c.var_error, "cov2": c.cov2,
             "corr2": c.correlations[1]}
        )  # fmt: skip
    return pd.DataFrame(rows, columns=["generator", "covariance", "n_readers", "n_cases", "var_r", "var_error", "cov2", "corr2"])


# -- mixed model for the ratings -----------------------------------------------------------------
MIXED_COLUMNS = ["criterion", "generator", "estimate", "se", "ci_low", "ci_high", "z", "p"]
VARIANCE_COLUMNS = ["criterion", "n", "n_readers", "n_cases", "intercept", "var_reader", "var_case", "var_image",
                    "var_reader_source", "var_residual", "note"]  # fmt: skip


def dummies(values: pd.Series) -> tuple[np.ndarray, list[str]]:
    codes, levels = pd.factorize(values, sort=True)
    return np.eye(len(levels))[codes], [str(v) for v in levels]


def mixed_model(
    ratings: pd.DataFrame, sources: list[str], criteria: list[str], *, confidence: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per criterion: score ~ source + (1|reader) + (1|case) + (1|case:source) + (1|reader:source),
    crossed random effects, REML.

    The image term (case:source) carries what all readers see in one image, so several readers'
    ratings of it are not counted as independent evidence; the reader:source term lets readers
    differ in how they judge a source, so the test generalises to new readers. Fixed effects: each
    generator minus real (Wald z: CI and p); variance components. A term with one level, or one
    observation per level, has no variance component."""
    from statsmodels.regression.mixed_linear_model import MixedLM, VCSpec
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    effects, variances = [], []
    for criterion in criteria:
        rows = ratings[ratings["criterion"] == criterion]
        generators = [s for s in sources if s != REAL and s in set(rows["source"])]
        info = {"criterion": criterion, "n": len(rows), "n_readers": rows["reader"].nunique(), "n_cases": rows["case"].nunique()}
        if REAL not in set(rows["source"]) or not generators or len(rows) < len(generators) + 3:
            variances.append({**info, "note": "needs real and generated ratings"})
            continue
        exog = pd.DataFrame({"real": 1.0, **{g: (rows["source"] == g).to_numpy(float) for g in generators}})
        terms = {
            "reader": rows["reader"],
            "case": rows["case"],
            "image": rows["case"].astype(str) + "/" + rows["source"],
            "reader_source": rows["reader"].astype(str) + "/" + rows["source"],
        }
        factors = [f for f, levels in terms.items() if 1 < levels.nunique() < len(rows)]
        mats = [dummies(terms[f]) for f in factors]
        spec = VCSpec(factors, [[names] for _, names in mats], [[m] for m, _ in mats])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                fit = MixedLM(rows["score"].to_numpy(float), exog, groups=np.zeros(len(rows)), exog_vc=spec).fit(reml=True)
            except (ValueError, np.linalg.LinAlgError) as exc:
                variances.append({**info, "note": f"model failed: {exc}"})
                continue
        notes = sorted({str(w.message).split("\n")[0] for w in caught if issubclass(w.category, ConvergenceWarning)})
        if not fit.converged:
            notes.insert(0, "did not converge")
        ci = fit.conf_int(1 - confidence)
        for g in generators:
            effects.append(
                {"criterion": criterion, "generator": g, "estimate": fit.fe_params[g], "se": fit.bse_fe[g],
                 "ci_low": ci.loc[g, 0], "ci_high": ci.loc[g, 1], "z": fit.tvalues[g], "p": fit.pvalues[g]}
            )  # fmt: skip
        vcomp = dict(zip(factors, fit.vcomp))
        variances.append(
            {**info, "intercept": fit.fe_params["real"], "var_reader": vcomp.get("reader", np.nan),
             "var_case": vcomp.get("case", np.nan), "var_image": vcomp.get("image", np.nan),
             "var_reader_source": vcomp.get("reader_source", np.nan), "var_residual": fit.scale, "note": "; ".join(notes)}
        )  # fmt: skip
    variance = pd.DataFrame(variances, columns=VARIANCE_COLUMNS)
    variance["note"] = variance["note"].fillna("")
    return pd.DataFrame(effects, columns=MIXED_COLUMNS), variance


# -- timing ------------------------------------------------------------------------------------
def timing(tidy: pd.DataFrame) -> pd.DataFrame:
    items = tidy.drop_duplicates(["reader", "item"])
    out = []
    for (reader, block), rows in items.groupby(["reader", "block"]):
        s = rows["seconds"].dropna().to_numpy(dtype=float)
        out.append(
            {"reader": reader, "block": block, "n_items": len(rows),
             "median_s": np.median(s) if len(s) else np.nan, "mean_s": s.mean() if len(s) else np.nan,
             "q25_s": np.percentile(s, 25) if len(s) else np.nan, "q75_s": np.percentile(s, 75) if len(s) else np.nan,
             "total_min": s.sum() / 60}
        )  # fmt: skip
    return pd.DataFrame(out)


# -- output ------------------------------------------------------------------------------------
TABLE_TITLES = {
    "summary": "Scores per source and criterion (mean ± SD, median, two-way bootstrap CI)",
    "comparisons": "Paired comparisons (Wilcoxon signed-rank on case means, Holm-corrected per criterion)",
    "mixed_model": "Mixed model per criterion: score ~ source + (1|reader) + (1|case) + (1|case:source) + "
    "(1|reader:source); each generator minus real (REML, Wald z CI and p)",
    "mixed_model_variance": "Mixed model per criterion: intercept (real) and variance components (reader, case, image, "
    "reader x source, residual)",
    "inter_reader": "Inter-reader agreement per reader pair (quadratic-weighted Cohen's kappa)",
    "reliability": "Reliability over all readers (Krippendorff's alpha, ordinal; ICC two-way random, absolute agreement)",
    "intra_reader": "Intra-reader agreement on planted duplicates",
    "turing": "Visual Turing test (positive = generated; Wilson CIs and the per-reader binomial test vs chance treat "
    "every call as independent; the pooled row is descriptive)",
    "turing_by_source": "Visual Turing test: share called generated per source (Wilson CIs treat calls as independent)",
    "turing_auc": "Visual Turing test, MRMC: AUC of telling each generator's images from real ones (call x confidence "
    "score; reader average: Obuchowski-Rockette CI and test of AUC = 0.5)",
    "turing_auc_comparison": "Visual Turing test, MRMC: generators compared (Obuchowski-Rockette, jackknife)",
    "turing_auc_components": "Visual Turing test, MRMC: OR variance components per generator (input of `study plan`)",
    "per_reader": "Mean score per reader (t-interval over cases)",
    "timing": "Seconds per item (display to submit, server clock)",
}


def write_table(df: pd.DataFrame, out: Path, name: str) -> list[Path]:
    """``name`` as CSV, Markdown and LaTeX, every cell neutralised or escaped (:mod:`xreal_bench.tables`)."""
    paths = [out / f"{name}.csv", out / f"{name}.md", out / f"{name}.tex"]
    write_text_atomic(paths[0], safe.to_csv(df))
    write_text_atomic(paths[1], safe.to_markdown(df) + "\n")
    write_text_atomic(paths[2], safe.to_latex(df, caption=TABLE_TITLES[name], label=f"tab:study-{name}"))
    return paths


def analyze_study(
    study_dir: Path, out: Path | None = None, *, bootstrap: int | None = None, confidence: float = 0.95, seed: int = 0
) -> AnalysisResult:
    """Run every analysis on ``study_dir`` and write tables, figures and the tidy CSV to ``out``."""
    from xreal_bench.reader_study.figures import auc_figure, likert_figure, reader_figure, roc_figure

    study_dir = Path(study_dir)
    if not 0.5 < confidence < 1:
        raise UserFacingError(f"--confidence must be in (0.5, 1), got {confidence}")
    settings = json.loads((study_dir / STUDY_JSON).read_text())
    n_boot = settings.get("bootstrap", 2000) if bootstrap is None else bootstrap
    if n_boot < 0:
        raise UserFacingError(f"--bootstrap must be >= 0, got {n_boot}")
    tidy, sources, criteria = load_responses(study_dir)
    if tidy.empty:
        raise UserFacingError(f"{study_dir}: no responses yet; readers submit through `xreal-bench study serve {study_dir}`")
    out = Path(out) if out else study_dir / "analysis"
    out.mkdir(parents=True, exist_ok=True)
    ratings = rating_rows(tidy)
    calls = turing_calls(tidy)
    mixed, mixed_variance = mixed_model(ratings, sources, criteria, confidence=confidence)
    auc, auc_comparison, fits = turing_auc(calls, sources, confidence=confidence)
    tables = {
        "summary": summarize(ratings, sources, criteria, n_boot=n_boot, confidence=confidence, seed=seed),
        "comparisons": paired_comparisons(ratings, sources, criteria),
        "mixed_model": mixed,
        "mixed_model_variance": mixed_variance,
        "inter_reader": pairwise_kappa(ratings, criteria),
        "reliability": reliability(ratings, criteria),
        "intra_reader": intra_reader(tidy, criteria),
        "turing": turing_summary(calls, confidence),
        "turing_by_source": turing_by_source(calls, sources, confidence),
        "turing_auc": auc,
        "turing_auc_comparison": auc_comparison,
        "turing_auc_components": turing_components(fits),
        "per_reader": per_reader(ratings, sources, criteria, confidence=confidence),
        "timing": timing(tidy),
    }
    files = [out / "responses.csv"]
    write_text_atomic(files[0], safe.to_csv(tidy))
    report = [f"# {safe.markdown_cell(settings.get('title', 'Reader study'))}: analysis", ""]
    for name, df in tables.items():
        files += write_table(df, out, name)
        report += [f"## {TABLE_TITLES[name]}", "", safe.to_markdown(df), ""]
    figures = []
    if not ratings.empty:
        figures += [
            likert_figure(ratings, sources, criteria, out / "likert.png"),
            reader_figure(tables["per_reader"], sources, criteria, out / "readers.png"),
        ]
    if fits:
        figures += [
            auc_figure(auc, list(fits), out / "turing_auc.png"),
            roc_figure({g: generator_reads(calls, g) for g in fits}, out / "turing_roc.png"),
        ]
    if figures:
        report += ["## Figures", ""] + [f"![{p.stem}]({p.name})" for p in figures]
    files += figures
    write_text_atomic(out / "report.md", "\n".join(report) + "\n")
    files.append(out / "report.md")
    return AnalysisResult(out, files, len(tidy), tidy["reader"].nunique(), tables, fits)
