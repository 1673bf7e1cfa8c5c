"""Evaluator loaders with the REAL architectures and RANDOM weights, saved in the exact file
names and formats the loaders expect, under a temporary weights folder (never the user's)."""

import hashlib
import subprocess
import sys

import numpy as np
import pytest
import torch

from xreal_bench.labels import CHEXPERT_LABELS
from xreal_bench.metrics.evaluators import (
    FeatureExtractor,
    Segmenter,
    WeightsLoadError,
    available_evaluators,
    build_classifier,
    build_evaluator,
    build_feature_extractor,
    build_segmenter,
    register_evaluator,
)
from xreal_bench.metrics.evaluators.testing import unpublished_release_artifacts, write_random_release_files
from xreal_bench.metrics.evaluators.xrv import import_xrv, pspnet_outputs
from xreal_bench.registry import EVALUATORS, RegistryError
from xreal_bench.weights import MissingWeightsError, WeightsManager, WeightsMismatchError

xrv = import_xrv()


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """One weights folder for the module: random-weight files of the real architectures."""
    manager = WeightsManager(tmp_path_factory.mktemp("weights"))
    write_random_release_files(manager)
    return manager


@pytest.fixture(scope="module")
def images():
    """Two 256x256 noise images with a black and a white 48x48 block (survive any resize)."""
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 1, 256, 256, generator=g)
    x[..., 16:64, 16:64], x[..., 192:240, 192:240] = 0.0, 1.0
    return x


def capture_input(module):
    seen = {}
    handle = module.register_forward_pre_hook(lambda _m, args: seen.setdefault("x", args[0].detach().clone()))
    return seen, handle


# ---------------------------------------------------------------- registry and missing weights


@pytest.mark.parametrize(
    "kind,name,artifact",
    [
        ("segmenter", "xrv-pspnet", "xrv-pspnet"),
        ("classifier", "xrv-densenet-chex", "xrv-densenet-chex"),
        ("feature", "inception", "inception-fid"),
        ("feature", "rad-dino", "rad-dino"),
    ],
)
def test_missing_weights_name_the_path_and_the_fetch_command(tmp_path, kind, name, artifact):
    manager = WeightsManager(tmp_path)
    with pytest.raises(MissingWeightsError) as info:
        build_evaluator(kind, name, weights=manager, device="cpu")
    message = str(info.value)
    assert str(manager.path(artifact)) in message
    assert f"xreal-bench weights fetch {artifact}" in message


def test_unknown_names_and_custom_registration(tmp_path):
    with pytest.raises(RegistryError, match="unknown segmenter evaluator 'nope'; available: .*xrv-pspnet"):
        build_segmenter("nope", weights=WeightsManager(tmp_path))
    with pytest.raises(ValueError, match="unknown evaluator kind"):
        build_evaluator("detector", "x", weights=WeightsManager(tmp_path))

    class Mean(FeatureExtractor):
        preprocessing = "none"

        def __init__(self, *, weights, device):
            self.name, self.dim, self.weights_hash, self.device = "mean", 1, "none", device

        def forward(self, x):
            return x.mean(dim=(1, 2, 3))[:, None]

    try:
        register_evaluator("feature", "mean", Mean)
        with pytest.raises(RegistryError, match="already defined"):
            register_evaluator("feature", "mean", Mean)
        assert "mean" in available_evaluators("feature")
        extractor = build_feature_extractor("mean", weights=WeightsManager(tmp_path))
        out = extractor(torch.full((3, 1, 4, 4), 0.25))
        assert out.dtype == torch.float32 and torch.equal(out, torch.full((3, 1), 0.25))
        with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
            extractor(torch.full((1, 1, 4, 4), 2.0))
        with pytest.raises(ValueError, match=r"\[B, 1, H, W\]"):
            extractor(torch.zeros(1, 3, 4, 4))
        with pytest.raises(ValueError, match="NaN"):
            extractor(torch.full((1, 1, 4, 4), float("nan")))
        register_evaluator("segmenter", "wrong-kind", Mean)
        with pytest.raises(TypeError, match="not a Segmenter"):
            build_segmenter("wrong-kind", weights=WeightsManager(tmp_path))
    finally:
        EVALUATORS["feature"].unregister("mean")
        EVALUATORS["segmenter"].unregister("wrong-kind")


