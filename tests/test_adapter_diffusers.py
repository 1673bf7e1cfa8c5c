"""The generic ``diffusers`` adapter on tiny random snapshots of three families, saved with ``save_pretrained``:
Stable Diffusion 1.x (UNet + CLIP), PixArt-Σ (PixArt transformer + T5) and Flux (packed latents, CLIP + T5).
Each adapter image must equal the plain pipeline call with that image's seeded generator, whatever its batch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    FlowMatchEulerDiscreteScheduler,
    FluxPipeline,
    FluxTransformer2DModel,
    PixArtSigmaPipeline,
    PixArtTransformer2DModel,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from tiny_ldm import randomize
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer, T5Config, T5EncoderModel, T5TokenizerFast

from xreal_bench.errors import UserFacingError
from xreal_bench.generators.base import GeneratorContext, option_sources
from xreal_bench.generators.diffusers_pipeline import DiffusersGenerator, DiffusersOptions
from xreal_bench.generators.registry import generator_class
from xreal_bench.labels import CHEXPERT_LABELS
from xreal_bench.types import Condition
from xreal_bench.validation import ConfigError, build
from xreal_bench.weights import MissingWeightsError, WeightsManager

SIZE = 32
CHARS = "abcdefghijklmnopqrstuvwxyz.,-0123456789"
EFFUSION = tuple(int(name == "Pleural Effusion") for name in CHEXPERT_LABELS)


def clip_parts(folder: Path, seed: int) -> tuple[CLIPTextModel, CLIPTokenizer]:
    vocab = {c: i for i, c in enumerate(CHARS)} | {c + "</w>": len(CHARS) + i for i, c in enumerate(CHARS)}
    vocab |= {"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 77}))
    config = CLIPTextConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        bos_token_id=vocab["<|startoftext|>"],
        eos_token_id=vocab["<|endoftext|>"],
    )
    return randomize(CLIPTextModel(config), seed), CLIPTokenizer.from_pretrained(str(folder))


def t5_parts(seed: int) -> tuple[T5EncoderModel, T5TokenizerFast]:
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [(c, -1.0) for c in CHARS + "▁"]
    tokenizer = T5TokenizerFast(vocab=vocab, extra_ids=0)
    config = T5Config(vocab_size=len(vocab), d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4)
    return randomize(T5EncoderModel(config), seed), tokenizer


def tiny_vae(latent_channels: int = 4, **extra) -> AutoencoderKL:
    vae = AutoencoderKL(
        block_out_channels=(32, 64),
        latent_channels=latent_channels,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        layers_per_block=1,
        sample_size=SIZE,
        **extra,
    )
    return randomize(vae, 3)


def sd_snapshot(folder: Path) -> Path:
    text_encoder, tokenizer = clip_parts(folder.parent / "clip-src", 1)
    unet = UNet2DConditionModel(
        sample_size=SIZE // 2,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=4,
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False, steps_offset=1
    )
    StableDiffusionPipeline(
        vae=tiny_vae(),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=randomize(unet, 2),
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    ).save_pretrained(str(folder))
    return folder


def pixart_snapshot(folder: Path) -> Path:
    text_encoder, tokenizer = t5_parts(4)
    transformer = PixArtTransformer2DModel(
        sample_size=SIZE // 2,
        num_layers=1,
        patch_size=2,
        attention_head_dim=8,
        num_attention_heads=2,
        caption_channels=32,
        in_channels=4,
        cross_attention_dim=16,
        out_channels=8,  # learned sigma, as the released models
        attention_bias=True,
        activation_fn="gelu-approximate",
        num_embeds_ada_norm=1000,
        norm_type="ada_norm_single",
        norm_elementwise_affine=False,
        norm_eps=1e-6,
    )
    PixArtSigmaPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=tiny_vae(),
        transformer=randomize(transformer, 5),
        scheduler=DDIMScheduler(),
    ).save_pretrained(str(folder))
    return folder


def flux_snapshot(folder: Path) -> Path:
    text_encoder, tokenizer = clip_parts(folder.parent / "flux-clip-src", 6)
    t5, t5_tokenizer = t5_parts(7)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=16,  # 4 latent channels packed 2 x 2
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        guidance_embeds=True,
        axes_dims_rope=(4, 6, 6),
    )
    scheduler = FlowMatchEulerDiscreteScheduler(
        shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096
    )
    FluxPipeline(
        scheduler=scheduler,
        vae=tiny_vae(shift_factor=0.1, scaling_factor=0.5),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=t5,
        tokenizer_2=t5_tokenizer,
        transformer=randomize(transformer, 8),
    ).save_pretrained(str(folder))
    return folder


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


def make(manager: WeightsManager, snapshot: str, **options) -> DiffusersGenerator:
    options = {"snapshot": snapshot, "steps": 2, "resolution": SIZE, **options}
    return DiffusersGenerator("dif", DiffusersOptions(**options), GeneratorContext(weights=manager))


def condition(seed: int, impression: str = "small left pleural effusion.") -> Condition:
    return Condition(
        case_id=f"c{seed}",
        sample_index=0,
        seed=seed,
        labels=EFFUSION,
        prompt="Pleural Effusion",
        report="",
        impression=impression,
        image_path=Path("x"),
    )


def gray(images: torch.Tensor) -> torch.Tensor:
    return (images * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)


def plain_call(generator: DiffusersGenerator, prompt: str, seed: int, **extra) -> torch.Tensor:
    """The pipeline called directly, drawing its own noise from this image's seeded generator."""
    out = generator.pipe(
        prompt=[prompt],
        num_inference_steps=2,
        guidance_scale=generator.guidance,
        height=SIZE,
        width=SIZE,
        generator=[torch.Generator().manual_seed(seed)],
        output_type="pt",
        **extra,
    ).images
    return gray(out)[0]


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
    torch.testing.assert_close(alone, plain_call(generator, "small left pleural effusion.", 3, **extra), rtol=0, atol=1e-5)
    assert output.notes[1] == ("prompt from labels (impression empty)",)
    assert output.inputs[1]["prompt"] == "Pleural Effusion" and output.inputs[1]["pipeline"] == pipeline


def test_flux_latents_are_packed_and_tokens_cut_are_counted_per_tokenizer(manager):
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
