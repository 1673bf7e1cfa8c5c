"""The run's geometry (square mode + intensity rule) applied identically to every image and map:
real images (decode, evaluation), generated images (harness, reference generators), imported
images, XReal's edit-mode input, segmenter inputs, anatomy maps and boxes; caches keyed by it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from xreal_bench.conditioning.anatomy import FolderAnatomy, SegmenterAnatomy
from xreal_bench.conditioning.boxes import RawBox, csv_boxes
from xreal_bench.config import config_from_dict
from xreal_bench.generators.base import GeneratorContext
from xreal_bench.generators.diffusion.conditions import real_image_batch
from xreal_bench.generators.reference import RealGenerator
from xreal_bench.harness import to_run_image
from xreal_bench.identity import IdentityError, check_generator_dir, run_fields
from xreal_bench.imaging import Geometry, apply_intensity, conform, load_standard, quantize, resize_label_map, save_png
from xreal_bench.importer import import_folder
from xreal_bench.metrics.engine import GeneratedImages, ImageItem, Preprocessing, RealImages, real_fingerprint
from xreal_bench.metrics.suite import Suite
from xreal_bench.rundir import GeneratorDir
from xreal_bench.types import Case, Condition
from xreal_bench.validation import ConfigError

H, W, SIZE = 24, 48, 16  # a non-square image (wider than high) and the run's resolution
MODES = ("crop", "pad", "stretch")
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def gradient() -> np.ndarray:
    """8-bit pixels 40 + 3x + y: a known gradient in both directions, range 40..204."""
    y, x = np.mgrid[0:H, 0:W]
    return (40 + 3 * x + y).astype(np.uint8)


def expected_pixels(pixels: np.ndarray, mode: str, intensity: str) -> np.ndarray:
    """The documented rule, written out with numpy and PIL: min-max over the whole decoded image
    (float64), then the square (crop / zero pad / whole image), PIL bicubic to SIZE, clip, round."""
    v = pixels.astype(np.float64) / 255.0
    if intensity == "minmax":
        v = (v - v.min()) / (v.max() - v.min())
    v = v.astype(np.float32)
    if mode == "crop":
        v = v[:, (W - H) // 2 : (W - H) // 2 + H]
    elif mode == "pad":
        canvas = np.zeros((W, W), np.float32)
        canvas[(W - H) // 2 : (W - H) // 2 + H] = v
        v = canvas
    resized = np.asarray(Image.fromarray(v).resize((SIZE, SIZE), Image.Resampling.BICUBIC), dtype=np.float32)
    return np.rint(np.clip(resized, 0.0, 1.0) * 255).astype(np.uint8)


def case_for(path: Path, case_id: str = "c0") -> Case:
    return Case(case_id, path, "10000001", "50000001", "AP", (0,) * 14)


def condition_for(path: Path) -> Condition:
    return Condition("c0", 0, 1, (0,) * 14, "", "", path)


@pytest.fixture
def real_png(tmp_path) -> Path:
    path = tmp_path / "data" / "c0.png"
    path.parent.mkdir()
    Image.fromarray(gradient()).save(path)
    return path


def test_minmax_then_stretch_is_exact_on_a_ramp(tmp_path):
    """Rows 30 + 10y (y 0..15) on a 32-wide image: min-max gives y/15, the stretch to 16 px only
    halves the width of constant rows, so every pixel is rint(255 y / 15) = 17 y."""
    pixels = np.repeat((30 + 10 * np.arange(16, dtype=np.uint8))[:, None], 32, axis=1)
    path = tmp_path / "ramp.png"
    Image.fromarray(pixels).save(path)
    want = np.repeat((17 * np.arange(16))[:, None], 16, axis=1).astype(np.uint8)
    np.testing.assert_array_equal(load_standard(path, 16, 8, Geometry("stretch", "minmax")), want)
    # without the stretch the rows keep their stored values 30 + 10y
    np.testing.assert_array_equal(load_standard(path, 16, 8, Geometry("stretch")), pixels[:, ::2])


@pytest.mark.parametrize("intensity", ["none", "minmax"])
@pytest.mark.parametrize("mode", MODES)
def test_real_generated_imported_and_model_inputs_share_one_path(tmp_path, real_png, mode, intensity):
    geometry = Geometry(mode, intensity)
    want = expected_pixels(gradient(), mode, intensity)
    if intensity == "minmax":  # the stretch is visible, not a no-op; it spans the whole image, before any crop
        assert not np.array_equal(want, expected_pixels(gradient(), mode, "none"))
        if mode == "stretch":  # the resize narrows the stretched 0..255 a little; it is not stretched again
            assert (want.min(), want.max()) == (5, 250)
    # real image: decode path and the evaluation's real-image loader
    np.testing.assert_array_equal(load_standard(real_png, SIZE, 8, geometry), want)
    item = ImageItem("c0", 0, real_png)
    np.testing.assert_array_equal(RealImages([item], Preprocessing(SIZE, 8, geometry))[0]["pixels"].numpy(), want)
    # generated image: the same picture as a generator's float output (numpy H x W, torch 1 x H x W)
    output = gradient().astype(np.float32) / 255
    np.testing.assert_array_equal(to_run_image(output, SIZE, 8, geometry), want)
    np.testing.assert_array_equal(to_run_image(torch.from_numpy(output)[None], SIZE, 8, geometry), want)
    # the `real` reference generator through the harness's normalisation
    context = GeneratorContext(resolution=SIZE, square=mode, intensity=intensity)
    produced = RealGenerator("real", None, context).generate([condition_for(real_png)]).images[0]
    np.testing.assert_array_equal(to_run_image(produced, SIZE, 8, geometry), want)
    # imported image
    gdir = GeneratorDir(tmp_path / "run", "ext")
    source = tmp_path / "elsewhere"
    source.mkdir()
    Image.fromarray(gradient()).save(source / "c0.png")
    report = import_folder(
        source,
        out=tmp_path / "run",
        name="ext",
        cases=[case_for(real_png)],
        resolution=SIZE,
        bits=8,
        geometry=geometry,
        progress=False,
    )
    assert report.imported == 1
    np.testing.assert_array_equal(np.asarray(Image.open(gdir.image_path("c0", 0))), want)
    # XReal's edit-mode input (float, before the run's quantisation)
    fed = real_image_batch([condition_for(real_png)], SIZE, context.geometry)
    assert fed.shape == (1, 1, SIZE, SIZE)
    np.testing.assert_array_equal(quantize(fed[0, 0].numpy()), want)


def test_a_stored_run_image_is_not_stretched_twice(tmp_path):
    """A generated PNG whose range the resize narrowed (3..250) is scored as stored under minmax."""
    stored = np.tile(np.linspace(3, 250, SIZE).round().astype(np.uint8), (SIZE, 1))
    path = tmp_path / "g.png"
    save_png(path, stored)
    real_dir = tmp_path / "real"
    real_dir.mkdir()
    np.savez(real_dir / "c0.npz", pixels=stored)
    prep = Preprocessing(SIZE, 8, Geometry("stretch", "minmax"))
    assert RealImages([ImageItem("c0", 0, path)], prep)[0]["pixels"].numpy().max() == 255  # a real file is stretched
    loaded = GeneratedImages([ImageItem("c0", 0, path)], prep, real_dir, None, ms_ssim=False)[0]
    assert loaded["error"] == ""
    np.testing.assert_array_equal(loaded["pixels"].numpy(), stored)


def test_intensity_rule_edge_cases():
    np.testing.assert_array_equal(apply_intensity(np.full((4, 6), 0.7, np.float32), "minmax"), np.zeros((4, 6), np.float32))
    ramp = np.array([[0.25, 0.5], [0.75, 0.5]], np.float32)
    np.testing.assert_array_equal(apply_intensity(ramp, "minmax"), [[0.0, 0.5], [1.0, 0.5]])
    np.testing.assert_array_equal(apply_intensity(ramp, "none"), ramp)
    with pytest.raises(ValueError, match=r"intensity rule must be one of \('none', 'minmax'\), got 'gamma'"):
        Geometry("crop", "gamma")
    with pytest.raises(ValueError, match=r"square mode must be one of \('crop', 'pad', 'stretch'\), got 'squash'"):
        Geometry("squash")
    assert [Geometry(m, i).tag for m, i in [("crop", "none"), ("stretch", "minmax")]] == ["crop", "stretch-minmax"]


# ------------------------------------------------------------------ maps and boxes on the image feature

FH, FW, FSIZE = 40, 80, 40  # the feature image: 80 wide x 40 high, squared to 40 px
FEATURE = (44, 8, 60, 24)  # x0, y0, x1, y1 in original pixels (exclusive ends)
#: Where the feature lands at 40 px, worked out by hand: crop keeps x 20..60 (offset -20, scale 1);
#: pad puts the image on an 80 x 80 canvas 20 rows down, then halves; stretch halves x only.
LANDS = {"crop": (24, 8, 40, 24), "pad": (22, 14, 30, 22), "stretch": (22, 8, 30, 24)}


def feature_files(tmp_path: Path) -> tuple[Path, Path]:
    x0, y0, x1, y1 = FEATURE
    image = np.full((FH, FW), 64, np.uint8)
    image[y0:y1, x0:x1] = 255
    label_map = np.zeros((FH, FW), np.uint8)
    label_map[y0:y1, x0:x1] = 3
    (tmp_path / "img").mkdir()
    (tmp_path / "maps").mkdir()
    Image.fromarray(image).save(tmp_path / "img" / "c0.png")
    Image.fromarray(label_map).save(tmp_path / "maps" / "c0.png")
    return tmp_path / "img" / "c0.png", tmp_path / "maps"


def region(bounds: tuple[int, int, int, int], size: int = FSIZE) -> np.ndarray:
    x0, y0, x1, y1 = bounds
    mask = np.zeros((size, size), bool)
    mask[y0:y1, x0:x1] = True
    return mask


@pytest.mark.parametrize("intensity", ["none", "minmax"])
@pytest.mark.parametrize("mode", MODES)
def test_map_and_box_land_on_the_image_feature(tmp_path, mode, intensity):
    image_path, maps = feature_files(tmp_path)
    geometry = Geometry(mode, intensity)
    want = region(LANDS[mode])
    pixels = load_standard(image_path, FSIZE, 8, geometry).astype(int)
    background = 64 if intensity == "none" else 0  # min-max maps the background to 0, the feature to 255
    np.testing.assert_array_equal(pixels > (background + 255) // 2, want)
    # anatomy map of the original image's size, read by the folder source in the run's geometry
    loaded = FolderAnatomy(maps, FSIZE, geometry).maps([case_for(image_path)], progress=False).load("c0")
    np.testing.assert_array_equal(loaded == 3, want)
    assert set(np.unique(loaded).tolist()) == {0, 3}
    np.testing.assert_array_equal(resize_label_map(np.asarray(Image.open(maps / "c0.png")), FSIZE, mode) == 3, want)
    # a box drawn on the feature, in original pixels; once as given, once for a 2x larger reference size
    x0, y0, x1, y1 = FEATURE
    raws = [RawBox("Cardiomegaly", x0, y0, x1, y1), RawBox("Edema", 2 * x0, 2 * y0, 2 * x1, 2 * y1, 2 * FW, 2 * FH)]
    boxes, notes = csv_boxes(raws, image_path, None, mode)
    assert notes == ()
    for box in boxes:
        assert box.pixels(FSIZE) == LANDS[mode]


def test_pad_and_stretch_maps_of_other_shapes():
    """A tall map padded left and right, and stretched, by nearest neighbour (labels never blended)."""
    tall = np.zeros((8, 4), np.uint8)
    tall[:, 1] = 1
    tall[6:, :] = 2
    padded = resize_label_map(tall, 8, "pad")  # 8 x 8 canvas, columns 2..5 hold the map
    want = np.zeros((8, 8), np.uint8)
    want[:, 3] = 1
    want[6:, 2:6] = 2
    np.testing.assert_array_equal(padded, want)
    stretched = resize_label_map(tall, 8, "stretch")  # every column doubled
    np.testing.assert_array_equal(stretched, np.repeat(tall, 2, axis=1))
    np.testing.assert_array_equal(resize_label_map(tall.astype(bool), 4, "stretch"), tall.astype(bool)[::2])


# ------------------------------------------------------------------ caches and identity keyed by intensity


class RecordingSegmenter:
    name, weights_hash = "recording", "c" * 64

    def __init__(self):
        self.inputs: list[torch.Tensor] = []

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        self.inputs.append(images.clone())
        masks = torch.zeros(images.shape[0], 4, *images.shape[2:], dtype=torch.bool)
        masks[:, 0] = images[:, 0] > 0.5
        return masks


def test_anatomy_cache_and_segmenter_input_follow_the_intensity(tmp_path, real_png):
    case = case_for(real_png)
    sha = hashlib.sha256(real_png.read_bytes()).hexdigest()
    made = {}
    for intensity in ("none", "minmax", "none"):
        segmenter = RecordingSegmenter()
        geometry = Geometry("stretch", intensity)
        source = SegmenterAnatomy(lambda s=segmenter: s, tmp_path / "cache", SIZE, geometry)
        maps = source.maps([case], progress=False)
        folder = "stretch" if intensity == "none" else "stretch-minmax"
        assert maps.paths["c0"] == tmp_path / "cache" / "anatomy" / ("c" * 16) / f"{folder}-{SIZE}" / f"{sha}.png"
        if intensity in made:  # made before under this rule: read from the cache, nothing segmented
            assert segmenter.inputs == []
            continue
        assert len(segmenter.inputs) == 1  # a rule never reuses the other rule's maps
        fed = segmenter.inputs[0][0, 0].numpy()
        np.testing.assert_array_equal(fed, conform(gradient().astype(np.float32) / 255, SIZE, geometry))
        np.testing.assert_array_equal(quantize(fed), expected_pixels(gradient(), "stretch", intensity))
        made[intensity] = maps.load("c0")
    assert not np.array_equal(made["none"], made["minmax"])  # the inputs differed, so did the maps


def test_real_feature_cache_and_identity_are_keyed_by_intensity(tmp_path, real_png):
    suite = Suite("toy")
    keys = {i: real_fingerprint("scan", Preprocessing(SIZE, 8, Geometry("crop", i)), suite) for i in ("none", "minmax")}
    assert keys["none"] != keys["minmax"]
    assert keys["none"] == real_fingerprint("scan", Preprocessing(SIZE, 8, Geometry("crop")), suite)
    cfg = config_from_dict({"dataset": {"square": "stretch", "intensity": "minmax"}})
    assert cfg.dataset.geometry == Geometry("stretch", "minmax")
    fields = run_fields(cfg, ())
    assert (fields["dataset.square"], fields["dataset.intensity"]) == ("stretch", "minmax")
    # an import made under "none" is refused by a config asking for "minmax"
    source = tmp_path / "elsewhere"
    source.mkdir()
    Image.fromarray(gradient()).save(source / "c0.png")
    out, res = tmp_path / "run", 161  # the smallest run.resolution
    cases = [case_for(real_png)]
    import_folder(source, out=out, name="ext", cases=cases, resolution=res, bits=8, geometry=Geometry("stretch"), progress=False)
    stretched = config_from_dict({"run": {"out": str(out), "resolution": res}, "dataset": {"square": "stretch"}})
    check_generator_dir(stretched, GeneratorDir(out, "ext"), weights=None)
    minmax = config_from_dict(
        {"run": {"out": str(out), "resolution": res}, "dataset": {"square": "stretch", "intensity": "minmax"}}
    )
    with pytest.raises(IdentityError, match='  dataset.intensity: "none" -> "minmax"'):
        check_generator_dir(minmax, GeneratorDir(out, "ext"), weights=None)


def test_config_validation_messages():
    with pytest.raises(ConfigError) as err:
        config_from_dict({"dataset": {"square": "squash"}})
    assert str(err.value) == "<dict>: dataset.square: expected one of 'crop', 'pad', 'stretch', got 'squash'"
    with pytest.raises(ConfigError) as err:
        config_from_dict({"dataset": {"intensity": "zscore"}})
    assert str(err.value) == "<dict>: dataset.intensity: expected one of 'none', 'minmax', got 'zscore'"
    default = config_from_dict({})
    assert (default.dataset.square, default.dataset.intensity) == ("crop", "none")


def test_the_xreal_config_reproduces_the_training_geometry():
    from xreal_bench.config import load_config

    cfg = load_config(CONFIGS / "mimic-xreal.toml")
    assert cfg.dataset.geometry == Geometry("stretch", "minmax")
    assert cfg.dataset.views == ["AP"] and cfg.dataset.split == "test"


def test_pspnet_anatomy_cache_is_keyed_by_which_lung_is_left(tmp_path):
    from xreal_bench.conditioning.prepare import anatomy_source

    folders = set()
    for left in ("patient-left", "image-left"):
        cfg = config_from_dict(
            {
                "run": {"out": str(tmp_path / "run")},
                "conditioning": {"anatomy": "pspnet"},
                "metrics": {"pspnet_left_lung": left},
            }
        )
        source = anatomy_source(cfg)  # builds nothing: the segmenter is made on first use only
        folders.add(source.map_dir("f" * 64).name)
    assert folders == {"crop-256-left-patient-left", "crop-256-left-image-left"}
