"""`study plan`: OR power against RJafroc's documented Van Dyke numbers, the one-AUC test against
simulation, and the command line (stated components and a pilot study folder)."""

import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from xreal_bench.cli import main
from xreal_bench.demo.study import sample_study
from xreal_bench.reader_study import mrmc, planning
from xreal_bench.reader_study.analysis import load_responses, turing_auc, turing_calls, turing_components
from xreal_bench.reader_study.storage import Storage

VANDYKE = Path(__file__).parent / "data" / "vandyke.csv"
#: RJafroc's SsPowerGivenJK example 4A: the Van Dyke OR components (jackknife, Wilcoxon AUC), 114 pilot cases.
RJAFROC_4A = ["--pilot-cases", "114", "--var-tr", "0.00020040252", "--cov1", "0.00034661371", "--cov2", "0.00034407483",
              "--cov3", "0.00023902837", "--var-error", "0.00080228827"]  # fmt: skip


@pytest.fixture(scope="module")
def vandyke_pilot() -> planning.PilotComponents:
    c = mrmc.or_analysis(mrmc.fit_auc(pd.read_csv(VANDYKE))).components
    return planning.PilotComponents(114, c.var_error, c.cov2, c.cov1, c.cov3, c.var_tr, c.var_r)


def test_power_equals_rjafroc_for_van_dyke(vandyke_pilot):
    """RJafroc's tests (test-SsSampleSizeRoc.R): J=10, K=165 -> 0.80541995; J=6, K=111 -> 0.5526116;
    SsSampleSizeKGivenJ(J=6) -> 251 cases, and SsPowerTable's row for 6 readers: 251 cases, power 0.801."""
    (ten,) = planning.power(vandyke_pilot, test="difference", readers=10, cases=165, effect=-0.043800322)
    assert ten.power == pytest.approx(0.80541995, abs=5e-9)
    observed = -0.04380032206119166
    (six,) = planning.power(vandyke_pilot, test="difference", readers=6, cases=111, effect=observed)
    assert six.power == pytest.approx(0.5526116, abs=5e-8)
    needed = planning.cases_needed(vandyke_pilot, test="difference", readers=6, effect=observed, target=0.8)
    assert needed is not None and needed.cases == 251 and round(needed.power, 3) == 0.801
    (below,) = planning.power(vandyke_pilot, test="difference", readers=6, cases=250, effect=observed)
    assert below.power < 0.8
    assert planning.cases_needed(vandyke_pilot, test="difference", readers=2, effect=0.001, target=0.99) is None


def simulated_study(rng: np.random.Generator, readers: int, cases: int, shift: float) -> mrmc.ORResult:
    """Half the cases positive. Rating = case latent N(0, 1) (+ ``shift`` if positive) + the reader's
    N(0, 0.25^2) effect on positives + N(0, 1) noise, so reader j's AUC is Phi((shift + s_j) / 2)."""
    truth = np.arange(cases) < cases // 2
    latent = rng.normal(0, 1, cases) + shift * truth
    rating = latent[None, :] + rng.normal(0, 0.25, readers)[:, None] * truth + rng.normal(0, 1, (readers, cases))
    reads = pd.DataFrame(
        {"reader": np.repeat(np.arange(readers), cases), "treatment": "g", "case": np.tile(np.arange(cases), readers),
         "truth": np.tile(truth, readers), "rating": rating.ravel()}
    )  # fmt: skip
    return mrmc.or_analysis(mrmc.fit_auc(reads, covariance="DeLong"))


