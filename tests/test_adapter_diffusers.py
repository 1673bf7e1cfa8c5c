"""The generic ``diffusers`` adapter on tiny random snapshots of three families, saved with ``save_pretrained``:
Stable Diffusion 1.x (UNet + CLIP), PixArt-Σ (PixArt transformer + T5) and Flux (packed latents, CLIP + T5).
Each adapter image must equal the plain pipeline call with that image's seeded generator, whatever its batch."""

from __future__ import annotations

import json

import pytest
import torch
from tiny_zoo import DIFFUSERS_SIZE as SIZE
from tiny_zoo import flux_snapshot, pixart_snapshot, plain_call, sd_snapshot
from tiny_zoo import make_diffusers as make
from tiny_zoo import text_condition as condition

from xreal_bench.errors import UserFacingError
from xreal_bench.generators.base import GeneratorContext, option_sources
from xreal_bench.generators.diffusers_pipeline import DiffusersGenerator, DiffusersOptions
from xreal_bench.generators.registry import generator_class
from xreal_bench.validation import ConfigError, build
from xreal_bench.weights import MissingWeightsError, WeightsManager


@pytest.fixture(scope="module")
def manager(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("weights")
    sd_snapshot(root / "tiny" / "sd")
    pixart_snapshot(root / "tiny" / "pixart")
    flux_snapshot(root / "tiny" / "flux")
    yield WeightsManager(root)
    torch.set_num_threads(threads)


FAMILY_CASES = [
    ("tiny/sd", "StableDiffusionPipeline", 7.5, {"negative_prompt": [""]}, {}),
    (
        "tiny/pixart",
        "PixArtSigmaPipeline",
        4.5,
        {"negative_prompt": "", "clean_caption": False, "use_resolution_binning": False},
        {},
    ),
    ("tiny/flux", "FluxPipeline", 3.5, {}, {}),
    ("tiny/sd", "StableDiffusionPipeline", 7.5, {"negative_prompt": [""]}, {"scheduler": "EulerAncestralDiscreteScheduler"}),
]


@pytest.mark.parametrize(("snapshot", "pipeline", "guidance", "extra", "options"), FAMILY_CASES)
def test_images_equal_the_plain_pipeline_call_and_do_not_depend_on_the_batch(
    manager, snapshot, pipeline, guidance, extra, options
):
    generator = make(manager, snapshot, **options)
    assert (generator.pipeline_class, generator.guidance, generator.resolution) == (pipeline, guidance, SIZE)
    batch = [condition(1), condition(2, impression=""), condition(3)]
    output = generator.generate(batch)
    assert [tuple(i.shape) for i in output.images] == [(1, SIZE, SIZE)] * 3
    assert float((output.images[0] - output.images[2]).abs().max()) > 1e-3  # different seeds, different images
    alone = generator.generate([condition(3)]).images[0]
    torch.testing.assert_close(alone, output.images[2], rtol=0, atol=1e-4)
    torch.testing.assert_close(
        alone,
        plain_call(generator.pipe, "small left pleural effusion.", 3, guidance=generator.guidance, **extra),
        rtol=0,
        atol=1e-5,
    )
    assert output.notes[1] == ("prompt from labels (impression empty)",)
    assert output.inputs[1]["prompt"] == "Pleural Effusion" and output.inputs[1]["pipeline"] == pipeline


def test_flux_latents_are_packed_and_tokens_cut_are_counted_per_tokenizer(manager):
    with pytest.raises(UserFacingError, match="Flux takes no negative prompt; leave negative_prompt empty"):
        make(manager, "tiny/flux", negative_prompt="blurry")
    generator = make(manager, "tiny/flux")
    assert generator.family.packed and tuple(generator.pipe.transformer.config.axes_dims_rope) == (4, 6, 6)
    long = "small left pleural effusion and " * 4  # > 77 CLIP tokens (one per character), < 512 T5 tokens
    output = generator.generate([condition(4, impression=long)])
    text = " ".join(long.split())
    clip_tokens = len(generator.pipe.tokenizer(text)["input_ids"])
    assert clip_tokens > 77
    assert output.inputs[0]["tokens_truncated"] == {"tokenizer": clip_tokens - 77, "tokenizer_2": 0}


def test_declarations_defaults_and_protocol(manager):
    cls = generator_class("diffusers")
    assert cls is DiffusersGenerator and cls.inputs == {"text", "labels"}
    sources = option_sources(DiffusersOptions)
    assert all(sources.values()), [k for k, v in sources.items() if not v]
    steps = {
        s.key: s for s in cls.protocol(DiffusersOptions(snapshot="tiny/pixart"), GeneratorContext(weights=manager), condition(1))
    }
    assert steps["family"].value.startswith("PixArt-Σ (PixArtSigmaPipeline from ")
    assert (steps["steps"].value, steps["guidance"].value) == ("20", "4.5")
    assert "pipeline_pixart_sigma.py:637,640" in steps["steps"].source
    assert steps["prompt"].value == "'small left pleural effusion.'"
    assert steps["pipeline arguments"].value == "clean_caption=False, use_resolution_binning=False"
    # the default size is the snapshot's native one: denoiser sample size x VAE scale factor (16 x 2)
    assert make(manager, "tiny/sd", resolution=0).resolution == SIZE


def test_missing_snapshot_names_the_folder_and_how_to_get_it(manager):
    with pytest.raises(MissingWeightsError) as err:
        make(manager, "chexgen/sd-missing")
    message = str(err.value)
    assert f"folder not found: {manager.root / 'chexgen/sd-missing'}" in message
    assert f"or place it by hand at: {manager.root / 'chexgen/sd-missing'}" in message


def test_unknown_pipeline_class_and_pickled_weights_are_refused(manager):
    video = manager.root / "video"
    video.mkdir()
    (video / "model_index.json").write_text(json.dumps({"_class_name": "StableVideoDiffusionPipeline"}))
    with pytest.raises(UserFacingError, match=r"pipeline class 'StableVideoDiffusionPipeline' is not supported \(allowed: Flux"):
        make(manager, "video")
    pickled = manager.root / "pickled"
    (pickled / "unet").mkdir(parents=True)
    (pickled / "model_index.json").write_text(
        json.dumps({"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"]})
    )
    (pickled / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"not unpickled")
    with pytest.raises(UserFacingError, match=r"unet: pickled weights only \(diffusion_pytorch_model.bin\)"):
        make(manager, "pickled")


