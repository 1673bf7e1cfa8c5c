"""Analysis statistics against independent references (scipy, scikit-learn, krippendorff,
statsmodels, closed-form formulas) on hand-made ratings submitted through the storage layer."""

import csv
import re
import sqlite3

import krippendorff
import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import cohen_kappa_score, roc_auc_score
from statsmodels.stats.multitest import multipletests

from xreal_bench.cli import main
from xreal_bench.demo.study import sample_study
from xreal_bench.errors import UserFacingError
from xreal_bench.reader_study import analysis, figures, mrmc
from xreal_bench.reader_study.analysis import analyze_study, holm, two_way_bootstrap_means
from xreal_bench.reader_study.storage import Storage

CRITERIA = ["anatomy_realism", "pathology_realism", "image_quality"]
READERS = ["ann", "bob", "cat"]
SOURCES = ["real", "cheff", "xreal"]  # real first, then generators by name


def icc_a1_ak(y: np.ndarray) -> tuple[float, float]:
    """McGraw & Wong ICC(A,1) and ICC(A,k) from two-way ANOVA mean squares (targets x raters)."""
    n, k = y.shape
    gm = y.mean()
    ssr = k * ((y.mean(axis=1) - gm) ** 2).sum()
    ssc = n * ((y.mean(axis=0) - gm) ** 2).sum()
    sse = ((y - gm) ** 2).sum() - ssr - ssc
    msr, msc, mse = ssr / (n - 1), ssc / (k - 1), sse / ((n - 1) * (k - 1))
    return (msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n), (msr - mse) / (msr + (msc - mse) / n)


def wilson_closed_form(k: int, n: int, z: float = stats.norm.ppf(0.975)) -> tuple[float, float]:
    p = k / n
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z / (1 + z**2 / n) * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    return centre - half, centre + half


@pytest.fixture(scope="module")
def rated(tmp_path_factory):
    """A study with 3 readers, 8 cases, 2 generators, duplicates, calibration and Turing block,
    every item answered with hand-made scores that are remembered for the reference computations."""
    root = tmp_path_factory.mktemp("analysis")
    created = sample_study(
        root, n_run_cases=12, n_cases=8, readers=READERS, duplicate_fraction=0.1, calibration_items=1, turing_cases=12
    )
    rng = np.random.default_rng(7)
    base = {"real": 4.2, "xreal": 3.6, "cheff": 2.4}
    case_effect = {f"case{k:04d}": rng.normal(0, 0.6) for k in range(21)}  # 8 rated + 1 calibration + 12 held-out
    bias = {"ann": 0.3, "bob": 0.0, "cat": -0.4}
    con = sqlite3.connect(created.study_dir / "study.sqlite")
    key = {
        item: (block, source, case, dup)
        for item, block, source, case, dup in con.execute(
            "SELECT i.item_id, i.block, m.source, m.case_id, i.duplicate_of FROM items i JOIN images m USING (image_id)"
        )
    }
    con.close()
    scores, repeats, calls = {}, {}, []
    for reader in READERS:  # first ratings of every (reader, source, case); repeats are derived from them
        for block, source, case, dup in sorted(key.values(), key=str):
            if block == "rating" and dup is None:
                for c in CRITERIA:
                    mu = base[source] + case_effect[case] + bias[reader] + rng.normal(0, 0.7)
                    scores[(reader, source, case, c)] = int(np.clip(np.rint(mu), 1, 5))
    with Storage(created.study_dir / "study.sqlite") as s:
        for reader in created.readers:
            account = s.authenticate(reader.token)
            order = [
                r[0]
                for r in s.conn.execute(
                    "SELECT item_id FROM assignments WHERE reader_id = ? ORDER BY position", (account.reader_id,)
                )
            ]
            for item in order:
                block, source, case, dup = key[item]
                if block == "turing":
                    truth = source != "real"
                    said = truth if rng.random() < 0.7 else not truth
                    answer = {"turing_call": int(said), "turing_confidence": int(rng.integers(1, 6))}
                    calls.append((reader.name, source, int(said), answer["turing_confidence"]))
                elif block == "calibration":
                    answer = dict.fromkeys(CRITERIA, 1)  # would drag every mean down if it were counted
                elif dup is not None:
                    first = {c: scores[(reader.name, key[dup][1], key[dup][2], c)] for c in CRITERIA}
                    answer = {c: int(np.clip(v + rng.choice([-1, 0, 0, 1]), 1, 5)) for c, v in first.items()}
                    for c in CRITERIA:
                        repeats.setdefault((reader.name, c), []).append((first[c], answer[c]))
                else:
                    answer = {c: scores[(reader.name, source, case, c)] for c in CRITERIA}
                s.record_view(account.reader_id, item, "test")
                assert s.submit(account.reader_id, item, answer, session="test").status == "recorded"
    result = analyze_study(created.study_dir, bootstrap=400, seed=3)
    return created, result, scores, repeats, calls


