"""The issue-15 encoders: DINOv2 ViT-L/14 and CLIP ViT-L/14-336 from snapshots in their published
layout (REAL architectures, tiny sizes, RANDOM weights, written by transformers' ``save_pretrained``),
checked against the reference pipelines rebuilt here from their published steps; and the demo's
small encoders with their shipped weights."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms as T
from PIL import Image

from xreal_bench.demo.evaluators import DemoClassifierFeatures
from xreal_bench.imaging import quantize
from xreal_bench.metrics.evaluators import WeightsLoadError, build_feature_extractor
from xreal_bench.results import read_unverified_weights
from xreal_bench.weights import WEIGHT_FREE, MissingWeightsError, WeightsManager, collect_artifacts

IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
CLIP_MEAN, CLIP_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
CLIP_SIZE = 28  # the tiny snapshot's crop size (the real one: 336)


@pytest.fixture(scope="module")
def images():
    """Two non-square images: noise with a black and a white block."""
    g = torch.Generator().manual_seed(5)
    x = torch.rand(2, 1, 60, 84, generator=g)
    x[..., 4:20, 6:30], x[..., 40:56, 50:80] = 0.0, 1.0
    return x


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A weights folder with tiny ``dinov2-vitl14`` and ``clip-vitl14-336`` snapshots."""
    from transformers import BitImageProcessor, CLIPConfig, CLIPImageProcessor, CLIPModel, Dinov2Config, Dinov2Model

    manager = WeightsManager(tmp_path_factory.mktemp("weights"))
    torch.manual_seed(0)
    dinov2 = manager.path("dinov2-vitl14")
    config = Dinov2Config(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, image_size=518, patch_size=14
    )
    Dinov2Model(config).save_pretrained(dinov2)
    BitImageProcessor(  # facebook/dinov2-large's processor (not dgm-eval's preprocessing; unused)
        size={"shortest_edge": 256}, crop_size={"height": 224, "width": 224}, image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD
    ).save_pretrained(dinov2)
    clip = manager.path("clip-vitl14-336")
    config = CLIPConfig(
        text_config={"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32},
        vision_config={
            "hidden_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 64,
            "image_size": CLIP_SIZE,
            "patch_size": 14,
            "projection_dim": 8,  # the published config.json repeats projection_dim in vision_config
        },
        projection_dim=8,
    )
    CLIPModel(config).save_pretrained(clip)  # the published snapshot is the whole CLIP model
    CLIPImageProcessor(size={"shortest_edge": CLIP_SIZE}, crop_size={"height": CLIP_SIZE, "width": CLIP_SIZE}).save_pretrained(
        clip
    )
    return manager


def gray_uint8(images: torch.Tensor) -> list[np.ndarray]:
    return list(quantize(images[:, 0].numpy()))


# ---------------------------------------------------------------- DINOv2 (dgm-eval)


def dgm_eval_pixels(images: torch.Tensor) -> torch.Tensor:
    """dgm-eval's DINOv2 transform on the RGB Pillow image of each 8-bit file."""
    transform = T.Compose(
        [T.Resize((224, 224), T.InterpolationMode.BICUBIC), T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    )
    return torch.stack([transform(Image.fromarray(g).convert("RGB")) for g in gray_uint8(images)])


def hub_model(folder):
    """The snapshot with its position embeddings resampled to 16 x 16 as torch.hub dinov2 does at 224 px:
    bicubic with scale factor (16 + 0.1) / 37, size floor(37 * 16.1 / 37) = 16."""
    from transformers import Dinov2Model

    model = Dinov2Model.from_pretrained(folder, local_files_only=True).eval()
    table = model.embeddings.position_embeddings.data
    grid = table[:, 1:].reshape(1, 37, 37, -1).permute(0, 3, 1, 2)
    resampled = F.interpolate(grid, scale_factor=(16.1 / 37, 16.1 / 37), mode="bicubic", align_corners=False)
    assert resampled.shape[-2:] == (16, 16)
    model.embeddings.position_embeddings = torch.nn.Parameter(
        torch.cat([table[:, :1], resampled.permute(0, 2, 3, 1).reshape(1, 256, -1)], dim=1)
    )
    return model


def test_dinov2_features_follow_dgm_eval(weights, images):
    from transformers import Dinov2Model

    extractor = build_feature_extractor("dinov2-vitl14", weights=weights)
    assert extractor.dim == 32 and extractor.describe()["name"] == "dinov2-vitl14" and not extractor.normalized
    feats = extractor(images)
    assert feats.shape == (2, 32) and feats.dtype == torch.float32
    reference = dgm_eval_pixels(images)
    assert reference.shape == (2, 3, 224, 224)
    assert torch.equal(extractor.pixel_values(images), reference)
    folder = weights.path("dinov2-vitl14")
    with torch.no_grad():
        expected = hub_model(folder)(pixel_values=reference).pooler_output
        plain = Dinov2Model.from_pretrained(folder, local_files_only=True).eval()(pixel_values=reference).pooler_output
    torch.testing.assert_close(feats, expected, rtol=1e-5, atol=1e-5)
    # transformers alone resamples the position embeddings on another grid: measurably different features
    assert float((plain - expected).abs().max()) > 1e-4 and not torch.allclose(plain, expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(extractor(images), feats)


# ---------------------------------------------------------------- CLIP (CMMD)


def cmmd_embeddings(folder, images: torch.Tensor) -> torch.Tensor:
    """CMMD's steps: square centre crop + Pillow bicubic to the crop size, float /255 on 3 channels, the
    bicubic torch resize to the same size, the processor with only normalisation, image_embeds / norm."""
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    batch = []
    for g in gray_uint8(images):
        h, w = g.shape
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        im = Image.fromarray(g).crop((left, top, left + side, top + side)).resize((CLIP_SIZE, CLIP_SIZE), Image.BICUBIC)
        batch.append(np.tile(np.asarray(im).astype(np.float32)[..., None], (1, 1, 3)))
    arrays = np.stack(batch) / 255.0
    resized = F.interpolate(torch.from_numpy(arrays.transpose(0, 3, 1, 2)), size=(CLIP_SIZE, CLIP_SIZE), mode="bicubic")
    processor = CLIPImageProcessor.from_pretrained(folder, local_files_only=True)
    inputs = processor(
        images=list(resized.permute(0, 2, 3, 1).numpy()),
        do_normalize=True,
        do_center_crop=False,
        do_resize=False,
        do_rescale=False,
        return_tensors="pt",
    )
    model = CLIPVisionModelWithProjection.from_pretrained(folder, local_files_only=True).eval()
    with torch.no_grad():
        embeds = model(**inputs).image_embeds
    return inputs["pixel_values"], embeds / torch.linalg.norm(embeds, dim=-1, keepdim=True)


def test_clip_features_follow_cmmd(weights, images):
    extractor = build_feature_extractor("clip-vitl14-336", weights=weights)
    assert extractor.dim == 8 and extractor.normalized is True
    feats = extractor(images)
    assert feats.shape == (2, 8) and feats.dtype == torch.float32
    torch.testing.assert_close(torch.linalg.norm(feats, dim=1), torch.ones(2), rtol=0, atol=1e-6)
    pixels, expected = cmmd_embeddings(weights.path("clip-vitl14-336"), images)
    assert pixels.shape == (2, 3, CLIP_SIZE, CLIP_SIZE)
    torch.testing.assert_close(extractor.pixel_values(images), pixels, rtol=0, atol=1e-6)
    torch.testing.assert_close(feats, expected, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- files: missing, incomplete, corrupt


@pytest.mark.parametrize(
    "name,hub",
    [("dinov2-vitl14", "facebook/dinov2-large"), ("clip-vitl14-336", "openai/clip-vit-large-patch14-336")],
)
def test_missing_snapshot_says_where_and_how(tmp_path, name, hub):
    manager = WeightsManager(tmp_path)
    with pytest.raises(MissingWeightsError) as info:
        build_feature_extractor(name, weights=manager)
    message = str(info.value)
    assert f"  folder not found: {tmp_path / name}\n" in message
    assert f"  weights folder: {tmp_path} " in message
    assert f"  source: https://huggingface.co/{hub}\n" in message
    assert f"  get it: xreal-bench weights fetch {name}   (on a machine with internet access)" in message
    assert manager.artifact(name).hub_id == hub


def test_clip_without_its_processor_file_names_it(weights, tmp_path):
    manager = WeightsManager(tmp_path)
    shutil.copytree(weights.path("clip-vitl14-336"), manager.path("clip-vitl14-336"))
    (manager.path("clip-vitl14-336") / "preprocessor_config.json").unlink()
    with pytest.raises(MissingWeightsError) as info:
        build_feature_extractor("clip-vitl14-336", weights=manager)
    assert f"file not found: {manager.path('clip-vitl14-336') / 'preprocessor_config.json'}" in str(info.value)


def copy_snapshot(weights, tmp_path, name, source=None) -> tuple[WeightsManager, object]:
    manager = WeightsManager(tmp_path)
    shutil.copytree(weights.path(source or name), manager.path(name))
    return manager, manager.path(name)


def test_corrupt_snapshot_is_a_load_error(weights, tmp_path):
    manager, folder = copy_snapshot(weights, tmp_path, "dinov2-vitl14")
    (folder / "model.safetensors").write_bytes(b"\x00not a safetensors file" * 8)
    with pytest.raises(WeightsLoadError, match=rf"{folder} is not a loadable DINOv2 snapshot"):
        build_feature_extractor("dinov2-vitl14", weights=manager)


def test_snapshot_of_another_model_is_refused(weights, tmp_path):
    manager, folder = copy_snapshot(weights, tmp_path, "dinov2-vitl14", source="clip-vitl14-336")
    with pytest.raises(
        WeightsLoadError, match="not a complete DINOv2 snapshot: config model_type 'clip', expected 'dinov2'; missing"
    ):
        build_feature_extractor("dinov2-vitl14", weights=manager)


def test_weights_missing_from_the_file_are_never_random(weights, tmp_path):
    manager, folder = copy_snapshot(weights, tmp_path, "dinov2-vitl14")
    config = json.loads((folder / "config.json").read_text())
    config["num_hidden_layers"] = 2  # the file holds one layer: the second would be random
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(WeightsLoadError, match=r"not a complete DINOv2 snapshot: missing weights \['encoder.layer.1"):
        build_feature_extractor("dinov2-vitl14", weights=manager)


def test_weights_list_declares_the_encoders():
    catalog = collect_artifacts()
    for name, user, hub in [
        ("dinov2-vitl14", "feature evaluator dinov2-vitl14", "facebook/dinov2-large"),
        ("clip-vitl14-336", "feature evaluator clip-vitl14-336", "openai/clip-vit-large-patch14-336"),
        ("rad-dino", "feature evaluator rad-dino", "microsoft/rad-dino"),
    ]:
        art = catalog.artifacts[name]
        assert art.kind == "dir" and art.hub_id == hub and set(art.files) <= set(art.fetch_files)
        assert user in catalog.users[name]
    assert "feature evaluator demo-classifier-block2" in catalog.users["demo-classifier"]
    assert "feature evaluator demo-segmenter-encoder" in catalog.users["demo-segmenter"]


# ---------------------------------------------------------------- demo encoders (shipped weights)


@pytest.fixture(scope="module")
def phantoms():
    from xreal_bench.demo.train_evaluators import render_sample
    from xreal_bench.imaging import dequantize

    return torch.from_numpy(np.stack([dequantize(render_sample(4, i)[0]) for i in range(3)]))[:, None]


def test_demo_pixels_is_the_average_pooled_image(phantoms):
    extractor = build_feature_extractor("demo-pixels", weights=WeightsManager())
    feats = extractor(phantoms)
    h, w = phantoms.shape[-2:]
    assert h % 8 == 0 and w % 8 == 0
    cells = phantoms[:, 0].reshape(3, 8, h // 8, 8, w // 8).double().mean(dim=(2, 4)).reshape(3, 64)
    assert feats.shape == (3, 64) and feats.dtype == torch.float32
    torch.testing.assert_close(feats.double(), cells, rtol=0, atol=1e-5)  # float32 sums of the cells' pixels
    record = extractor.describe()
    assert record["weights_sha256"] == record["weights_status"] == WEIGHT_FREE
    assert "8x8" in record["preprocessing"] and "weight-free" in record["preprocessing"]


def test_demo_network_encoders(phantoms):
    shipped = WeightsManager()
    block2 = build_feature_extractor("demo-classifier-block2", weights=shipped)
    encoder = build_feature_extractor("demo-segmenter-encoder", weights=shipped)
    penultimate = DemoClassifierFeatures(weights=shipped, device=torch.device("cpu"))
    assert (block2.dim, encoder.dim) == (32, 160)
    a, b = block2(phantoms), encoder(phantoms)
    assert a.shape == (3, 32) and b.shape == (3, 160) and a.dtype == b.dtype == torch.float32
    assert torch.equal(a, block2(phantoms)) and torch.equal(b, encoder(phantoms))
    assert bool((a >= 0).all()) and bool((b >= 0).all()) and float(a.std()) > 0  # pooled ReLU activations, not constant
    # block 2 is an earlier layer than the 64-d penultimate features, read from the same shipped file
    assert block2.weights_hash == penultimate.weights_hash and penultimate(phantoms).shape == (3, 64)
    x = phantoms * 2 - 1
    x = F.interpolate(x, size=(128, 128), mode="bilinear", antialias=True) if x.shape[-1] != 128 else x
    with torch.no_grad():
        stage2 = penultimate.model.body[:5](x).mean(dim=(2, 3))
        bottleneck = encoder.model.features(x)
    torch.testing.assert_close(a, stage2, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(b[:, -64:], bottleneck, rtol=1e-5, atol=1e-6)


def test_weight_free_encoder_is_not_an_unverified_weights_footnote(tmp_path):
    provenance = {
        "evaluators": {
            "dinov2": {"name": "demo-pixels", "weights_sha256": WEIGHT_FREE, "weights_status": WEIGHT_FREE},
            "raddino": {"name": "rad-dino", "weights_sha256": "ab" * 32, "weights_status": "unverified (no published hash)"},
        }
    }
    (tmp_path / "results.json").write_text(json.dumps(provenance))
    assert read_unverified_weights(tmp_path) == ["raddino `rad-dino` (sha256 abababababab…)"]


def test_encoder_input_rounds_like_the_suites_quantize():
    from xreal_bench.metrics.evaluators.snapshots import gray_pil_images

    x = torch.rand(2, 1, 9, 7, generator=torch.Generator().manual_seed(1))
    halfway = torch.tensor([0.5, 1.5, 2.5, 127.5, 254.5, 255.0]) / 255  # ties round half to even, as np.rint
    x[0, 0, 0, :6] = halfway
    rounded = np.stack([np.asarray(im) for im in gray_pil_images(x)])
    assert rounded.dtype == np.uint8 and np.array_equal(rounded, quantize(x[:, 0].numpy()))
    assert rounded[0, 0, :6].tolist() == np.rint(halfway.numpy() * np.float32(255)).astype(int).tolist()
