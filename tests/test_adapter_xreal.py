"""XReal end to end on tiny checkpoints written in the released layout and file names."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_ldm import TinyLDM, place, tiny_original_config, write_bert_vocab, write_yaml

from xreal_bench.errors import UserFacingError
from xreal_bench.generators.base import GeneratorContext
from xreal_bench.generators.registry import generator_class
from xreal_bench.generators.xreal import XRealGenerator, XRealOptions
from xreal_bench.imaging import load_grayscale, resize_label_map, to_square
from xreal_bench.types import Box, Condition
from xreal_bench.validation import ConfigError, build
from xreal_bench.weights import MissingWeightsError, WeightsManager

STEPS = {"steps": 10, "anatomy_blend_steps": 5}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("weights")
    original = tiny_original_config()
    manager = WeightsManager(root)
    place(manager, "xreal-backbone", TinyLDM(original, seed=0).backbone_checkpoint())
    place(manager, "xreal-ldm-ae", TinyLDM(original, seed=0).autoencoder_checkpoint())
    place(manager, "xreal-anatomy-controller", TinyLDM(original, seed=7).autoencoder_checkpoint())
    write_bert_vocab(manager.path("bert-tokenizer"))
    config = str(write_yaml(root / "tiny-xreal.yaml", original))
    image = root / "real.png"
    Image.fromarray((np.linspace(0, 255, 80 * 96).reshape(80, 96)).astype(np.uint8)).save(image)
    generator = make(manager, config)
    yield manager, config, image, generator
    torch.set_num_threads(threads)


def make(manager, config, **options):
    return XRealGenerator(
        "xreal", XRealOptions(original_config=config, **{**STEPS, **options}), GeneratorContext(weights=manager)
    )


def anatomy_map(size: int = 64) -> np.ndarray:
    m = np.zeros((size, size), np.uint8)
    s = size // 64
    m[10 * s : 52 * s, 36 * s : 56 * s] = 1  # patient's left lung: image right
    m[10 * s : 52 * s, 8 * s : 28 * s] = 2
    m[30 * s : 46 * s, 24 * s : 40 * s] = 3
    m[8 * s : 14 * s, 34 * s : 40 * s] = 4
    return m


HEART_BOX = Box("Cardiomegaly", 0.3, 0.45, 0.7, 0.75)


def condition(seed: int, labels: tuple[str, ...] = ("Cardiomegaly",), boxes=(HEART_BOX,), **kw) -> Condition:
    values = {
        "case_id": f"case{seed}",
        "sample_index": 0,
        "seed": seed,
        "labels": (0,) * 14,
        "prompt": ", ".join(labels),
        "report": "",
        "image_path": Path("unused.png"),
        "anatomy": anatomy_map(),
        "boxes": tuple(boxes),
    }
    return Condition(**{**values, **kw})


def test_registry_and_declarations():
    cls = generator_class("xreal")
    assert cls is XRealGenerator
    assert cls.inputs == {"labels", "anatomy", "pathology", "image"}
    assert tuple(a.name for a in cls.artifacts) == (
        "xreal-backbone",
        "xreal-ldm-ae",
        "xreal-anatomy-controller",
        "bert-tokenizer",
    )


def test_batch_generation_shapes_range_and_notes(setup):
    _, _, _, generator = setup
    batch = [condition(1), condition(2, labels=(), boxes=()), condition(3, boxes=(Box("Edema", -0.2, 0.5, 0.4, 1.3),))]
    output = generator.generate(batch)
    images = output.images
    assert generator.resolution == 64
    assert [tuple(i.shape) for i in images] == [(1, 64, 64)] * 3
    for image in images:
        assert torch.isfinite(image).all() and image.min() >= 0 and image.max() <= 1
    assert output.notes[0] == ()
    assert "no positive pathology label" in output.notes[1][0]
    assert "clipped to the image (0.000, 0.500, 0.400, 1.000)" in output.notes[2][0]


def test_images_depend_only_on_their_own_seed(setup):
    _, _, _, generator = setup
    batch = generator.generate([condition(10), condition(11), condition(12)]).images
    alone = generator.generate([condition(11)]).images
    torch.testing.assert_close(alone[0], batch[1], rtol=0, atol=1e-4)
    assert (batch[0] - batch[1]).abs().max() > 1e-3


def test_no_positive_label_gives_the_anatomy_only_image(setup):
    manager, config, _, generator = setup
    full = generator.generate([condition(5, labels=(), boxes=())]).images[0]
    anatomy_only = make(manager, config, mode="anatomy_only").generate([condition(5)]).images[0]
    torch.testing.assert_close(full, anatomy_only, rtol=0, atol=1e-5)  # another instance: equal up to float rounding
    outside = generator.generate([condition(5, boxes=(Box("Edema", 1.2, 0.1, 1.5, 0.4),))])
    assert torch.equal(outside.images[0], full)  # a box entirely outside is dropped -> no region -> anatomy only
    assert "lies outside the image: ignored" in outside.notes[0][0]


def test_pathology_pass_changes_the_anatomy_image(setup):
    manager, config, _, generator = setup
    anatomy_only = make(manager, config, mode="anatomy_only").generate([condition(6)]).images[0]
    full = generator.generate([condition(6)]).images[0]
    assert (full - anatomy_only).abs().mean() > 1e-3


def test_wrong_size_anatomy_map_is_resized_by_the_one_rule(setup):
    _, _, _, generator = setup
    big = anatomy_map(128)
    resized = generator.generate([condition(8, anatomy=big)])
    assert "anatomy map 128x128 resized to 64x64" in resized.notes[0][0]
    direct = generator.generate([condition(8, anatomy=resize_label_map(big, 64))]).images
    assert torch.equal(resized.images[0], direct[0])


def test_bad_anatomy_values_and_missing_maps_are_errors(setup):
    _, _, _, generator = setup
    with pytest.raises(UserFacingError, match=r"values \[0, 64, 128\] outside 0..4"):
        generator.generate([condition(1, anatomy=(anatomy_map() > 0).astype(np.uint8) * 64 + (anatomy_map() == 3) * 64)])
    with pytest.raises(UserFacingError, match="no anatomy label map"):
        generator.generate([condition(1, anatomy=None)])


def test_edit_mode_starts_from_the_real_image(setup):
    manager, config, image, _ = setup
    editor = make(manager, config, mode="edit")
    real = torch.from_numpy(to_square(load_grayscale(image), 64, "crop"))
    untouched = editor.generate([condition(3, labels=(), boxes=(), image_path=image)]).images[0]
    torch.testing.assert_close(untouched[0], real, rtol=0, atol=1e-6)  # no pathology: the real image itself
    edited = editor.generate([condition(3, image_path=image)]).images[0]
    assert (edited[0] - real).abs().mean() > 1e-3


def test_long_prompts_are_truncated_and_counted(setup, caplog):
    manager, config, _, _ = setup
    generator = make(manager, config, max_tokens=6)
    long = "large right sided pleural effusion , no acute finding"
    with caplog.at_level(logging.WARNING):
        generator.generate([condition(4, labels=(long,)), condition(5)])
    assert generator.prompts.truncation.truncated == 1
    assert "1 of 2 prompt(s) exceed 6 tokens" in caplog.text
    assert generator.prompts.tokenize([long]).shape == (1, 6)


def test_options_are_validated():
    with pytest.raises(ConfigError, match="steps=30: the original DDIM sampler needs a divisor"):
        build(XRealOptions, {"steps": 30}, "bench.toml", "xreal_bench.generators.xreal")
    with pytest.raises(ConfigError, match="anatomy_blend_steps: expected 0..steps"):
        build(XRealOptions, {"steps": 20, "anatomy_blend_steps": 50}, "bench.toml", "xreal_bench.generators.xreal")
    assert build(XRealOptions, {}, "bench.toml") == XRealOptions()
    defaults = XRealOptions()
    assert (
        defaults.steps,
        defaults.eta,
        defaults.anatomy_blend_steps,
        defaults.soft_mask,
        defaults.guidance,
        defaults.max_tokens,
    ) == (100, 1.0, 50, 0.2, 7.0, 150)


def test_missing_weights_fail_before_any_work(tmp_path):
    manager = WeightsManager(tmp_path)
    write_bert_vocab(manager.path("bert-tokenizer"))
    with pytest.raises(MissingWeightsError) as info:
        XRealGenerator("xreal", XRealOptions(), GeneratorContext(weights=manager))
    message = str(info.value)
    assert "missing weights 'xreal-backbone'" in message and str(manager.path("xreal-backbone")) in message
    assert "CC BY-NC 4.0" in message
    assert not list(tmp_path.rglob("*.converted"))


def test_ema_weights_option(setup, tmp_path):
    manager, config, _, generator = setup
    ema_manager = WeightsManager(tmp_path)
    original = tiny_original_config()
    place(ema_manager, "xreal-backbone", TinyLDM(original, seed=0).backbone_checkpoint(ema=True))
    for name in ("xreal-ldm-ae", "xreal-anatomy-controller"):
        ema_manager.path(name).write_bytes(manager.path(name).read_bytes())
    write_bert_vocab(ema_manager.path("bert-tokenizer"))
    options = XRealOptions(original_config=config, mode="anatomy_only", **STEPS)
    plain = XRealGenerator("xreal", options, GeneratorContext(weights=ema_manager))
    ema = XRealGenerator("xreal", replace(plain.options, ema=True), GeneratorContext(weights=ema_manager))
    reference = generator.generate([condition(9, labels=())]).images[0]
    torch.testing.assert_close(plain.generate([condition(9)]).images[0], reference, rtol=0, atol=1e-5)  # same non-EMA weights
    assert (ema.generate([condition(9)]).images[0] - reference).abs().max() > 1e-4
