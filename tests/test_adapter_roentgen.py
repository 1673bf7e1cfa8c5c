"""RoentGen end to end on a tiny Stable Diffusion pipeline saved in the diffusers snapshot layout."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    PNDMScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from tiny_ldm import randomize
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from xreal_bench.generators.base import GeneratorContext
from xreal_bench.generators.registry import generator_class
from xreal_bench.generators.roentgen import RoentGenGenerator, RoentGenOptions
from xreal_bench.types import Condition
from xreal_bench.validation import ConfigError, build
from xreal_bench.weights import MissingWeightsError, WeightsManager

SIZE = 64


def tiny_pipeline(folder: Path) -> Path:
    """A randomly initialised SD pipeline (CLIP text encoder, tokenizer from tiny vocab/merges files)."""
    chars = list("abcdefghijklmnopqrstuvwxyz.,-0123456789")
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab.update({"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1})
    tok_dir = folder.parent / "tokenizer-src"
    tok_dir.mkdir(parents=True)
    (tok_dir / "vocab.json").write_text(json.dumps(vocab))
    (tok_dir / "merges.txt").write_text("#version: 0.2\n")
    (tok_dir / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 77}))
    tokenizer = CLIPTokenizer.from_pretrained(str(tok_dir))
    text = randomize(
        CLIPTextModel(
            CLIPTextConfig(
                vocab_size=len(vocab),
                hidden_size=32,
                intermediate_size=37,
                num_hidden_layers=2,
                num_attention_heads=4,
                max_position_embeddings=77,
                bos_token_id=vocab["<|startoftext|>"],
                eos_token_id=vocab["<|endoftext|>"],
            )
        ),
        1,
    )
    unet = randomize(
        UNet2DConditionModel(
            sample_size=SIZE // 2,
            in_channels=4,
            out_channels=4,
            block_out_channels=(32, 64),
            layers_per_block=1,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=32,
            attention_head_dim=4,
        ),
        2,
    )
    vae = randomize(
        AutoencoderKL(
            block_out_channels=(32, 64),
            latent_channels=4,
            down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2,
            layers_per_block=1,
            sample_size=SIZE,
        ),
        3,
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("weights")
    manager = WeightsManager(root)
    tiny_pipeline(manager.path("roentgen-v1"))
    generator = make(manager, version="v1")
    yield manager, generator
    torch.set_num_threads(threads)


def make(manager, **options):
    options = {"steps": 4, "resolution": SIZE, **options}
    return RoentGenGenerator("roentgen", RoentGenOptions(**options), GeneratorContext(weights=manager))


def condition(seed: int, report: str = "small left pleural effusion.", prompt: str = "Pleural Effusion") -> Condition:
    return Condition(
        case_id=f"c{seed}", sample_index=0, seed=seed, labels=(0,) * 14, prompt=prompt, report=report, image_path=Path("x")
    )


def test_declarations_and_defaults():
    cls = generator_class("roentgen")
    assert cls.inputs == {"text", "labels"} and {a.name for a in cls.artifacts} == {"roentgen-v1", "roentgen-v2"}
    v1, v2 = RoentGenOptions(), RoentGenOptions(version="v2")
    assert (v1.steps, v1.effective_guidance, v1.effective_scheduler, v1.resolution) == (75, 4.0, "snapshot", 512)
    v2_format = "{age} year old {race} {sex}. {impression}"
    assert (v2.effective_guidance, v2.effective_scheduler, v2.effective_format) == (3.0, "pndm", v2_format)
    with pytest.raises(ConfigError, match="prompt_format: unknown or malformed field 'weight'"):
        build(RoentGenOptions, {"prompt_format": "{weight} kg. {impression}"}, "bench.toml")


def test_batch_generation_and_per_sample_generators(setup):
    _, generator = setup
    batch = [condition(1), condition(2, report=""), condition(3)]
    output = generator.generate(batch)
    images = output.images
    assert [tuple(i.shape) for i in images] == [(1, SIZE, SIZE)] * 3 and generator.resolution == SIZE
    assert all(float(i.min()) >= 0 and float(i.max()) <= 1 for i in images)
    assert output.notes[1] == ("prompt from label names (report empty): 'Pleural Effusion'",)
    assert isinstance(generator.pipe.scheduler, DDIMScheduler)  # v1 keeps the snapshot's scheduler
    alone = generator.generate([condition(3)]).images
    torch.testing.assert_close(alone[0], images[2], rtol=0, atol=1e-4)
    # the same as calling the pipeline directly with this sample's seeded generator
    direct = generator.pipe(
        prompt=["small left pleural effusion."],
        negative_prompt=[""],
        num_inference_steps=4,
        guidance_scale=4.0,
        height=SIZE,
        width=SIZE,
        generator=[torch.Generator().manual_seed(3)],
        output_type="pt",
    ).images
    gray = (direct * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1)
    torch.testing.assert_close(alone[0], gray, rtol=0, atol=1e-5)


def test_v2_prompt_format_scheduler_and_guidance(setup, tmp_path):
    manager, _ = setup
    other = WeightsManager(tmp_path)
    other.path("roentgen-v2").parent.mkdir(parents=True)
    other.path("roentgen-v2").symlink_to(manager.path("roentgen-v1"), target_is_directory=True)
    generator = make(other, version="v2", age=71, sex="male")
    from xreal_bench.generators.diffusion.conditions import Notes

    notes = Notes([condition(1)], logging.getLogger("t"), "roentgen")
    assert generator.prompt_for(0, condition(1), notes) == "71 year old white male. small left pleural effusion."
    assert isinstance(generator.pipe.scheduler, PNDMScheduler)
    assert generator.options.effective_guidance == 3.0
    assert tuple(generator.generate([condition(1)]).images[0].shape) == (1, SIZE, SIZE)


def test_long_prompts_are_counted(setup, caplog):
    _, generator = setup
    long = "small left pleural effusion. " * 20
    before = generator.truncation.truncated
    with caplog.at_level(logging.WARNING):
        generator.generate([condition(4, report=long)])
    assert generator.truncation.truncated == before + 1
    assert "exceed 77 tokens" in caplog.text


def test_missing_snapshot_of_the_chosen_version(setup, tmp_path):
    manager, _ = setup
    with pytest.raises(MissingWeightsError, match=r"missing weights 'roentgen-v2'(.*\n)*.*gated"):
        make(manager, version="v2")
    with pytest.raises(MissingWeightsError, match="missing weights 'roentgen-v1'"):
        make(WeightsManager(tmp_path), version="v1")
