"""ControlNet on XReal's backbone — the baseline of the XReal paper.

As in XReal's ``cldm`` code (``ControlLDM`` + ``ControlNetModel.sample``): the backbone UNet,
text encoder and autoencoder, plus a ControlNet (lllyasviel layout: ``control_model.*``, a copy
of the UNet encoder with zero convolutions) whose hint encoder downsamples 4x (its last
stride-2 convolution has stride 1) so the 256 px hint meets the 64 x 64 latent. Hint: the
anatomy label map / 4 as 3 channels at 256 px. Prompt: the positive label names (``fallback_prompt``
when there are none, noted). DDIM 100 steps, eta 1, no guidance (``guidance`` > 1 enables
classifier-free guidance against ``negative_prompt``, the hint given to both halves), control
scale 1 on every residual. Images are in [0, 1].

Weights: a trained ControlNet is not in XReal's public archive; bring your own checkpoint
(``xreal-controlnet``) in the lllyasviel/CompVis layout. Parts it contains besides
``control_model.*`` (a full ControlLDM state dict) replace the backbone's, as loading it over the
backbone does in the original.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from xreal_bench.errors import UserFacingError
from xreal_bench.generators.artifacts import BERT_TOKENIZER, XREAL_BACKBONE, XREAL_CONTROLNET, XREAL_LDM_AE
from xreal_bench.generators.base import Generator, GeneratorContext, GeneratorOutput
from xreal_bench.generators.diffusion import original_config as oc
from xreal_bench.generators.diffusion.conditions import Notes, anatomy_batch, choose_prompt
from xreal_bench.generators.diffusion.denoisers import LatentDenoiser
from xreal_bench.generators.diffusion.noise import SampleNoise
from xreal_bench.generators.diffusion.options import check_step_count, validate_sampling
from xreal_bench.generators.diffusion.runtime import (
    adapter_logger,
    device_and_dtype,
    require_weights,
    to_output,
)
from xreal_bench.generators.diffusion.sampler import ddim_sample
from xreal_bench.types import Condition
from xreal_bench.validation import require


@dataclass
class ControlNetOptions:
    #: DDIM steps (a divisor of the 1000 training steps).
    steps: int = 100
    #: DDIM eta (1.0 as in XReal's ControlNet inference).
    eta: float = 1.0
    #: Classifier-free guidance scale (1 = none, the released setting).
    guidance: float = 1.0
    #: Unconditional prompt when guidance > 1.
    negative_prompt: str = ""
    #: Prompt used when a case has no positive label.
    fallback_prompt: str = "No Finding"
    #: Multiplier of every ControlNet residual (ControlLDM's control_scales; 1 as released).
    control_scale: float = 1.0
    #: BERT tokens per prompt (longer prompts are truncated, as the original does).
    max_tokens: int = 150
    #: Use the EMA UNet weights (``model_ema.*``) instead of the ones the original inference uses.
    ema: bool = False
    #: CompVis YAML of the ControlLDM architecture; "" = XReal's ``xreal-diff-t2i_cnet.yml``.
    original_config: str = ""

    def validate(self) -> None:
        validate_sampling(self.steps, self.eta, self.guidance, self.max_tokens)
        require(self.control_scale >= 0.0, "control_scale", f"expected >= 0, got {self.control_scale}")


class ControlNetGenerator(Generator):
    type_name = "controlnet"
    description = "ControlNet on XReal's backbone, anatomy-map hint (XReal's baseline; bring your own ControlNet checkpoint)"
    inputs = frozenset({"labels", "anatomy"})
    artifacts = (XREAL_BACKBONE, XREAL_LDM_AE, XREAL_CONTROLNET, BERT_TOKENIZER)
    Options = ControlNetOptions

    def __init__(self, name: str, options: ControlNetOptions, context: GeneratorContext):
        from xreal_bench.generators.diffusion.latent_models import Source, load_latent_diffusion
        from xreal_bench.generators.diffusion.text import BertPromptEncoder, load_bert_tokenizer

        super().__init__(name, options, context)
        self.log = adapter_logger(context, name)
        paths = require_weights(context, self.artifacts)
        self.original = oc.load_original_config(options.original_config, oc.CONTROLNET)
        try:
            check_step_count(options.steps, oc.schedule(self.original)[2])
        except ValueError as exc:
            raise UserFacingError(f"generators.{name}.{exc}") from None
        self.device, dtype = device_and_dtype(context, self.log)
        sources = [
            Source(paths["xreal-ldm-ae"], "autoencoder"),
            Source(paths["xreal-backbone"], "ldm"),
            Source(paths["xreal-controlnet"], "controlnet"),
        ]
        self.model = load_latent_diffusion(
            sources, self.original, device=self.device, dtype=dtype, log=self.log, ema=options.ema, controlnet=True
        )
        tokenizer = load_bert_tokenizer(paths["bert-tokenizer"])
        self.prompts = BertPromptEncoder(
            tokenizer, self.model.text_encoder, max_length=options.max_tokens, device=self.device, log=self.log, model=name
        )
        self.scheduler = self.model.scheduler()

    @property
    def resolution(self) -> int:
        return self.model.image_size

    @torch.no_grad()
    def generate(self, conditions: Sequence[Condition]) -> GeneratorOutput:
        notes = Notes(conditions, self.log, self.name)
        hint = (anatomy_batch(conditions, self.model.image_size, notes) / 4.0).expand(-1, 3, -1, -1).to(self.device)
        prompts = [
            choose_prompt(i, [("label names", c.prompt), ("fallback_prompt", self.options.fallback_prompt)], notes)
            for i, c in enumerate(conditions)
        ]
        self.prompts.tokens_cut(prompts)
        uncond = self.prompts([self.options.negative_prompt]) if self.options.guidance != 1.0 else None
        denoise = LatentDenoiser(
            self.model.unet,
            self.prompts(prompts),
            uncond_context=uncond,
            guidance=self.options.guidance,
            controlnet=self.model.controlnet,
            hint=hint,
            control_scale=self.options.control_scale,
        )
        noise = SampleNoise.from_seeds([c.seed for c in conditions], self.device)
        z = ddim_sample(denoise, self.scheduler, noise, self.model.latent_shape, steps=self.options.steps, eta=self.options.eta)
        return to_output(self.model.decode(z).clamp(0.0, 1.0), notes)
