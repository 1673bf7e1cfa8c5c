"""XReal (BioMedIA-MBZUAI/XReal): anatomy- and pathology-controlled latent diffusion.

The released inference (``xRealModel.sample_controlled``), batched:

1. **Anatomy input.** The label map (0 background, 1/2 lungs, 3 heart, 4 aorta) as 3 channels
   divided by 4 goes through the *anatomy controller* autoencoder (posterior mode, decode,
   clamp to [0, 1]) giving x̂. Latent mask: the map resized to the latent size with OpenCV's
   bicubic (as the original), 1 where > 0 and ``soft_mask`` (0.2) elsewhere.
2. **Anatomy pass.** z0 = E(x̂) posterior *sample* x 0.18215; DDIM (100 steps, eta 1, t = 991 ... 1)
   from noise, with ``z = q_sample(z0, t) m + (1 - m) z`` before each of the first
   ``anatomy_blend_steps`` (50) steps (fresh noise each time); empty prompt, no guidance;
   decode, clamp -> x̂_a.
3. **Pathology pass.** Same sampler on target x̂_a (re-encoded, posterior sample) with
   m = 1 - box (the pathology region at latent resolution), blended before *every* step;
   prompt = the positive label names; classifier-free guidance 7.0 against "".
   Decode, clamp to [0, 1].

Modes: ``full`` (1-3), ``anatomy_only`` (1-2), ``edit`` (3 on the case's real image — the
paper's Fig. 5/6 use). Documented behaviour for incomplete inputs (each recorded as a note in the
run log and in the output's ``notes``): no positive label, or no usable pathology region -> the anatomy
pass image; a box partly outside the image -> clipped; entirely outside -> ignored; an anatomy
map of the wrong size -> resized by :func:`xreal_bench.imaging.resize_label_map`.
Differences from the original, none of which changes the images for the same noise: batches of
any size with per-sample random streams, optional fp16/bf16 UNet on GPU, both guidance halves in
one batched call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from xreal_bench.errors import UserFacingError
from xreal_bench.generators.artifacts import BERT_TOKENIZER, XREAL_ANATOMY_CONTROLLER, XREAL_BACKBONE, XREAL_LDM_AE
from xreal_bench.generators.base import Generator, GeneratorContext, GeneratorOutput
from xreal_bench.generators.diffusion import original_config as oc
from xreal_bench.generators.diffusion.conditions import (
    Notes,
    anatomy_batch,
    pathology_region,
    real_image_batch,
)
from xreal_bench.generators.diffusion.denoisers import LatentDenoiser
from xreal_bench.generators.diffusion.images import cv2_cubic_resize
from xreal_bench.generators.diffusion.noise import SampleNoise
from xreal_bench.generators.diffusion.options import check_step_count, validate_sampling
from xreal_bench.generators.diffusion.runtime import (
    adapter_logger,
    device_and_dtype,
    require_weights,
    to_output,
)
from xreal_bench.generators.diffusion.sampler import Blend, ddim_sample
from xreal_bench.types import Condition
from xreal_bench.validation import require
from xreal_bench.weights import Artifact


def anatomy_latent_mask(anatomy: torch.Tensor, size: int, soft: float) -> torch.Tensor:
    """The anatomy pass's latent mask ``(B, 1, size, size)``: the map / 4 resized with OpenCV's bicubic
    (as released), then 1 where > 0 and ``soft`` elsewhere."""
    small = cv2_cubic_resize(anatomy / 4.0, size)
    return torch.where(small > 0, 1.0, soft)


@dataclass
class XRealOptions:
    #: ``full`` = anatomy + pathology pass; ``anatomy_only``; ``edit`` = add the pathology to the real image.
    mode: Literal["full", "anatomy_only", "edit"] = "full"
    #: DDIM steps (a divisor of the 1000 training steps).
    steps: int = 100
    #: DDIM eta (1.0: fresh noise every step, as released).
    eta: float = 1.0
    #: Anatomy pass: blend the anatomy target before the first this-many steps.
    anatomy_blend_steps: int = 50
    #: Latent mask value outside the organs in the anatomy pass.
    soft_mask: float = 0.2
    #: Classifier-free guidance scale of the pathology pass (1 = none).
    guidance: float = 7.0
    #: Unconditional prompt for guidance.
    negative_prompt: str = ""
    #: Prompt of the anatomy pass.
    anatomy_prompt: str = ""
    #: BERT tokens per prompt (longer prompts are truncated, as the original does).
    max_tokens: int = 150
    #: Use the EMA UNet weights (``model_ema.*``); the released inference uses the non-EMA ones.
    ema: bool = False
    #: CompVis YAML of the backbone's architecture; "" = the released architecture.
    original_config: str = ""

    def validate(self) -> None:
        validate_sampling(self.steps, self.eta, self.guidance, self.max_tokens)
        blend = self.anatomy_blend_steps
        require(0 <= blend <= self.steps, "anatomy_blend_steps", f"expected 0..steps ({self.steps}), got {blend}")
        require(0.0 <= self.soft_mask <= 1.0, "soft_mask", f"expected 0..1, got {self.soft_mask}")


class XRealGenerator(Generator):
    type_name = "xreal"
    description = "XReal: anatomy + pathology controlled latent diffusion (released weights, CC BY-NC 4.0)"
    inputs = frozenset({"labels", "anatomy", "pathology", "image"})
    artifacts = (XREAL_BACKBONE, XREAL_LDM_AE, XREAL_ANATOMY_CONTROLLER, BERT_TOKENIZER)
    Options = XRealOptions

    @classmethod
    def required_artifacts(cls, options: XRealOptions) -> tuple[Artifact, ...]:
        """Edit mode starts from the real image: no anatomy controller."""
        return tuple(a for a in cls.artifacts if not (a == XREAL_ANATOMY_CONTROLLER and options.mode == "edit"))

    def __init__(self, name: str, options: XRealOptions, context: GeneratorContext):
        from xreal_bench.generators.diffusion.latent_models import (
            Source,
            load_autoencoder,
            load_latent_diffusion,
        )
        from xreal_bench.generators.diffusion.text import BertPromptEncoder, load_bert_tokenizer

        super().__init__(name, options, context)
        self.log = adapter_logger(context, name)
        paths = require_weights(context, self.required_artifacts(options))
        self.original = oc.load_original_config(options.original_config, oc.XREAL)
        try:
            check_step_count(options.steps, oc.schedule(self.original)[2])
        except ValueError as exc:
            raise UserFacingError(f"generators.{name}.{exc}") from None
        self.device, dtype = device_and_dtype(context, self.log)
        self.model = load_latent_diffusion(
            [Source(paths["xreal-ldm-ae"], "autoencoder"), Source(paths["xreal-backbone"], "ldm")],
            self.original,
            device=self.device,
            dtype=dtype,
            log=self.log,
            ema=options.ema,
        )
        self.anatomy_controller = None
        if options.mode != "edit":
            self.anatomy_controller = load_autoencoder(paths["xreal-anatomy-controller"], self.original, self.device, self.log)
        tokenizer = load_bert_tokenizer(paths["bert-tokenizer"])
        self.prompts = BertPromptEncoder(
            tokenizer, self.model.text_encoder, max_length=options.max_tokens, device=self.device, log=self.log, model=name
        )
        self.scheduler = self.model.scheduler()

    @property
    def resolution(self) -> int:
        return self.model.image_size

    # ------------------------------------------------------------------ generation

    @torch.no_grad()
    def generate(self, conditions: Sequence[Condition]) -> GeneratorOutput:
        notes = Notes(conditions, self.log, self.name)
        noise = SampleNoise.from_seeds([c.seed for c in conditions], self.device)
        size = self.model.image_size
        if self.options.mode == "edit":
            start = real_image_batch(conditions, size, self.context.geometry).to(self.device).expand(-1, 3, -1, -1)
        else:
            start = self.anatomy_pass(anatomy_batch(conditions, size, notes).to(self.device), noise)
        images = start
        if self.options.mode != "anatomy_only":
            regions, prompts = self.pathology_inputs(conditions, notes)
            todo = [i for i, r in enumerate(regions) if r is not None]
            if todo:
                images = start.clone()
                box = torch.stack([regions[i] for i in todo])[:, None].to(self.device)
                images[todo] = self.pathology_pass(start[todo], box, [prompts[i] for i in todo], noise.subset(todo))
        return to_output(images, notes)

    def anatomy_pass(self, anatomy: torch.Tensor, noise: SampleNoise) -> torch.Tensor:
        """Label maps ``(B, 1, S, S)`` -> anatomy-pass images ``(B, 3, S, S)`` in [0, 1]."""
        if self.anatomy_controller is None:
            raise RuntimeError("the anatomy pass needs the anatomy controller (not loaded in mode = 'edit')")
        controller_input = (anatomy / 4.0).expand(-1, 3, -1, -1)
        x_hat = self.anatomy_controller.decode(self.anatomy_controller.encode(controller_input)).clamp(0.0, 1.0)
        target = self.model.encode(x_hat, noise)
        context = self.prompts([self.options.anatomy_prompt] * len(anatomy))
        mask = anatomy_latent_mask(anatomy, self.model.latent_shape[-1], self.options.soft_mask)
        blend = Blend(target, mask, steps=self.options.anatomy_blend_steps)
        z = ddim_sample(
            LatentDenoiser(self.model.unet, context),
            self.scheduler,
            noise,
            self.model.latent_shape,
            steps=self.options.steps,
            eta=self.options.eta,
            blend=blend,
        )
        return self.model.decode(z).clamp(0.0, 1.0)

    def pathology_pass(self, images: torch.Tensor, region: torch.Tensor, prompts: list[str], noise: SampleNoise) -> torch.Tensor:
        """Images ``(B, 3, S, S)`` in [0, 1] + regions ``(B, 1, h, w)`` -> images with the pathology generated in the region."""
        target = self.model.encode(images, noise)
        self.prompts.tokens_cut(prompts)
        denoise = LatentDenoiser(
            self.model.unet,
            self.prompts(prompts),
            uncond_context=self.prompts([self.options.negative_prompt]),
            guidance=self.options.guidance,
        )
        z = ddim_sample(
            denoise,
            self.scheduler,
            noise,
            self.model.latent_shape,
            steps=self.options.steps,
            eta=self.options.eta,
            blend=Blend(target, 1.0 - region, steps=None),
        )
        return self.model.decode(z).clamp(0.0, 1.0)

    def pathology_inputs(self, conditions: Sequence[Condition], notes: Notes) -> tuple[list[torch.Tensor | None], list[str]]:
        """Per sample: the pathology region at latent size (None -> anatomy-pass image) and the prompt."""
        regions: list[torch.Tensor | None] = []
        prompts = []
        latent = self.model.latent_shape[-1]
        kept = "the real image" if self.options.mode == "edit" else "the anatomy-pass image"
        for i, c in enumerate(conditions):
            prompt = c.prompt.strip() or ", ".join(c.positives)
            region = pathology_region(c, i, latent, notes) if prompt else None
            if not prompt:
                notes.add(i, f"no positive pathology label: pathology pass skipped, output is {kept}")
            elif region is None:
                notes.add(i, f"no pathology region (no box inside the image, no mask): pathology pass skipped, output is {kept}")
            regions.append(region)
            prompts.append(prompt)
        return regions, prompts
