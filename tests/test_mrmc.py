"""The Obuchowski-Rockette MRMC analysis against the published Van Dyke et al. (1993) results.

Data: ``tests/data/vandyke.csv`` (5 readers x 2 treatments x 114 cases, as MRMCaov ships it).
References, each number checked to the digits printed there:
- jackknife covariances, trapezoidal AUC: OR-DBM MRMC 2.51 output shipped with RJafroc
  (``inst/Iowa/VanDyke.txt``): analyses 1 (random readers and cases), 2 (fixed readers), 3 (fixed cases);
- DeLong covariances, empirical AUC: the MRMCaov paper (``docs/jss/MRMCaov.tex``, ``cov = DeLong``).
"""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from xreal_bench.reader_study import mrmc

VANDYKE = Path(__file__).parent / "data" / "vandyke.csv"


def printed(text: str):
    """``pytest.approx`` of a published number to the precision it is printed with (half a unit in the last digit)."""
    decimals = len(text.split(".")[1]) if "." in text else 0
    return pytest.approx(float(text), abs=0.5 * 10.0**-decimals)


@pytest.fixture(scope="module")
def vandyke() -> pd.DataFrame:
    return pd.read_csv(VANDYKE)


@pytest.fixture(scope="module")
def jackknife(vandyke):
    return mrmc.fit_auc(vandyke, covariance="jackknife")


@pytest.fixture(scope="module")
def delong(vandyke):
    return mrmc.fit_auc(vandyke, covariance="DeLong")


def test_data_set_is_the_published_one(vandyke):
    assert vandyke.shape == (1140, 5)
    cases = vandyke.drop_duplicates("case")
    assert len(cases) == 114 and cases["truth"].sum() == 45  # 69 normal, 45 abnormal


def test_reader_aucs_and_mean_squares(jackknife):
    published = [
        ["0.91964573", "0.85877617", "0.90386473", "0.97310789", "0.82979066"],
        ["0.94782609", "0.90531401", "0.92173913", "0.99935588", "0.92995169"],
    ]
    assert jackknife.treatments == ("1", "2") and jackknife.readers == ("1", "2", "3", "4", "5")
    for i, row in enumerate(published):
        for j, value in enumerate(row):
            assert jackknife.auc[i, j] == printed(value)
    ms_t, ms_r, ms_tr = mrmc.mean_squares(jackknife.auc)
    assert (ms_t, ms_r, ms_tr) == (printed("0.00479617"), printed("0.00383620"), printed("0.00055103"))
    assert jackknife.auc.mean(axis=1).tolist() == [printed("0.89703704"), printed("0.94083736")]


def test_jackknife_variance_components(jackknife):
    c = mrmc.components(jackknife)
    assert c.var_r == printed("0.00153500") and c.var_tr == printed("0.00020040")
    assert (c.cov1, c.cov2, c.cov3) == (printed("0.00034661"), printed("0.00034407"), printed("0.00023903"))
    assert c.var_error == printed("0.00080229")
    assert c.correlations == (printed("0.43203138"), printed("0.42886683"), printed("0.29793328"))


def test_jackknife_random_readers_and_cases(jackknife):
    result = mrmc.or_analysis(jackknife)
    test = result.test
    assert test.ms_t == printed("0.00479617") and test.denominator == printed("0.00107626")
    assert (test.statistic, test.df1, test.df2, test.p) == (printed("4.46"), 1, printed("15.26"), printed("0.0517"))
    (diff,) = result.differences
    assert diff.label == "1 - 2" and diff.estimate == printed("-0.04380") and diff.se == printed("0.02075")
    assert (diff.df, diff.statistic, diff.p) == (printed("15.26"), printed("-2.11"), printed("0.0517"))
    assert (diff.ci_low, diff.ci_high) == (printed("-0.08796"), printed("0.00036"))
    one, two = result.treatments
    assert (one.estimate, one.se, one.df) == (printed("0.89703704"), printed("0.03317360"), printed("12.74"))
    assert (one.ci_low, one.ci_high) == (printed("0.82522360"), printed("0.96885048"))
    assert (two.estimate, two.se, two.df) == (printed("0.94083736"), printed("0.02156637"), printed("12.71"))
    assert (two.ci_low, two.ci_high) == (printed("0.89413783"), printed("0.98753689"))
    # treatment-specific reader mean squares and Cov2 behind the single-treatment intervals
    assert [float(np.var(row, ddof=1)) for row in jackknife.auc] == [printed("0.00308263"), printed("0.00130460")]
    blocks = [mrmc.covariance_averages(jackknife.covariance[i * 5 : i * 5 + 5, i * 5 : i * 5 + 5], 1, 5) for i in (0, 1)]
    assert [b[2] for b in blocks] == [printed("0.00048396"), printed("0.00020419")]
    assert [b[0] for b in blocks] == [printed("0.00101410"), printed("0.00059047")]


