"""Subgroup rows and fairness gaps in scoring, checked against independent computations: pandas group-bys of the
per-image values, FID and F1/AUC computed directly (scipy, scikit-learn) on each subgroup, gap intervals from the
subgroups' draws by hand."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy import linalg
from sklearn.metrics import f1_score, roc_auc_score

from xreal_bench.labels import CHEXPERT_LABELS
from xreal_bench.metrics import table
from xreal_bench.metrics.classification import Thresholds
from xreal_bench.metrics.context import ResultRow, ScoringSettings
from xreal_bench.metrics.engine import SourceOutputs
from xreal_bench.metrics.fairness import gap_rows
from xreal_bench.metrics.scoring import per_image_frame, score
from xreal_bench.metrics.stats import FeatureStats
from xreal_bench.metrics.suite import Suite
from xreal_bench.subgroups import Subgroup, age_band, case_subgroups, is_pathology_subset, ordered, parse_subset
from xreal_bench.types import Case, Demographics

N_CASES = 36
CLASSES = ("Cardiomegaly", "Edema", "Pneumonia")
THRESHOLD = 0.5
MS_SSIM, DICE, FID, KID = table.metric("ms_ssim"), table.metric("dice"), table.metric("fid"), table.metric("kid")
F1, AUC, DIVERSITY = table.metric("f1_macro"), table.metric("auc_macro"), table.metric("ms_ssim_diversity")
ENABLED = [m.name for m in (FID, KID, MS_SSIM, DIVERSITY, DICE, F1, AUC)]


def person(k: int) -> tuple[str, int | None, str] | None:
    """Case k's (sex, age, race) as constructed; None: no demographics at all."""
    if k % 12 == 11:
        return None
    sex = "" if k % 9 == 4 else ("female", "male")[k % 2]
    race = "HISPANIC" if k in (6, 20) else ("WHITE", "BLACK", "ASIAN")[k % 3]
    return sex, 22 + (k * 13) % 75, race


def expected_groups(k: int) -> dict[str, str]:
    """Case k's subgroup per attribute, written out independently of the module under test."""
    found = person(k)
    if found is None:
        return {"sex": "unknown", "age": "unknown", "race": "unknown"}
    sex, age, race = found
    assert age is not None
    band = "0-40" if age < 40 else "40-60" if age < 60 else "60-80" if age < 80 else "80+"
    return {"sex": sex or "unknown", "age": band, "race": race}


def make_cases(*, demographics: bool = True) -> dict[str, Case]:
    cases = {}
    rng = np.random.default_rng(5)
    for k in range(N_CASES):
        labels = [0] * len(CHEXPERT_LABELS)
        for name in CLASSES:
            labels[CHEXPERT_LABELS.index(name)] = int(rng.integers(-1, 2)) if k % 5 == 0 else int(rng.integers(0, 2))
        found = person(k) if demographics else None
        people = Demographics(found[1], found[0], found[2], "mimic-iv", ()) if found else None
        case_id = f"c{k:02d}"
        cases[case_id] = Case(case_id, Path(f"{case_id}.png"), str(k), str(k), "PA", tuple(labels), demographics=people)
    return cases


def make_outputs() -> tuple[SourceOutputs, SourceOutputs]:
    """Generated outputs (2 samples for every third case) and real outputs (one image per case)."""
    rng = np.random.default_rng(11)
    keys = [(f"c{k:02d}", s) for k in range(N_CASES) for s in range(2 if k % 3 == 0 else 1)]
    n = len(keys)
    case_of = np.array([int(c[1:]) for c, _ in keys])
    ms_ssim = rng.uniform(0.4, 0.9, n)
    ms_ssim[[3, 17]] = np.nan  # undefined: excluded and counted
    unknown_sex = np.array([expected_groups(k)["sex"] == "unknown" for k in case_of])
    ms_ssim[unknown_sex] = 0.01  # far below every known subgroup: would dominate a gap it entered
    dice = {s: rng.uniform(0.2, 0.95, n) for s in ("lungs", "heart", "aorta")}
    dice["dice"] = np.mean(list(dice.values()), axis=0)
    features = rng.normal(size=(n, 3)) + 0.3 * (case_of % 2)[:, None]
    diversity = {f"c{k:02d}": float(rng.uniform(0.3, 0.6)) for k in range(0, N_CASES, 3)}
    gen = SourceOutputs(
        keys=keys,
        features={"features": features},
        stats={"features": FeatureStats.from_features(features)},
        scores=np.round(rng.uniform(0, 1, (n, 3)), 2),
        ms_ssim=ms_ssim,
        dice=dice,
        diversity=diversity,
    )
    real_features = rng.normal(size=(N_CASES, 3))
    real = SourceOutputs(
        keys=[(f"c{k:02d}", 0) for k in range(N_CASES)],
        features={"features": real_features},
        stats={"features": FeatureStats.from_features(real_features)},
    )
    return gen, real


