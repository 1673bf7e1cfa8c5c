"""Tiny latent-diffusion models in the ORIGINAL checkpoint layouts, for the adapter tests.

The modules are diffusers' (the same families the adapters build), randomly initialised at tiny
widths; their weights are written back to the CompVis (``model.diffusion_model.``,
``first_stage_model.``, ``cond_stage_model.transformer.``), lllyasviel (``control_model.``) and bare
autoencoder key layouts by the inverse maps below, into the released file names, so the
adapters load them exactly as they would load the real files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
from diffusers.pipelines.latent_diffusion.pipeline_latent_diffusion import (
    LDMBertConfig,
    LDMBertModel,
)

from xreal_bench.generators.diffusion import original_config as oc
from xreal_bench.generators.diffusion.conversion import (
    controlnet_config,
    text_encoder_config,
    unet_config,
    vae_config,
)
from xreal_bench.generators.diffusion.schedules import ldm_linear_alphas_cumprod
from xreal_bench.weights import WeightsManager

#: Words the tiny BERT vocabulary knows (everything else becomes [UNK]).
VOCAB_WORDS = [
    "atelectasis",
    "cardiomegaly",
    "consolidation",
    "edema",
    "lung",
    "opacity",
    "pneumothorax",
    "pneumonia",
    "pleural",
    "effusion",
    "large",
    "small",
    "right",
    "left",
    "sided",
    "no",
    "acute",
    "finding",
    ",",
    ".",
    "-",
]


def tiny_original_config(control: bool = False, image_size: int = 64) -> dict[str, Any]:
    """The released architecture's structure (4 UNet levels, attention at rates 8/4/2, 2 res blocks,
    3-level autoencoder, BERT encoder) at tiny widths: 64 px images, 16 x 16 latents."""
    return oc.scaled_down(oc.CONTROLNET if control else oc.XREAL, image_size=image_size, vocab_size=5 + len(VOCAB_WORDS))


def randomize(module: torch.nn.Module, seed: int, scale: float = 0.05) -> torch.nn.Module:
    """Give every parameter random values (norm weights near 1) so nothing is zero by construction."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=gen) * scale
            is_norm_weight = name.endswith("weight") and p.ndim == 1
            p.copy_(1.0 + noise if is_norm_weight else noise)
    return module.eval()


# ----------------------------------------------------------------------------- diffusers -> original keys


def _resnet_to_ldm(name: str) -> str:
    return (
        name.replace("norm1", "in_layers.0")
        .replace("conv1", "in_layers.2")
        .replace("time_emb_proj", "emb_layers.1")
        .replace("norm2", "out_layers.0")
        .replace("conv2", "out_layers.3")
        .replace("conv_shortcut", "skip_connection")
    )


def _unet_encoder_key(key: str, layers: int) -> str | None:
    """Keys shared by the UNet and the ControlNet encoder (time embedding, conv_in, down and mid blocks)."""
    parts = key.split(".")
    if key.startswith("time_embedding.linear_1."):
        return "time_embed.0." + parts[-1]
    if key.startswith("time_embedding.linear_2."):
        return "time_embed.2." + parts[-1]
    if key.startswith("conv_in."):
        return "input_blocks.0.0." + parts[-1]
    if parts[0] == "down_blocks":
        b, kind = int(parts[1]), parts[2]
        if kind == "downsamplers":
            return f"input_blocks.{(b + 1) * (layers + 1)}.0.op." + parts[-1]
        j, rest = int(parts[3]), ".".join(parts[4:])
        index = 1 + b * (layers + 1) + j
        return f"input_blocks.{index}.0.{_resnet_to_ldm(rest)}" if kind == "resnets" else f"input_blocks.{index}.1.{rest}"
    if parts[0] == "mid_block":
        kind, j, rest = parts[1], int(parts[2]), ".".join(parts[3:])
        return f"middle_block.{2 * j}.{_resnet_to_ldm(rest)}" if kind == "resnets" else f"middle_block.1.{rest}"
    return None