def test_jackknife_fixed_readers(jackknife):
    result = mrmc.or_analysis(jackknife, random="cases")
    assert result.test.chi_square == printed("5.47595") and result.test.p == printed("0.0193")
    (diff,) = result.differences
    assert (diff.se, diff.statistic, diff.p) == (printed("0.01872"), printed("-2.34"), printed("0.0193"))
    assert (diff.ci_low, diff.ci_high) == (printed("-0.08049"), printed("-0.00711"))
    one, two = result.treatments
    assert (one.se, one.ci_low, one.ci_high) == (printed("0.02428971"), printed("0.84943008"), printed("0.94464399"))
    assert (two.se, two.ci_low, two.ci_high) == (printed("0.01677632"), printed("0.90795637"), printed("0.97371835"))
    published = [  # reader: difference, StdErr, z, p, CI
        ("-0.02818", "0.02551", "-1.10", "0.2693", "-0.07818", "0.02182"),
        ("-0.04654", "0.02630", "-1.77", "0.0768", "-0.09809", "0.00501"),
        ("-0.01787", "0.03121", "-0.57", "0.5668", "-0.07904", "0.04330"),
        ("-0.02625", "0.01729", "-1.52", "0.1290", "-0.06014", "0.00764"),
        ("-0.10016", "0.04406", "-2.27", "0.0230", "-0.18651", "-0.01381"),
    ]
    assert [d.label for d in result.reader_differences] == [f"{j}: 1 - 2" for j in range(1, 6)]
    for d, row in zip(result.reader_differences, published):
        assert (d.estimate, d.se, d.statistic, d.p, d.ci_low, d.ci_high) == tuple(printed(v) for v in row)


def test_jackknife_fixed_cases(jackknife):
    result = mrmc.or_analysis(jackknife, random="readers")
    assert (result.test.statistic, result.test.df2, result.test.p) == (printed("8.70"), 4, printed("0.0420"))
    (diff,) = result.differences
    assert (diff.se, diff.df, diff.statistic) == (printed("0.01485"), 4, printed("-2.95"))
    assert (diff.ci_low, diff.ci_high) == (printed("-0.08502"), printed("-0.00258"))
    one, two = result.treatments
    assert (one.se, one.df, one.ci_low, one.ci_high) == (printed("0.02482994"), 4, printed("0.82809808"), printed("0.96597599"))
    assert (two.se, two.df, two.ci_low, two.ci_high) == (printed("0.01615303"), 4, printed("0.89598936"), printed("0.98568536"))


def test_delong_random_readers_and_cases(delong):
    c = mrmc.components(delong)
    assert (c.var_r, c.var_tr, c.var_error) == (printed("0.0015364254"), printed("0.0002045840"), printed("0.0007921325"))
    assert (c.cov1, c.cov2, c.cov3) == (printed("0.0003420090"), printed("0.0003395265"), printed("0.0002358497"))
    assert c.correlations == (printed("0.4317573"), printed("0.4286234"), printed("0.2977402"))
    result = mrmc.or_analysis(delong)
    test = result.test
    assert (test.ms_t, test.denominator) == (printed("0.004796171"), printed("0.001069415"))
    assert (test.statistic, test.df2, test.p) == (printed("4.484854"), printed("15.06611"), printed("0.05123303"))
    (diff,) = result.differences
    assert (diff.estimate, diff.se, diff.df) == (printed("-0.04380032"), printed("0.0206825"), printed("15.06611"))
    assert (diff.ci_low, diff.ci_high) == (printed("-0.0878671960"), printed("0.0002665519"))
    assert (diff.statistic, diff.p) == (printed("-2.117747"), printed("0.05123303"))
    published = [
        ("0.8970370", "0.03307642", "12.59597", "0.8253461", "0.9687280"),
        ("0.9408374", "0.02150464", "12.56530", "0.8942155", "0.9874592"),
    ]
    for single, row in zip(result.treatments, published):
        assert (single.estimate, single.se, single.df, single.ci_low, single.ci_high) == tuple(printed(v) for v in row)
    blocks = [mrmc.covariance_averages(delong.covariance[i * 5 : i * 5 + 5, i * 5 : i * 5 + 5], 1, 5) for i in (0, 1)]
    assert [b[2] for b in blocks] == [printed("0.0004775239"), printed("0.0002015292")]


def test_one_treatment_interval_and_test_against_a_value(vandyke):
    """A one-treatment study: the same single-treatment interval, and a t test of the AUC against 0.5."""
    fit = mrmc.fit_auc(vandyke[vandyke["treatment"] == 1], covariance="DeLong")
    result = mrmc.or_analysis(fit, null_auc=0.5)
    assert result.test is None and result.differences == ()
    (single,) = result.treatments
    assert (single.se, single.df, single.ci_low) == (printed("0.03307642"), printed("12.59597"), printed("0.8253461"))
    statistic = (single.estimate - 0.5) / single.se
    assert single.statistic == pytest.approx(statistic) and single.p == pytest.approx(2 * stats.t.sf(statistic, single.df))
    near = mrmc.or_analysis(fit, null_auc=0.9)
    assert near.treatments[0].p == pytest.approx(2 * stats.t.sf(abs(single.estimate - 0.9) / single.se, single.df))
    assert near.treatments[0].p > 0.9  # 0.897 is not distinguishable from 0.9
    c = result.components
    assert c.var_r == pytest.approx(np.var(fit.auc[0], ddof=1) - c.var_error + c.cov2) and np.isnan(c.var_tr)


