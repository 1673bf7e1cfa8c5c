"""The demo evaluators with their SHIPPED weights: they really work on held-out phantoms
(seeds disjoint from training and from the demo data set), load only the right files, and
are wired into the registry, the weights manifest and the demo suite."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from sklearn.metrics import roc_auc_score

from xreal_bench.config import config_from_dict
from xreal_bench.demo.evaluators import (
    CLASSIFIER_ARTIFACT,
    SEGMENTER_ARTIFACT,
    DemoClassifier,
    DemoClassifierBlock2,
    DemoClassifierFeatures,
    DemoPixels,
    DemoSegmenter,
    DemoSegmenterEncoder,
    DemoSegmenterFeatures,
)
from xreal_bench.demo.phantoms import DRAWN_FINDINGS
from xreal_bench.demo.train_evaluators import SPLITS, render_sample
from xreal_bench.imaging import dequantize
from xreal_bench.metrics import table
from xreal_bench.metrics.dice import (
    dice_scores,
    label_map_to_masks,
    left_lung_on_image_right,
    structure_masks,
)
from xreal_bench.metrics.evaluators import (
    WeightsLoadError,
    build_classifier,
    build_feature_extractor,
    build_segmenter,
)
from xreal_bench.metrics.fid import kid
from xreal_bench.metrics.suite import SUITES, build_suite
from xreal_bench.weights import Artifact, MissingWeightsError, WeightsManager

#: Held-out split code: not used by the training script (train 1, validate 2, test 3).
HELDOUT = 4
N_HELDOUT = 64
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def heldout():
    """64 fresh phantoms, each in the dataset's texture (JPEG round trip) and the phantom generator's."""
    assert HELDOUT not in SPLITS.values()
    samples = [render_sample(HELDOUT, i) for i in range(N_HELDOUT)]
    dataset, alternate, anatomy, labels = (np.stack(a) for a in zip(*samples))

    def floats(images):
        return torch.from_numpy(dequantize(images))[:, None]

    return {"dataset": floats(dataset), "alternate": floats(alternate), "anatomy": anatomy, "labels": labels}


@pytest.fixture(scope="module")
def shipped():
    return WeightsManager()


@pytest.fixture(scope="module")
def segmenter(shipped):
    return build_segmenter("demo-segmenter", weights=shipped, device=CPU)


@pytest.fixture(scope="module")
def classifier(shipped):
    return build_classifier("demo-classifier", weights=shipped, device=CPU)


def batched(evaluator, images, batch=32):
    return torch.cat([evaluator(images[i : i + batch]) for i in range(0, len(images), batch)])


def hand_dice(pred: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Dice per image computed by hand (both masks are non-empty on every phantom)."""
    inter = (pred & ref).sum(axis=(1, 2))
    return 2.0 * inter / (pred.sum(axis=(1, 2)) + ref.sum(axis=(1, 2)))


# ------------------------------------------------------------------ they really work


@pytest.mark.parametrize("style", ["dataset", "alternate"])
def test_segmenter_dice_on_heldout_phantoms(heldout, segmenter, style):
    masks = batched(segmenter, heldout[style]).numpy()
    assert masks.shape == (N_HELDOUT, 4, 256, 256) and masks.dtype == bool
    ref = structure_masks(label_map_to_masks(heldout["anatomy"]))
    pred = structure_masks(masks)
    dice = {k: hand_dice(pred[k], ref[k]) for k in ("lungs", "heart", "aorta")}
    np.testing.assert_allclose(dice["lungs"], dice_scores(pred["lungs"], ref["lungs"]))  # the metric's own routine agrees
    assert dice["lungs"].mean() >= 0.9 and dice["heart"].mean() >= 0.9, {k: v.mean() for k, v in dice.items()}
    assert dice["aorta"].mean() >= 0.75
    assert left_lung_on_image_right(masks) == 1.0  # channel 0 = patient's left lung = image right