def test_components_that_could_run_code_are_refused(manager, tmp_path):
    marker = tmp_path / "ran"
    custom = manager.root / "custom"
    (custom / "unet").mkdir(parents=True)
    (custom / "unet" / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    (custom / "model_index.json").write_text(
        json.dumps({"_class_name": "StableDiffusionPipeline", "unet": ["evil", "UNet2DConditionModel"]})
    )
    with pytest.raises(UserFacingError, match=r"component 'unet' comes from 'evil'; only diffusers and transformers"):
        make(manager, "custom")
    (custom / "model_index.json").write_text(
        json.dumps({"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"]})
    )
    with pytest.raises(UserFacingError, match=r"unet: code files \(evil.py\) in a snapshot are never run"):
        make(manager, "custom")
    assert not marker.exists()


def test_incompatible_scheduler_is_refused(manager):
    with pytest.raises(
        UserFacingError, match="scheduler FlowMatchEulerDiscreteScheduler does not fit this snapshot's DDIMScheduler"
    ):
        make(manager, "tiny/sd", scheduler="FlowMatchEulerDiscreteScheduler")


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({}, "snapshot: required"),
        ({"snapshot": "/etc/models"}, "snapshot: expected an artifact name or a path relative to the weights folder"),
        ({"snapshot": "a/../../b"}, "snapshot: expected an artifact name or a path relative"),
        ({"snapshot": "s", "scheduler": "LCMScheduler"}, "scheduler: unknown scheduler 'LCMScheduler' .known: snapshot, DDIM"),
        (
            {"snapshot": "s", "resolution": 100},
            r"resolution: expected a multiple of 16 >= 32 \(0 = the snapshot's native size\), got 100",
        ),
        ({"snapshot": "s", "guidance": -2}, "guidance: expected >= 0 .-1 = the family's default., got -2"),
        ({"snapshot": "s", "prompt_rule": "report"}, "prompt_rule: unknown rule 'report'"),
        ({"snapshot": "s", "precision": "fp8"}, "precision"),
        ({"snapshot": "s", "prompt_template": "{age} year old"}, "prompt_template: '{age} year old' has no {text}"),
    ],
)
def test_invalid_options_are_refused(table, message):
    with pytest.raises(ConfigError, match=message):
        build(DiffusersOptions, table, "bench.toml")