def test_importing_torchxrayvision_keeps_warning_filters():
    # A bare `import torchxrayvision` adds ("ignore", Warning) to the process-wide filters.
    code = (
        "import warnings\n"
        "from xreal_bench.metrics.evaluators.xrv import import_xrv, pspnet_outputs\n"
        "before = list(warnings.filters)\n"
        "xrv = import_xrv()\n"
        "assert warnings.filters == before, [f for f in warnings.filters if f not in before]\n"
        "assert hasattr(xrv.models, 'DenseNet')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# ---------------------------------------------------------------- torchxrayvision DenseNet


@pytest.fixture(scope="module")
def classifier(weights):
    return build_classifier("xrv-densenet-mimic_ch", weights=weights, device="cpu")


def test_densenet_classifier_labels_thresholds_and_preprocessing(classifier, images):
    expected = (
        "Atelectasis",
        "Cardiomegaly",
        "Consolidation",
        "Edema",
        "Enlarged Cardiomediastinum",
        "Fracture",
        "Lung Lesion",
        "Lung Opacity",
        "Pleural Effusion",
        "Pneumonia",
        "Pneumothorax",
    )
    assert classifier.labels == expected and all(n in CHEXPERT_LABELS for n in expected)
    spec = xrv.models.model_urls["densenet121-res224-mimic_ch"]
    op = dict(zip(spec["labels"], spec["op_threshs"]))
    assert classifier.calibrated_thresholds["Pleural Effusion"] == pytest.approx(op["Effusion"])
    assert classifier.calibrated_thresholds["Cardiomegaly"] == pytest.approx(op["Cardiomegaly"])
    assert set(classifier.calibrated_thresholds) == set(expected)
    assert len(classifier.weights_hash) == 64

    seen, handle = capture_input(classifier.model.features)
    try:
        probs = classifier(images)
    finally:
        handle.remove()
    x = seen["x"]
    assert x.shape == (2, 1, 224, 224)
    assert float(x.min()) == pytest.approx(-1024, abs=0.5) and float(x.max()) == pytest.approx(1024, abs=0.5)
    assert probs.shape == (2, 11) and probs.dtype == torch.float32
    assert float(probs.min()) >= 0.0 and float(probs.max()) <= 1.0
    # Same numbers as the raw model: sigmoid outputs (op_norm off), CheXpert-mapped columns.
    with torch.no_grad():
        raw = torch.sigmoid(classifier.model.classifier(classifier.model.features2(x)))
    names = [{"Effusion": "Pleural Effusion"}.get(t, t) for t in spec["labels"]]
    torch.testing.assert_close(probs, raw[:, [names.index(n) for n in expected]])


def test_densenet_crops_non_square_input_centrally(classifier):
    img = torch.ones(1, 1, 200, 300)
    img[..., 50:250] = 0.0  # the centred 200x200 square is black, the side margins white
    seen, handle = capture_input(classifier.model.features)
    try:
        classifier(img)
    finally:
        handle.remove()
    assert float(seen["x"].max()) == pytest.approx(-1024.0)


def test_densenet_features(weights, images, classifier):
    extractor = build_feature_extractor("xrv-densenet-features", weights=weights)
    assert extractor.dim == 1024 and extractor.weights_hash == classifier.weights_hash
    feats = extractor(images)
    assert feats.shape == (2, 1024) and feats.dtype == torch.float32 and float(feats.min()) >= 0.0
    with torch.no_grad():
        reference = classifier.model.features2(
            torch.nn.functional.interpolate(images * 2048 - 1024, size=(224, 224), mode="bilinear", antialias=True)
        )
    torch.testing.assert_close(feats, reference, rtol=1e-4, atol=1e-4)


def test_wrong_densenet_file_is_rejected(tmp_path):
    manager = WeightsManager(tmp_path)
    path = manager.path("xrv-densenet-chex")
    path.parent.mkdir(parents=True)
    torch.save(xrv.models.DenseNet(num_classes=14, in_channels=1), path)  # wrong classifier head
    with pytest.raises(WeightsLoadError, match=f"{path.name} is not a torchxrayvision densenet121-res224-chex model"):
        build_classifier("xrv-densenet-chex", weights=manager)


# ---------------------------------------------------------------- PSPNet


def test_pspnet_segmenter_preprocessing_channels_and_resize(weights, images):
    seg = build_segmenter("xrv-pspnet", weights=weights, device="cpu")
    assert isinstance(seg, Segmenter) and seg.channels == ("left_lung", "right_lung", "heart", "aorta")
    assert [seg.model.targets[i] for i in seg.output_indices] == ["Left Lung", "Right Lung", "Heart", "Aorta"]
    seen = {}
    pre = seg.model.register_forward_pre_hook(lambda _m, args: seen.setdefault("x", args[0].clone()))
    post = seg.model.register_forward_hook(lambda _m, _a, out: seen.setdefault("logits", out.clone()))
    try:
        masks = seg(images[:1])
    finally:
        pre.remove()
        post.remove()
    x = seen["x"]
    assert x.shape == (1, 1, 512, 512)
    assert float(x.min()) == pytest.approx(-1024, abs=0.5) and float(x.max()) == pytest.approx(1024, abs=0.5)
    assert masks.shape == (1, 4, 256, 256) and masks.dtype == torch.bool
    expected = torch.sigmoid(seen["logits"][:, [4, 5, 8, 9]]) > 0.5
    expected = torch.nn.functional.interpolate(expected.float(), size=(256, 256), mode="nearest-exact") > 0.5
    assert torch.equal(masks, expected)
    assert 0 < int(masks.sum()) < masks.numel()  # random weights still give a non-trivial mask

    assert pspnet_outputs("image-left") == ("Right Lung", "Left Lung", "Heart", "Aorta")
    with pytest.raises(ValueError, match="pspnet_left_lung must be"):  # checked before any loading
        build_segmenter("xrv-pspnet", weights=weights, pspnet_left_lung="left")


def test_wrong_pspnet_file_is_rejected(tmp_path):
    manager = WeightsManager(tmp_path)
    path = manager.path("xrv-pspnet")
    path.parent.mkdir(parents=True)
    torch.save({"module.conv.weight": torch.zeros(1)}, path)
    with pytest.raises(WeightsLoadError, match="is not the ChestX-Det PSPNet state dict"):
        build_segmenter("xrv-pspnet", weights=manager)


# ---------------------------------------------------------------- Inception (FID)


def test_inception_rounds_to_uint8_and_resizes_to_299(weights):
    extractor = build_feature_extractor("inception", weights=weights)
    assert extractor.dim == 2048
    img = torch.full((2, 1, 64, 64), 0.6 / 255)  # rounds to 1, truncates to 0
    img[1] = 254.4 / 255  # rounds to 254
    seen, handle = capture_input(extractor.model)
    seen_conv, handle_conv = capture_input(extractor.model.Conv2d_1a_3x3)
    try:
        feats = extractor(img)
    finally:
        handle.remove()
        handle_conv.remove()
    pixels = seen["x"]
    assert pixels.dtype == torch.uint8 and pixels.shape == (2, 3, 64, 64)
    assert (pixels[0] == 1).all() and (pixels[1] == 254).all()
    assert seen_conv["x"].shape == (2, 3, 299, 299)
    assert feats.shape == (2, 2048) and feats.dtype == torch.float32 and torch.isfinite(feats).all()
    with torch.no_grad():
        (direct,) = extractor.model(pixels)
    torch.testing.assert_close(feats, direct)


def test_wrong_inception_file_is_rejected(tmp_path):
    manager = WeightsManager(tmp_path, unpublished_release_artifacts())
    path = manager.path("inception-fid")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsLoadError, match=f"cannot read checkpoint {path}"):
        build_feature_extractor("inception", weights=manager)
    torch.save({"fc.weight": torch.zeros(1)}, path)
    with pytest.raises(WeightsLoadError, match=f"{path} is not torch-fidelity's Inception-v3 state dict"):
        build_feature_extractor("inception", weights=manager)
    with pytest.raises(WeightsMismatchError, match="does not start with 6726825d"):  # the published artifact
        build_feature_extractor("inception", weights=WeightsManager(tmp_path))