SUITE = Suite(
    "standard",
    features={"features": SimpleNamespace(name="toy-features")},  # type: ignore[dict-item]
    classifier=SimpleNamespace(name="toy-classifier", labels=CLASSES),  # type: ignore[arg-type]
)
SETTINGS = ScoringSettings(
    enabled=ENABLED,
    bootstrap=40,
    fid_bootstrap=20,
    confidence=0.9,
    seed=3,
    subsets=False,
    min_subset_n=3,
    kid_subsets=1,
    kid_subset_size=2,
    label_set=["classifier"],
    f1_zero_division=0.0,
)
THRESHOLDS = Thresholds(dict.fromkeys(CLASSES, THRESHOLD), "fixed", "test")


def scored(settings: ScoringSettings = SETTINGS, *, demographics: bool = True) -> list[ResultRow]:
    gen, real = make_outputs()
    return score(
        "g", gen, real=real, cases=make_cases(demographics=demographics), suite=SUITE, settings=settings, thresholds=THRESHOLDS
    )


@pytest.fixture(scope="module")
def rows() -> dict[tuple[str, str], ResultRow]:
    found = {(r.metric, r.subset): r for r in scored()}
    assert len(found) == len(scored())  # one row per (metric, subset)
    return found


def image_frame() -> pd.DataFrame:
    """per_image.csv's values with each image's expected subgroups."""
    gen, _ = make_outputs()
    frame = per_image_frame("g", gen, enabled=ENABLED, classifier_labels=CLASSES)
    groups = pd.DataFrame([expected_groups(int(c[1:])) for c in frame.case_id])
    return pd.concat([frame, groups], axis=1)


def test_the_subgroup_rule():
    assert [age_band(a) for a in (None, -1, 0, 39, 40, 79, 80, 104)] == [
        "unknown", "unknown", "0-40", "0-40", "40-60", "60-80", "80+", "80+"
    ]  # fmt: skip
    assert age_band(50, (18, 65)) == "18-65" and age_band(70, (18, 65)) == "65+" and age_band(10, (18, 65)) == "unknown"
    cases = make_cases()
    groups = case_subgroups(cases, age_edges=(0, 40, 60, 80))
    for k in range(N_CASES):
        assert {s.attribute: s.value for s in groups[f"c{k:02d}"]} == expected_groups(k)
    assert case_subgroups(make_cases(demographics=False)) == {}
    assert [s.subset for s in ordered([Subgroup("sex", "gap"), Subgroup("age", "80+"), Subgroup("age", "unknown"),
                                       Subgroup("age", "5-40"), Subgroup("age", "40-60"), Subgroup("sex", "male")])] == [
        "sex:male", "sex:gap", "age:5-40", "age:40-60", "age:80+", "age:unknown"
    ]  # fmt: skip
    assert parse_subset("race:WHITE") == Subgroup("race", "WHITE") and parse_subset("Edema") is None
    assert parse_subset("all") is None and parse_subset("colour:red") is None and parse_subset("sex:") is None
    assert is_pathology_subset("Pleural Effusion") and not is_pathology_subset("age:40-60")
    assert not is_pathology_subset("all") and not is_pathology_subset("sex:gap")


def known_groups(frame: pd.DataFrame, attribute: str, min_cases: int) -> list[str]:
    sizes = frame.groupby(attribute)["case_id"].nunique()
    return sorted(v for v, size in sizes.items() if size >= min_cases)


@pytest.mark.parametrize("entry", [MS_SSIM, DICE, table.metric("dice_heart")], ids=lambda m: m.name)
def test_pixel_subgroup_rows_equal_pandas_group_bys(rows, entry):
    frame = image_frame()
    for attribute in ("sex", "age", "race"):
        expected = frame.dropna(subset=[entry.name]).groupby(attribute).agg(value=(entry.name, "mean"), n=("case_id", "nunique"))
        for value in known_groups(frame, attribute, SETTINGS.min_subset_n):
            row = rows[(entry.name, f"{attribute}:{value}")]
            assert (row.value, row.n) == (pytest.approx(expected.loc[value, "value"], abs=1e-12), expected.loc[value, "n"])
            assert row.draws is not None and len(row.draws) == SETTINGS.bootstrap and row.ci_low <= row.value <= row.ci_high
    # images 3 and 17 (cases c02 and c12, both female) are undefined
    assert rows[(MS_SSIM.name, "sex:female")].note == "2 undefined excluded"
    assert rows[(MS_SSIM.name, "sex:male")].note == ""


