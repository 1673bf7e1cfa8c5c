"""Loading the parts of a latent diffusion model from the released files, in the original order.

The released code builds the model, whose autoencoder loads its own file (``ckpt_path``), and
then loads the main checkpoint non-strictly, so every part present in a later file replaces the
earlier one. :func:`load_latent_diffusion` keeps that rule: for each part, the *last* source
file that contains it provides it (e.g. XReal: ``ldm_ae.pth`` then ``backbone.pth`` — if the
backbone embeds ``first_stage_model.*`` weights, those are used, as in the original), and the
log says which file provided what.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers import (
    AutoencoderKL,
    ControlNetModel,
    DDIMScheduler,
    UNet2DConditionModel,
)
from torch import nn

from xreal_bench.errors import UserFacingError
from xreal_bench.generators.diffusion import original_config as oc
from xreal_bench.generators.diffusion.converted_cache import ConvertedCheckpoint
from xreal_bench.generators.diffusion.noise import SampleNoise
from xreal_bench.generators.diffusion.schedules import ldm_ddim_scheduler

COMPONENT_KEYS = {
    "unet": "model.diffusion_model.*",
    "unet_ema": "model_ema.*",
    "text_encoder": "cond_stage_model.*",
    "vae": "first_stage_model.* or a bare autoencoder",
    "controlnet": "control_model.*",
}


def place(module: nn.Module, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """Move a module (plain ``nn.Module.to``: diffusers' override only adds a warning for fp32-kept modules, of which these have none)."""
    return nn.Module.to(module, device=device, dtype=dtype)


@dataclass(frozen=True)
class Source:
    """An original checkpoint file and what kind of file it is (``ldm``, ``autoencoder``, ``controlnet``)."""

    path: Path
    kind: str


class Autoencoder:
    """A KL autoencoder in fp32 with the LDM's encode/decode conventions."""

    def __init__(self, vae: AutoencoderKL, device: torch.device):
        self.vae = place(vae, device, torch.float32)
        self.device = device

    @torch.no_grad()
    def encode(self, images: torch.Tensor, noise: SampleNoise | None = None) -> torch.Tensor:
        """Posterior mode, or a posterior sample with per-sample noise when ``noise`` is given."""
        dist = self.vae.encode(images.to(self.device, torch.float32)).latent_dist
        if noise is None:
            return dist.mode()
        return dist.mean + dist.std * noise.randn(*dist.mean.shape[1:])

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(latents.to(self.device, torch.float32)).sample.float()


class LatentDiffusionModel:
    """UNet (+ ControlNet), autoencoder and text encoder of one LDM, on one device."""

    def __init__(
        self,
        original: dict[str, Any],
        unet: UNet2DConditionModel,
        vae: AutoencoderKL,
        text_encoder: nn.Module,
        controlnet: ControlNetModel | None,
        scale_factor: float,
        device: torch.device,
        dtype: torch.dtype,
    ):
        self.original = original
        self.unet = place(unet, device, dtype)
        self.controlnet = None if controlnet is None else place(controlnet, device, dtype)
        self.autoencoder = Autoencoder(vae, device)
        self.text_encoder = place(text_encoder, device, torch.float32)
        self.scale_factor = scale_factor
        self.device, self.dtype = device, dtype
        self.latent_shape = (oc.latent_channels(original), oc.latent_size(original), oc.latent_size(original))
        self.image_size = oc.image_size(original)

    def scheduler(self) -> DDIMScheduler:
        return ldm_ddim_scheduler(*oc.schedule(self.original))

    def encode(self, images: torch.Tensor, noise: SampleNoise | None = None) -> torch.Tensor:
        """LatentDiffusion's ``encode_first_stage(x).sample() * scale_factor`` (``.mode()`` without noise)."""
        return self.autoencoder.encode(images, noise) * self.scale_factor

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """LatentDiffusion's ``decode_first_stage``: ``decode(z / scale_factor)`` (model value range)."""
        return self.autoencoder.decode(latents / self.scale_factor)


def pick_sources(
    sources: Sequence[Source], wanted: Sequence[str], original: dict[str, Any], log: logging.Logger
) -> dict[str, ConvertedCheckpoint]:
    """For each wanted component, the last source file that holds it (the original load order)."""
    files = [ConvertedCheckpoint(s.path, s.kind, original, log) for s in sources]
    chosen: dict[str, ConvertedCheckpoint] = {}
    for component in wanted:
        for f in reversed(files):
            if f.has(component):
                chosen[component] = f
                break
        else:
            names = ", ".join(str(s.path) for s in sources)
            raise UserFacingError(
                f"no checkpoint provides the {component} ({COMPONENT_KEYS[component]} keys); looked in: {names}"
            )
    for f in files:
        used = {c for c, src in chosen.items() if src is f}
        for group, count in f.unused_groups(used).items():
            hint = " (EMA weights; set ema = true to use them)" if group == "unet_ema" else ""
            log.info("%s: %d %s tensors not used%s", f.path.name, count, COMPONENT_KEYS.get(group, group), hint)
    return chosen


def load_latent_diffusion(
    sources: Sequence[Source],
    original: dict[str, Any],
    *,
    device: torch.device,
    dtype: torch.dtype,
    log: logging.Logger,
    ema: bool = False,
    controlnet: bool = False,
) -> LatentDiffusionModel:
    """Build the model from ``sources`` (in the original's load order)."""
    unet_name = "unet_ema" if ema else "unet"
    wanted = [unet_name, "vae", "text_encoder", *(["controlnet"] if controlnet else [])]
    chosen = pick_sources(sources, wanted, original, log)
    modules = {}
    for component in wanted:
        log.info("%s: from %s", component, chosen[component].describe(component))
        modules[component] = chosen[component].load(component)
    for f in set(chosen.values()):
        f.release()
    scale = oc.scale_factor(original)
    stored = chosen[unet_name].scale_factor
    if stored is not None:
        if original["model"]["params"].get("scale_by_std", False):
            scale = stored
            log.info("latent scale factor %.6g from the checkpoint's scale_factor buffer (scale_by_std)", scale)
        else:
            log.info("the checkpoint's scale_factor buffer (%.6g) is ignored, as the original does without scale_by_std", stored)
    return LatentDiffusionModel(
        original, modules[unet_name], modules["vae"], modules["text_encoder"], modules.get("controlnet"), scale, device, dtype
    )


def load_autoencoder(path: Path, original: dict[str, Any], device: torch.device, log: logging.Logger) -> Autoencoder:
    """A bare autoencoder file (e.g. XReal's anatomy controller) with the first-stage architecture."""
    checkpoint = ConvertedCheckpoint(path, "autoencoder", original, log)
    if not checkpoint.has("vae"):
        raise UserFacingError(f"{path}: no autoencoder weights (encoder.*, decoder.*) found")
    vae = checkpoint.load("vae")
    checkpoint.release()
    return Autoencoder(vae, device)