# ---------------------------------------------------------------- the same numbers as the libraries' own loaders


def test_inception_equals_torch_fidelity_loading_its_file(weights, images):
    """Old path (torch-fidelity torch.load-s the file, on a file this test wrote) vs the state-dict path."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    ours = build_feature_extractor("inception", weights=weights)
    theirs = FeatureExtractorInceptionV3(
        "inception-v3-compat", ["2048"], feature_extractor_weights_path=str(weights.path("inception-fid"))
    )
    pixels = torch.round(images * 255).to(torch.uint8).expand(-1, 3, -1, -1)
    with torch.no_grad():
        assert torch.equal(ours(images), theirs(pixels)[0])
    assert ours.weights_status == "unverified (no published hash)"
    assert ours.describe()["weights_status"] == ours.weights_status


def test_pspnet_equals_torchxrayvision_loading_its_file(weights):
    """Same class (so the same forward), same network weights and buffers, same input transform and
    modes as torchxrayvision's own constructor loading the file (a file this test wrote)."""
    ours = build_segmenter("xrv-pspnet", weights=weights).model
    theirs = xrv.baseline_models.chestx_det.PSPNet(cache_dir=str(weights.path("xrv-pspnet").parent))
    assert type(ours) is type(theirs) and ours.targets == theirs.targets and repr(ours.model) == repr(theirs.model)
    mine, reference = ours.state_dict(), theirs.state_dict()
    assert mine.keys() == reference.keys() and all(torch.equal(mine[k], reference[k]) for k in reference)
    (norm,), (their_norm,) = ours.transform.transforms, theirs.transform.transforms
    assert (norm.mean, norm.std) == (their_norm.mean, their_norm.std)
    assert not ours.model.training and not theirs.model.training
    assert set(vars(ours)) - {"weights_filename_local"} == set(vars(theirs)) - {"weights_filename_local"}


