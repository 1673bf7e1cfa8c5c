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
from xreal_bench.generators.diffusion import original_config as oc
from xreal_bench.generators.diffusion.conditions import Notes, anatomy_batch
from xreal_bench.generators.diffusion.noise import SampleNoise
from xreal_bench.generators.prompts import PROMPT_RULES, build_prompt
from xreal_bench.generators.registry import generator_class
from xreal_bench.generators.xreal import XRealGenerator, XRealOptions
from xreal_bench.imaging import load_grayscale, resize_label_map, to_square
from xreal_bench.labels import CHEXPERT_LABELS
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


def labels_of(*names: str, uncertain: tuple[str, ...] = ()) -> tuple[int, ...]:
    return tuple(1 if name in names else -1 if name in uncertain else 0 for name in CHEXPERT_LABELS)


def condition(seed: int, labels: tuple[str, ...] = ("Cardiomegaly",), boxes=(HEART_BOX,), **kw) -> Condition:
    values = {
        "case_id": f"case{seed}",
        "sample_index": 0,
        "seed": seed,
        "labels": labels_of(*labels),
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
    assert output.notes[1] == (
        "prompt from fallback_prompt (labels empty): ''",
        "no pathology region (no box inside the image, no mask): pathology pass with an empty mask",
    )
    assert "clipped to the image (0.000, 0.500, 0.400, 1.000)" in output.notes[2][0]
    assert output.inputs[0] == {
        "anatomy_prompt": "",
        "prompt": "Cardiomegaly",
        "prompt_rule": "xreal_labels",
        "prompt_field": "labels",
        "tokens_truncated": 0,
        "empty_pathology_mask": False,
        "pathology_pass": True,
    }
    assert output.inputs[1]["empty_pathology_mask"] is True and output.inputs[1]["prompt"] == ""


def test_images_depend_only_on_their_own_seed(setup):
    _, _, _, generator = setup
    batch = generator.generate([condition(10), condition(11), condition(12)]).images
    alone = generator.generate([condition(11)]).images
    torch.testing.assert_close(alone[0], batch[1], rtol=0, atol=1e-4)
    assert (batch[0] - batch[1]).abs().max() > 1e-3


def test_anatomy_image_option_keeps_the_shortcut_for_cases_without_a_region(setup):
    manager, config, _, _ = setup
    shortcut = make(manager, config, no_finding="anatomy_image")
    output = shortcut.generate([condition(5, labels=("No Finding",), boxes=())])
    anatomy_only = make(manager, config, mode="anatomy_only").generate([condition(5)])
    torch.testing.assert_close(output.images[0], anatomy_only.images[0], rtol=0, atol=1e-5)  # another instance
    assert output.notes[0] == ("no positive pathology label: pathology pass skipped, output is the anatomy-pass image",)
    assert output.inputs[0] == {"anatomy_prompt": "", "pathology_pass": False}
    assert anatomy_only.inputs[0] == {"anatomy_prompt": "", "pathology_pass": False}
    outside = shortcut.generate([condition(5, boxes=(Box("Edema", 1.2, 0.1, 1.5, 0.4),))])
    assert torch.equal(outside.images[0], output.images[0])  # a box entirely outside is dropped -> no region
    assert "lies outside the image: ignored" in outside.notes[0][0] and "pathology pass skipped" in outside.notes[0][1]


@torch.no_grad()
def test_no_finding_case_runs_the_pathology_pass_with_an_empty_mask_as_released(setup):
    """Reference: xRealModel.sample_controlled's second sample_spatial_input call with an all-zero
    pathology mask, written out step by step (DDIMSampler.ddim_sampling + p_sample_ddim)."""
    _, _, _, generator = setup
    case = condition(21, labels=("No Finding",), boxes=())
    output = generator.generate([case])
    assert output.inputs[0] == {
        "anatomy_prompt": "",
        "prompt": "No Finding",
        "prompt_rule": "xreal_labels",
        "prompt_field": "labels",
        "tokens_truncated": 0,
        "empty_pathology_mask": True,
        "pathology_pass": True,
    }
    assert output.notes[0] == ("no pathology region (no box inside the image, no mask): pathology pass with an empty mask",)

    model, gen = generator.model, torch.Generator().manual_seed(21)
    noise = SampleNoise([gen])
    x_a = generator.anatomy_pass(anatomy_batch([case], 64, Notes([case], generator.log, "t")), noise)  # gen continues
    start, end, timesteps = oc.schedule(generator.original)
    betas = np.linspace(start**0.5, end**0.5, timesteps, dtype=np.float64) ** 2
    abar = torch.tensor(np.cumprod(1.0 - betas), dtype=torch.float32)
    stride = timesteps // STEPS["steps"]
    posterior = model.autoencoder.vae.encode(x_a).latent_dist
    z0 = (posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=gen)) * model.scale_factor
    shape = (1, *model.latent_shape)
    z = torch.randn(shape, generator=gen)
    cond, uncond = generator.prompts(["No Finding"]), generator.prompts([""])
    mask = 1.0 - torch.zeros(1, 1, 16, 16)  # m = 1 - pathology_mask, the mask all zero
    for t in range(1 + (STEPS["steps"] - 1) * stride, 0, -stride):
        known = abar[t].sqrt() * z0 + (1 - abar[t]).sqrt() * torch.randn(shape, generator=gen)  # q_sample, fresh noise
        z = known * mask + (1.0 - mask) * z
        e_u = model.unet(z, t, encoder_hidden_states=uncond).sample
        e_c = model.unet(z, t, encoder_hidden_states=cond).sample
        eps = e_u + 7.0 * (e_c - e_u)
        a_t, a_prev = abar[t], abar[t - stride] if t - stride >= 0 else abar[0]
        sigma = 1.0 * ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)).sqrt()
        pred_x0 = (z - (1 - a_t).sqrt() * eps) / a_t.sqrt()
        z = a_prev.sqrt() * pred_x0 + (1.0 - a_prev - sigma**2).sqrt() * eps + sigma * torch.randn(shape, generator=gen)
    image = model.autoencoder.vae.decode(z / model.scale_factor).sample.clamp(0, 1)
    expected = (image * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1)
    torch.testing.assert_close(output.images[0], expected, rtol=0, atol=2e-5)
    anatomy_gray = (x_a * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1)
    assert (output.images[0] - anatomy_gray).abs().mean() > 1e-3  # not the anatomy-pass image


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
    shortcut = make(manager, config, mode="edit", no_finding="anatomy_image")
    untouched = shortcut.generate([condition(3, labels=(), boxes=(), image_path=image)])
    torch.testing.assert_close(untouched.images[0][0], real, rtol=0, atol=1e-6)  # no pathology: the real image itself
    assert untouched.inputs[0] == {"pathology_pass": False}
    passed = editor.generate([condition(3, labels=("No Finding",), boxes=(), image_path=image)])
    assert passed.inputs[0]["empty_pathology_mask"] is True and passed.inputs[0]["prompt"] == "No Finding"
    edited = editor.generate([condition(3, image_path=image)]).images[0]
    assert (edited[0] - real).abs().mean() > 1e-3