def test_summary_matches_numpy(rated):
    _, result, scores, _, _ = rated
    summary = result.tables["summary"]
    assert list(summary["source"][:3]) == SOURCES
    for row in summary.itertuples():
        values = np.array([v for (r, s, c, crit), v in scores.items() if s == row.source and crit == row.criterion], float)
        assert row.n == len(values) == 24 and row.n_readers == 3 and row.n_cases == 8
        assert row.mean == pytest.approx(values.mean())
        assert row.sd == pytest.approx(values.std(ddof=1))
        assert row.median == np.median(values)
        assert 1 <= row.ci_low < row.mean < row.ci_high <= 5
    real = summary[summary["source"] == "real"]["mean"].mean()
    cheff = summary[summary["source"] == "cheff"]["mean"].mean()
    assert real > cheff + 1  # the hand-made effect is visible


def test_paired_wilcoxon_on_case_means_with_holm(rated):
    _, result, scores, _, _ = rated
    comp = result.tables["comparisons"]
    assert list(zip(comp["a"], comp["b"]))[:3] == [("cheff", "real"), ("xreal", "real"), ("cheff", "xreal")]
    for criterion in CRITERIA:
        rows = comp[comp["criterion"] == criterion]
        ps = []
        for row in rows.itertuples():
            cases = sorted({c for (_, s, c, crit) in scores if crit == criterion})
            means = {
                (src, case): np.mean([scores[(r, src, case, criterion)] for r in READERS])
                for src in (row.a, row.b)
                for case in cases
            }
            diff = np.array([means[(row.a, c)] - means[(row.b, c)] for c in cases])
            ref = stats.wilcoxon(diff)
            assert row.n_cases == 8 and row.mean_diff == pytest.approx(diff.mean())
            assert row.wilcoxon_W == pytest.approx(ref.statistic) and row.p == pytest.approx(ref.pvalue)
            ps.append(ref.pvalue)
        np.testing.assert_allclose(rows["p_holm"], multipletests(ps, method="holm")[1])


def test_pairwise_weighted_kappa_matches_sklearn(rated):
    _, result, scores, _, _ = rated
    kappa = result.tables["inter_reader"]
    assert len(kappa) == 3 * len(CRITERIA)
    for row in kappa.itertuples():
        units = sorted({(s, c) for (r, s, c, crit) in scores if crit == row.criterion})
        a = [scores[(row.reader_a, s, c, row.criterion)] for s, c in units]
        b = [scores[(row.reader_b, s, c, row.criterion)] for s, c in units]
        assert row.n_items == 24
        assert row.kappa_quadratic == pytest.approx(cohen_kappa_score(a, b, weights="quadratic", labels=[1, 2, 3, 4, 5]))
        assert row.exact_agreement == pytest.approx(np.mean(np.array(a) == np.array(b)))


def test_krippendorff_alpha_and_icc_match_references(rated):
    _, result, scores, _, _ = rated
    rel = result.tables["reliability"].set_index("criterion")
    for criterion in CRITERIA:
        units = sorted({(s, c) for (r, s, c, crit) in scores if crit == criterion})
        matrix = np.array([[scores[(r, s, c, criterion)] for s, c in units] for r in READERS], float)
        ref = krippendorff.alpha(reliability_data=matrix, level_of_measurement="ordinal", value_domain=[1, 2, 3, 4, 5])
        assert rel.loc[criterion, "alpha_ordinal"] == pytest.approx(ref)
        a1, ak = icc_a1_ak(matrix.T)
        assert rel.loc[criterion, "icc_items"] == 24
        assert rel.loc[criterion, "icc_a1"] == pytest.approx(a1)
        assert rel.loc[criterion, "icc_ak"] == pytest.approx(ak)


