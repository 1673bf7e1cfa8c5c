"""ControlNet on XReal's backbone — the baseline of the XReal paper.

As in XReal's ``cldm`` code (``ControlLDM`` + ``ControlNetModel.sample``): the backbone UNet,
text encoder and autoencoder, plus a ControlNet (lllyasviel layout: ``control_model.*``, a copy
of the UNet encoder with zero convolutions) whose hint encoder downsamples 4x (its last
stride-2 convolution has stride 1) so the 256 px hint meets the 64 x 64 latent. Hint: the
anatomy label map / 4 as 3 channels at 256 px. Prompt: by ``prompt_rule``, default
``controlnet_labels`` — the ControlNet's training text (XReal's ``DataVAE.get_text_labels``: every
positive CheXpert label, Support Devices and No Finding included, joined with a space). DDIM 100
steps, eta 1, no guidance (``guidance`` > 1 enables classifier-free guidance against
``negative_prompt``, the hint given to both halves), control scale 1 on every residual. Images
are in [0, 1]. Each image's manifest ``inputs`` hold its prompt record and the tokens truncation cut.

Weights: a trained ControlNet is not in XReal's public archive; bring your own checkpoint
(``xreal-controlnet``) in the lllyasviel/CompVis layout. The released inference
(``cldm/inference.py``) loads one *full* ControlLDM checkpoint (UNet, text encoder, ControlNet;
the autoencoder from ``ldm_ae`` via the config). ``backbone = "auto"`` (default) reads such a file
alone and takes the UNet and text encoder from the backbone file only when the ControlNet file
lacks them; ``"file"`` always loads the backbone first, and parts the ControlNet file holds
replace its own, as loading it over the backbone does in the original; ``"controlnet"`` reads the
ControlNet file alone. When no file provides the UNet the error names both files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch

from xreal_bench.errors import UserFacingError
from xreal_bench.generators.artifacts import BERT_TOKENIZER, XREAL_BACKBONE, XREAL_CONTROLNET, XREAL_LDM_AE
from xreal_bench.generators.base import Generator, GeneratorContext, GeneratorOutput, ProtocolStep, cited
from xreal_bench.generators.diffusion import original_config as oc
from xreal_bench.generators.diffusion import protocol
from xreal_bench.generators.diffusion.conditions import Notes, anatomy_batch, prompt_inputs, rule_prompts
from xreal_bench.generators.diffusion.denoisers import LatentDenoiser
from xreal_bench.generators.diffusion.noise import SampleNoise
from xreal_bench.generators.diffusion.options import check_prompt_rule, check_step_count, validate_sampling
from xreal_bench.generators.diffusion.runtime import (
    adapter_logger,
    device_and_dtype,
    require_weights,
    to_output,
)
from xreal_bench.generators.diffusion.sampler import ddim_sample
from xreal_bench.types import Condition
from xreal_bench.validation import require
from xreal_bench.weights import Artifact, WeightsManager

if TYPE_CHECKING:
    from xreal_bench.generators.diffusion.latent_models import Source

X = "BioMedIA-MBZUAI/XReal"
INFERENCE = f"{X} cldm/inference.py ControlNetModel"


@dataclass
class ControlNetOptions:
    #: DDIM steps (a divisor of the 1000 training steps).
    steps: int = cited(100, f"{INFERENCE}.sample sampling_steps=100 (l.55)")
    #: DDIM eta (1.0 as in XReal's ControlNet inference).
    eta: float = cited(1.0, f"{INFERENCE}.sample eta=1.0 (l.56)")
    #: Classifier-free guidance scale (1 = none, the released setting).
    guidance: float = cited(
        1.0, f"{INFERENCE}.sample passes no guidance scale: cldm/ddim_hacked.py DDIMSampler.sample default 1.0 (l.74)"
    )
    #: Unconditional prompt when guidance > 1.
    negative_prompt: str = cited(
        "",
        "not stated by the original (it runs without guidance); chosen because "
        f"{X} cldm/cldm.py ControlLDM.get_unconditional_conditioning encodes ''",
    )
    #: Rule building the prompt (:data:`~xreal_bench.generators.prompts.PROMPT_RULES`).
    prompt_rule: str = cited(
        "controlnet_labels",
        f"{X} cnet/train_cnet.py (l.187-198) trains on xreal/data_utils.py DataVAE.get_text_labels (l.279-289), "
        "Support Devices included",
    )
    #: Prompt when the rule finds no text.
    fallback_prompt: str = cited("", f"{X} xreal/data_utils.py DataVAE.get_text_labels returns '' when no label is 1 (l.281)")
    #: Multiplier of every ControlNet residual (ControlLDM's control_scales; 1 as released).
    control_scale: float = cited(1.0, f"{X} cldm/cldm.py ControlLDM.__init__ control_scales = [1.0] * 13 (l.313)")
    #: BERT tokens per prompt (longer prompts are truncated, as the original does).
    max_tokens: int = cited(
        150, f"{X} xreal/ldm/modules/encoders/modules.py BERTEmbedder max_seq_len=150 (l.103), passed to BERTTokenizer (l.108)"
    )
    #: Use the EMA UNet weights (``model_ema.*``) instead of the ones the original inference uses.
    ema: bool = cited(
        False,
        f"{X} cldm/ddim_hacked.py p_sample_ddim calls model.apply_model (non-EMA); cldm/inference.py never enters ema_scope",
    )
    #: CompVis YAML of the ControlLDM architecture; "" = XReal's ``xreal-diff-t2i_cnet.yml``.
    original_config: str = cited("", f"{INFERENCE}.__init__ config_path='../configs/xreal-diff-t2i_cnet.yml' (l.20)")
    #: Where the UNet and text encoder come from: ``auto`` = the ControlNet file when it holds them
    #: (a full ControlLDM checkpoint), else the backbone file; ``file`` = the backbone file, parts
    #: in the ControlNet file replacing its own; ``controlnet`` = the ControlNet file alone.
    backbone: Literal["auto", "file", "controlnet"] = cited(
        "auto",
        f"not stated as an option by the original: {INFERENCE}._init_checkpoint (l.39-50) loads one full ControlLDM "
        "checkpoint (the autoencoder from the config's ckpt_path); chosen because auto reads such a file alone, as the "
        "original, and still accepts a ControlNet-only file with the backbone",
    )

    def validate(self) -> None:
        validate_sampling(self.steps, self.eta, self.guidance, self.max_tokens)
        require(self.control_scale >= 0.0, "control_scale", f"expected >= 0, got {self.control_scale}")
        check_prompt_rule(self.prompt_rule)


class ControlNetGenerator(Generator):
    type_name = "controlnet"
    description = "ControlNet on XReal's backbone, anatomy-map hint (XReal's baseline; bring your own ControlNet checkpoint)"
    inputs = frozenset({"labels", "anatomy"})
    artifacts = (XREAL_BACKBONE, XREAL_LDM_AE, XREAL_CONTROLNET, BERT_TOKENIZER)
    Options = ControlNetOptions

    @classmethod
    def required_artifacts(cls, options: ControlNetOptions) -> tuple[Artifact, ...]:
        """The backbone file only with ``backbone = "file"``: ``auto`` uses it when it is there and the
        ControlNet file lacks the UNet (checked when the generator is built), ``controlnet`` never."""
        return tuple(a for a in cls.artifacts if a != XREAL_BACKBONE or options.backbone == "file")

    @classmethod
    def protocol_steps(
        cls, options: ControlNetOptions, context: GeneratorContext, condition: Condition | None
    ) -> list[ProtocolStep]:
        original, problem = protocol.architecture(options.original_config, oc.CONTROLNET)
        guided = f"classifier-free guidance {options.guidance} against {options.negative_prompt!r}, hint to both halves"
        return [
            protocol.prompt_step(options.prompt_rule, condition, options.fallback_prompt),
            protocol.text_encoder_step(context, options.max_tokens, UNET_SOURCE[options.backbone], X, "xreal"),
            protocol.scheduler_step(original, problem, options.steps, options.eta, f"{X} cldm/ddim_hacked.py"),
            ProtocolStep(
                "control",
                f"ControlNet residuals x {options.control_scale} on every block; "
                + (guided if options.guidance != 1.0 else "no guidance"),
                f"{X} cldm/cldm.py ControlLDM.apply_model (l.326-338)",
            ),
            protocol.precision_step(context),
            protocol.preprocessing_step(context, original, reads_real_images=False),
            ProtocolStep(
                "conditioning",
                "hint = anatomy label map (conditioning.anatomy) / 4 as 3 channels at the model size; the UNet and text "
                f"encoder from {UNET_SOURCE[options.backbone]}",
                f"{X} xreal/data_utils.py DataVAE.vae_mask_to_image_getitem (mask / 4, 3 channels, l.312-316); "
                "configs/xreal-diff-t2i_cnet.yml control_key: image (l.15)",
            ),
            protocol.weights_step(context, cls.required_artifacts(options)),
        ]

    def __init__(self, name: str, options: ControlNetOptions, context: GeneratorContext):
        from xreal_bench.generators.diffusion.latent_models import load_latent_diffusion
        from xreal_bench.generators.diffusion.text import BertPromptEncoder, load_bert_tokenizer

        super().__init__(name, options, context)
        self.log = adapter_logger(context, name)
        paths = require_weights(context, self.required_artifacts(options))
        self.original = oc.load_original_config(options.original_config, oc.CONTROLNET)
        try:
            check_step_count(options.steps, oc.schedule(self.original)[2])
        except ValueError as exc:
            raise UserFacingError(f"generators.{name}.{exc}") from None
        self.device, dtype = device_and_dtype(context, self.log)
        sources = self.sources(paths)
        self.model = load_latent_diffusion(
            sources, self.original, device=self.device, dtype=dtype, log=self.log, ema=options.ema, controlnet=True
        )
        tokenizer = load_bert_tokenizer(paths["bert-tokenizer"])
        self.prompts = BertPromptEncoder(
            tokenizer, self.model.text_encoder, max_length=options.max_tokens, device=self.device, log=self.log, model=name
        )
        self.scheduler = self.model.scheduler()

    def sources(self, paths: dict[str, Path]) -> list[Source]:
        """The files to load, in the original's order (later files' parts replace earlier ones)."""
        from xreal_bench.generators.diffusion.converted_cache import ConvertedCheckpoint
        from xreal_bench.generators.diffusion.latent_models import Source

        autoencoder = Source(paths["xreal-ldm-ae"], "autoencoder")
        control = Source(paths["xreal-controlnet"], "controlnet")
        mode = self.options.backbone
        if mode == "file":
            return [autoencoder, Source(paths["xreal-backbone"], "ldm"), control]
        unet = "unet_ema" if self.options.ema else "unet"
        if ConvertedCheckpoint(control.path, "controlnet", self.original, self.log).has(unet):
            self.log.info("%s holds the UNet (a full ControlLDM checkpoint): the backbone file is not read", control.path.name)
            return [autoencoder, control]
        manager = self.context.weights if self.context.weights is not None else WeightsManager()
        backbone = manager.path(XREAL_BACKBONE)
        prefix = "model_ema." if self.options.ema else "model.diffusion_model."
        if mode == "controlnet" or manager.missing_files(XREAL_BACKBONE):
            why = "backbone = 'controlnet' reads no other file" if mode == "controlnet" else f"{backbone} does not exist"
            raise UserFacingError(
                f"{self.name}: no file provides the UNet: the ControlNet checkpoint xreal-controlnet ({control.path}) holds "
                f"no {prefix}* keys (a ControlNet-only checkpoint), and the backbone xreal-backbone ({backbone}) is not "
                f"used ({why}). Place XReal's backbone.pth there with backbone = 'auto' or 'file' "
                f"({XREAL_BACKBONE.source}), or use a full ControlLDM checkpoint."
            )
        return [autoencoder, Source(backbone, "ldm"), control]

    @property
    def resolution(self) -> int:
        return self.model.image_size

    @torch.no_grad()
    def generate(self, conditions: Sequence[Condition]) -> GeneratorOutput:
        notes = Notes(conditions, self.log, self.name)
        hint = (anatomy_batch(conditions, self.model.image_size, notes) / 4.0).expand(-1, 3, -1, -1).to(self.device)
        prompts = rule_prompts(self.options.prompt_rule, conditions, notes, fallback=self.options.fallback_prompt)
        texts = [p.text for p in prompts]
        cut = self.prompts.tokens_cut(texts)
        uncond = self.prompts([self.options.negative_prompt]) if self.options.guidance != 1.0 else None
        denoise = LatentDenoiser(
            self.model.unet,
            self.prompts(texts),
            uncond_context=uncond,
            guidance=self.options.guidance,
            controlnet=self.model.controlnet,
            hint=hint,
            control_scale=self.options.control_scale,
        )
        noise = SampleNoise.from_seeds([c.seed for c in conditions], self.device)
        z = ddim_sample(denoise, self.scheduler, noise, self.model.latent_shape, steps=self.options.steps, eta=self.options.eta)
        inputs = [prompt_inputs(p, n) for p, n in zip(prompts, cut, strict=True)]
        return to_output(self.model.decode(z).clamp(0.0, 1.0), notes, inputs)


UNET_SOURCE = {
    "auto": "xreal-controlnet when it holds model.diffusion_model.* (full ControlLDM), else xreal-backbone",
    "file": "xreal-backbone (parts in xreal-controlnet replace its own)",
    "controlnet": "xreal-controlnet (a full ControlLDM checkpoint)",
}