def legacy_training_class(folder):
    """A DenseNet subclass from a module that exists only while the file is written (like the releases)."""
    import importlib

    (folder / "xrv_training_2020.py").write_text(
        "import torchxrayvision as xrv\nclass DenseNet(xrv.models.DenseNet):\n    pass\n"
    )
    sys.path.insert(0, str(folder))
    try:
        return importlib.import_module("xrv_training_2020")
    finally:
        sys.path.remove(str(folder))


@pytest.mark.parametrize("zip_format", [True, False])
def test_densenet_whole_module_pickles_equal_torchxrayvision_loading(weights, images, tmp_path, zip_format):
    """Whole pickled DenseNets (zip and legacy formats): torchxrayvision's own weights=<key> path on a file this
    test wrote gives the same model as the state dict the safe loader extracts by path; a pickle of a class
    that no longer exists loads just the same, since no class from the file is needed."""
    from xreal_bench.metrics.evaluators.xrv import DENSENETS, densenet_from_state, load_densenet
    from xreal_bench.safe_load import module_state_dict, read_checkpoint

    key = "densenet121-res224-chex"
    manager = WeightsManager(tmp_path / "w", unpublished_release_artifacts())
    path = manager.path(DENSENETS["chex"])
    path.parent.mkdir(parents=True)
    torch.manual_seed(3)
    source = xrv.models.DenseNet(num_classes=18, in_channels=1)
    source.features.norm5.running_mean.uniform_(-0.1, 0.1)
    torch.save(source, path, _use_new_zipfile_serialization=zip_format)
    theirs = xrv.models.DenseNet(weights=key, cache_dir=str(path.parent))
    ours, trust = load_densenet("chex", manager)
    assert trust.sha256 == hashlib.sha256(path.read_bytes()).hexdigest() and not trust.verified
    assert ours.targets == theirs.targets and ours.input_resolution == theirs.input_resolution and repr(ours) == repr(theirs)
    torch.testing.assert_close(ours.op_threshs, theirs.op_threshs, equal_nan=True, rtol=0, atol=0)
    assert not ours.training and not theirs.training
    x = (images * 2 - 1)[..., 16:240, 16:240] * 1024
    with torch.no_grad():
        assert torch.equal(ours(x), theirs(x)) and torch.equal(ours.features2(x), theirs.features2(x))

    module = legacy_training_class(tmp_path)
    torch.save(module.DenseNet(num_classes=18, in_channels=1), path, _use_new_zipfile_serialization=zip_format)
    del sys.modules["xrv_training_2020"]
    with pytest.raises(ModuleNotFoundError):
        torch.load(path, weights_only=False)  # the full unpickler needs the class; ours does not
    state = module_state_dict(read_checkpoint(path), path)
    assert state.keys() == theirs.state_dict().keys() - {"op_threshs"}
    rebuilt = densenet_from_state(key, state, path)
    assert all(torch.equal(rebuilt.state_dict()[k], v) for k, v in state.items())