def frechet(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance of two samples' Gaussians, with scipy's matrix square root."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(cov_a @ cov_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root))


def test_fid_per_subgroup_is_fid_on_that_subgroups_features(rows):
    gen, real = make_outputs()
    frame = image_frame()
    for attribute in ("sex", "age", "race"):
        for value in known_groups(frame, attribute, SETTINGS.min_subset_n):
            members = frame[attribute] == value
            cases = sorted(set(frame.case_id[members]))
            real_rows = [k for k, (c, _) in enumerate(real.keys) if c in cases]
            expected = frechet(gen.features["features"][members.to_numpy()], real.features["features"][real_rows])
            row = rows[(FID.name, f"{attribute}:{value}")]
            assert row.value == pytest.approx(expected, rel=1e-7, abs=1e-9)
            assert row.n == members.sum() and row.n_unit == "images" and len(row.draws) == SETTINGS.fid_bootstrap


def test_f1_and_auc_per_subgroup_equal_sklearn_on_the_subgroup(rows):
    gen, _ = make_outputs()
    frame = image_frame()
    cases = make_cases()
    labels = np.array([[cases[c].labels[CHEXPERT_LABELS.index(n)] for n in CLASSES] for c in frame.case_id], dtype=float)
    for attribute in ("sex", "age", "race"):
        for value in known_groups(frame, attribute, SETTINGS.min_subset_n):
            members = (frame[attribute] == value).to_numpy()
            aucs, f1s = [], []
            for j in range(len(CLASSES)):
                keep = members & (labels[:, j] != -1)
                y, s = labels[keep, j], gen.scores[keep, j]
                if len(set(y)) == 2:
                    aucs.append(roc_auc_score(y, s))
                if y.sum() > 0:
                    f1s.append(f1_score(y, s >= THRESHOLD, zero_division=0.0))
            subset = f"{attribute}:{value}"
            assert rows[(AUC.name, subset)].value == pytest.approx(np.mean(aucs), abs=1e-12)
            assert rows[(F1.name, subset)].value == pytest.approx(np.mean(f1s), abs=1e-12)
            assert rows[(F1.name, subset)].n == len(set(frame.case_id[members]))
    per_class = [key for key in rows if "/" in key[0]]
    assert per_class and {subset for _, subset in per_class} == {"all"}  # per-class rows stay overall


def test_diversity_per_subgroup_is_the_mean_over_its_cases(rows):
    gen, _ = make_outputs()
    female = [c for c in gen.diversity if expected_groups(int(c[1:]))["sex"] == "female"]
    row = rows[(DIVERSITY.name, "sex:female")]
    assert (row.value, row.n) == (pytest.approx(np.mean([gen.diversity[c] for c in female])), len(female))


def test_size_biased_metrics_get_subgroup_rows_but_no_gap(rows):
    """FID moves with n (its bias falls like 1/n): subgroups of different sizes are not compared by a gap."""
    assert FID.size_biased and not KID.size_biased and not MS_SSIM.size_biased
    subgroup_rows = [row for (metric, subset), row in rows.items() if metric == FID.name and ":" in subset]
    assert subgroup_rows and not any(subset.endswith(":gap") for (metric, subset) in rows if metric == FID.name)
    assert all("no fairness gap" in row.note for row in subgroup_rows)
    assert "no fairness gap" not in rows[(FID.name, "all")].note


@pytest.mark.parametrize("entry", [MS_SSIM, KID, AUC], ids=lambda m: m.name)
def test_gap_value_n_and_interval_by_hand(rows, entry):
    frame = image_frame()
    for attribute in ("sex", "age", "race"):
        known = [v for v in known_groups(frame, attribute, SETTINGS.min_subset_n) if v != "unknown"]
        members = [rows[(entry.name, f"{attribute}:{v}")] for v in known]
        gap = rows[(entry.name, f"{attribute}:gap")]
        values = [r.value for r in members]
        assert gap.value == pytest.approx(max(values) - min(values), abs=1e-12)
        draws = np.array([r.draws for r in members])
        by_hand = draws.max(axis=0) - draws.min(axis=0)
        np.testing.assert_array_equal(gap.draws, by_hand)
        finite = by_hand[np.isfinite(by_hand)]
        assert (gap.ci_low, gap.ci_high) == pytest.approx(tuple(np.percentile(finite, [5, 95])))
        top, bottom = known[int(np.argmax(values))], known[int(np.argmin(values))]
        assert gap.note.startswith(f"max {top} (") and f" - min {bottom} (" in gap.note
        cases = len(set(frame.case_id[frame[attribute].isin(known)]))
        if entry.n_unit == "cases":
            assert gap.n == sum(r.n for r in members)
        else:
            assert gap.n == cases
        assert gap.n_unit == "cases" and gap.evaluator == members[0].evaluator


def test_unknown_subgroups_are_rows_but_never_enter_a_gap(rows):
    unknown = rows[(MS_SSIM.name, "sex:unknown")]
    assert unknown.value == pytest.approx(0.01)
    female, male = rows[(MS_SSIM.name, "sex:female")], rows[(MS_SSIM.name, "sex:male")]
    assert rows[(MS_SSIM.name, "sex:gap")].value == pytest.approx(abs(female.value - male.value))
    assert rows[(MS_SSIM.name, "sex:gap")].value < 0.5  # 0.01 would have made it > 0.39 + the known spread


def test_subgroups_below_min_subset_n_are_skipped():
    assert not any(subset == "race:HISPANIC" for _, subset in {(r.metric, r.subset) for r in scored()})  # 2 cases < 3
    lower = {r.subset for r in scored(dataclasses.replace(SETTINGS, min_subset_n=2)) if r.metric == MS_SSIM.name}
    assert "race:HISPANIC" in lower


def test_subgroups_off_or_no_demographics_give_none_and_leave_overall_rows_unchanged(rows):
    off = scored(dataclasses.replace(SETTINGS, subgroups=False))
    bare = scored(demographics=False)
    for found in (off, bare):
        assert {r.subset for r in found} == {"all"}
        assert [(r.metric, r.value, r.ci_low, r.ci_high, r.n, r.note) for r in found] == [
            (r.metric, r.value, r.ci_low, r.ci_high, r.n, r.note) for r in rows.values() if r.subset == "all"
        ]
        for r in found:
            np.testing.assert_array_equal(r.draws, rows[(r.metric, "all")].draws)


def subgroup_row(subset: str, value: float, draws: np.ndarray | None, n: int = 4) -> ResultRow:
    return ResultRow("g", "x", value, n=n, subset=subset, evaluator="e", n_unit="cases", draws=draws)


def test_gap_rows_need_two_known_subgroups_and_equal_draws():
    a, b = np.array([0.5, 0.6, np.nan, 0.7]), np.array([0.2, 0.9, 0.4, 0.3])
    [gap] = gap_rows([subgroup_row("sex:female", 0.55, a), subgroup_row("sex:male", 0.4, b, n=3)], {}, confidence=0.5)
    np.testing.assert_array_equal(gap.draws, [0.3, 0.30000000000000004, np.nan, 0.39999999999999997])
    assert (gap.ci_low, gap.ci_high) == pytest.approx(tuple(np.percentile([0.3, 0.3, 0.4], [25, 75])))
    assert (gap.value, gap.n, gap.subset) == (pytest.approx(0.15), 7, "sex:gap")
    assert gap.note.endswith("1 undefined resamples left out")
    [no_draws] = gap_rows([subgroup_row("sex:female", 0.55, a), subgroup_row("sex:male", 0.4, None)], {}, confidence=0.5)
    assert np.isnan(no_draws.ci_low) and no_draws.draws is None and no_draws.note.endswith("no CI: no bootstrap draws for male")
    [unequal] = gap_rows([subgroup_row("sex:female", 0.55, a), subgroup_row("sex:male", 0.4, b[:3])], {}, confidence=0.5)
    assert np.isnan(unequal.ci_high) and unequal.note.endswith("no CI: the subgroups' draw counts differ (3, 4)")
    alone = [subgroup_row("sex:female", 0.55, a), subgroup_row("sex:unknown", 0.1, b), subgroup_row("Edema", 0.9, b)]
    assert gap_rows([*alone, subgroup_row("sex:male", float("nan"), b)], {}, confidence=0.5) == []
