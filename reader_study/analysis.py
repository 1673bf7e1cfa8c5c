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
- Visual Turing test ("generated" is the positive class): accuracy, sensitivity, specificity
  with Wilson intervals and a two-sided binomial test of accuracy against 0.5 (the design
  shows as many real as generated images); detection rate per generator.
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

from xreal_bench.errors import UserFacingError
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
                with warnings.catch_warnings():  # pingouin's own pandas deprecation warnings
                    warnings.simplefilter("ignore", FutureWarning)
                    warnings.simplefilter("ignore", DeprecationWarning)
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


def turing_calls(tidy: pd.DataFrame) -> pd.DataFrame:
    """One row per Turing answer: reader, item, source, call (1 = generated), confidence."""
    rows = tidy[tidy["block"] == "turing"]
    wide = rows.pivot_table(index=["reader", "item", "source"], columns="criterion", values="score").reset_index()
    if wide.empty:
        return pd.DataFrame(columns=["reader", "item", "source", "call", "confidence"])
    return wide.rename(columns={TURING_CALL: "call", TURING_CONFIDENCE: "confidence"})[
        ["reader", "item", "source", "call", "confidence"]
    ]


def turing_summary(calls: pd.DataFrame, confidence: float) -> pd.DataFrame:
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
             "p_binom_vs_0.5": float(stats.binomtest(correct, n, 0.5).pvalue) if n else np.nan,
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
    "inter_reader": "Inter-reader agreement per reader pair (quadratic-weighted Cohen's kappa)",
    "reliability": "Reliability over all readers (Krippendorff's alpha, ordinal; ICC two-way random, absolute agreement)",
    "intra_reader": "Intra-reader agreement on planted duplicates",
    "turing": "Visual Turing test (positive = generated; Wilson CIs; binomial test vs 0.5)",
    "turing_by_source": "Visual Turing test: share called generated per source",
    "per_reader": "Mean score per reader (t-interval over cases)",
    "timing": "Seconds per item (display to submit, server clock)",
}


def write_table(df: pd.DataFrame, out: Path, name: str) -> list[Path]:
    paths = [out / f"{name}.csv", out / f"{name}.md", out / f"{name}.tex"]
    df.to_csv(paths[0], index=False)
    paths[1].write_text(markdown(df) + "\n")
    paths[2].write_text(
        df.to_latex(
            index=False, float_format="%.3f", na_rep="--", escape=True, caption=TABLE_TITLES[name], label=f"tab:study-{name}"
        )
    )
    return paths


def markdown(df: pd.DataFrame) -> str:
    if df.empty:
        return "_no data_"
    return df.to_markdown(index=False, floatfmt=".3f")


def analyze_study(
    study_dir: Path, out: Path | None = None, *, bootstrap: int | None = None, confidence: float = 0.95, seed: int = 0
) -> AnalysisResult:
    """Run every analysis on ``study_dir`` and write tables, figures and the tidy CSV to ``out``."""
    from xreal_bench.reader_study.figures import likert_figure, reader_figure

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
    tables = {
        "summary": summarize(ratings, sources, criteria, n_boot=n_boot, confidence=confidence, seed=seed),
        "comparisons": paired_comparisons(ratings, sources, criteria),
        "inter_reader": pairwise_kappa(ratings, criteria),
        "reliability": reliability(ratings, criteria),
        "intra_reader": intra_reader(tidy, criteria),
        "turing": turing_summary(calls, confidence),
        "turing_by_source": turing_by_source(calls, sources, confidence),
        "per_reader": per_reader(ratings, sources, criteria, confidence=confidence),
        "timing": timing(tidy),
    }
    files = [out / "responses.csv"]
    tidy.to_csv(files[0], index=False)
    report = [f"# {settings.get('title', 'Reader study')}: analysis", ""]
    for name, df in tables.items():
        files += write_table(df, out, name)
        report += [f"## {TABLE_TITLES[name]}", "", markdown(df), ""]
    figures = []
    if not ratings.empty:
        figures = [
            likert_figure(ratings, sources, criteria, out / "likert.png"),
            reader_figure(tables["per_reader"], sources, criteria, out / "readers.png"),
        ]
        report += ["## Figures", ""] + [f"![{p.stem}]({p.name})" for p in figures]
    files += figures
    (out / "report.md").write_text("\n".join(report) + "\n")
    files.append(out / "report.md")
    return AnalysisResult(out, files, len(tidy), tidy["reader"].nunique(), tables)