def test_intra_reader_agreement_on_planted_duplicates(rated):
    _, result, _, repeats, _ = rated
    intra = result.tables["intra_reader"]
    assert len(intra) == 3 * len(CRITERIA)
    for row in intra.itertuples():
        pairs = np.array(repeats[(row.reader, row.criterion)])
        assert row.n_pairs == len(pairs) == 2  # round(0.1 * 24) planted duplicates
        assert row.exact_agreement == pytest.approx(np.mean(pairs[:, 0] == pairs[:, 1]))
        assert row.mean_abs_diff == pytest.approx(np.mean(np.abs(pairs[:, 0] - pairs[:, 1])))
        ref = (
            cohen_kappa_score(pairs[:, 0], pairs[:, 1], weights="quadratic", labels=[1, 2, 3, 4, 5])
            if len(set(pairs.ravel())) > 1
            else np.nan
        )
        assert row.kappa_quadratic == pytest.approx(ref, nan_ok=True)


def test_turing_test_statistics(rated):
    _, result, _, _, calls = rated
    table = result.tables["turing"].set_index("reader")
    assert list(table.index) == [*READERS, "all readers"]
    for reader in [*READERS, "all readers"]:
        mine = [c for c in calls if reader == "all readers" or c[0] == reader]
        gen = [said for _, s, said, _ in mine if s != "real"]
        real = [said for _, s, said, _ in mine if s == "real"]
        correct = sum(gen) + sum(1 - x for x in real)
        row = table.loc[reader]
        assert row["n"] == len(mine) and row["n_generated"] == len(gen) == len(real)  # balanced by design
        assert row["accuracy"] == pytest.approx(correct / len(mine))
        assert row["sensitivity"] == pytest.approx(np.mean(gen)) and row["specificity"] == pytest.approx(1 - np.mean(real))
        low, high = wilson_closed_form(correct, len(mine))
        assert (row["accuracy_ci_low"], row["accuracy_ci_high"]) == (pytest.approx(low), pytest.approx(high))
        chance = max(len(gen), len(real)) / len(mine)
        assert row["chance_accuracy"] == pytest.approx(chance)
        if reader == "all readers":  # pooled calls on shared images are not independent: no test
            assert np.isnan(row["p_binom_vs_chance"])
        else:
            assert row["p_binom_vs_chance"] == pytest.approx(stats.binomtest(correct, len(mine), chance).pvalue)
        assert row["mean_confidence"] == pytest.approx(np.mean([c for *_, c in mine]))
    by_source = result.tables["turing_by_source"].set_index("source")
    for source in SOURCES:
        said = [x for _, s, x, _ in calls if s == source]
        assert by_source.loc[source, "n"] == len(said)
        assert by_source.loc[source, "called_generated"] == pytest.approx(np.mean(said))


def test_outputs_tidy_csv_tables_and_figures(rated):
    created, result, scores, repeats, calls = rated
    out = created.study_dir / "analysis"
    assert result.out == out
    tidy = pd.read_csv(out / "responses.csv")
    assert list(tidy.columns) == analysis.TIDY_COLUMNS
    n_dup = sum(len(v) for v in repeats.values())
    assert len(tidy) == len(scores) + n_dup + 3 * 1 * 3 + 2 * len(calls)  # ratings, repeats, calibration, Turing
    assert set(tidy["block"]) == {"calibration", "rating", "turing"}
    assert tidy["calibration"].sum() == 9 and tidy["duplicate"].sum() == n_dup
    assert tidy.groupby(["reader", "item", "criterion"]).size().max() == 1
    assert (tidy["seconds"] >= 0).all() and tidy["submitted_at"].str.endswith("+00:00").all()
    for name in analysis.TABLE_TITLES:
        assert (out / f"{name}.csv").is_file() and (out / f"{name}.md").read_text().startswith("|")
        assert "\\begin{tabular}" in (out / f"{name}.tex").read_text()
    for fig in ("likert.png", "readers.png", "turing_auc.png", "turing_roc.png"):
        assert (out / fig).read_bytes()[:4] == b"\x89PNG"
        assert f"![{fig[:-4]}]({fig})" in (out / "report.md").read_text()
    report = (out / "report.md").read_text()
    assert (
        "## Visual Turing test (positive = generated; Wilson CIs and the per-reader binomial test vs chance treat every "
        "call as independent; the pooled row is descriptive)" in report
    )
    assert "## Visual Turing test, MRMC: AUC of telling each generator's images from real ones" in report
    timing = result.tables["timing"]
    assert set(timing["block"]) == {"calibration", "rating", "turing"}
    assert timing[timing["block"] == "rating"]["n_items"].tolist() == [26, 26, 26]


