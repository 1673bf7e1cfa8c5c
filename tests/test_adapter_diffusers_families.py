"""The ``diffusers`` adapter on tiny random snapshots of SDXL, SD3/3.5, Sana and Lumina 2 (saved with
``save_pretrained``, the released layouts with shrunken configs), with LoRA weights in diffusers' saved-LoRA
layout and with ``call_options`` (CheXGenBench's SD 3.5 ``max_sequence_length`` and Lumina 2 ``cfg_trunc_ratio``).
Each adapter image must equal the plain pipeline call with that image's seeded generator, whatever its batch."""

from __future__ import annotations

import inspect
import shutil
import sys
from pathlib import Path

import pytest
import torch
from diffusers import (
    AutoencoderDC,
    AutoencoderKL,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    Lumina2Pipeline,
    Lumina2Transformer2DModel,
    SanaPipeline,
    SanaTransformer2DModel,
    SD3Transformer2DModel,
    StableDiffusion3Pipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from tiny_ldm import randomize
from tiny_zoo import CHARS, IMPRESSION, clip_parts, plain_call, t5_parts
from tiny_zoo import DIFFUSERS_SIZE as SIZE
from tiny_zoo import make_diffusers as make
from tiny_zoo import text_condition as condition
from transformers import (
    Gemma2Config,
    Gemma2Model,
    GemmaTokenizer,
)

from xreal_bench.errors import UserFacingError
from xreal_bench.generators.base import GeneratorContext
from xreal_bench.generators.diffusers_pipeline import DiffusersGenerator, DiffusersOptions
from xreal_bench.validation import ConfigError, build
from xreal_bench.weights import WeightsManager

#: 16-wide, one-layer CLIP encoders (the SDXL and SD3 snapshots' cross-attention and pooled widths).
NARROW = {"width": 16, "ffn": 24, "layers": 1, "heads": 2}


def gemma_parts(seed: int) -> tuple[Gemma2Model, GemmaTokenizer]:
    """A character-level Gemma tokenizer built from a vocabulary (no download) and a 1-layer Gemma 2."""
    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<mask>": 4}
    vocab |= {c: len(vocab) + i for i, c in enumerate(CHARS + "▁<>\n")}
    config = Gemma2Config(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=24,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        query_pre_attn_scalar=16,
        sliding_window=64,
    )
    return randomize(Gemma2Model(config), seed), GemmaTokenizer(vocab=vocab, merges=[])


def tiny_vae(blocks: int = 2, **extra) -> AutoencoderKL:
    vae = AutoencoderKL(
        block_out_channels=(8, 16, 16, 16)[:blocks],
        latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * blocks,
        up_block_types=("UpDecoderBlock2D",) * blocks,
        layers_per_block=1,
        norm_num_groups=4,
        sample_size=SIZE,
        **extra,
    )
    return randomize(vae, 3)


def sdxl_snapshot(folder: Path) -> Path:
    text_encoder, tokenizer = clip_parts(folder.parent / "sdxl-clip", 11, **NARROW)
    text_encoder_2, tokenizer_2 = clip_parts(folder.parent / "sdxl-clip-2", 12, projection=True, **NARROW)
    unet = UNet2DConditionModel(
        sample_size=SIZE // 2,
        block_out_channels=(16, 32),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
        cross_attention_dim=32,  # both CLIP hidden states, concatenated
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=4,
        projection_class_embeddings_input_dim=6 * 4 + 16,  # six size/crop ids + the pooled CLIP-2 projection
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1, timestep_spacing="leading"
    )
    StableDiffusionXLPipeline(
        vae=tiny_vae(),
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=randomize(unet, 13),
        scheduler=scheduler,
        add_watermarker=False,
    ).save_pretrained(str(folder))
    return folder


def sd3_snapshot(folder: Path) -> Path:
    text_encoder, tokenizer = clip_parts(folder.parent / "sd3-clip", 21, projection=True, **NARROW)
    text_encoder_2, tokenizer_2 = clip_parts(folder.parent / "sd3-clip-2", 22, projection=True, **NARROW)
    t5, t5_tokenizer = t5_parts(23, ffn=24, layers=1, heads=2)
    transformer = SD3Transformer2DModel(
        sample_size=SIZE // 2,
        patch_size=2,
        in_channels=4,
        out_channels=4,
        num_layers=1,
        attention_head_dim=8,
        num_attention_heads=2,
        joint_attention_dim=32,  # T5 width; the two CLIP widths (16 + 16) are padded to it
        caption_projection_dim=16,
        pooled_projection_dim=32,  # both CLIP projections, concatenated
        pos_embed_max_size=16,
    )
    StableDiffusion3Pipeline(
        transformer=randomize(transformer, 24),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=tiny_vae(shift_factor=0.1, scaling_factor=0.5),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        text_encoder_3=t5,
        tokenizer_3=t5_tokenizer,
    ).save_pretrained(str(folder))
    return folder


def sana_snapshot(folder: Path) -> Path:
    text_encoder, tokenizer = gemma_parts(31)
    vae = AutoencoderDC(
        latent_channels=4,
        attention_head_dim=4,
        encoder_block_types=("ResBlock", "EfficientViTBlock"),
        decoder_block_types=("ResBlock", "EfficientViTBlock"),
        encoder_block_out_channels=(8, 16),
        decoder_block_out_channels=(8, 16),
        encoder_layers_per_block=(1, 1),
        decoder_layers_per_block=(1, 1),
        encoder_qkv_multiscales=((), (5,)),
        decoder_qkv_multiscales=((), (5,)),
        scaling_factor=0.4,
    )
    transformer = SanaTransformer2DModel(
        in_channels=4,
        out_channels=4,
        num_attention_heads=2,
        attention_head_dim=8,
        num_layers=1,
        num_cross_attention_heads=2,
        cross_attention_head_dim=8,
        cross_attention_dim=16,
        caption_channels=32,
        sample_size=SIZE // 2,
    )
    SanaPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=randomize(vae, 32),
        transformer=randomize(transformer, 33),
        scheduler=DPMSolverMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0),
    ).save_pretrained(str(folder))
    return folder