def unet_to_ldm(state: dict[str, torch.Tensor], layers: int, attention_up_blocks: set[int]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        new = _unet_encoder_key(key, layers)
        if new is None and parts[0] == "up_blocks":
            b, kind = int(parts[1]), parts[2]
            if kind == "upsamplers":
                slot = 2 if b in attention_up_blocks else 1
                new = f"output_blocks.{b * (layers + 1) + layers}.{slot}.conv." + parts[-1]
            else:
                j, rest = int(parts[3]), ".".join(parts[4:])
                index = b * (layers + 1) + j
                new = (
                    f"output_blocks.{index}.0.{_resnet_to_ldm(rest)}" if kind == "resnets" else f"output_blocks.{index}.1.{rest}"
                )
        elif new is None and key.startswith("conv_norm_out."):
            new = "out.0." + parts[-1]
        elif new is None and key.startswith("conv_out."):
            new = "out.2." + parts[-1]
        if new is None:
            raise KeyError(key)
        out["model.diffusion_model." + new] = value
    return out


def controlnet_to_ldm(state: dict[str, torch.Tensor], layers: int, prefix: str = "control_model.") -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        new = _unet_encoder_key(key, layers)
        if new is None and parts[0] == "controlnet_down_blocks":
            new = f"zero_convs.{parts[1]}.0.{parts[-1]}"
        elif new is None and parts[0] == "controlnet_mid_block":
            new = f"middle_block_out.0.{parts[-1]}"
        elif new is None and parts[0] == "controlnet_cond_embedding":
            index = {"conv_in": 0, "conv_out": 14}.get(parts[1])
            new = f"input_hint_block.{index if index is not None else 2 * (int(parts[2]) + 1)}.{parts[-1]}"
        if new is None:
            raise KeyError(key)
        out[prefix + new] = value
    return out


def vae_to_ldm(state: dict[str, torch.Tensor], levels: int, prefix: str = "") -> dict[str, torch.Tensor]:
    out = {}
    attn_names = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
    for key, value in state.items():
        new = key.replace("conv_norm_out", "norm_out")
        for i in range(levels):
            new = new.replace(f"encoder.down_blocks.{i}.resnets.", f"encoder.down.{i}.block.")
            new = new.replace(f"encoder.down_blocks.{i}.downsamplers.0.", f"encoder.down.{i}.downsample.")
            new = new.replace(f"decoder.up_blocks.{i}.resnets.", f"decoder.up.{levels - 1 - i}.block.")
            new = new.replace(f"decoder.up_blocks.{i}.upsamplers.0.", f"decoder.up.{levels - 1 - i}.upsample.")
        new = new.replace("mid_block.resnets.0", "mid.block_1").replace("mid_block.resnets.1", "mid.block_2")
        new = new.replace("conv_shortcut", "nin_shortcut")
        if "mid_block.attentions.0." in new:
            head, tail = new.split("mid_block.attentions.0.")
            module, param = tail.rsplit(".", 1)
            new = f"{head}mid.attn_1.{attn_names[module]}.{param}"
            if value.ndim == 2:
                value = value[:, :, None, None]  # the LDM's attention projections are 1x1 convolutions
        out[prefix + new] = value
    return out


def ldmbert_to_ldm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    p = "cond_stage_model.transformer."
    for key, value in state.items():
        parts = key.split(".")
        if key.startswith("model.embed_tokens."):
            new = "token_emb.weight"
        elif key.startswith("model.embed_positions."):
            new = "pos_emb.emb.weight"
        elif key.startswith("model.layer_norm."):
            new = "norm." + parts[-1]
        elif key.startswith("to_logits."):
            new = "to_logits." + parts[-1]
        else:
            i, module, param = int(parts[2]), ".".join(parts[3:-1]), parts[-1]
            new = (
                {
                    "self_attn_layer_norm": f"attn_layers.layers.{2 * i}.0",
                    "self_attn.q_proj": f"attn_layers.layers.{2 * i}.1.to_q",
                    "self_attn.k_proj": f"attn_layers.layers.{2 * i}.1.to_k",
                    "self_attn.v_proj": f"attn_layers.layers.{2 * i}.1.to_v",
                    "self_attn.out_proj": f"attn_layers.layers.{2 * i}.1.to_out",
                    "final_layer_norm": f"attn_layers.layers.{2 * i + 1}.0",
                    "fc1": f"attn_layers.layers.{2 * i + 1}.1.net.0.0",
                    "fc2": f"attn_layers.layers.{2 * i + 1}.1.net.2",
                }[module]
                + "."
                + param
            )
        out[p + new] = value
    return out


# ----------------------------------------------------------------------------- tiny models


class TinyLDM:
    """Random tiny modules of one architecture, and their weights in the original layouts."""

    def __init__(self, original: dict[str, Any], seed: int = 0):
        self.original = original
        self.unet = randomize(UNet2DConditionModel(**unet_config(original)), seed)
        self.vae = randomize(AutoencoderKL(**vae_config(original)), seed + 1)
        self.text_encoder = randomize(LDMBertModel(LDMBertConfig(**text_encoder_config(original))), seed + 2)
        self.controlnet = None
        if "control_stage_config" in original["model"]["params"]:
            self.controlnet = randomize(ControlNetModel(**controlnet_config(original)), seed + 3)
            randomize(self.controlnet.controlnet_cond_embedding, seed + 4, scale=0.3)  # a hint strong enough to see
        self.layers = unet_config(original)["layers_per_block"]
        self.levels = len(vae_config(original)["block_out_channels"])

    def unet_keys(self) -> dict[str, torch.Tensor]:
        types = unet_config(self.original)["up_block_types"]
        attention_up = {i for i, t in enumerate(types) if t.startswith("CrossAttn")}
        return unet_to_ldm(self.unet.state_dict(), self.layers, attention_up)

    def vae_keys(self, prefix: str = "") -> dict[str, torch.Tensor]:
        return vae_to_ldm(self.vae.state_dict(), self.levels, prefix)

    def text_keys(self) -> dict[str, torch.Tensor]:
        return ldmbert_to_ldm(self.text_encoder.state_dict())

    def control_keys(self, prefix: str = "control_model.") -> dict[str, torch.Tensor]:
        return controlnet_to_ldm(self.controlnet.state_dict(), self.layers, prefix)

    def schedule_buffers(self) -> dict[str, torch.Tensor]:
        abar = ldm_linear_alphas_cumprod(*oc.schedule(self.original))
        betas = 1 - abar / torch.cat([torch.ones(1), abar[:-1]])
        return {"betas": betas, "alphas_cumprod": abar, "alphas_cumprod_prev": torch.cat([torch.ones(1), abar[:-1]])}

    def backbone_checkpoint(self, with_vae: bool = False, ema: bool = False) -> dict[str, Any]:
        """A Lightning-style LatentDiffusion checkpoint (``state_dict`` + bookkeeping)."""
        state = {**self.unet_keys(), **self.text_keys(), **self.schedule_buffers()}
        if with_vae:
            state.update(self.vae_keys("first_stage_model."))
        if ema:
            state.update({("model_ema." + "".join(k.split(".")[1:])): v * 0.5 for k, v in self.unet_keys().items()})
            state.update({"model_ema.decay": torch.tensor(0.9999), "model_ema.num_updates": torch.tensor(10)})
        return {"state_dict": state, "epoch": 3, "global_step": 1000}

    def autoencoder_checkpoint(self, training_keys: bool = True) -> dict[str, Any]:
        state = self.vae_keys()
        if training_keys:
            state["loss.logvar"] = torch.zeros(())
            state["loss.discriminator.main.0.weight"] = torch.zeros(4, 3, 4, 4)
        return {"state_dict": state}

    def controlnet_checkpoint(self) -> dict[str, Any]:
        return {"state_dict": self.control_keys()}

    def full_controlldm_checkpoint(self) -> dict[str, Any]:
        """A trained ControlLDM as Lightning saves it: UNet, text encoder, autoencoder, ControlNet, schedule."""
        state = {**self.backbone_checkpoint(with_vae=True)["state_dict"], **self.control_keys()}
        return {"state_dict": state, "epoch": 1, "global_step": 10}


def write_bert_vocab(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *VOCAB_WORDS]
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    return folder


def place(manager: WeightsManager, name: str, checkpoint: Any) -> Path:
    """Write ``checkpoint`` where the weights manager expects artifact ``name``."""
    path = manager.path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)
    return path


def write_yaml(path: Path, original: dict[str, Any]) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(original))
    return path


__all__ = ["TinyLDM", "place", "randomize", "tiny_original_config", "write_bert_vocab", "write_yaml"]