# ---------------------------------------------------------------- RAD-DINO


def test_rad_dino_cls_features(tmp_path):
    """The model card's pipeline: Pillow RGB image -> the snapshot's BitImageProcessor in its Pillow
    implementation (shorter side to 518 bicubic, centre crop, /255, mean 0.5307, std 0.2583) -> pooler_output;
    here at 56 px, rebuilt step by step with Pillow and compared with the model called directly."""
    from PIL import Image
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    manager = WeightsManager(tmp_path)
    folder = manager.path("rad-dino")
    config = Dinov2Config(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, image_size=56, patch_size=14
    )
    model = Dinov2Model(config).eval()
    model.save_pretrained(folder)
    with pytest.raises(MissingWeightsError, match="preprocessor_config.json"):
        build_feature_extractor("rad-dino", weights=manager)
    BitImageProcessor(
        size={"shortest_edge": 56},
        crop_size={"height": 56, "width": 56},
        image_mean=[0.5307] * 3,
        image_std=[0.2583] * 3,
    ).save_pretrained(folder)
    extractor = build_feature_extractor("rad-dino", weights=manager)
    assert extractor.dim == 32
    images = torch.randint(0, 256, (2, 1, 64, 80), generator=torch.Generator().manual_seed(3)).float() / 255
    feats = extractor(images)
    assert feats.shape == (2, 32) and feats.dtype == torch.float32
    expected_pixels = []
    for x in images:
        rgb = Image.fromarray(np.rint(x[0].numpy() * 255).astype(np.uint8)).convert("RGB")
        resized = np.asarray(rgb.resize((70, 56), Image.BICUBIC))[:, 7:63]  # shorter side 64 -> 56, 80 -> 70; crop
        scaled = (resized.astype(np.float64) / 255).astype(np.float32)
        expected_pixels.append(torch.from_numpy(((scaled - 0.5307) / 0.2583).transpose(2, 0, 1)))
    pixels = torch.stack(expected_pixels)
    torch.testing.assert_close(extractor.pixel_values(images), pixels, rtol=0, atol=1e-6)
    with torch.no_grad():
        expected = model(pixel_values=pixels).pooler_output
    torch.testing.assert_close(feats, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_evaluators_on_cuda_match_cpu(weights, images, classifier):
    gpu = build_classifier("xrv-densenet-mimic_ch", weights=weights, device="cuda")
    probs = gpu(images.cuda())
    assert probs.device.type == "cpu"
    torch.testing.assert_close(probs, classifier(images), rtol=1e-3, atol=1e-3)
    inception = build_feature_extractor("inception", weights=weights, device="cuda")
    cpu_inception = build_feature_extractor("inception", weights=weights)
    torch.testing.assert_close(inception(images), cpu_inception(images), rtol=1e-3, atol=1e-3)
    seg_gpu = build_segmenter("xrv-pspnet", weights=weights, device="cuda")
    seg_cpu = build_segmenter("xrv-pspnet", weights=weights)
    agree = (seg_gpu(images[:1]) == seg_cpu(images[:1])).float().mean()
    assert float(agree) > 0.99