def lumina2_snapshot(folder: Path) -> Path:
    text_encoder, tokenizer = gemma_parts(41)
    transformer = Lumina2Transformer2DModel(
        sample_size=SIZE // 8,  # Lumina2Pipeline fixes vae_scale_factor = 8
        patch_size=2,
        in_channels=4,
        hidden_size=32,
        num_layers=1,
        num_refiner_layers=1,
        num_attention_heads=2,
        num_kv_heads=1,
        multiple_of=16,
        axes_dim_rope=(4, 6, 6),
        axes_lens=(2048, 16, 16),
        cap_feat_dim=32,
    )
    Lumina2Pipeline(
        transformer=randomize(transformer, 42),
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=tiny_vae(blocks=4, shift_factor=0.1, scaling_factor=0.5),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
    ).save_pretrained(str(folder))
    return folder


def lora_file(snapshot: Path, pipeline_class: type, target: Path, seed: int) -> Path:
    """A random rank-2 LoRA on the snapshot's transformer attention, saved with the pipeline's ``save_lora_weights``."""
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    transformer_class = {StableDiffusion3Pipeline: SD3Transformer2DModel, Lumina2Pipeline: Lumina2Transformer2DModel}
    transformer = transformer_class[pipeline_class].from_pretrained(str(snapshot / "transformer"))
    torch.manual_seed(seed)
    config = LoraConfig(r=2, lora_alpha=2, target_modules=["to_q", "to_k", "to_v", "to_out.0"], init_lora_weights=False)
    transformer.add_adapter(config)
    layers = {k: v * 4 for k, v in get_peft_model_state_dict(transformer).items()}  # large enough to change images
    pipeline_class.save_lora_weights(str(target.parent), transformer_lora_layers=layers, weight_name=target.name)
    return target


@pytest.fixture(scope="module")
def manager(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("weights")
    sdxl_snapshot(root / "tiny" / "sdxl")
    sd3 = sd3_snapshot(root / "tiny" / "sd3")
    sana_snapshot(root / "tiny" / "sana")
    lumina2 = lumina2_snapshot(root / "tiny" / "lumina2")
    lora_file(sd3, StableDiffusion3Pipeline, root / "lora" / "sd3.safetensors", 25)
    lora_file(lumina2, Lumina2Pipeline, root / "lora" / "lumina2.safetensors", 43)
    yield WeightsManager(root)
    torch.set_num_threads(threads)


def plain_pipeline(manager: WeightsManager, snapshot: str, pipeline_class: type, lora: str = "", weight: float = 1.0):
    """A pipeline loaded apart from the adapter; a LoRA loaded as CheXGenBench does (gdc l.161-165, l.190-194)."""
    pipe = pipeline_class.from_pretrained(str(manager.root / snapshot), local_files_only=True)
    if lora:
        path = manager.root / lora
        pipe.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name="chexgenbench")
        if weight != 1.0:
            pipe.set_adapters(["chexgenbench"], adapter_weights=[weight])
    pipe.set_progress_bar_config(disable=True)
    return pipe


