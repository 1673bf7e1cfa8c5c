"""Noise predictions for the sampler: a diffusers UNet (optionally steered by a ControlNet) on
fixed text contexts, with classifier-free guidance.

As in the LDM ``p_sample_ddim``: with ``guidance == 1`` only the conditional prediction is
computed; otherwise ``eps = eps_u + guidance * (eps_c - eps_u)`` with the unconditional context
(the original calls the model twice; here both halves run as one batch — same arithmetic).
The ControlNet, as in ControlNet's ``ControlLDM.apply_model``, sees the hint for both halves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from xreal_bench.generators.diffusion.sampler import classifier_free_guidance

if TYPE_CHECKING:
    from diffusers import ControlNetModel, UNet2DConditionModel


class LatentDenoiser:
    """``denoise(z, t) -> eps`` for latents ``z`` (float32) of one batch."""

    def __init__(
        self,
        unet: UNet2DConditionModel,
        context: torch.Tensor,
        *,
        uncond_context: torch.Tensor | None = None,
        guidance: float = 1.0,
        controlnet: ControlNetModel | None = None,
        hint: torch.Tensor | None = None,
        control_scale: float = 1.0,
    ):
        if guidance != 1.0 and uncond_context is None:
            raise ValueError("classifier-free guidance needs an unconditional context")
        if (controlnet is None) != (hint is None):
            raise ValueError("a ControlNet needs a hint and a hint needs a ControlNet")
        self.unet, self.controlnet = unet, controlnet
        self.dtype = unet.dtype
        self.guidance, self.control_scale = guidance, control_scale
        if uncond_context is not None and guidance != 1.0:
            context = torch.cat([uncond_context.expand_as(context), context])
            hint = None if hint is None else torch.cat([hint, hint])
        self.context = context.to(self.dtype)
        self.hint = None if hint is None else hint.to(self.dtype)

    def __call__(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        guided = self.guidance != 1.0
        x = (torch.cat([z, z]) if guided else z).to(self.dtype)
        extra = {}
        if self.controlnet is not None:
            down, mid = self.controlnet(
                x,
                t,
                encoder_hidden_states=self.context,
                controlnet_cond=self.hint,
                conditioning_scale=self.control_scale,
                return_dict=False,
            )
            extra = {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}
        eps = self.unet(x, t, encoder_hidden_states=self.context, return_dict=False, **extra)[0].float()
        if not guided:
            return eps
        eps_uncond, eps_cond = eps.chunk(2)
        return classifier_free_guidance(eps_uncond, eps_cond, self.guidance)