def test_two_way_bootstrap_equals_explicit_resampling():
    rng = np.random.default_rng(0)
    m = rng.integers(1, 6, (4, 9)).astype(float)
    m[1, 3] = np.nan
    r_idx, c_idx = analysis.bootstrap_indices(4, 9, 50, np.random.default_rng(1))
    fast = two_way_bootstrap_means(m, r_idx, c_idx)
    slow = [np.nanmean(m[np.ix_(r, c)]) for r, c in zip(r_idx, c_idx)]
    np.testing.assert_allclose(fast, slow)
    constant = np.full((3, 5), 4.0)
    assert set(two_way_bootstrap_means(constant, *analysis.bootstrap_indices(3, 5, 20, rng))) == {4.0}


def test_holm_matches_statsmodels_and_skips_nan():
    p = np.array([0.01, 0.04, np.nan, 0.03, 0.20])
    ours = holm(p)
    ref = multipletests(p[~np.isnan(p)], method="holm")[1]
    np.testing.assert_allclose(ours[~np.isnan(p)], ref)
    assert np.isnan(ours[2])


def test_no_variation_gives_nan_kappa_and_wilcoxon_note():
    assert np.isnan(analysis.weighted_kappa([3, 3, 3], [3, 3, 3]))
    ratings = pd.DataFrame(
        [{"reader": "a", "case": c, "source": s, "criterion": "q", "score": 3} for c in "xyz" for s in ("real", "g")]
    )
    comp = analysis.paired_comparisons(ratings, ["real", "g"], ["q"])
    assert comp.loc[0, "note"] == "no non-zero differences" and np.isnan(comp.loc[0, "p"])


def test_analyze_without_responses_says_so(tmp_path):
    created = sample_study(tmp_path, n_cases=2, readers=["r1"])
    with pytest.raises(UserFacingError, match="no responses yet"):
        analyze_study(created.study_dir)


def test_cli_analyze_writes_to_out(rated, tmp_path, capsys):
    created = rated[0]
    assert main(["study", "analyze", str(created.study_dir), "--out", str(tmp_path / "a"), "--bootstrap", "50"]) == 0
    out = capsys.readouterr().out
    assert "ratings from 3 readers" in out and str(tmp_path / "a" / "summary.csv") in out
    assert main(["study", "analyze", str(created.study_dir), "--confidence", "1.5"]) == 2
    assert "--confidence must be in (0.5, 1)" in capsys.readouterr().err


# -- visual Turing test as MRMC ----------------------------------------------------------------
def test_generated_score_orders_calls_by_confidence():
    call = pd.Series([1, 1, 1, 0, 0, 0])
    confidence = pd.Series([5, 3, 1, 1, 3, 5])
    assert analysis.generated_score(call, confidence).tolist() == [10, 8, 6, 5, 3, 1]


def test_turing_auc_on_the_study(rated):
    """Per reader: the AUC of the 10-level score (sklearn); reader average: mean with the OR interval."""
    _, result, _, _, calls = rated
    table = result.tables["turing_auc"]
    assert list(table["generator"].unique()) == ["cheff", "xreal"]
    for generator in ("cheff", "xreal"):
        rows = table[table["generator"] == generator].set_index("reader")
        assert list(rows.index) == [*READERS, "reader average"]
        aucs = []
        for reader in READERS:
            mine = [
                (s != "real", (5 + c) if said else (6 - c)) for r, s, said, c in calls if r == reader and s in ("real", generator)
            ]
            truth, score = zip(*mine)
            aucs.append(roc_auc_score(truth, score))
            assert rows.loc[reader, "auc"] == pytest.approx(aucs[-1])
            assert rows.loc[reader, "n_generated"] == sum(truth) and rows.loc[reader, "n_real"] == len(truth) - sum(truth)
        average = rows.loc["reader average"]
        assert average["auc"] == pytest.approx(np.mean(aucs))
        assert average["analysis"] == "OR, random readers and cases, DeLong"  # one image per held-out case, read by all
        half = stats.t.ppf(0.975, average["df"]) * average["se"]
        assert (average["ci_low"], average["ci_high"]) == (
            pytest.approx(average["auc"] - half),
            pytest.approx(average["auc"] + half),
        )
        assert average["p_vs_0.5"] == pytest.approx(2 * stats.t.sf(abs(average["auc"] - 0.5) / average["se"], average["df"]))
        fit = result.turing_fits[generator]
        assert fit.treatments[0].estimate == pytest.approx(average["auc"])
    comparison = result.tables["turing_auc_comparison"]
    assert comparison["comparison"].tolist() == ["equal AUC, all generators", "cheff - xreal"]
    by_generator = table[table["reader"] == "reader average"].set_index("generator")["auc"]
    assert comparison.loc[1, "estimate"] == pytest.approx(by_generator["cheff"] - by_generator["xreal"])
    assert comparison.loc[0, "p"] == pytest.approx(comparison.loc[1, "p"])  # two treatments: F = t^2