FAMILY_CASES = [
    ("tiny/sdxl", "StableDiffusionXLPipeline", 5.0, {}),  # empty negative prompt: SDXL's own zero embeddings
    ("tiny/sd3", "StableDiffusion3Pipeline", 7.0, {}),
    ("tiny/sana", "SanaPipeline", 4.5, {"clean_caption": False, "use_resolution_binning": False}),
    ("tiny/lumina2", "Lumina2Pipeline", 4.0, {}),
]


@pytest.mark.parametrize(("snapshot", "pipeline", "guidance", "extra"), FAMILY_CASES)
def test_images_equal_the_plain_pipeline_call_and_do_not_depend_on_the_batch(manager, snapshot, pipeline, guidance, extra):
    generator = make(manager, snapshot)
    assert (generator.pipeline_class, generator.guidance, generator.resolution) == (pipeline, guidance, SIZE)
    batch = [condition(1), condition(2, impression=""), condition(3)]
    output = generator.generate(batch)
    assert [tuple(i.shape) for i in output.images] == [(1, SIZE, SIZE)] * 3
    assert float((output.images[0] - output.images[2]).abs().max()) > 1e-3  # different seeds, different images
    alone = generator.generate([condition(3)]).images[0]
    torch.testing.assert_close(alone, output.images[2], rtol=0, atol=1e-5)
    plain = plain_call(generator.pipe, IMPRESSION, 3, guidance=guidance, **extra)
    torch.testing.assert_close(alone, plain, rtol=0, atol=1e-6)
    assert output.inputs[1]["prompt"] == "Pleural Effusion" and output.inputs[1]["pipeline"] == pipeline
    if pipeline == "StableDiffusionXLPipeline":  # "" encoded is another unconditional input than SDXL's zeros
        encoded_empty = plain_call(generator.pipe, IMPRESSION, 3, guidance=guidance, negative_prompt=[""])
        assert float((alone - encoded_empty).abs().max()) > 1e-4


def test_lora_is_loaded_as_chexgenbench_loads_it_and_its_scale_is_its_weight(manager):
    plain_lora = plain_call(
        plain_pipeline(manager, "tiny/sd3", StableDiffusion3Pipeline, "lora/sd3.safetensors"), IMPRESSION, 5, guidance=7.0
    )
    without = make(manager, "tiny/sd3").generate([condition(5)]).images[0]
    with_lora = make(manager, "tiny/sd3", lora="lora/sd3.safetensors").generate([condition(5)]).images[0]
    torch.testing.assert_close(with_lora, plain_lora, rtol=0, atol=1e-6)
    assert float((with_lora - without).abs().max()) > 1e-3
    half = make(manager, "tiny/sd3", lora="lora/sd3.safetensors", lora_scale=0.5).generate([condition(5)]).images[0]
    plain_half = plain_pipeline(manager, "tiny/sd3", StableDiffusion3Pipeline, "lora/sd3.safetensors", 0.5)
    torch.testing.assert_close(half, plain_call(plain_half, IMPRESSION, 5, guidance=7.0), rtol=0, atol=1e-6)
    assert min(float((half - without).abs().max()), float((half - with_lora).abs().max())) > 1e-4
    off = make(manager, "tiny/sd3", lora="lora/sd3.safetensors", lora_scale=0.0).generate([condition(5)]).images[0]
    torch.testing.assert_close(off, without, rtol=0, atol=1e-6)
    fused = plain_pipeline(manager, "tiny/sd3", StableDiffusion3Pipeline, "lora/sd3.safetensors")
    fused.fuse_lora()  # the same weights merged: equal up to float rounding
    torch.testing.assert_close(with_lora, plain_call(fused, IMPRESSION, 5, guidance=7.0), rtol=0, atol=1e-4)


def test_a_released_lora_folder_artifact_loads_its_listed_file(manager):
    # CheXGenBench's SD 3.5 LoRA is a folder artifact listing sd3-5_medium_lora.safetensors (gdc l.152)
    released = manager.root / "chexgenbench" / "CheXGenBench-Models-SDV3-5"
    released.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(manager.root / "lora" / "sd3.safetensors", released / "sd3-5_medium_lora.safetensors")
    from_artifact = make(manager, "tiny/sd3", lora="chexgenbench-sd-v3-5-lora").generate([condition(5)]).images[0]
    from_file = make(manager, "tiny/sd3", lora="lora/sd3.safetensors").generate([condition(5)]).images[0]
    torch.testing.assert_close(from_artifact, from_file, rtol=0, atol=0)


