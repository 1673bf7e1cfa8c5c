"""Tiny random weights of every model-zoo generator, in the released layouts, shared by the adapter tests.

- ``diffusers``: Stable Diffusion 1.x (UNet + CLIP), PixArt-Σ (PixArt transformer + T5) and Flux (packed latents,
  CLIP + T5) snapshots saved with ``save_pretrained``;
- ChexGen: ``.pth`` checkpoints with ``state_dict_ema`` (keys ``module.``-prefixed as DDP saves them) for the 256,
  512-impression and mask releases, a tiny T5 encoder snapshot and a tiny SD VAE snapshot;
- RadEdit: ``radedit/radedit/unet/`` (a diffusers UNet2DConditionModel), ``radedit/sdxl-vae/`` (SDXL VAE scaling
  and ``force_upcast``) and ``radedit/BiomedVLP-BioViL-T/`` (a CXR-BERT checkpoint as the hub holds it).

:func:`write_zoo` writes all of them where the weights manager looks and returns ``[generators]`` tables using them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import (
    BertConfig,
    BertForMaskedLM,
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    T5Config,
    T5EncoderModel,
    T5TokenizerFast,
)

from xreal_bench.generators.base import GeneratorContext
from xreal_bench.generators.diffusers_pipeline import DiffusersGenerator, DiffusersOptions
from xreal_bench.labels import CHEXPERT_LABELS
from xreal_bench.types import Condition
from xreal_bench.weights import WeightsManager

# ---- diffusers families --------------------------------------------------------------------

DIFFUSERS_SIZE = 32  # the tiny VAEs downsample by 2: 16 x 16 latents
CHARS = "abcdefghijklmnopqrstuvwxyz.,-0123456789"


def clip_parts(
    folder: Path, seed: int, *, projection: bool = False, width: int = 32, ffn: int = 37, layers: int = 2, heads: int = 4
) -> tuple[CLIPTextModel, CLIPTokenizer]:
    """A character-level CLIP tokenizer (saved to ``folder``) and a random CLIP text encoder (with its projection
    head, ``projection_dim = width``, when ``projection``)."""
    vocab = {c: i for i, c in enumerate(CHARS)} | {c + "</w>": len(CHARS) + i for i, c in enumerate(CHARS)}
    vocab |= {"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 77}))
    config = CLIPTextConfig(
        vocab_size=len(vocab),
        hidden_size=width,
        intermediate_size=ffn,
        projection_dim=width,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        max_position_embeddings=77,
        bos_token_id=vocab["<|startoftext|>"],
        eos_token_id=vocab["<|endoftext|>"],
    )
    model = CLIPTextModelWithProjection(config) if projection else CLIPTextModel(config)
    return randomize(model, seed), CLIPTokenizer.from_pretrained(str(folder))


def t5_parts(seed: int, *, ffn: int = 37, layers: int = 2, heads: int = 4) -> tuple[T5EncoderModel, T5TokenizerFast]:
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [(c, -1.0) for c in CHARS + "▁"]
    tokenizer = T5TokenizerFast(vocab=vocab, extra_ids=0)
    config = T5Config(vocab_size=len(vocab), d_model=32, d_kv=8, d_ff=ffn, num_layers=layers, num_heads=heads)
    return randomize(T5EncoderModel(config), seed), tokenizer


def tiny_vae(latent_channels: int = 4, **extra) -> AutoencoderKL:
    vae = AutoencoderKL(
        block_out_channels=(32, 64),
        latent_channels=latent_channels,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        layers_per_block=1,
        sample_size=DIFFUSERS_SIZE,
        **extra,
    )
    return randomize(vae, 3)


def sd_snapshot(folder: Path) -> Path:
    text_encoder, tokenizer = clip_parts(folder.parent / f"{folder.name}-clip-src", 1)
    unet = UNet2DConditionModel(
        sample_size=DIFFUSERS_SIZE // 2,
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
        sample_size=DIFFUSERS_SIZE // 2,
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
    text_encoder, tokenizer = clip_parts(folder.parent / f"{folder.name}-clip-src", 6)
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


# ---- the diffusers adapter against the plain pipeline call -------------------------------------

EFFUSION = tuple(int(name == "Pleural Effusion") for name in CHEXPERT_LABELS)
IMPRESSION = "small left pleural effusion."


def make_diffusers(manager: WeightsManager, snapshot: str, **options) -> DiffusersGenerator:
    """The adapter on a tiny snapshot: 2 steps at the tiny size unless ``options`` say otherwise."""
    options = {"snapshot": snapshot, "steps": 2, "resolution": DIFFUSERS_SIZE, **options}
    return DiffusersGenerator("dif", DiffusersOptions(**options), GeneratorContext(weights=manager))


def text_condition(seed: int, impression: str = IMPRESSION) -> Condition:
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


def plain_call(pipe, prompt: str, seed: int, *, steps: int = 2, guidance: float, **extra) -> torch.Tensor:
    """The pipeline called directly, drawing its own noise from this image's seeded generator."""
    out = pipe(
        prompt=[prompt],
        num_inference_steps=steps,
        guidance_scale=guidance,
        height=DIFFUSERS_SIZE,
        width=DIFFUSERS_SIZE,
        generator=[torch.Generator().manual_seed(seed)],
        output_type="pt",
        **extra,
    ).images
    return gray(out)[0]


