"""Metric math against independent references: scipy, torch-fidelity, pytorch-msssim,
scikit-learn, brute force and hand computation."""

import numpy as np
import pytest
import scipy.linalg
import torch
from pytorch_msssim import ms_ssim
from sklearn.metrics import f1_score, roc_auc_score
from torch_fidelity.metric_fid import fid_statistics_to_metric
from torch_fidelity.metric_kid import kid_features_to_metric

from xreal_bench.metrics.bootstrap import bootstrap_ci, bootstrap_statistic, resample_indices
from xreal_bench.metrics.classification import (
    Thresholds,
    evaluate_classification,
    f1_threshold,
    fit_thresholds,
    youden_threshold,
)
from xreal_bench.metrics.dice import (
    dice_per_structure,
    label_map_to_masks,
    left_lung_on_image_right,
    summarize_dice,
)
from xreal_bench.metrics.fid import fid_from_stats, frechet_distance, kid
from xreal_bench.metrics.msssim import diversity_ms_ssim, paired_ms_ssim
from xreal_bench.metrics.stats import FeatureStats


def gaussian_features(rng, n, d, shift=0.0, mix_seed=None):
    mix = np.random.default_rng(mix_seed).normal(size=(d, d)) / np.sqrt(d) if mix_seed is not None else np.eye(d)
    return rng.normal(size=(n, d)) @ mix + shift


def sqrtm_fid(mu1, s1, mu2, s2):
    """The textbook formula with scipy's general matrix square root (independent reference)."""
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean).real)


# ---------------------------------------------------------------- Fréchet distance


@pytest.mark.parametrize("d,n", [(64, 400), (256, 2000)])
def test_frechet_matches_scipy_sqrtm_and_torch_fidelity(d, n):
    rng = np.random.default_rng(d)
    x, y = gaussian_features(rng, n, d, 0.2, mix_seed=1), gaussian_features(rng, n, d, 0.0, mix_seed=2)
    mu1, s1, mu2, s2 = x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False)
    ours = frechet_distance(mu1, s1, mu2, s2)
    fidelity = fid_statistics_to_metric({"mu": mu1, "sigma": s1}, {"mu": mu2, "sigma": s2}, False)["frechet_inception_distance"]
    assert ours == pytest.approx(sqrtm_fid(mu1, s1, mu2, s2), rel=1e-6)
    assert ours == pytest.approx(fidelity, rel=1e-6)
    assert ours > 1.0


def test_frechet_known_gaussians_closed_form():
    # For commuting covariances FID = |mu1-mu2|^2 + sum (sqrt(a_i) - sqrt(b_i))^2, in any rotated basis.
    rng = np.random.default_rng(0)
    d = 128
    a, b = rng.uniform(0.1, 4.0, d), rng.uniform(0.1, 4.0, d)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    value = frechet_distance(q @ mu1, q @ np.diag(a) @ q.T, q @ mu2, q @ np.diag(b) @ q.T)
    assert value == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(mu1, np.diag(a), mu1, np.diag(a)) == pytest.approx(0.0, abs=1e-9)


def test_frechet_singular_covariance_is_real_and_matches_sqrtm():
    rng = np.random.default_rng(1)
    x, y = gaussian_features(rng, 100, 256, 0.1, mix_seed=3), gaussian_features(rng, 100, 256, 0.0, mix_seed=4)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    assert np.linalg.matrix_rank(s1) < 256  # fewer samples than dimensions
    value = frechet_distance(x.mean(0), s1, y.mean(0), s2)
    assert np.isfinite(value)
    assert value == pytest.approx(sqrtm_fid(x.mean(0), s1, y.mean(0), s2), rel=1e-6)


def test_frechet_rejects_bad_input():
    mu, s = np.zeros(3), np.eye(3)
    with pytest.raises(ValueError, match="shape mismatch"):
        frechet_distance(mu, s, np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match="sigma2 contains NaN"):
        frechet_distance(mu, s, mu, np.full((3, 3), np.nan))


