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
   m = 1 - region (the pathology region at latent resolution), blended before *every* step;
   prompt by ``prompt_rule`` (default ``xreal_labels``: the positive CheXpert labels joined with
   a space — ``DataVAE``'s text labels, which XReal's ControlNet training uses; that the released
   backbone trained on them cannot be shown from the released code, see the rule's citation);
   classifier-free guidance 7.0 against "".
   Decode, clamp to [0, 1].

Modes: ``full`` (1-3), ``anatomy_only`` (1-2), ``edit`` (3 on the case's real image — the
paper's Fig. 5/6 use).

**Cases without a pathology region** (every "No Finding" case; a pathology without a box or
mask): the released ``sample_controlled`` always runs step 3, with whatever mask it is given. With
an empty mask m = 1 - 0 = 1 everywhere, so before every step the latent is *replaced* by
``q_sample(E(x̂_a), t)``: all but the last step are overwritten, and the image is one guided DDIM
step from the target noised to t = 1, decoded — x̂_a re-encoded (a fresh posterior sample),
lightly denoised with the case's prompt ("No Finding" under ``xreal_labels``), decoded. That is
the default (``no_finding = "pathology_pass"``); ``no_finding = "anatomy_image"`` returns x̂_a
itself (the suite's earlier shortcut: also taken when the case has no positive pathology).

**Multi-label cases** run *one* pathology pass whose prompt holds every positive label (the
rule's join) and whose region is the union of the case's boxes. The released API takes one
label and one mask per call, so reproducing a multi-label case with it would mean chained calls
in an arbitrary order, each re-encoding the previous output and fixing the earlier regions as
blend targets; the backbone, in contrast, was trained on exactly the joined multi-label text of
each image (``DataVAE.get_text_labels``), so one pass with the joint text is in its training
distribution. The paper does not say how it generated multi-label MIMIC cases.

Other incomplete inputs (each recorded as a note in the run log and in the output's ``notes``):
a box partly outside the image -> clipped; entirely outside -> ignored; an anatomy map of the
wrong size -> resized by :func:`xreal_bench.imaging.resize_label_map`. Each image's manifest
``inputs`` hold the anatomy prompt, whether the pathology pass ran, and when it did its prompt
(:meth:`~xreal_bench.generators.prompts.Prompt.record`), the tokens truncation cut and whether
its mask was empty. Differences from the original, none of which changes the images for the
same noise: batches of any size with per-sample random streams, optional fp16/bf16 UNet on GPU,
both guidance halves in one batched call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from xreal_bench.errors import UserFacingError
from xreal_bench.generators.artifacts import BERT_TOKENIZER, XREAL_ANATOMY_CONTROLLER, XREAL_BACKBONE, XREAL_LDM_AE
from xreal_bench.generators.base import Generator, GeneratorContext, GeneratorOutput, ProtocolStep, cited
from xreal_bench.generators.diffusion import original_config as oc
from xreal_bench.generators.diffusion import protocol
from xreal_bench.generators.diffusion.conditions import (
    Notes,
    anatomy_batch,
    pathology_region,
    prompt_inputs,
    real_image_batch,
    rule_prompts,
)
from xreal_bench.generators.diffusion.denoisers import LatentDenoiser
from xreal_bench.generators.diffusion.images import cv2_cubic_resize
from xreal_bench.generators.diffusion.noise import SampleNoise
from xreal_bench.generators.diffusion.options import check_prompt_rule, check_step_count, validate_sampling
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


X = "BioMedIA-MBZUAI/XReal"
INFERENCE = f"{X} xreal/ldm/inference.py"


@dataclass
class XRealOptions:
    #: ``full`` = anatomy + pathology pass; ``anatomy_only``; ``edit`` = add the pathology to the real image.
    mode: Literal["full", "anatomy_only", "edit"] = cited(
        "full", f"{INFERENCE} xRealModel.sample_controlled (l.306-376: anatomy pass, then pathology pass)"
    )
    #: DDIM steps (a divisor of the 1000 training steps).
    steps: int = cited(100, f"{INFERENCE} xRealModel.sample_controlled sampling_steps=100 (l.312)")
    #: DDIM eta (1.0: fresh noise every step, as released).
    eta: float = cited(1.0, f"{INFERENCE} xRealModel.sample_spatial_input eta=1.0 (l.257)")
    #: Anatomy pass: blend the anatomy target before the first this-many steps.
    anatomy_blend_steps: int = cited(50, f"{INFERENCE} xRealModel.sample_controlled mask_timesteps=50 (l.360)")
    #: Latent mask value outside the organs in the anatomy pass.
    soft_mask: float = cited(0.2, f"{INFERENCE} xRealModel.__init__ soft_scale = 0.2 (l.221), used l.337")
    #: Classifier-free guidance scale of the pathology pass (1 = none).
    guidance: float = cited(7.0, f"{INFERENCE} xRealModel.sample_controlled unconditional_guidance_scale=7.0 (l.313)")
    #: Unconditional prompt for guidance.
    negative_prompt: str = cited("", f"{INFERENCE} xRealModel.sample_controlled unconditional_conditioning='' (l.371)")
    #: Prompt of the anatomy pass.
    anatomy_prompt: str = cited("", f"{INFERENCE} xRealModel.sample_controlled conditioning='' (l.359)")
    #: Rule building the pathology prompt (:data:`~xreal_bench.generators.prompts.PROMPT_RULES`).
    prompt_rule: str = cited(
        "xreal_labels",
        f"{X} xreal/data_utils.py DataVAE.get_text_labels (l.279-289): XReal's label text (the caveat on the backbone's training key is in the rule)",
    )
    #: Pathology prompt when the rule finds no text.
    fallback_prompt: str = cited("", f"{X} xreal/data_utils.py DataVAE.get_text_labels returns '' when no label is 1 (l.281)")
    #: Cases without a pathology region (every no-finding case): ``pathology_pass`` runs it with an
    #: empty mask as released; ``anatomy_image`` returns the anatomy-pass image (the suite's earlier shortcut).
    no_finding: Literal["pathology_pass", "anatomy_image"] = cited(
        "pathology_pass",
        f"{INFERENCE} xRealModel.sample_controlled always runs the pathology pass, mask = 1 - pathology_mask (l.364-372)",
    )
    #: BERT tokens per prompt (longer prompts are truncated, as the original does).
    max_tokens: int = cited(
        150, f"{X} xreal/ldm/modules/encoders/modules.py BERTEmbedder max_seq_len=150 (l.103), passed to BERTTokenizer (l.108)"
    )
    #: Use the EMA UNet weights (``model_ema.*``); the released inference uses the non-EMA ones.
    ema: bool = cited(
        False,
        f"{X} xreal/ldm/models/diffusion/ddim.py p_sample_ddim calls model.apply_model (the non-EMA UNet); "
        "xreal/ldm/inference.py never enters ema_scope",
    )
    #: CompVis YAML of the backbone's architecture; "" = the released architecture.
    original_config: str = cited("", f"{INFERENCE} xRealModel._get_config_dict / _get_unet_config_dict (l.379-429)")

    def validate(self) -> None:
        validate_sampling(self.steps, self.eta, self.guidance, self.max_tokens)
        blend = self.anatomy_blend_steps
        require(0 <= blend <= self.steps, "anatomy_blend_steps", f"expected 0..steps ({self.steps}), got {blend}")
        require(0.0 <= self.soft_mask <= 1.0, "soft_mask", f"expected 0..1, got {self.soft_mask}")
        check_prompt_rule(self.prompt_rule)


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

    @classmethod
    def protocol_steps(cls, options: XRealOptions, context: GeneratorContext, condition: Condition | None) -> list[ProtocolStep]:
        original, problem = protocol.architecture(options.original_config, oc.XREAL)
        no_region = "pathology pass with an empty mask" if options.no_finding == "pathology_pass" else "the anatomy-pass image"
        start = (
            "the real image" if options.mode == "edit" else "anatomy label map / 4 -> anatomy controller (mode, decode, clamp)"
        )
        return [
            protocol.prompt_step(options.prompt_rule, condition, options.fallback_prompt, "pathology_prompt"),
            protocol.text_encoder_step(context, options.max_tokens, "xreal-backbone", X, "xreal"),
            protocol.scheduler_step(original, problem, options.steps, options.eta, f"{X} xreal/ldm/models/diffusion/ddim.py"),
            ProtocolStep("passes", PASSES[options.mode], f"{INFERENCE} xRealModel.sample_controlled (l.354-373)"),
            protocol.precision_step(context),
            protocol.preprocessing_step(context, original, reads_real_images=options.mode == "edit"),
            ProtocolStep(
                "conditioning",
                f"{start}; pathology region = the union of the case's boxes, else its pathology mask; no region -> {no_region}",
                f"{INFERENCE} xRealModel.sample_controlled (l.330-352); multi-label handling: this module's docstring",
            ),
            protocol.weights_step(context, cls.required_artifacts(options)),
        ]

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
        o = self.options
        notes = Notes(conditions, self.log, self.name)
        noise = SampleNoise.from_seeds([c.seed for c in conditions], self.device)
        size = self.model.image_size
        if o.mode == "edit":
            start = real_image_batch(conditions, size, self.context.geometry).to(self.device).expand(-1, 3, -1, -1)
            inputs: list[dict[str, object]] = [{} for _ in conditions]
        else:
            start = self.anatomy_pass(anatomy_batch(conditions, size, notes).to(self.device), noise)
            inputs = [{"anatomy_prompt": o.anatomy_prompt} for _ in conditions]
        if o.mode == "anatomy_only":
            return to_output(start, notes, [{**record, "pathology_pass": False} for record in inputs])
        prompts = rule_prompts(o.prompt_rule, conditions, notes, fallback=o.fallback_prompt)
        regions = self.pathology_regions(conditions, notes)
        todo = [i for i, r in enumerate(regions) if r is not None]
        images = start
        if todo:
            texts = [prompts[i].text for i in todo]
            box = torch.stack([regions[i] for i in todo])[:, None].to(self.device)
            images = start.clone()
            images[todo] = self.pathology_pass(start[todo], box, texts, noise.subset(todo))
            for k, (i, cut) in enumerate(zip(todo, self.prompts.tokens_cut(texts), strict=True)):
                inputs[i].update(prompt_inputs(prompts[i], cut), empty_pathology_mask=not bool(box[k].any()))
        for i, record in enumerate(inputs):
            record["pathology_pass"] = i in todo
        return to_output(images, notes, inputs)

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

    def pathology_regions(self, conditions: Sequence[Condition], notes: Notes) -> list[torch.Tensor | None]:
        """Per sample, the pathology region at latent size: the boxes or mask; without one, an empty
        region (``no_finding = "pathology_pass"``) or None (the pass is skipped)."""
        latent = self.model.latent_shape[-1]
        kept = "the real image" if self.options.mode == "edit" else "the anatomy-pass image"
        regions: list[torch.Tensor | None] = []
        for i, c in enumerate(conditions):
            skip = self.options.no_finding == "anatomy_image"
            if skip and not c.positives:
                notes.add(i, f"no positive pathology label: pathology pass skipped, output is {kept}")
                regions.append(None)
                continue
            region = pathology_region(c, i, latent, notes)
            if region is None and skip:
                notes.add(i, f"no pathology region (no box inside the image, no mask): pathology pass skipped, output is {kept}")
            elif region is None:
                notes.add(i, "no pathology region (no box inside the image, no mask): pathology pass with an empty mask")
                region = torch.zeros(latent, latent)
            regions.append(region)
        return regions


PASSES = {
    "full": "anatomy pass (target blended before the first anatomy_blend_steps steps, empty prompt, no guidance), then "
    "the pathology pass (target outside the region blended before every step, guided)",
    "anatomy_only": "the anatomy pass only",
    "edit": "the pathology pass on the real image",
}
