"""The ``phantom`` reference generator: output contract, seeding, refusal outside the
synthetic demo, and that it follows the given anatomy map and boxes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from xreal_bench.config import config_from_dict
from xreal_bench.demo import phantoms
from xreal_bench.demo.generator import PhantomGenerator, PhantomOptions
from xreal_bench.errors import UserFacingError
from xreal_bench.generators.base import GeneratorContext
from xreal_bench.generators.registry import generator_class
from xreal_bench.labels import CHEXPERT_LABELS
from xreal_bench.types import Box, Condition
from xreal_bench.validation import ConfigError


def labels_for(*names: str) -> tuple[int, ...]:
    return tuple(int(label in names) for label in CHEXPERT_LABELS)


@pytest.fixture(scope="module")
def anatomies() -> list[np.ndarray]:
    return [phantoms.render_phantom(np.random.default_rng(s), 128).anatomy for s in range(3)]


def condition(anatomy, seed=7, case="c0", findings=(), boxes=()) -> Condition:
    return Condition(
        case_id=case,
        sample_index=0,
        seed=seed,
        labels=labels_for(*findings),
        prompt=", ".join(findings),
        report="",
        image_path=Path("/nonexistent/never-read.jpg"),  # the generator must not read the image
        anatomy=anatomy,
        boxes=tuple(boxes),
    )


def make(options: PhantomOptions | None = None, kind: str = "synthetic") -> PhantomGenerator:
    return PhantomGenerator("phantom", options or PhantomOptions(), GeneratorContext(dataset_kind=kind, resolution=256))


def test_registered_and_declares_its_inputs():
    assert generator_class("phantom") is PhantomGenerator
    assert PhantomGenerator.inputs == frozenset({"anatomy", "pathology", "labels"})
    assert PhantomGenerator.artifacts == ()


@pytest.mark.parametrize("size", [96, 128, 200])
def test_output_shape_range_and_dtype(size):
    anatomy = phantoms.render_phantom(np.random.default_rng(size), size).anatomy
    (image,) = make().generate([condition(anatomy, findings=("Pneumothorax", "Edema"))]).images
    assert image.shape == (size, size) and image.dtype == np.float32
    assert 0.0 <= image.min() and image.max() <= 1.0 and image.std() > 0.05


def test_deterministic_per_seed(anatomies):
    gen = make()
    a = gen.generate([condition(anatomies[0], seed=11)]).images[0]
    b = gen.generate([condition(anatomies[0], seed=11)]).images[0]
    c = gen.generate([condition(anatomies[0], seed=12)]).images[0]
    assert np.array_equal(a, b)
    assert np.abs(a - c).mean() > 0.01


def test_independent_of_batch_composition(anatomies):
    gen = make()
    c1 = condition(anatomies[0], seed=1, case="a", findings=("Consolidation",))
    c2 = condition(anatomies[1], seed=2, case="b", findings=("Cardiomegaly",))
    c3 = condition(anatomies[2], seed=3, case="c")
    alone = gen.generate([c2]).images[0]
    batch = gen.generate([c1, c2, c3]).images
    reversed_batch = gen.generate([c3, c2, c1]).images
    assert np.array_equal(batch[1], alone)
    assert np.array_equal(reversed_batch[1], alone)
    assert np.array_equal(batch[0], reversed_batch[2])


def test_refused_outside_the_synthetic_demo():
    with pytest.raises(UserFacingError, match=r"only works on the synthetic demo.*'mimic'"):
        make(kind="mimic")


def test_missing_anatomy_is_a_clear_error():
    with pytest.raises(UserFacingError, match="case c0: .*anatomy label map"):
        make().generate([condition(None)])
    with pytest.raises(UserFacingError, match="case c0: .*no lungs"):
        make().generate([condition(np.zeros((64, 64), np.uint8))])


def test_follows_the_anatomy_map(anatomies):
    gen = make()
    for i, anatomy in enumerate(anatomies):
        image = gen.generate([condition(anatomy, seed=i)]).images[0]
        lungs = np.isin(anatomy, (1, 2))
        assert image[anatomy == 3].mean() > image[lungs].mean() + 0.15
        # the dark lung fields are where THIS map puts them, not where another map does
        other = np.isin(anatomies[(i + 1) % len(anatomies)], (1, 2))
        own_corr = np.corrcoef(image.ravel(), lungs.ravel())[0, 1]
        other_corr = np.corrcoef(image.ravel(), other.ravel())[0, 1]
        assert own_corr < other_corr - 0.05
        # a crude segmentation (dark pixels inside the body) recovers this map's lungs, not another's
        dark = dark_fields(image)
        own, wrong = dice(dark, lungs), dice(dark, other)
        assert own > 0.72 and own > wrong + 0.1, (own, wrong)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * (a & b).sum() / (a.sum() + b.sum())


def dark_fields(image: np.ndarray) -> np.ndarray:
    """Pixels of the body darker than an ISODATA threshold, smoothed and opened."""
    smooth = ndimage.gaussian_filter(image, 1.5)
    body = ndimage.binary_erosion(smooth > 0.2, iterations=3)
    t = float(np.median(smooth[body]))
    for _ in range(20):
        t = (smooth[body & (smooth < t)].mean() + smooth[body & (smooth >= t)].mean()) / 2
    return ndimage.binary_opening((smooth < t) & body, iterations=2)


def test_texture_differs_from_the_dataset_style(anatomies):
    """Same anatomy and seed: the default style has coarser, stronger grain and flatter contrast.

    The grain is the last random draw and ``noise`` only scales it, so the difference between
    renders with noise 1 and 0 isolates it exactly (up to clipping)."""

    def grain(options: dict, anatomy, seed):
        loud = make(PhantomOptions(**options)).generate([condition(anatomy, seed=seed)]).images[0]
        quiet = make(PhantomOptions(**options, noise=0.0)).generate([condition(anatomy, seed=seed)]).images[0]
        return loud - quiet, quiet

    def lag1(field):
        return np.corrcoef(field[:, :-1].ravel(), field[:, 1:].ravel())[0, 1]

    for i, anatomy in enumerate(anatomies):
        alt_grain, alt = grain({}, anatomy, i)
        ds_grain, ds = grain({"style": "dataset"}, anatomy, i)
        assert lag1(alt_grain) > lag1(ds_grain) + 0.2
        assert alt_grain.std() > 1.2 * ds_grain.std()
        lungs, heart = np.isin(anatomy, (1, 2)), anatomy == 3
        assert (alt[heart].mean() - alt[lungs].mean()) < (ds[heart].mean() - ds[lungs].mean()) - 0.03


def test_noise_option_scales_the_grain(anatomies):
    renders = {n: make(PhantomOptions(noise=n)).generate([condition(anatomies[0])]).images[0] for n in (0.0, 1.0, 2.0)}
    one = (renders[1.0] - renders[0.0]).std()
    two = (renders[2.0] - renders[0.0]).std()
    assert one > 0.01
    assert two / one == pytest.approx(2.0, rel=0.1)  # linear up to clipping at 0 and 1


def test_draws_positive_findings_inside_their_boxes(anatomies):
    anatomy = anatomies[0]
    g = phantoms.Geometry.of(anatomy)
    x0, y0, x1, y1 = g.lung_box("right")  # the patient's right lung, on the image's left
    h = y1 - y0
    box = Box("Consolidation", x0 / 128, (y0 + 0.4 * h) / 128, x1 / 128, (y0 + 0.7 * h) / 128)
    px = phantoms.box_pixels(box, 128)
    qx, qy = (px[2] - px[0]) // 4, (px[3] - px[1]) // 4
    region = np.zeros_like(anatomy, bool)  # the middle of the box, where the opacity is densest
    region[px[1] + qy : px[3] - qy, px[0] + qx : px[2] - qx] = True
    region &= np.isin(anatomy, (1, 2))

    gen = make()
    without = gen.generate([condition(anatomy, seed=5)]).images[0]
    with_box = gen.generate([condition(anatomy, seed=5, findings=("Consolidation",), boxes=[box])]).images[0]
    assert with_box[region].mean() > without[region].mean() + 0.15
    near = np.zeros_like(region)  # the box plus a margin for the soft edges
    near[max(px[1] - 6, 0) : px[3] + 6, max(px[0] - 6, 0) : px[2] + 6] = True
    assert np.array_equal(with_box[~near], without[~near])  # nothing else changes

    # a box whose label is not positive is ignored: identical to no box at all
    ignored = gen.generate([condition(anatomy, seed=5, boxes=[box])]).images[0]
    assert np.array_equal(ignored, without)


def test_positive_without_box_is_placed_by_itself(anatomies):
    """No box given: the generator places one where the finding belongs (effusion: a lung base)."""
    gen = make()
    plain = gen.generate([condition(anatomies[1], seed=9)]).images[0]
    effusion = gen.generate([condition(anatomies[1], seed=9, findings=("Pleural Effusion",))]).images[0]
    changed = np.abs(effusion - plain) > 0.02
    g = phantoms.Geometry.of(anatomies[1])
    rows = np.flatnonzero(changed.any(axis=1))
    assert changed.sum() > 100
    assert rows.min() > g.y0 + 0.45 * g.height  # only the lower part of the chest
    lungs = np.isin(anatomies[1], (1, 2))
    assert effusion[lungs & changed].mean() > plain[lungs & changed].mean() + 0.1  # fluid is dense


def test_options_are_validated_from_config():
    cfg = config_from_dict({"generators": {"p": {"type": "phantom", "style": "dataset", "noise": 0.5}}})
    assert cfg.generators["p"].options == PhantomOptions(style="dataset", noise=0.5)
    with pytest.raises(ConfigError, match="noise"):
        config_from_dict({"generators": {"p": {"type": "phantom", "noise": -1.0}}})
    with pytest.raises(ConfigError, match="style"):
        config_from_dict({"generators": {"p": {"type": "phantom", "style": "glossy"}}})