def test_lumina2_lora_and_chexgenbench_call_options_reach_the_pipeline(manager):
    options = {"cfg_trunc_ratio": 0.25, "cfg_normalization": True}  # CheXGenBench gdc l.355-361
    generator = make(manager, "tiny/lumina2", lora="lora/lumina2.safetensors", steps=4, call_options=options)
    image = generator.generate([condition(6)]).images[0]
    plain = plain_pipeline(manager, "tiny/lumina2", Lumina2Pipeline, "lora/lumina2.safetensors")
    torch.testing.assert_close(image, plain_call(plain, IMPRESSION, 6, steps=4, guidance=4.0, **options), rtol=0, atol=1e-6)
    full_cfg = plain_call(plain, IMPRESSION, 6, steps=4, guidance=4.0)  # cfg_trunc_ratio 1.0: guidance at every step
    assert float((image - full_cfg).abs().max()) > 1e-4
    no_lora = make(manager, "tiny/lumina2", steps=4, call_options=options).generate([condition(6)]).images[0]
    assert float((image - no_lora).abs().max()) > 1e-3


def test_max_sequence_length_reaches_sd3_and_sets_the_t5_truncation_count(manager):
    long = "small left pleural effusion and " * 10  # 320 characters: one token each for every tokenizer
    text = " ".join(long.split())
    default = make(manager, "tiny/sd3")
    longer = make(manager, "tiny/sd3", call_options={"max_sequence_length": 512})  # CheXGenBench gdc l.341-346
    t5_tokens = len(default.pipe.tokenizer_3(text)["input_ids"])
    clip_tokens = len(default.pipe.tokenizer(text)["input_ids"])
    assert 256 < t5_tokens < 512 and clip_tokens > 77
    cut_default = default.generate([condition(7, impression=long)])
    cut_longer = longer.generate([condition(7, impression=long)])
    assert cut_default.inputs[0]["tokens_truncated"] == {
        "tokenizer": clip_tokens - 77,
        "tokenizer_2": clip_tokens - 77,
        "tokenizer_3": t5_tokens - 256,
    }
    assert cut_longer.inputs[0]["tokens_truncated"]["tokenizer_3"] == 0
    plain = plain_call(longer.pipe, text, 7, guidance=7.0, max_sequence_length=512)
    torch.testing.assert_close(cut_longer.images[0], plain, rtol=0, atol=1e-6)
    assert float((cut_longer.images[0] - cut_default.images[0]).abs().max()) > 1e-4


@pytest.mark.parametrize("snapshot", ["tiny/lumina2", "tiny/sana"])
def test_truncation_counts_the_text_the_pipeline_puts_before_the_prompt(manager, snapshot):
    generator = make(manager, snapshot)
    pipe = generator.pipe
    text = "small left pleural effusion and " * 12
    tokens = pipe.tokenizer.encode
    if snapshot == "tiny/lumina2":  # pipeline_lumina2.py l.284-287, l.199-204
        cut = len(tokens(pipe.system_prompt + " <Prompt Start> " + text.strip())) - 256
    else:  # pipeline_sana.py l.254-260, with SanaPipeline.__call__'s default complex_human_instruction
        instruction = "\n".join(inspect.signature(SanaPipeline.__call__).parameters["complex_human_instruction"].default)
        cut = len(tokens(instruction + text.strip())) - (len(tokens(instruction)) + 300 - 2)
    assert 0 < cut < len(text)
    output = generator.generate([condition(8, impression=text)])
    assert output.inputs[0]["tokens_truncated"] == {"tokenizer": cut}
    assert generator.generate([condition(8)]).inputs[0]["tokens_truncated"] == {"tokenizer": 0}