def one_image_per_case(readers: list[str], skill: dict[str, float], seed: int = 0) -> pd.DataFrame:
    """Tidy Turing rows of the held-out design: one image per case, every reader the same images."""
    rng = np.random.default_rng(seed)
    sources = ["real"] * 10 + ["g1"] * 5 + ["g2"] * 5
    rows = []
    for reader in readers:
        for k, source in enumerate(sources):
            generated = source != "real"
            evidence = rng.normal(skill[source] if generated else 0, 1)
            said = int(evidence > skill[source] / 2) if generated else int(evidence > 0.5)
            confidence = int(np.clip(1 + abs(evidence) * 2, 1, 5))
            for criterion, score in (("turing_call", said), ("turing_confidence", confidence)):
                rows.append({"reader": reader, "item": f"t{k}", "case": f"held{k}", "source": source, "block": "turing",
                             "criterion": criterion, "score": score})  # fmt: skip
    return pd.DataFrame(rows)


def test_turing_auc_uses_delong_on_the_held_out_design_and_compares_generators():
    tidy = one_image_per_case(["r1", "r2", "r3", "r4"], {"g1": 2.0, "g2": 0.2})
    calls = analysis.turing_calls(tidy)
    table, comparison, fits = analysis.turing_auc(calls, ["real", "g1", "g2"], confidence=0.95)
    average = table[table["reader"] == "reader average"].set_index("generator")
    assert average["analysis"].tolist() == ["OR, random readers and cases, DeLong"] * 2
    assert average.loc["g1", "auc"] > 0.7 and average.loc["g1", "p_vs_0.5"] < 0.05  # told apart
    assert average.loc["g1", "ci_low"] > average.loc["g2", "ci_low"]
    reads = analysis.generator_reads(calls, "g1")
    expected = mrmc.or_analysis(mrmc.fit_auc(reads, covariance="DeLong")).treatments[0]
    assert average.loc["g1", "se"] == pytest.approx(expected.se) and average.loc["g1", "df"] == pytest.approx(expected.df)
    assert comparison.loc[0, "analysis"] == "OR, random readers and cases, jackknife"
    both = pd.concat([analysis.generator_reads(calls, g) for g in ("g1", "g2")])
    (diff,) = mrmc.or_analysis(mrmc.fit_auc(both, treatments=["g1", "g2"])).differences
    assert comparison.loc[1, "estimate"] == pytest.approx(diff.estimate) and comparison.loc[1, "se"] == pytest.approx(diff.se)
    components = analysis.turing_components(fits).set_index("generator")
    assert components.loc["g1", "n_cases"] == 15 and components.loc["g1", "covariance"] == "DeLong"


def test_turing_auc_with_one_reader_and_with_too_few_reads():
    tidy = one_image_per_case(["solo"], {"g1": 2.0, "g2": 0.2})
    table, comparison, _ = analysis.turing_auc(analysis.turing_calls(tidy), ["real", "g1", "g2"], confidence=0.95)
    average = table[table["reader"] == "reader average"].iloc[0]
    assert average["analysis"] == "OR, fixed readers, random cases, DeLong" and np.isinf(average["df"])
    assert comparison.loc[0, "note"] == "chi-square(1)"
    partial = one_image_per_case(["r1", "r2"], {"g1": 2.0, "g2": 0.2})
    partial = partial[~((partial["reader"] == "r2") & (partial["source"] == "g2") & (partial["case"] != "held15"))]
    table, _, fits = analysis.turing_auc(analysis.turing_calls(partial), ["real", "g1", "g2"], confidence=0.95)
    g2 = table[(table["generator"] == "g2") & (table["reader"] == "reader average")].iloc[0]
    assert g2["note"] == "left out (fewer than 2 real or 2 generated reads): r2"
    assert g2["analysis"] == "OR, fixed readers, random cases, DeLong" and list(fits["g2"].fit.readers) == ["r1"]