def test_long_prompts_are_truncated_and_counted(setup, caplog):
    manager, config, _, _ = setup
    generator = make(manager, config, max_tokens=6, prompt_rule="impression")
    long = "large right sided pleural effusion , no acute finding"
    with caplog.at_level(logging.WARNING):
        output = generator.generate([condition(4, impression=long), condition(5)])
    assert generator.prompts.truncation.truncated == 1
    assert "1 of 2 prompt(s) exceed 6 tokens" in caplog.text
    assert generator.prompts.tokenize([long]).shape == (1, 6)
    assert [i["prompt"] for i in output.inputs] == [long, "Cardiomegaly"]
    assert [i["tokens_truncated"] for i in output.inputs] == [len(long.split()) + 2 - 6, 0]  # one token per word here
    assert output.notes[1] == ("prompt from labels (impression empty): 'Cardiomegaly'",)


def test_xreal_label_text_joins_every_positive_label_with_a_space_in_csv_order():
    rule = PROMPT_RULES["xreal_labels"]
    assert rule.label_set == CHEXPERT_LABELS and len(rule.label_set) == 14  # annotations_df.columns[13:-2]

    def text(*names, uncertain=()):
        case = replace(condition(0, boxes=()), labels=labels_of(*names, uncertain=uncertain))
        return build_prompt(rule, case, fallback="").text

    assert text("Edema", "Cardiomegaly", "Support Devices") == "Cardiomegaly Edema Support Devices"
    assert text("Pneumothorax", "Atelectasis", "Lung Opacity") == "Atelectasis Lung Opacity Pneumothorax"
    assert text("No Finding") == "No Finding"
    assert text("Support Devices", "No Finding") == "No Finding Support Devices"
    assert text("Edema", uncertain=("Pneumonia",)) == "Edema"  # value == 1 only: -1 is not positive
    assert text() == ""  # get_text_labels returns '' for a row without a 1
    labels = build_prompt(PROMPT_RULES["labels"], condition(0, labels=("Edema", "Cardiomegaly", "Support Devices")), fallback="")
    assert labels.text == "Cardiomegaly, Edema"  # the suite's earlier text: another embedding


def test_multi_label_case_is_one_pass_with_the_joint_prompt(setup):
    _, _, _, generator = setup
    boxes = (HEART_BOX, Box("Edema", 0.1, 0.1, 0.3, 0.4))
    output = generator.generate([condition(30, labels=("Cardiomegaly", "Edema", "Support Devices"), boxes=boxes)])
    record = output.inputs[0]
    assert (record["prompt"], record["pathology_pass"], record["empty_pathology_mask"]) == (
        "Cardiomegaly Edema Support Devices",
        True,
        False,
    )


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
    assert (defaults.prompt_rule, defaults.fallback_prompt, defaults.no_finding) == ("xreal_labels", "", "pathology_pass")
    with pytest.raises(ConfigError, match=r"prompt_rule: unknown prompt rule 'label' \(known: .*xreal_labels"):
        build(XRealOptions, {"prompt_rule": "label"}, "bench.toml")
    with pytest.raises(ConfigError, match="no_finding"):
        build(XRealOptions, {"no_finding": "skip"}, "bench.toml")


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
    reference = make(manager, config, mode="anatomy_only").generate([condition(9)]).images[0]
    torch.testing.assert_close(plain.generate([condition(9)]).images[0], reference, rtol=0, atol=1e-5)  # same non-EMA weights
    assert (ema.generate([condition(9)]).images[0] - reference).abs().max() > 1e-4