def test_one_auc_power_matches_simulation():
    """Components averaged over pilots of 4 readers x 40 cases predict the rejection rate of 6 x 60 studies."""
    rng = np.random.default_rng(3)
    pilots = [simulated_study(rng, 4, 40, 0.6) for _ in range(100)]

    def mean(name: str) -> float:
        return float(np.mean([getattr(p.components, name) for p in pilots]))

    effect = stats.norm.cdf(0.6 / np.sqrt(4 + 0.25**2)) - 0.5  # the population's mean AUC - 0.5
    pilot = planning.PilotComponents(40, mean("var_error"), mean("cov2"), var_r=mean("var_r"))
    (predicted,) = planning.power(pilot, test="auc", readers=6, cases=60, effect=effect)
    rejected = np.mean([simulated_study(rng, 6, 60, 0.6).treatments[0].p < 0.05 for _ in range(300)])
    assert 0.4 < predicted.power < 0.75  # an informative operating point
    assert abs(rejected - predicted.power) < 0.085  # 3 binomial standard errors
    type_one = np.mean([simulated_study(rng, 6, 60, 0.0).treatments[0].p < 0.05 for _ in range(300)])
    assert 0.01 < type_one < 0.1


def test_cli_with_stated_components_prints_the_table(capsys):
    args = ["study", "plan", *RJAFROC_4A, "--effect", "0.043800322", "--readers", "6", "10", "--cases", "111", "165"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "stated components from 114 pilot cases" in out and "AUC difference = 0.0438" in out
    lines = [line for line in out.splitlines() if line.startswith("|")]
    assert [cell.strip() for cell in lines[0].split("|")[1:-1]] == ["readers", "111 cases", "165 cases", "cases for power 0.8"]
    assert [cell.strip() for cell in lines[2].split("|")[1:-1]] == ["6", "0.553", "0.682", "251"]
    assert [cell.strip() for cell in lines[3].split("|")[1:-1]] == ["10", "0.666", "0.805", "163"]


def test_cli_correlations_equal_covariances(capsys):
    assert main(["study", "plan", *RJAFROC_4A, "--effect", "0.05", "--readers", "5", "--cases", "100"]) == 0
    by_cov = capsys.readouterr().out
    var = 0.00080228827
    corr = ["--corr1", str(0.00034661371 / var), "--corr2", str(0.00034407483 / var), "--corr3", str(0.00023902837 / var)]
    stated = ["--pilot-cases", "114", "--var-tr", "0.00020040252", "--var-error", str(var), *corr]
    assert main(["study", "plan", *stated, "--effect", "0.05", "--readers", "5", "--cases", "100"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == by_cov.splitlines()[-1]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--pilot-cases", "50", "--var-tr", "0.001", "--var-error", "0.001", "--cov2", "0.0003"], "also needs --cov1, --cov3"),
        (["--pilot-cases", "50", "--var-error", "0.001", "--cov2", "0.0003"], "also needs --var-r"),
        (["--effect", "0.1"], "with --pilot-cases and --var-error"),
        ([*RJAFROC_4A, "--cov1", "0.1", "--corr1", "0.3"], "give --cov1 or --corr1, not both"),
        ([*RJAFROC_4A[2:], "--pilot-cases", "1"], "--pilot-cases must be >= 2"),
        ([*RJAFROC_4A, "--effect", "0.05", "--readers", "1"], "--readers and --cases must be >= 2"),
        ([*RJAFROC_4A, "--effect", "0.05", "--power", "1.2"], "--power must be in (0, 1)"),
        (RJAFROC_4A, "give --effect"),
        ([*RJAFROC_4A, "--effect", "0.05", "--generator", "xreal"], "--generator and --compare choose from a pilot STUDY_DIR"),
    ],
)
def test_cli_explains_bad_input(capsys, extra, message):
    assert main(["study", "plan", *extra]) == 2
    assert message in capsys.readouterr().err


@pytest.fixture(scope="module")
def pilot_study(tmp_path_factory):
    """A study of 3 readers whose real-or-generated answers follow the truth more often than not."""
    created = sample_study(
        tmp_path_factory.mktemp("plan"), n_run_cases=12, n_cases=4, turing_cases=16, readers=["ann", "bob", "cat"]
    )
    con = sqlite3.connect(created.study_dir / "study.sqlite")
    key = dict(con.execute("SELECT i.item_id, m.source FROM items i JOIN images m USING (image_id) WHERE i.block = 'turing'"))
    con.close()
    rng = np.random.default_rng(2)
    with Storage(created.study_dir / "study.sqlite") as storage:
        criteria = [c.name for c in storage.criteria("rating")]
        for reader in created.readers:
            account = storage.authenticate(reader.token)
            for (item,) in storage.conn.execute(
                "SELECT item_id FROM assignments WHERE reader_id = ? ORDER BY position", (account.reader_id,)
            ).fetchall():
                if item in key:
                    generated = key[item] != "real"
                    said = generated if rng.random() < 0.75 else not generated
                    answer = {"turing_call": int(said), "turing_confidence": int(rng.integers(1, 6))}
                else:
                    answer = dict.fromkeys(criteria, 3)
                storage.record_view(account.reader_id, item, "t")
                assert storage.submit(account.reader_id, item, answer, session="t").status == "recorded"
    return created.study_dir


def test_cli_plans_from_a_pilot_study(pilot_study, capsys):
    tidy, sources, _ = load_responses(pilot_study)
    table, _, fits = turing_auc(turing_calls(tidy), sources, confidence=0.95)
    components = turing_components(fits).set_index("generator")
    auc = table.set_index(["generator", "reader"])["auc"]
    assert main(["study", "plan", str(pilot_study), "--generator", "xreal", "--readers", "4", "--cases", "40"]) == 0
    out = capsys.readouterr().out
    n_cases = components.loc["xreal", "n_cases"]
    assert f"AUC of xreal vs 0.5 (3 readers, {n_cases} cases, DeLong)" in out
    assert (
        f"Var(R)={components.loc['xreal', 'var_r']:.6g} " in out and f"Var(e)={components.loc['xreal', 'var_error']:.6g} " in out
    )
    assert f"AUC - 0.5 = {auc['xreal', 'reader average'] - 0.5:.4g} " in out
    assert main(["study", "plan", str(pilot_study), "--compare", "xreal", "cheff", "--effect", "0.1"]) == 0
    out = capsys.readouterr().out
    assert "AUC xreal - cheff (3 readers" in out and "AUC difference = 0.1 " in out
    assert main(["study", "plan", str(pilot_study)]) == 2
    assert "name --generator or --compare A B (the study's generators: cheff, xreal)" in capsys.readouterr().err
    assert main(["study", "plan", str(pilot_study), "--generator", "roentgen"]) == 2
    assert "no real-or-generated answers for 'roentgen'" in capsys.readouterr().err
    assert main(["study", "plan", str(pilot_study), "--var-r", "0.1"]) == 2
    assert "not both (--var-r)" in capsys.readouterr().err


def test_help_mentions_plan(capsys):
    with pytest.raises(SystemExit):
        main(["study", "--help"])
    out = capsys.readouterr().out
    assert "study plan studies/demo --generator xreal" in out and "plan the readers x cases of the next study" in out
    with pytest.raises(SystemExit):
        main(["study", "plan", "--help"])
    assert "Hillis, Obuchowski & Berbaum 2011" in capsys.readouterr().out


def test_power_with_no_reader_variance_uses_the_chi_square_limit():
    """Var(R) <= 0 and Cov2 = Var(e): the denominator's mean square is 0, ddf infinite; the F test
    becomes a chi-square test of the same non-centrality."""
    from scipy import stats

    from xreal_bench.reader_study.planning import PilotComponents, power

    pilot = PilotComponents(100, 0.001, 0.001, var_r=0.0)
    (row,) = power(pilot, test="auc", readers=5, cases=[100], effect=0.05)
    expected = stats.ncx2.sf(stats.chi2.ppf(0.95, 1), 1, row.ncp)
    assert np.isinf(row.ddf) and row.power == pytest.approx(expected) and 0 < row.power < 1


def test_stated_covariances_larger_than_the_error_variance_are_refused(capsys):
    args = ["study", "plan", "--var-r", "0.001", "--var-error", "0.001", "--cov1", "0.002", "--cov2", "0.0005",
            "--cov3", "0.0002", "--var-tr", "0.0002", "--pilot-cases", "100", "--effect", "0.05"]  # fmt: skip
    assert main(args) == 2
    assert "a covariance must be smaller than --var-error 0.001 (it is a correlation times it): --cov1 0.002" in (
        capsys.readouterr().err
    )