# -- mixed model -------------------------------------------------------------------------------
def test_mixed_model_recovers_simulated_effects_and_variances():
    rng = np.random.default_rng(4)
    readers, cases = [f"r{k}" for k in range(8)], [f"c{k}" for k in range(40)]
    shift = {"real": 0.0, "a": -1.0, "b": -0.4}
    reader_effect = dict(zip(readers, rng.normal(0, 0.5, len(readers))))
    case_effect = dict(zip(cases, rng.normal(0, 0.7, len(cases))))
    image_effect = {(c, s): rng.normal(0, 0.4) for c in cases for s in shift}  # what every reader sees in one image
    reader_source = {(r, s): rng.normal(0, 0.2) for r in readers for s in shift}
    rows = [
        {"reader": r, "case": c, "source": s, "criterion": "q",
         "score": 3.5 + shift[s] + reader_effect[r] + case_effect[c] + image_effect[c, s] + reader_source[r, s]
         + rng.normal(0, 0.6)}
        for r in readers for c in cases for s in shift
    ]  # fmt: skip
    effects, variance = analysis.mixed_model(pd.DataFrame(rows), ["real", "a", "b"], ["q"], confidence=0.95)
    effects = effects.set_index("generator")
    for generator in ("a", "b"):
        row = effects.loc[generator]
        # theory: sqrt(2 * 0.4**2 / 40 + 2 * 0.2**2 / 8 + 2 * 0.6**2 / 320) = 0.14
        assert abs(row["estimate"] - shift[generator]) < 3 * row["se"] and 0.08 < row["se"] < 0.22
        assert row["ci_low"] < row["estimate"] < row["ci_high"] and row["p"] < 0.01
    v = variance.iloc[0]
    assert (v["n"], v["n_readers"], v["n_cases"], v["note"]) == (960, 8, 40, "")
    assert v["var_residual"] == pytest.approx(0.36, rel=0.15)
    assert v["var_reader"] == pytest.approx(np.var(list(reader_effect.values()), ddof=1), rel=0.3)
    assert v["var_case"] == pytest.approx(np.var(list(case_effect.values()), ddof=1), rel=0.3)
    assert v["var_image"] == pytest.approx(np.var(list(image_effect.values()), ddof=1), rel=0.3)
    assert 0 < v["var_reader_source"] < 0.15


def test_mixed_model_keeps_its_type_one_error_when_readers_share_images():
    """No source effect, but each image has its own look that all readers see: a model without the
    image term would call such a generator different far more often than 5 % (0.35 measured)."""
    rng = np.random.default_rng(1)
    rejected = 0
    for _ in range(20):
        case_effect, reader_effect = rng.normal(0, 0.7, 16), rng.normal(0, 0.4, 4)
        image = rng.normal(0, 0.7, (16, 2))
        rows = [
            {"reader": f"r{r}", "case": f"c{c}", "source": s, "criterion": "q",
             "score": 3 + case_effect[c] + reader_effect[r] + image[c, j] + rng.normal(0, 0.5)}
            for r in range(4) for c in range(16) for j, s in enumerate(("real", "g"))
        ]  # fmt: skip
        effects, _ = analysis.mixed_model(pd.DataFrame(rows), ["real", "g"], ["q"], confidence=0.95)
        rejected += effects["p"].iloc[0] < 0.05
    assert rejected <= 3  # binomial(20, 0.05): P(>3) < 2 %


def test_mixed_model_on_the_study_and_without_generated_ratings(rated):
    _, result, scores, _, _ = rated
    effects = result.tables["mixed_model"]
    assert effects[["criterion", "generator"]].values.tolist() == [[c, g] for c in CRITERIA for g in ("cheff", "xreal")]
    cheff = effects[effects["generator"] == "cheff"]
    assert (cheff["estimate"] < -1).all() and (cheff["ci_high"] < 0).all()  # the hand-made effect
    # balanced data: the fixed effect is the difference of the source means
    for row in effects.itertuples():
        diff = np.mean([v for (_, s, _, c), v in scores.items() if s == row.generator and c == row.criterion]) - np.mean(
            [v for (_, s, _, c), v in scores.items() if s == "real" and c == row.criterion]
        )
        assert row.estimate == pytest.approx(diff, abs=1e-6)
    only_real = pd.DataFrame([{"reader": "a", "case": c, "source": "real", "criterion": "q", "score": 3} for c in "xyz"])
    effects, variance = analysis.mixed_model(only_real, ["real", "g"], ["q"], confidence=0.95)
    assert effects.empty and variance.loc[0, "note"] == "needs real and generated ratings"