# ---- ChexGen -------------------------------------------------------------------------------

CHEXGEN_WIDTH, CHEXGEN_HEADS, CHEXGEN_TEXT, CHEXGEN_TOKENS = 16, 2, 8, 120
CHEXGEN_WORDS = "<pad> </s> <unk> small left pleural effusion . moderate cardiomegaly sex:male , age:74.0 race:black".split()


def dit_state(depth: int, latent: int, seed: int, prefix: str = "") -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)

    def r(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * 0.2

    w, n, text = CHEXGEN_WIDTH, (latent // 2) ** 2, CHEXGEN_TEXT
    s = {
        "x_embedder.proj.weight": r(w, 4, 2, 2), "x_embedder.proj.bias": r(w), "pos_embed": r(1, n, w),
        "t_embedder.mlp.0.weight": r(w, 256), "t_embedder.mlp.0.bias": r(w),
        "t_embedder.mlp.2.weight": r(w, w), "t_embedder.mlp.2.bias": r(w),
        "t_block.1.weight": r(6 * w, w), "t_block.1.bias": r(6 * w),
        "y_embedder.y_proj.fc1.weight": r(w, text), "y_embedder.y_proj.fc1.bias": r(w),
        "y_embedder.y_proj.fc2.weight": r(w, w), "y_embedder.y_proj.fc2.bias": r(w),
        "y_embedder.y_embedding": r(CHEXGEN_TOKENS, text),
        "final_layer.linear.weight": r(4 * 8, w), "final_layer.linear.bias": r(4 * 8), "final_layer.shift_scale_table": r(2, w),
    }  # fmt: skip
    for i in range(depth):
        s.update(block_state(f"blocks.{i}.", r))
    return {prefix + k: v for k, v in s.items()}


def block_state(p: str, r) -> dict[str, torch.Tensor]:
    w = CHEXGEN_WIDTH
    return {
        p + "attn.qkv.weight": r(3 * w, w), p + "attn.qkv.bias": r(3 * w), p + "attn.proj.weight": r(w, w),
        p + "attn.proj.bias": r(w), p + "cross_attn.q_linear.weight": r(w, w), p + "cross_attn.q_linear.bias": r(w),
        p + "cross_attn.kv_linear.weight": r(2 * w, w), p + "cross_attn.kv_linear.bias": r(2 * w),
        p + "cross_attn.proj.weight": r(w, w), p + "cross_attn.proj.bias": r(w), p + "mlp.fc1.weight": r(4 * w, w),
        p + "mlp.fc1.bias": r(4 * w), p + "mlp.fc2.weight": r(w, 4 * w), p + "mlp.fc2.bias": r(w),
        p + "shift_scale_gate_table": r(6, w),
    }  # fmt: skip


def control_state(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed + 1)

    def r(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * 0.2

    w = CHEXGEN_WIDTH
    s = dit_state(14, 64, seed, prefix="base_model.")
    for i in range(13):
        s.update(block_state(f"controlnet.{i}.copied_block.", r))
        s[f"controlnet.{i}.after_proj.weight"], s[f"controlnet.{i}.after_proj.bias"] = r(w, w), r(w)
    s["controlnet.0.before_proj.weight"], s["controlnet.0.before_proj.bias"] = r(w, w), r(w)
    return s


def save_pth(path: Path, state: dict[str, torch.Tensor]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict_ema": {"module." + k: v for k, v in state.items()}, "epoch": 3}, path)


def save_t5(folder: Path) -> None:
    folder.mkdir(parents=True)
    vocab = {w: i for i, w in enumerate(CHEXGEN_WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    tok.save(str(folder / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "eos_token": "</s>",
        "pad_token": "<pad>",
        "unk_token": "<unk>",
        "extra_ids": 0,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    (folder / "spiece.model").write_bytes(b"not read: tokenizer.json is")
    torch.manual_seed(0)
    cfg = T5Config(
        vocab_size=len(CHEXGEN_WORDS),
        d_model=CHEXGEN_TEXT,
        d_kv=4,
        d_ff=16,
        num_layers=1,
        num_heads=2,
        feed_forward_proj="gated-gelu",
    )
    T5EncoderModel(cfg).save_pretrained(str(folder))


def save_chexgen_vae(folder: Path) -> None:
    torch.manual_seed(1)
    vae = AutoencoderKL(
        block_out_channels=(4, 4, 4, 4), down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4, layers_per_block=1, norm_num_groups=2,
    )  # fmt: skip
    vae.save_pretrained(str(folder))


def chexgen_weights(manager: WeightsManager) -> None:
    """The 256, 512-impression and mask checkpoints, the T5 encoder and the VAE where ChexGen's artifacts point."""
    save_pth(manager.path("chexgen-256"), dit_state(2, 32, 0))
    save_pth(manager.path("chexgen-512-impression"), dit_state(2, 64, 1))
    save_pth(manager.path("chexgen-mask"), control_state(2))
    save_t5(manager.path("t5-v1_1-xxl"))
    save_chexgen_vae(manager.path("sd-vae-ft-ema"))


# ---- RadEdit -------------------------------------------------------------------------------

RADEDIT_SIZE = 32  # the tiny VAE downsamples by 2: 16 x 16 latents
BIOVIL_WIDTH = 32  # the tiny encoder's hidden size = the UNet's cross_attention_dim
SDXL_SCALING = 0.13025
BERT_SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
BERT_WORDS = ["small", "left", "pleural", "effusion", "no", "acute", "process", "cardiopulmonary", "pneumothorax", "."]


def biovil_snapshot(folder: Path, *, width: int = BIOVIL_WIDTH, drop: str = "") -> Path:
    folder.mkdir(parents=True)
    vocab = [*BERT_SPECIAL, *BERT_WORDS, *"abcdefghijklmnopqrstuvwxyz"]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "CXRBertTokenizer",
                "auto_map": {"AutoTokenizer": ["configuration_cxrbert.CXRBertTokenizer", None]},
                "do_lower_case": True,
                "model_max_length": 512,
            }
        )
    )
    bert = {
        "vocab_size": len(vocab),
        "hidden_size": width,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 37,
        "max_position_embeddings": 512,
    }
    mlm = randomize(BertForMaskedLM(BertConfig(**bert)), 5)
    state = dict(mlm.state_dict())
    state["bert.embeddings.position_ids"] = torch.arange(512).unsqueeze(0)  # as 2022 checkpoints carry it
    gen = torch.Generator().manual_seed(6)
    for name, shape in [("dense_to_hidden.weight", (8, width)), ("dense_to_output.weight", (8, 8)), ("LayerNorm.weight", (8,))]:
        state[f"cls_projection_head.{name}"] = torch.randn(shape, generator=gen)
    state.pop(drop, None)
    torch.save(state, folder / "pytorch_model.bin")
    config = {
        **bert,
        "architectures": ["CXRBertModel"],
        "auto_map": {"AutoConfig": "configuration_cxrbert.CXRBertConfig", "AutoModel": "modeling_cxrbert.CXRBertModel"},
        "model_type": "cxr-bert",
        "projection_size": 8,
        "transformers_version": "4.17.0",
    }
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def radedit_weights(manager: WeightsManager) -> None:
    """The UNet, the SDXL-scaled VAE and BioViL-T where RadEdit's artifacts point."""
    unet = UNet2DConditionModel(
        sample_size=RADEDIT_SIZE // 2,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=BIOVIL_WIDTH,
        attention_head_dim=4,
    )
    randomize(unet, 2).save_pretrained(str(manager.path("radedit-unet") / "unet"))
    vae = AutoencoderKL(
        block_out_channels=(32, 64),
        latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        layers_per_block=1,
        sample_size=RADEDIT_SIZE,
        scaling_factor=SDXL_SCALING,
        force_upcast=True,
    )
    randomize(vae, 3).save_pretrained(str(manager.path("sdxl-vae")))
    biovil_snapshot(manager.path("biovil-t"))


# ---- the whole zoo -------------------------------------------------------------------------

#: The diffusers families of the zoo: generator name -> (CheXGenBench artifact the snapshot stands in for, pipeline class).
DIFFUSERS_FAMILIES = {
    "sd": ("chexgenbench-sd-v1-5", "StableDiffusionPipeline"),
    "pixart": ("chexgenbench-pixart-sigma", "PixArtSigmaPipeline"),
    "flux": ("chexgenbench-flux", "FluxPipeline"),
}
SNAPSHOT_BUILDERS = {"sd": sd_snapshot, "pixart": pixart_snapshot, "flux": flux_snapshot}


def write_zoo(weights: Path, *, steps: int = 2) -> dict[str, dict[str, Any]]:
    """Write every zoo generator's tiny weights under ``weights`` and return their ``[generators]`` tables.

    The diffusers snapshots stand in for CheXGenBench's SD 1.5, PixArt-Σ and Flux fine-tunes at those artifacts'
    paths; ChexGen runs its default 512-impression release and the mask-controlled one; RadEdit its three folders.
    """
    manager = WeightsManager(weights)
    tables: dict[str, dict[str, Any]] = {}
    for name, (artifact, _) in DIFFUSERS_FAMILIES.items():
        SNAPSHOT_BUILDERS[name](manager.path(artifact))
        tables[name] = {"type": "diffusers", "snapshot": artifact, "steps": steps, "resolution": DIFFUSERS_SIZE}
    chexgen_weights(manager)
    for name, checkpoint in (("chexgen", "512-impression"), ("chexgen-mask", "mask")):
        tables[name] = {"type": "chexgen", "checkpoint": checkpoint, "steps": steps, "attention_heads": CHEXGEN_HEADS}
    radedit_weights(manager)
    tables["radedit"] = {"type": "radedit", "steps": steps, "resolution": RADEDIT_SIZE * 2}
    return tables