def test_empirical_auc_counts_ties_half():
    assert mrmc.empirical_auc([1, 2, 3], [2]) == 0.5
    assert mrmc.empirical_auc([3, 3], [1, 3]) == 0.75
    rng = np.random.default_rng(0)
    pos, neg = rng.integers(1, 6, 30), rng.integers(1, 6, 40)
    assert mrmc.empirical_auc(pos, neg) == pytest.approx(roc_auc_score([1] * 30 + [0] * 40, np.r_[pos, neg]))
    with pytest.raises(ValueError, match="at least one positive and one negative"):
        mrmc.empirical_auc([], [1])


def brute_force_jackknife(data: pd.DataFrame, treatments: list[str], readers: list[str]) -> np.ndarray:
    """Delete each case in turn and recompute every AUC from scratch; (n-1)/n x cross-products."""
    cases = sorted(data["case"].unique())

    def aucs(frame: pd.DataFrame) -> list[float]:
        out = []
        for t in treatments:
            for r in readers:
                rows = frame[(frame["treatment"] == t) & (frame["reader"] == r)]
                out.append(mrmc.empirical_auc(rows[rows["truth"] == 1]["rating"], rows[rows["truth"] == 0]["rating"]))
        return out

    values = np.array([aucs(data[data["case"] != c]) for c in cases])
    centred = values - values.mean(axis=0)
    return (len(cases) - 1) / len(cases) * centred.T @ centred


def test_jackknife_on_a_design_with_shared_and_private_cases():
    """Real images shared by two 'generators', generated images private to one, and a case holding
    both a real and a generated image: the closed form equals deleting each case and refitting."""
    rng = np.random.default_rng(5)
    rows = []
    for reader in ("r1", "r2", "r3"):
        for k in range(12):  # shared negatives (real images)
            for treatment in ("a", "b"):
                rows.append((reader, treatment, f"real{k}", 0, int(rng.integers(1, 11))))
        for treatment in ("a", "b"):
            for k in range(7):  # private positives
                rows.append((reader, treatment, f"{treatment}{k}", 1, int(rng.integers(3, 11))))
        rows.append((reader, "a", "mixed", 1, 9))  # one case with a positive and a negative image
        rows.append((reader, "a", "mixed", 0, 4))
    data = pd.DataFrame(rows, columns=list(mrmc.COLUMNS))
    fit = mrmc.fit_auc(data, covariance="jackknife", treatments=["a", "b"])
    assert fit.n_cases == 12 + 14 + 1
    np.testing.assert_allclose(fit.covariance, brute_force_jackknife(data, ["a", "b"], ["r1", "r2", "r3"]), atol=1e-15)
    result = mrmc.or_analysis(fit)
    assert result.test is not None and np.isfinite(result.test.p)
    with pytest.raises(ValueError, match="factorial design"):
        mrmc.fit_auc(data, covariance="DeLong")
    assert not mrmc.is_factorial(data)


def test_design_errors_are_explained(vandyke):
    with pytest.raises(ValueError, match=r"needs positive and negative cases"):
        mrmc.fit_auc(vandyke[vandyke["truth"] == 1])
    one_reader = mrmc.fit_auc(vandyke[vandyke["reader"] == 1])
    with pytest.raises(ValueError, match="random readers need at least two readers"):
        mrmc.or_analysis(one_reader)
    fixed = mrmc.or_analysis(one_reader, random="cases")
    (diff,) = fixed.differences
    assert diff.estimate == printed("-0.02818") and diff.se == printed("0.02551")  # = reader 1's published row
    with pytest.raises(ValueError, match="lacks columns"):
        mrmc.fit_auc(vandyke.drop(columns="truth"))
    few = vandyke[(vandyke["truth"] == 0) | (vandyke["case"] == vandyke[vandyke["truth"] == 1]["case"].min())]
    with pytest.raises(ValueError, match="two positive and two negative"):
        mrmc.fit_auc(few)


def test_perfect_separation_gives_numbers_not_errors():
    """Every reader separates perfectly: AUC 1, zero variances; the analysis reports, it does not divide by zero."""
    rows = [(r, t, f"c{k}", int(k < 4), 5 if k < 4 else 1) for r in ("a", "b") for t in ("x", "y") for k in range(8)]
    data = pd.DataFrame(rows, columns=list(mrmc.COLUMNS))
    for covariance in ("jackknife", "DeLong"):
        result = mrmc.or_analysis(mrmc.fit_auc(data, covariance=covariance))
        assert result.fit.auc.tolist() == [[1.0, 1.0], [1.0, 1.0]]
        assert result.components.var_error == 0 and np.isnan(result.components.correlations[0])
        assert result.treatments[0].estimate == 1.0 and result.treatments[0].se == 0
        assert np.isnan(result.test.p) and np.isnan(result.differences[0].p)