# ---------------------------------------------------------------- streaming statistics


def test_streaming_stats_equal_batch_statistics():
    rng = np.random.default_rng(2)
    x = gaussian_features(rng, 1003, 32, 5.0, mix_seed=5)  # large mean: cancellation check
    stats = FeatureStats.empty(32)
    for start in range(0, len(x), 7):
        stats.update(torch.from_numpy(x[start : start + 7]))
    assert stats.n == 1003
    np.testing.assert_allclose(stats.mean(), x.mean(0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(stats.cov(), np.cov(x, rowvar=False), rtol=1e-9, atol=1e-12)
    whole = FeatureStats.from_features(x)
    np.testing.assert_allclose(whole.outer, stats.outer, rtol=1e-13, atol=1e-13 * np.abs(whole.outer).max())


def test_float32_batches_accumulate_in_float64():
    x = np.random.default_rng(3).normal(size=(64, 8)).astype(np.float32)
    stats = FeatureStats.from_features(torch.from_numpy(x))
    assert stats.sum.dtype == np.float64 and stats.outer.dtype == np.float64
    np.testing.assert_allclose(stats.outer, x.astype(np.float64).T @ x.astype(np.float64), rtol=1e-14)


def test_shard_merge_equals_single_pass_and_fid():
    rng = np.random.default_rng(4)
    real, fake = gaussian_features(rng, 600, 48, 0.0, mix_seed=6), gaussian_features(rng, 600, 48, 0.3, mix_seed=7)
    shards = [FeatureStats.from_features(part) for part in np.array_split(fake, 3)]
    merged = shards[0] + shards[1] + shards[2]
    single = FeatureStats.from_features(fake)
    assert merged.n == single.n == 600
    np.testing.assert_allclose(merged.sum, single.sum, rtol=1e-13, atol=1e-13 * np.abs(single.sum).max())
    np.testing.assert_allclose(merged.outer, single.outer, rtol=1e-13, atol=1e-13 * np.abs(single.outer).max())
    real_stats = FeatureStats.from_features(real)
    reference = frechet_distance(real.mean(0), np.cov(real, rowvar=False), fake.mean(0), np.cov(fake, rowvar=False))
    assert fid_from_stats(real_stats, merged) == pytest.approx(reference, rel=1e-9)


def test_fid_of_union_is_not_mean_of_shard_fids():
    rng = np.random.default_rng(5)
    real, fake = gaussian_features(rng, 1200, 64, 0.0, mix_seed=8), gaussian_features(rng, 1200, 64, 0.1, mix_seed=8)
    union = fid_from_stats(FeatureStats.from_features(real), FeatureStats.from_features(fake))
    per_shard = [
        fid_from_stats(FeatureStats.from_features(r), FeatureStats.from_features(f))
        for r, f in zip(np.array_split(real, 4), np.array_split(fake, 4))
    ]
    # FID is biased upwards by small samples: averaging shard FIDs overstates the distance.
    assert np.mean(per_shard) > 1.5 * union


def test_stats_save_load_roundtrip_and_errors(tmp_path):
    stats = FeatureStats.from_features(np.random.default_rng(6).normal(size=(10, 5)))
    stats.save(tmp_path / "s.npz")
    back = FeatureStats.load(tmp_path / "s.npz")
    assert back.n == 10
    np.testing.assert_array_equal(back.sum, stats.sum)
    np.testing.assert_array_equal(back.outer, stats.outer)
    np.savez(tmp_path / "other.npz", n=1)
    with pytest.raises(ValueError, match="not a feature-statistics file"):
        FeatureStats.load(tmp_path / "other.npz")
    with pytest.raises(ValueError, match="cannot read"):
        FeatureStats.load(tmp_path / "missing.npz")
    (tmp_path / "garbage.npz").write_bytes(b"\x00not numpy")
    with pytest.raises(ValueError, match="garbage.npz: cannot read"):
        FeatureStats.load(tmp_path / "garbage.npz")
    with pytest.raises(ValueError, match="dimension 4 does not match"):
        stats.update(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="NaN"):
        stats.update(np.full((1, 5), np.nan))
    with pytest.raises(ValueError, match="at least 2 samples"):
        FeatureStats.from_features(np.zeros((1, 5))).cov()


# ---------------------------------------------------------------- KID


def test_kid_matches_torch_fidelity():
    rng = np.random.default_rng(7)
    a, b = gaussian_features(rng, 150, 32, 0.0), gaussian_features(rng, 120, 32, 0.4)
    ours = kid(a, b, subsets=20, subset_size=50, seed=3)
    ref = kid_features_to_metric(
        torch.from_numpy(a),
        torch.from_numpy(b),
        kid_subsets=20,
        kid_subset_size=50,
        rng_seed=3,
        verbose=False,
        kid_kernel="poly",
        kid_kernel_poly_degree=3,
        kid_kernel_poly_gamma=None,
        kid_kernel_poly_coef0=1,
    )
    assert ours.mean == pytest.approx(ref["kernel_inception_distance_mean"], rel=1e-10)
    assert ours.std == pytest.approx(ref["kernel_inception_distance_std"], rel=1e-10)
    assert ours.mean > 0


def test_kid_clips_subset_size_to_smaller_side():
    rng = np.random.default_rng(8)
    a, b = gaussian_features(rng, 40, 16), gaussian_features(rng, 30, 16, 0.5)
    clipped = kid(a, b, subsets=5, subset_size=1000, seed=0)
    ref = kid_features_to_metric(
        torch.from_numpy(a),
        torch.from_numpy(b),
        kid_subsets=5,
        kid_subset_size=30,
        rng_seed=0,
        verbose=False,
        kid_kernel="poly",
        kid_kernel_poly_degree=3,
        kid_kernel_poly_gamma=None,
        kid_kernel_poly_coef0=1,
    )
    assert clipped.mean == pytest.approx(ref["kernel_inception_distance_mean"], rel=1e-10)
    with pytest.raises(ValueError, match="at least 2 samples"):
        kid(a[:1], b)


# ---------------------------------------------------------------- MS-SSIM


def smooth_images(seed, n, size=176):
    g = torch.Generator().manual_seed(seed)
    base = torch.nn.functional.avg_pool2d(torch.rand(n, 1, size, size, generator=g), 9, stride=1, padding=4)
    return (base - base.min()) / (base.max() - base.min())


def test_paired_ms_ssim_matches_pytorch_msssim():
    real = smooth_images(0, 3).double()
    noisy = (real + 0.15 * torch.randn(real.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)).clamp(0, 1)
    ours = paired_ms_ssim(real, noisy)
    assert ours.shape == (3,)
    for i in range(3):  # one pair at a time, float64: independent of batching
        direct = ms_ssim(real[i : i + 1], noisy[i : i + 1], data_range=1.0, size_average=True)
        assert float(ours[i]) == pytest.approx(float(direct), abs=1e-10)
    ours32 = paired_ms_ssim(real.float(), noisy.float())
    assert torch.allclose(ours32.double(), ours, atol=2e-5)
    assert torch.allclose(paired_ms_ssim(real, real), torch.ones(3, dtype=torch.float64), atol=1e-9)
    # The pitfall: the default data_range=255 on [0, 1] images reports near-perfect similarity.
    default_range = float(ms_ssim(real, noisy, size_average=True))
    assert default_range > 0.99 and float(ours.mean()) < 0.9


def test_ms_ssim_input_errors():
    small = torch.rand(2, 1, 160, 160)
    with pytest.raises(ValueError, match=r"min\(H, W\) > 160; real is 160x160"):
        paired_ms_ssim(small, small)
    ok = smooth_images(2, 2)
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        paired_ms_ssim(ok * 255, ok)
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        paired_ms_ssim(ok, torch.full_like(ok, float("nan")))
    with pytest.raises(ValueError, match="same shape"):
        paired_ms_ssim(ok, ok[:1])
    with pytest.raises(ValueError, match=r"\[B, 1, H, W\]"):
        paired_ms_ssim(ok[:, 0], ok[:, 0])


def test_diversity_ms_ssim_is_mean_over_pairs():
    samples = smooth_images(3, 3)
    pairs = [(0, 1), (0, 2), (1, 2)]
    direct = np.mean([float(ms_ssim(samples[[i]], samples[[j]], data_range=1.0)) for i, j in pairs])
    assert diversity_ms_ssim(samples) == pytest.approx(direct, abs=1e-6)
    near_copies = (samples[:1] + 0.01 * torch.randn(3, 1, 176, 176, generator=torch.Generator().manual_seed(4))).clamp(0, 1)
    assert diversity_ms_ssim(near_copies) > diversity_ms_ssim(samples)  # lower = more diverse
    with pytest.raises(ValueError, match="at least 2 samples"):
        diversity_ms_ssim(samples[:1])


# ---------------------------------------------------------------- Dice


def test_dice_by_hand():
    pred = np.zeros((2, 4, 4, 4), dtype=bool)
    ref = np.zeros((2, 4, 4, 4), dtype=bool)
    # image 0: lungs pred 4 px (left lung), ref 6 px (3 left + 3 right), overlap 3 -> 2*3/10
    pred[0, 0, 0, :4] = True
    ref[0, 0, 0, :3] = True
    ref[0, 1, 1, :3] = True
    # heart: both empty -> NaN (excluded); aorta: only ref -> 0
    ref[0, 3, 3, 3] = True
    # image 1: pred left lung = ref right lung (lungs are scored as their union) -> 1; heart 2 vs 2 px disjoint -> 0
    pred[1, 0, 2, :2] = True
    ref[1, 1, 2, :2] = True
    pred[1, 2, 0, 0:2] = True
    ref[1, 2, 3, 0:2] = True
    scores = dice_per_structure(pred, ref)
    np.testing.assert_allclose(scores["lungs"], [0.6, 1.0])
    assert np.isnan(scores["heart"][0]) and scores["heart"][1] == 0.0
    assert scores["aorta"][0] == 0.0 and np.isnan(scores["aorta"][1])
    np.testing.assert_allclose(scores["dice"], [(0.6 + 0.0) / 2, (1.0 + 0.0) / 2])
    summary = summarize_dice(scores["heart"])
    assert (summary.mean, summary.n, summary.n_excluded) == (0.0, 1, 1)


def test_dice_all_empty_is_nan_and_label_maps():
    empty = np.zeros((1, 4, 3, 3), dtype=bool)
    scores = dice_per_structure(empty, empty)
    assert all(np.isnan(scores[k][0]) for k in ("lungs", "heart", "aorta", "dice"))
    label_map = np.array([[0, 1, 2], [3, 4, 0], [1, 1, 0]], dtype=np.uint8)
    masks = label_map_to_masks(label_map)
    assert masks.shape == (1, 4, 3, 3) and masks.sum() == 6
    assert masks[0, 0].sum() == 3 and masks[0, 3, 1, 1]
    assert dice_per_structure(masks, torch.from_numpy(masks))["dice"][0] == 1.0
    with pytest.raises(ValueError, match=r"\[B, 4, H, W\]"):
        dice_per_structure(masks[:, :3], masks[:, :3])
    with pytest.raises(ValueError, match="same shape"):
        dice_per_structure(masks, np.zeros((1, 4, 4, 4), bool))


def test_left_lung_side_check():
    masks = np.zeros((2, 4, 8, 8), dtype=bool)
    masks[:, 0, 2:6, 5:7] = True  # left lung on the image's right
    masks[:, 1, 2:6, 1:3] = True
    assert left_lung_on_image_right(masks) == 1.0
    assert left_lung_on_image_right(masks[:, [1, 0, 2, 3]]) == 0.0
    assert np.isnan(left_lung_on_image_right(np.zeros((1, 4, 8, 8), bool)))


# ---------------------------------------------------------------- classification


NAMES = ("Atelectasis", "Cardiomegaly", "Edema", "Fracture")


def classification_data(seed=9, n=120):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=(n, 4)).astype(float)
    scores = np.clip(0.3 * labels + rng.uniform(0, 0.7, size=(n, 4)), 0, 1)
    labels[:7, 0] = -1  # ignored entries
    labels[7:10, 1] = np.nan
    scores[:7, 0] = np.nan  # never reaches scikit-learn: ignored entries
    labels[:, 3] = 0  # a class with one label value: no AUC, no F1
    return scores, labels


def test_auc_f1_match_sklearn_with_skips_and_ignored():
    scores, labels = classification_data()
    thresholds = Thresholds(dict.fromkeys(NAMES, 0.5), "fixed", "test")
    result = evaluate_classification(scores, labels, NAMES, thresholds)
    assert set(result.auc) == set(result.f1) == {"Atelectasis", "Cardiomegaly", "Edema"}
    assert "only negative labels" in result.skipped_auc["Fracture"]
    assert "no positive labels" in result.skipped_f1["Fracture"]
    for c, name in enumerate(NAMES[:3]):
        keep = ~np.isnan(labels[:, c]) & (labels[:, c] != -1)
        y, s = labels[keep, c], scores[keep, c]
        assert result.auc[name] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
        assert result.f1[name] == pytest.approx(f1_score(y, s >= 0.5, zero_division=0.0), abs=1e-12)
        assert result.n_valid[name] == keep.sum()
    assert result.n_valid["Atelectasis"] == 113 and result.n_valid["Cardiomegaly"] == 117
    assert result.auc_macro == pytest.approx(np.mean(list(result.auc.values())))
    assert result.f1_macro == pytest.approx(np.mean(list(result.f1.values())))


def test_classification_edge_cases_and_errors():
    scores, labels = classification_data()
    labels[:, 2] = -1
    labels[0, 2] = 1  # one labelled entry
    thresholds = Thresholds({"Atelectasis": 0.5}, "calibrated", "test", {"Cardiomegaly": "none"})
    result = evaluate_classification(scores, labels, NAMES, thresholds)
    assert "fewer than 2" in result.skipped_auc["Edema"]
    assert result.skipped_f1["Cardiomegaly"] == "no threshold (none)"
    assert list(result.f1) == ["Atelectasis"]
    bad = labels.copy()
    bad[20, 0] = 2
    with pytest.raises(ValueError, match="labels must be 1, 0, -1"):
        evaluate_classification(scores, bad, NAMES, thresholds)
    nan_scores = scores.copy()
    nan_scores[50, 1] = np.nan
    with pytest.raises(ValueError, match="scores contain NaN"):
        evaluate_classification(nan_scores, labels, NAMES, thresholds)
    with pytest.raises(ValueError, match=r"\[N, C\]"):
        evaluate_classification(scores[:, :3], labels[:, :3], NAMES, thresholds)
    no_class = evaluate_classification(scores, np.full_like(labels, -1), NAMES, thresholds)
    assert np.isnan(no_class.auc_macro) and np.isnan(no_class.f1_macro)


def brute_force_best(y, s, objective):
    best_t, best_v = None, -np.inf
    for t in np.unique(s):
        p = s >= t
        v = objective(y, p)
        if v > best_v or (v == best_v and t > best_t):
            best_t, best_v = t, v
    return best_t


def youden_j(y, p):
    return p[y == 1].mean() - p[y == 0].mean()


def f1_value(y, p):
    return f1_score(y, p, zero_division=0.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_threshold_fitting_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 80)
    s = np.round(np.clip(0.25 * y + rng.uniform(0, 0.75, 80), 0, 1), 2)  # rounding creates tied scores
    assert youden_threshold(y, s) == pytest.approx(brute_force_best(y, s, youden_j))
    assert f1_threshold(y, s) == pytest.approx(brute_force_best(y, s, f1_value))


def test_fit_thresholds_policies():
    scores, labels = classification_data(seed=10)
    fitted = fit_thresholds(scores, labels, NAMES, "youden", source="real images, validate split")
    assert fitted.policy == "youden" and fitted.source == "real images, validate split"
    assert set(fitted.values) == {"Atelectasis", "Cardiomegaly", "Edema"} and "Fracture" in fitted.unfitted
    keep = labels[:, 1] == labels[:, 1]
    assert fitted.values["Cardiomegaly"] == youden_threshold(labels[keep, 1].astype(int), scores[keep, 1])
    f1_fit = fit_thresholds(scores, labels, NAMES, "f1", source="real validate")
    assert f1_fit.values["Edema"] == f1_threshold(labels[:, 2].astype(int), scores[:, 2])
    calibrated = fit_thresholds(None, None, NAMES, "calibrated", calibrated={"Edema": 0.2, "Atelectasis": 0.1})
    assert calibrated.values == {"Atelectasis": 0.1, "Edema": 0.2} and set(calibrated.unfitted) == {"Cardiomegaly", "Fracture"}
    assert fit_thresholds(None, None, NAMES, "fixed", fixed=0.3).values == dict.fromkeys(NAMES, 0.3)
    with pytest.raises(ValueError, match="unknown threshold policy"):
        fit_thresholds(scores, labels, NAMES, "test-set-optimal", source="x")
    with pytest.raises(ValueError, match="source"):
        fit_thresholds(scores, labels, NAMES, "f1")
    with pytest.raises(ValueError, match="has none"):
        fit_thresholds(None, None, NAMES, "calibrated")


# ---------------------------------------------------------------- bootstrap


def test_bootstrap_ci_contains_estimate_narrows_and_is_seeded():
    rng = np.random.default_rng(11)
    small, large = rng.normal(0.7, 0.1, 50), rng.normal(0.7, 0.1, 800)
    ci_small, ci_large = bootstrap_ci(small, 2000, seed=1), bootstrap_ci(large, 2000, seed=1)
    assert ci_small.estimate == pytest.approx(small.mean())
    assert ci_small.low < ci_small.estimate < ci_small.high
    assert ci_large.low < ci_large.estimate < ci_large.high
    assert (ci_large.high - ci_large.low) < 0.5 * (ci_small.high - ci_small.low)  # ~ 1/sqrt(16)
    assert (ci_small.high - ci_small.low) == pytest.approx(2 * 1.96 * small.std() / np.sqrt(50), rel=0.15)
    assert bootstrap_ci(small, 500, seed=3) == bootstrap_ci(small, 500, seed=3)
    assert bootstrap_ci(small, 500, seed=3) != bootstrap_ci(small, 500, seed=4)
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_ci(np.array([0.1, np.nan]))


def test_vectorised_and_general_bootstrap_agree():
    values = np.random.default_rng(12).uniform(size=60)
    groups = np.repeat(np.arange(20), 3)
    for g in (None, groups):
        fast = bootstrap_ci(values, 300, 0.9, seed=5, groups=g)
        general = bootstrap_statistic(60, lambda idx: values[idx].mean(), 300, 0.9, seed=5, groups=g)
        assert fast.low == pytest.approx(general.low, abs=1e-12) and fast.high == pytest.approx(general.high, abs=1e-12)


def test_grouped_resampling_keeps_groups_together():
    groups = np.array(["c3", "c1", "c3", "c2", "c1", "c3"])
    for idx in resample_indices(6, 50, seed=0, groups=groups):
        drawn = groups[idx]
        for case in np.unique(drawn):
            members = np.flatnonzero(groups == case)
            counts = np.bincount(idx, minlength=6)[members]
            assert (counts == counts[0]).all() and counts[0] > 0  # every sample of a drawn case, equally often
    # identical samples within a case: the grouped interval equals the per-case interval
    per_case = np.array([0.2, 0.5, 0.9, 0.4])
    values = np.repeat(per_case, 5)
    grouped = bootstrap_ci(values, 400, seed=2, groups=np.repeat(np.arange(4), 5))
    assert (grouped.low, grouped.high) == pytest.approx(
        (bootstrap_ci(per_case, 400, seed=2).low, bootstrap_ci(per_case, 400, seed=2).high)
    )
    with pytest.raises(ValueError, match="one entry per sample"):
        bootstrap_ci(values, groups=np.arange(3))


def test_bootstrap_statistic_counts_failed_resamples():
    labels = np.array([0] * 3 + [1] * 3)
    scores = np.linspace(0, 1, 6)

    def auc(idx):
        y = labels[idx]
        return roc_auc_score(y, scores[idx]) if np.unique(y).size == 2 else float("nan")

    ci = bootstrap_statistic(6, auc, n_resamples=200, seed=0)
    assert ci.estimate == 1.0 and 0 < ci.n_failed < 200
    assert ci.low == ci.high == 1.0


def test_bias_corrected_bootstrap_covers_a_resampling_biased_statistic():
    """FID grows when resampling duplicates samples; the shifted interval still covers the estimate."""
    from xreal_bench.metrics.bootstrap import bootstrap_statistic
    from xreal_bench.metrics.fid import frechet_distance

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(60, 8)), rng.normal(size=(60, 8)) + 0.05

    def fid(idx):
        return frechet_distance(a[idx].mean(0), np.cov(a[idx], rowvar=False), b[idx].mean(0), np.cov(b[idx], rowvar=False))

    plain = bootstrap_statistic(60, fid, 200, seed=1)
    corrected = bootstrap_statistic(60, fid, 200, seed=1, bias_corrected=True)
    assert plain.low > plain.estimate  # the plain percentile interval misses the estimate entirely
    assert corrected.low <= corrected.estimate <= corrected.high
    assert corrected.high - corrected.low == pytest.approx(plain.high - plain.low)


