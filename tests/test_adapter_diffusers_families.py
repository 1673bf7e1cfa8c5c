"""The ``diffusers`` adapter on tiny random snapshots of SDXL, SD3/3.5, Sana and Lumina 2 (saved with
``save_pretrained``, the released layouts with shrunken configs), with LoRA weights in diffusers' saved-LoRA
layout and with ``call_options`` (CheXGenBench's SD 3.5 ``max_sequence_length`` and Lumina 2 ``cfg_trunc_ratio``).
Each adapter image must equal the plain pipeline call with that image's seeded generator, whatever its batch."""

from __future__ import annotations

import json
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
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    Gemma2Config,
    Gemma2Model,
    GemmaTokenizer,
    T5Config,
    T5EncoderModel,
    T5TokenizerFast,
)

from xreal_bench.generators.base import GeneratorContext
from xreal_bench.generators.diffusers_pipeline import DiffusersGenerator, DiffusersOptions
from xreal_bench.labels import CHEXPERT_LABELS
from xreal_bench.types import Condition
from xreal_bench.validation import ConfigError, build
from xreal_bench.weights import WeightsManager

SIZE = 32
CHARS = "abcdefghijklmnopqrstuvwxyz.,-0123456789"
EFFUSION = tuple(int(name == "Pleural Effusion") for name in CHEXPERT_LABELS)
IMPRESSION = "small left pleural effusion."


def clip_parts(folder: Path, seed: int, *, projection: bool) -> tuple[CLIPTextModel, CLIPTokenizer]:
    """A character-level CLIP tokenizer (saved to ``folder``) and a 16-wide random CLIP text encoder."""
    vocab = {c: i for i, c in enumerate(CHARS)} | {c + "</w>": len(CHARS) + i for i, c in enumerate(CHARS)}
    vocab |= {"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 77}))
    config = CLIPTextConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        intermediate_size=24,
        projection_dim=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=77,
        bos_token_id=vocab["<|startoftext|>"],
        eos_token_id=vocab["<|endoftext|>"],
    )
    model = CLIPTextModelWithProjection(config) if projection else CLIPTextModel(config)
    return randomize(model, seed), CLIPTokenizer.from_pretrained(str(folder))


def t5_parts(seed: int) -> tuple[T5EncoderModel, T5TokenizerFast]:
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [(c, -1.0) for c in CHARS + "▁"]
    config = T5Config(vocab_size=len(vocab), d_model=32, d_kv=8, d_ff=24, num_layers=1, num_heads=2)
    return randomize(T5EncoderModel(config), seed), T5TokenizerFast(vocab=vocab, extra_ids=0)


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
    text_encoder, tokenizer = clip_parts(folder.parent / "sdxl-clip", 11, projection=False)
    text_encoder_2, tokenizer_2 = clip_parts(folder.parent / "sdxl-clip-2", 12, projection=True)
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
    text_encoder, tokenizer = clip_parts(folder.parent / "sd3-clip", 21, projection=True)
    text_encoder_2, tokenizer_2 = clip_parts(folder.parent / "sd3-clip-2", 22, projection=True)
    t5, t5_tokenizer = t5_parts(23)
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