def test_classifier_auc_on_heldout_phantoms(heldout, classifier):
    probs = batched(classifier, heldout["dataset"]).numpy()
    assert probs.shape == (N_HELDOUT, len(DRAWN_FINDINGS)) and probs.dtype == np.float32
    assert ((probs >= 0) & (probs <= 1)).all()
    assert classifier.labels == DRAWN_FINDINGS
    labels = heldout["labels"]
    assert (labels.sum(axis=0) >= 5).all() and ((1 - labels).sum(axis=0) >= 5).all()  # every class has both
    aucs = {name: roc_auc_score(labels[:, j], probs[:, j]) for j, name in enumerate(classifier.labels)}
    assert np.mean(list(aucs.values())) >= 0.9, aucs
    assert min(aucs.values()) >= 0.75, aucs


def test_calibrated_thresholds_separate_heldout_classes(heldout, classifier):
    """Youden-J operating points (fitted on the script's validation phantoms) transfer."""
    t = classifier.calibrated_thresholds
    assert set(t) == set(classifier.labels) and all(0.0 < v < 1.0 for v in t.values())
    probs = batched(classifier, heldout["dataset"]).numpy()
    pred = probs >= np.array([t[n] for n in classifier.labels])
    y = heldout["labels"].astype(bool)
    balanced = 0.5 * ((pred & y).sum(0) / y.sum(0) + (~pred & ~y).sum(0) / (~y).sum(0))
    assert balanced.mean() >= 0.85, dict(zip(classifier.labels, balanced.round(3)))


def test_feature_spaces_rank_texture_between_shuffle_and_noise(heldout, shipped):
    """The FID feature spaces: another draw of the same texture is close, the phantom
    generator's texture clearly farther, smooth noise farthest. Measured with KID (unbiased
    MMD², all 32 vs 32 images): FID at n=32 in 64 dimensions is dominated by its small-n bias."""
    real, other, phantom = heldout["dataset"][:32], heldout["dataset"][32:], heldout["alternate"][32:]
    g = torch.Generator().manual_seed(0)
    noise = torch.nn.functional.interpolate((0.5 + 0.15 * torch.randn(32, 1, 8, 8, generator=g)), size=(256, 256), mode="bicubic")
    noise = noise.clamp(0, 1)
    for name in ("demo-classifier-features", "demo-segmenter-features"):
        extractor = build_feature_extractor(name, weights=shipped, device=CPU)
        assert extractor.dim == 64
        feats = {
            k: extractor(x).double().numpy()
            for k, x in [("real", real), ("other", other), ("phantom", phantom), ("noise", noise)]
        }
        assert all(f.shape == (32, 64) for f in feats.values())
        distance = {k: kid(feats["real"], feats[k], subsets=1, subset_size=32).mean for k in ("other", "phantom", "noise")}
        assert distance["other"] < 0.25 * distance["phantom"] < 0.25**2 * distance["noise"], (name, distance)


# ------------------------------------------------------------------ contract and files


def test_outputs_at_the_input_resolution_and_deterministic(heldout, segmenter, classifier):
    x = torch.nn.functional.interpolate(heldout["dataset"][:3], size=(200, 200), mode="bilinear", antialias=True).clamp(0, 1)
    masks = segmenter(x)
    assert masks.shape == (3, 4, 200, 200)
    assert torch.equal(masks, segmenter(x)) and torch.equal(classifier(x), classifier(x))


def test_weights_hash_is_the_shipped_files_sha256(shipped, segmenter, classifier):
    total = 0
    for name, evaluator in ((SEGMENTER_ARTIFACT, segmenter), (CLASSIFIER_ARTIFACT, classifier)):
        art, path = shipped.artifact(name), shipped.path(name)
        assert art.package == "xreal_bench.demo" and path.name == f"{name}.safetensors"
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert evaluator.weights_hash == digest == art.sha256
        assert path.stat().st_size == art.size
        assert shipped.verify(name).present
        total += art.size
    assert total <= 5 * 1024 * 1024


def test_preprocessing_is_described(segmenter, classifier, shipped):
    evaluators = [
        segmenter,
        classifier,
        DemoSegmenterFeatures(weights=shipped, device=CPU),
        DemoClassifierFeatures(weights=shipped, device=CPU),
        DemoClassifierBlock2(weights=shipped, device=CPU),
        DemoSegmenterEncoder(weights=shipped, device=CPU),
    ]
    for ev in evaluators:
        info = ev.describe()
        assert "128x128" in info["preprocessing"] and "2x-1" in info["preprocessing"]
        assert info["weights_sha256"] == ev.weights_hash
    assert "argmax" in segmenter.preprocessing and "sigmoid" in classifier.preprocessing