def test_vectorised_classification_bootstrap_matches_sklearn_per_resample():
    """Each resample's AUC/F1 from multiplicity weights equals scikit-learn on the resampled rows."""
    from xreal_bench.metrics.bootstrap import percentile_interval, resample_indices
    from xreal_bench.metrics.classification import (
        bootstrap_classification,
        evaluate_classification,
        fit_thresholds,
        weighted_auc,
        weighted_f1,
    )

    rng = np.random.default_rng(3)
    n, names = 40, ["A", "B", "C"]
    labels = rng.integers(0, 2, size=(n, 3)).astype(float)
    labels[:5, 1] = -1  # ignored entries
    labels[:, 2] = 0  # one class present: always skipped
    scores = np.round(np.clip(labels * 0.3 + rng.random((n, 3)) * 0.7, 0, 1), 2)  # ties included
    thresholds = fit_thresholds(None, None, names, "fixed", fixed=0.5)
    groups = np.repeat(np.arange(20), 2)
    draws = list(resample_indices(n, 30, 7, groups))
    auc_a, f1_b = [], []
    for idx in draws:
        r = evaluate_classification(scores[idx], labels[idx], names, thresholds)
        auc_a.append(r.auc.get("A", np.nan))
        f1_b.append(r.f1.get("B", np.nan))
    weights = np.stack([np.bincount(i, minlength=n) for i in draws]).astype(float)
    np.testing.assert_allclose(weighted_auc(labels[:, 0].astype(int), scores[:, 0], weights), auc_a, rtol=1e-12)
    keep = labels[:, 1] != -1
    ours = weighted_f1(labels[keep, 1].astype(int), scores[keep, 1] >= 0.5, weights[:, keep], 0.0)
    np.testing.assert_allclose(ours, f1_b, rtol=1e-12)
    ci = bootstrap_classification(scores, labels, names, thresholds, 30, 0.95, 7, groups)
    assert ci.auc["A"] == pytest.approx(percentile_interval(np.array(auc_a), 0.95)[:2])
    assert np.isnan(ci.auc["C"][0])  # never defined
    full = evaluate_classification(scores, labels, names, thresholds)
    assert ci.auc_macro[0] <= full.auc_macro <= ci.auc_macro[1]
