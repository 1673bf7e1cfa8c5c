"""PRDC, Vendi, CMMD and the Fréchet distance on new encoders, against the reference packages (``prdc``,
``vendi-score``), a direct implementation of the published CMMD formula, scipy's ``sqrtm`` and torch-fidelity,
scored through the metric table on constructed evaluator outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
from prdc import compute_prdc
from torch_fidelity.metric_fid import fid_statistics_to_metric
from vendi_score import vendi

from xreal_bench.metrics import table
from xreal_bench.metrics.bootstrap import bootstrap_ci, multiplicities, percentile_interval, resample_indices
from xreal_bench.metrics.cmmd import cmmd
from xreal_bench.metrics.context import ScoringSettings
from xreal_bench.metrics.engine import SourceOutputs
from xreal_bench.metrics.fid import fd_infinity, frechet_distance
from xreal_bench.metrics.prdc import Manifolds, prdc
from xreal_bench.metrics.scoring import score
from xreal_bench.metrics.stats import FeatureStats
from xreal_bench.metrics.suite import Suite
from xreal_bench.metrics.vendi import vendi_score
from xreal_bench.types import Case

PRDC_NAMES = ("precision", "recall", "density", "coverage")


def case(c: str) -> Case:
    return Case(c, Path(f"{c}.png"), "1", "2", "PA", (0,) * 14)


def outputs(case_ids: list[str], features: dict[str, np.ndarray], samples: int = 1) -> SourceOutputs:
    """Outputs of ``samples`` images per case, rows in (case, sample) order."""
    keys = [(c, k) for c in case_ids for k in range(samples)]
    return SourceOutputs(
        keys=keys, features=features, stats={role: FeatureStats.from_features(f) for role, f in features.items()}
    )


def settings(*enabled: str, bootstrap: int = 0, fid_bootstrap: int = 0, seed: int = 0, prdc_k: int = 5) -> ScoringSettings:
    return ScoringSettings(
        enabled=[table.metric(m).name for m in enabled],
        bootstrap=bootstrap,
        fid_bootstrap=fid_bootstrap,
        confidence=0.95,
        seed=seed,
        subsets=False,
        min_subset_n=2,
        kid_subsets=1,
        kid_subset_size=2,
        label_set=["classifier"],
        f1_zero_division=0.0,
        prdc_k=prdc_k,
    )


def scored(generator: str, gen: SourceOutputs, real: SourceOutputs, s: ScoringSettings) -> dict[str, object]:
    cases = {c: case(c) for c in {*gen.case_ids, *real.case_ids}}
    return {
        r.metric: r for r in score(generator, gen, real=real, cases=cases, suite=Suite("standard"), settings=s, thresholds=None)
    }


# ------------------------------------------------------------------------------------------ PRDC
@pytest.mark.parametrize("integer", [False, True])
def test_prdc_equals_the_reference_package_including_ties(integer, monkeypatch, capsys):
    monkeypatch.setattr("xreal_bench.metrics.prdc.DISTANCE_CHUNK", 50)  # several row blocks per matrix
    rng = np.random.default_rng(3)
    if integer:  # few distinct points: exact duplicates and equal distances everywhere
        real, fake = rng.integers(0, 3, size=(60, 3)).astype(np.float64), rng.integers(0, 3, size=(45, 3)).astype(np.float64)
    else:
        real, fake = rng.normal(size=(60, 6)), rng.normal(size=(45, 6)) + 0.3
    for k in (1, 3, 5):
        expected = compute_prdc(real, fake, k)
        ours = prdc(real, fake, k)
        for name in PRDC_NAMES:
            assert ours[name] == pytest.approx(float(expected[name]), abs=1e-9), (integer, k, name)
    capsys.readouterr()  # the package prints its sample counts


def test_prdc_orientation_precision_is_about_generated_samples():
    """A collapsed model (every sample near one real image) is faithful but not diverse: precision ~1, recall ~0."""
    rng = np.random.default_rng(0)
    real = rng.normal(size=(200, 4))
    collapsed = real[0] + 0.01 * rng.normal(size=(100, 4))
    out = prdc(real, collapsed, 5)
    assert out["precision"] == 1.0 and out["recall"] <= 0.05 and out["coverage"] <= 0.05
    wide = rng.normal(size=(200, 4)) * 4.0  # the opposite: covers everything, mostly off the manifold
    out = prdc(real, wide, 5)
    assert out["recall"] > 0.9 and out["precision"] < 0.5


def test_prdc_rows_use_covered_cases_share_the_knn_work_and_resample_cases(monkeypatch):
    rng = np.random.default_rng(1)
    covered = [f"c{i:02d}" for i in range(24)]
    real = outputs([*covered, "z_uncovered"], {"dinov2": rng.normal(size=(25, 5)).astype(np.float32)})
    gen = outputs(covered, {"dinov2": (rng.normal(size=(48, 5)) + 0.2).astype(np.float32)}, samples=2)
    calls = []
    original = Manifolds.of.__func__

    def counting(cls, r, g, k):
        calls.append(k)
        return original(cls, r, g, k)

    monkeypatch.setattr(Manifolds, "of", classmethod(counting))
    names = [f"prdc_{n}" for n in PRDC_NAMES]
    rows = scored("g", gen, real, settings(*names, bootstrap=200, seed=4, prdc_k=3))
    assert calls == [3]  # once for the four metrics
    expected = prdc(real.features["dinov2"][:24], gen.features["dinov2"], 3)  # the uncovered case's real image left out
    manifolds = Manifolds.of(real.features["dinov2"][:24], gen.features["dinov2"], 3).values()
    for name, key in zip(names, PRDC_NAMES):
        row = rows[table.metric(name).name]
        assert row.value == pytest.approx(expected[key], abs=1e-12) and row.n == 48
        side_cases = gen.case_ids if key in ("precision", "density") else covered
        hand = bootstrap_ci(manifolds[key], 200, seed=4, groups=side_cases)  # the same case positions
        np.testing.assert_allclose(row.draws, hand.draws, rtol=1e-12)
        assert (row.ci_low, row.ci_high) == pytest.approx((hand.low, hand.high))
        assert "radii held at their full-sample values" in row.note
    assert not set(scored("real", real, real, settings(*names, bootstrap=10)))  # no distribution against itself


# ------------------------------------------------------------------------------------------ Vendi
def test_vendi_equals_the_reference_package_and_weights_equal_duplicates():
    rng = np.random.default_rng(2)
    for n, d in ((30, 8), (6, 12)):  # both sides of the n-vs-d shortcut
        x = rng.normal(size=(n, d)) + 0.5
        assert vendi_score(x) == pytest.approx(vendi.score_X(x), rel=1e-8)
        assert vendi_score(x) == pytest.approx(vendi.score_dual(x), rel=1e-8)
    x = rng.normal(size=(10, 4))
    times = np.array([3, 1, 0, 2, 1, 1, 0, 4, 1, 1])
    assert vendi_score(x, times) == pytest.approx(vendi.score_X(np.repeat(x, times, axis=0)), rel=1e-8)
    assert vendi_score(np.repeat(x[:1], 5, axis=0)) == pytest.approx(1.0, abs=1e-9)  # all alike: one sample's worth


def test_vendi_rows_for_generators_and_the_real_images_with_a_bias_corrected_case_bootstrap():
    rng = np.random.default_rng(5)
    ids = [f"c{i:02d}" for i in range(20)]
    real = outputs(ids, {"dinov2": rng.normal(size=(20, 6)).astype(np.float32)})
    gen = outputs(ids, {"dinov2": rng.normal(size=(40, 6)).astype(np.float32)}, samples=2)
    s = settings("vendi", fid_bootstrap=100, seed=1)
    for name, source in (("g", gen), ("real", real)):
        row = scored(name, source, real, s)["vendi"]
        assert row.value == pytest.approx(vendi.score_X(source.features["dinov2"].astype(np.float64)), rel=1e-8)
        raw = np.array(
            [
                vendi.score_X(source.features["dinov2"][i].astype(np.float64))
                for i in resample_indices(len(source.keys), 100, 1, source.case_ids)
            ]
        )
        assert raw.mean() < row.value  # duplicates lower diversity: the uncorrected draws sit below
        np.testing.assert_allclose(row.draws, raw - raw.mean() + row.value, rtol=1e-7)
        assert (row.ci_low, row.ci_high) == pytest.approx(percentile_interval(row.draws, 0.95)[:2])
        assert row.ci_low < row.value < row.ci_high


# ------------------------------------------------------------------------------------------ CMMD
def direct_cmmd(x: np.ndarray, y: np.ndarray) -> float:
    """The published formula written out: biased MMD² (all pairs, i = j included), Gaussian RBF σ = 10, x 1000."""
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    y = y / np.linalg.norm(y, axis=1, keepdims=True)

    def mean_kernel(a, b):
        return float(np.mean([[np.exp(-np.sum((u - v) ** 2) / 200.0) for v in b] for u in a]))

    return 1000.0 * (mean_kernel(x, x) + mean_kernel(y, y) - 2.0 * mean_kernel(x, y))


def test_cmmd_equals_the_direct_formula(monkeypatch):
    monkeypatch.setattr("xreal_bench.metrics.fid.KERNEL_CHUNK", 13)
    rng = np.random.default_rng(6)
    real, gen = rng.normal(size=(17, 5)), rng.normal(size=(11, 5)) + 0.8
    assert cmmd(real, gen) == pytest.approx(direct_cmmd(real, gen), rel=1e-9)
    assert cmmd(real, gen) > 1.0 and abs(cmmd(real, real)) < 1e-9


def test_cmmd_rows_ci_is_the_case_bootstrap_of_the_published_statistic():
    rng = np.random.default_rng(7)
    ids = [f"c{i:02d}" for i in range(12)]
    real = outputs(ids, {"clip": rng.normal(size=(12, 4)).astype(np.float32)})
    gen = outputs(ids, {"clip": (rng.normal(size=(24, 4)) + 0.5).astype(np.float32)}, samples=2)
    row = scored("g", gen, real, settings("cmmd", fid_bootstrap=30, seed=2))["cmmd"]
    g64, r64 = gen.features["clip"].astype(np.float64), real.features["clip"].astype(np.float64)
    assert row.value == pytest.approx(direct_cmmd(r64, g64), rel=1e-9) and row.n == 24
    gen_case, raw = np.repeat(np.arange(12), 2), []
    for counts in multiplicities(12, 30, seed=2):  # each case's images and real image, as often as it is drawn
        g_rows = np.concatenate([np.tile(np.flatnonzero(gen_case == c), int(m)) for c, m in enumerate(counts)])
        r_rows = np.repeat(np.arange(12), counts.astype(int))
        raw.append(direct_cmmd(r64[r_rows], g64[g_rows]))
    raw = np.array(raw)
    np.testing.assert_allclose(row.draws, np.maximum(raw - raw.mean() + row.value, 0.0), rtol=1e-8)
    assert not scored("real", real, real, settings("cmmd"))
    plain = scored("g", gen, real, settings("cmmd"))["cmmd"]  # CI off: the same value without kernel sums
    assert plain.value == pytest.approx(row.value, rel=1e-12) and "CI off" in plain.note


# ------------------------------------------------------------------------------------------ Fréchet distance, FD∞
def test_a_new_encoder_role_is_scored_and_matches_scipy_and_torch_fidelity():
    rng = np.random.default_rng(8)
    ids = [f"c{i:03d}" for i in range(60)]
    real = outputs(ids, {"dinov2": rng.normal(size=(60, 8)).astype(np.float32)})
    gen = outputs(ids, {"dinov2": (rng.normal(size=(60, 8)) * 1.3 + 0.4).astype(np.float32)})
    rows = scored("g", gen, real, settings("fd_dinov2", "fd_raddino"))
    assert set(rows) == {"fd_dinov2"}  # no RAD-DINO features: no row
    x, y = real.features["dinov2"].astype(np.float64), gen.features["dinov2"].astype(np.float64)
    mu1, s1, mu2, s2 = x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False)
    textbook = float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2) - 2 * np.trace(scipy.linalg.sqrtm(s1 @ s2)).real)
    fidelity = fid_statistics_to_metric({"mu": mu1, "sigma": s1}, {"mu": mu2, "sigma": s2}, False)["frechet_inception_distance"]
    assert rows["fd_dinov2"].value == pytest.approx(textbook, rel=1e-6)
    assert rows["fd_dinov2"].value == pytest.approx(fidelity, rel=1e-6)
    assert "FD∞" not in rows["fd_dinov2"].note  # fewer than 200 images


def test_fd_infinity_recovers_the_intercept_of_an_exact_one_over_n_bias(monkeypatch):
    """With FD(N) = 2 + 30/N exactly, the fit returns 2 (and the sizes span N/5..N)."""
    monkeypatch.setattr("xreal_bench.metrics.fid.frechet_distance", lambda m1, s1, m2, s2, root1: 2.0 + 30.0 / s2.shape[0])
    monkeypatch.setattr("xreal_bench.metrics.fid.FeatureStats.cov", lambda stats: np.zeros((stats.n, stats.n)))
    out = fd_infinity(np.zeros((500, 3)), np.zeros(3), np.eye(3), seed=0)
    assert out.value == pytest.approx(2.0, abs=1e-9) and out.sizes.tolist() == [100, 200, 300, 400, 500]


def test_fd_infinity_removes_the_small_sample_bias_of_gaussians():
    """Generated and real from the same Gaussian (true FD 0; E FD(N) ≈ c/N): FD at N = 300 is biased upwards,
    FD∞ averages close to 0."""
    d, true_mean, true_cov = 3, np.zeros(3), np.eye(3)
    at_n, extrapolated = [], []
    for seed in range(30):
        gen = np.random.default_rng(100 + seed).normal(size=(300, d))
        stats = FeatureStats.from_features(gen)
        at_n.append(frechet_distance(true_mean, true_cov, stats.mean(), stats.cov()))
        extrapolated.append(fd_infinity(gen, true_mean, true_cov, seed=seed).value)
    assert np.mean(at_n) > 0.015  # ≈ (d + d(d+1)/4) / 300
    assert abs(np.mean(extrapolated)) < 0.25 * np.mean(at_n)


def test_the_fd_row_notes_fd_infinity_from_200_generated_images():
    rng = np.random.default_rng(9)
    ids = [f"c{i:03d}" for i in range(100)]
    real = outputs(ids, {"dinov2": rng.normal(size=(100, 3)).astype(np.float32)})
    gen = outputs(ids, {"dinov2": rng.normal(size=(200, 3)).astype(np.float32) + 1.0}, samples=2)
    row = scored("g", gen, real, settings("fd_dinov2"))["fd_dinov2"]
    stats = FeatureStats.from_features(real.features["dinov2"])
    expected = fd_infinity(gen.features["dinov2"], stats.mean(), stats.cov(), seed=0)
    assert f"FD∞ ≈ {expected.value:.4g} (Chong & Forsyth 2020" in row.note and "N = 40..200 generated images" in row.note
    assert abs(expected.value - row.value) < 0.2 * row.value