def test_demo_suite_builds_every_demo_evaluator(shipped):
    everything = [m.name for m in table.METRICS]
    cfg = config_from_dict({"metrics": {"evaluators": "demo", "enabled": everything}}, source="test")
    suite = build_suite(cfg.metrics, shipped, CPU)
    assert isinstance(suite.segmenter, DemoSegmenter) and isinstance(suite.classifier, DemoClassifier)
    assert isinstance(suite.features["features"], DemoClassifierFeatures)
    assert isinstance(suite.features["domain_features"], DemoSegmenterFeatures)
    assert isinstance(suite.features["dinov2"], DemoPixels)
    assert isinstance(suite.features["raddino"], DemoClassifierBlock2)
    assert isinstance(suite.features["clip"], DemoSegmenterEncoder)
    assert {role: suite.evaluator_name(role) for role in SUITES["demo"]} == SUITES["demo"]
    assert {role: suite.features[role].dim for role in table.FEATURE_ROLES} == {
        "features": 64,
        "domain_features": 64,
        "dinov2": 64,
        "raddino": 32,
        "clip": 160,
    }
    assert suite.label("fid") == "demo:demo-classifier-features"


# ------------------------------------------------------------------ wrong or missing files


def local_manager(tmp_path, files: dict[str, str]) -> WeightsManager:
    """Artifacts named like the demo ones, read from ``tmp_path`` (not the package)."""
    return WeightsManager(
        tmp_path,
        {
            name: Artifact(name=name, path=file, source="test", license="MIT (xreal-bench)", description=name)
            for name, file in files.items()
        },
    )


def test_missing_file_raises_the_managers_error(tmp_path):
    manager = local_manager(tmp_path, {SEGMENTER_ARTIFACT: "seg.safetensors"})
    with pytest.raises(MissingWeightsError, match=r"(?s)missing weights .demo-segmenter.*seg\.safetensors"):
        DemoSegmenter(weights=manager, device=CPU)


def test_file_of_the_other_network_is_refused(tmp_path, shipped):
    shutil.copy(shipped.path(CLASSIFIER_ARTIFACT), tmp_path / "seg.safetensors")
    manager = local_manager(tmp_path, {SEGMENTER_ARTIFACT: "seg.safetensors"})
    with pytest.raises(WeightsLoadError, match="DemoClassifierNet-v1.*expected 'DemoUNet-v1'"):
        DemoSegmenter(weights=manager, device=CPU)


def test_state_dict_loading_is_strict(tmp_path, shipped):
    state = load_file(str(shipped.path(SEGMENTER_ARTIFACT)))
    state.pop("head.bias")
    save_file(state, str(tmp_path / "seg.safetensors"), metadata={"architecture": "DemoUNet-v1"})
    manager = local_manager(tmp_path, {SEGMENTER_ARTIFACT: "seg.safetensors"})
    with pytest.raises(WeightsLoadError, match="(?s)does not fit DemoUNet-v1.*head.bias"):
        DemoSegmenterFeatures(weights=manager, device=CPU)


def test_garbage_file_is_refused(tmp_path):
    (tmp_path / "cls.safetensors").write_bytes(b"not a safetensors file at all" * 10)
    manager = local_manager(tmp_path, {CLASSIFIER_ARTIFACT: "cls.safetensors"})
    with pytest.raises(WeightsLoadError, match="not a readable safetensors file.*train_evaluators"):
        DemoClassifier(weights=manager, device=CPU)


def test_classifier_metadata_is_checked(tmp_path, shipped):
    state = load_file(str(shipped.path(CLASSIFIER_ARTIFACT)))
    bad = {"architecture": "DemoClassifierNet-v1", "labels": json.dumps(["Atelectasis", "Not A Label"]), "thresholds": "{}"}
    save_file(state, str(tmp_path / "cls.safetensors"), metadata=bad)
    manager = local_manager(tmp_path, {CLASSIFIER_ARTIFACT: "cls.safetensors"})
    with pytest.raises(WeightsLoadError, match="not CheXpert label names"):
        DemoClassifierFeatures(weights=manager, device=CPU)