def test_call_options_appear_in_the_protocol(manager):
    context = GeneratorContext(weights=manager)
    lumina = DiffusersOptions(snapshot="tiny/lumina2", call_options={"cfg_trunc_ratio": 0.25, "cfg_normalization": True})
    steps = {s.key: s for s in DiffusersGenerator.protocol(lumina, context)}
    assert steps["pipeline arguments"].value == "cfg_trunc_ratio=0.25, cfg_normalization=True"
    assert steps["pipeline arguments"].source.endswith("; call_options set in the config")
    assert steps["call_options"].value == "{'cfg_trunc_ratio': 0.25, 'cfg_normalization': True}"
    assert steps["tokens"].value == "tokenizer 256 after the pipeline's system_prompt (longer prompts truncated; cut counted)"
    sd3 = DiffusersOptions(snapshot="tiny/sd3", call_options={"max_sequence_length": 512})
    steps = {s.key: s for s in DiffusersGenerator.protocol(sd3, context)}
    assert steps["tokens"].value.startswith("tokenizer 77, tokenizer_2 77, tokenizer_3 512 (")
    assert steps["tokens"].source == "call_options max_sequence_length"
    sdxl = DiffusersOptions(snapshot="tiny/sdxl", call_options={"max_sequence_length": 512})
    refused = {s.key: s for s in DiffusersGenerator.protocol(sdxl, context)}["call options refused"]
    assert refused.value.startswith("call_options: StableDiffusionXLPipeline.__call__ takes no argument 'max_sequence_length'")


@pytest.mark.parametrize(
    ("snapshot", "call_options", "message"),
    [
        (
            "tiny/sd3",
            {"cfg_trunc_ratio": 0.25},
            r"StableDiffusion3Pipeline.__call__ takes no argument 'cfg_trunc_ratio' \(it takes: ",
        ),
        (
            "tiny/sd3",
            {"max_sequence_length": "512"},
            r"StableDiffusion3Pipeline.__call__ argument 'max_sequence_length' expects int \(default 256\), got '512'",
        ),
        (
            "tiny/lumina2",
            {"cfg_normalization": 1},
            r"Lumina2Pipeline.__call__ argument 'cfg_normalization' expects bool \(default True\), got 1",
        ),
        ("tiny/sana", {"clean_caption": True}, r"'clean_caption' is set by the adapter .* \(fixed at False\)"),
    ],
)
def test_call_options_the_pipeline_does_not_take_are_refused_before_loading(manager, snapshot, call_options, message):
    with pytest.raises(UserFacingError, match="call_options: " + message):
        make(manager, snapshot, call_options=call_options)


@pytest.mark.parametrize(
    ("call_options", "message"),
    [
        ({"generator": 1}, r"call_options: 'generator' is set by the adapter"),
        ({"prompt_2": "a chest x-ray"}, r"call_options: 'prompt_2' is set by the adapter"),
        ({"negative_prompt_embeds": 1}, r"call_options: 'negative_prompt_embeds' is set by the adapter"),
        ({"height": 64}, r"call_options: 'height' is set by the adapter"),
        ({"sigmas": 1.0}, r"call_options: 'sigmas' is set by the adapter"),
        ({"skip_guidance_layers": [7, 8]}, r"call_options.skip_guidance_layers: expected true or false, got a list"),
    ],
)
def test_adapter_owned_or_non_scalar_call_options_are_config_errors(call_options, message):
    with pytest.raises(ConfigError, match=message):
        build(DiffusersOptions, {"snapshot": "s", "call_options": call_options}, "bench.toml")


def test_lora_without_peft_says_how_to_install_it(manager, monkeypatch):
    monkeypatch.setitem(sys.modules, "peft", None)
    with pytest.raises(UserFacingError, match=r"LoRA weights need the peft package: pip install 'xreal-bench\[lora\]'"):
        make(manager, "tiny/sd3", lora="lora/sd3.safetensors")


def test_sana_noise_is_drawn_in_float32_as_its_pipeline_draws_it_whatever_the_dtype():
    from types import SimpleNamespace

    from diffusers.utils.torch_utils import randn_tensor

    from xreal_bench.generators.diffusers_pipeline import FAMILIES, initial_latents

    denoiser = SimpleNamespace(config=SimpleNamespace(in_channels=4))
    half = SimpleNamespace(unet=None, transformer=denoiser, vae_scale_factor=8, dtype=torch.float16)
    noise = initial_latents(half, FAMILIES["SanaPipeline"], 64, [torch.Generator().manual_seed(3)], torch.device("cpu"))
    expected = randn_tensor((1, 4, 8, 8), generator=torch.Generator().manual_seed(3), dtype=torch.float32)
    assert noise.dtype == torch.float32 and torch.equal(noise, expected)  # pipeline_sana.py:891
    pixart = initial_latents(half, FAMILIES["PixArtSigmaPipeline"], 64, [torch.Generator().manual_seed(3)], torch.device("cpu"))
    assert pixart.dtype == torch.float16  # PixArt draws in its embeddings' dtype