# -- safe output -------------------------------------------------------------------------------
HOSTILE_READER = '=HYPERLINK("x")|a_b'
HOSTILE_COMMENT = "=1+1 | looks | odd\nsecond line"


def test_tables_neutralise_formulas_and_escape_cells(tmp_path):
    created = sample_study(tmp_path, n_cases=4, readers=["ann", "bob"], calibration_items=0, duplicate_fraction=0)
    with Storage(created.study_dir / "study.sqlite") as s:
        criteria = [c.name for c in s.criteria("rating")]
        for reader in created.readers:
            account = s.authenticate(reader.token)
            items = [
                r[0]
                for r in s.conn.execute(
                    "SELECT item_id FROM assignments WHERE reader_id = ? ORDER BY position", (account.reader_id,)
                )
            ]
            for k, item in enumerate(items):
                block = s.conn.execute("SELECT block FROM items WHERE item_id = ?", (item,)).fetchone()[0]
                answer = (
                    {"turing_call": k % 2, "turing_confidence": 1 + k % 5} if block == "turing"
                    else {c: 1 + (k + len(reader.name)) % 5 for c in criteria}
                )  # fmt: skip
                s.record_view(account.reader_id, item, "t")
                assert (
                    s.submit(account.reader_id, item, answer, session="t", comment=HOSTILE_COMMENT if k == 0 else "").status
                    == "recorded"
                )
    con = sqlite3.connect(created.study_dir / "study.sqlite")
    with con:
        con.execute("UPDATE readers SET name = ? WHERE name = 'ann'", (HOSTILE_READER,))
    con.close()
    result = analyze_study(created.study_dir, bootstrap=20)
    out = result.out
    raw = (out / "responses.csv").read_bytes().decode()
    assert "\r\n" in raw and "\n=" not in raw.replace("\r\n", "\n") and "\n=" not in raw
    with open(out / "responses.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["reader"] for r in rows} == {"'" + HOSTILE_READER, "bob"}
    assert {r["comment"] for r in rows if r["comment"]} == {"'" + HOSTILE_COMMENT}  # one cell, newline kept inside
    for name in ("per_reader", "timing", "turing", "turing_auc", "inter_reader"):
        with open(out / f"{name}.csv", newline="") as f:
            cells = [cell for row in csv.reader(f) for cell in row]
        assert "'" + HOSTILE_READER in cells and HOSTILE_READER not in cells
        md = (out / f"{name}.md").read_text().splitlines()
        assert any(r'=HYPERLINK\("x"\)\|a\_b' in line for line in md)
        pipes = {len(re.findall(r"(?<!\\)\|", line)) for line in md}
        assert len(pipes) == 1  # every row has the header's columns
        tex = (out / f"{name}.tex").read_text()
        assert r'=HYPERLINK("x")|a\_b' in tex
    report = (out / "report.md").read_text()
    assert HOSTILE_READER not in report and r'=HYPERLINK\("x"\)\|a\_b' in report
    for figure in ("turing_auc.png", "turing_roc.png", "likert.png", "readers.png"):
        assert (out / figure).read_bytes()[:4] == b"\x89PNG"
    assert "![turing_roc](turing_roc.png)" in report


def test_figures_draw_names_literally(tmp_path):
    reads = pd.DataFrame({"reader": [r"$\frac$"] * 6, "truth": [1, 1, 1, 0, 0, 0], "rating": [9, 7, 3, 4, 2, 1]}).astype(
        {"truth": bool}
    )
    path = figures.roc_figure({"g$x": reads}, tmp_path / "roc.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
    fpr, tpr = figures.roc_points(reads["truth"].to_numpy(), reads["rating"].to_numpy(float))
    assert fpr.tolist() == [0, 0, 0, 1 / 3, 1 / 3, 2 / 3, 1] and tpr.tolist() == [0, 1 / 3, 2 / 3, 2 / 3, 1, 1, 1]
