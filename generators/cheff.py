"""Cheff (saiboxx/chexray-diffusion): report-to-image latent diffusion, optional 4x super-resolution.

As ``CheffLDMT2I.sample``: the released T2I LDM (same architecture as XReal's backbone) with
``cheff_autoencoder.pt`` as first stage and ``cheff_diff_t2i.pt`` as the model (whose embedded
parts, if any, replace the autoencoder file's, as in the original load order). Prompt: by
``prompt_rule``, default ``machex`` — the MaCheX ``report`` text Cheff trained on
(``Condition.report_text``: everything after ``FINDINGS:``, else after ``IMPRESSION:``, else the
whole report), else ``fallback_prompt`` ("", the caption MaCheX gives a study without a report;
noted); rule ``labels`` prompts with the positive label names instead. DDIM 100 steps, eta 1, no guidance; the decoded image lives in [-1, 1] and is mapped
to [0, 1]. Each image's manifest ``inputs`` hold its prompt record and the tokens truncation cut.

``super_resolution = true`` adds Cheff's SR stage (``cheff_sr_fine.pt``) as the notebook runs it:
the 256 px result made 8-bit grayscale by the notebook's PIL round trip
(:func:`~xreal_bench.generators.diffusion.images.pil_gray_8bit`), upsampled to 1024 px by the SR3
model (:mod:`xreal_bench.generators.diffusion.sr3`) with ancestral DDPM over all 2000 steps
(``method='ddpm'``; ``sr_sampler = "ddim"`` is ``CheffSRModel.sample``'s own default, 100 steps);
the harness then resizes it like any output.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from xreal_bench.errors import UserFacingError
from xreal_bench.generators.artifacts import BERT_TOKENIZER, CHEFF_AUTOENCODER, CHEFF_SR, CHEFF_T2I
from xreal_bench.generators.base import Generator, GeneratorContext, GeneratorOutput, ProtocolStep, cited
from xreal_bench.generators.diffusion import original_config as oc
from xreal_bench.generators.diffusion import protocol
from xreal_bench.generators.diffusion.conditions import Notes, prompt_inputs, rule_prompts
from xreal_bench.generators.diffusion.denoisers import LatentDenoiser
from xreal_bench.generators.diffusion.images import pil_gray_8bit, signed_to_unit, to_gray
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
from xreal_bench.weights import Artifact

C = "saiboxx/chexray-diffusion"
T2I = f"{C} cheff/ldm/inference.py CheffLDMT2I"
SR = f"{C} cheff/sr/sampler.py CheffSRModel"
NOTEBOOK = f"{C} notebooks/01_cheff.ipynb"


@dataclass
class CheffOptions:
    #: DDIM steps (a divisor of the 1000 training steps).
    steps: int = cited(100, f"{T2I}.sample sampling_steps=100 (l.194); {NOTEBOOK} cell 13")
    #: DDIM eta (1.0 as released).
    eta: float = cited(1.0, f"{T2I}.sample eta=1.0 (l.195); {NOTEBOOK} cell 13")
    #: Classifier-free guidance scale (1 = none, the released setting).
    guidance: float = cited(1.0, f"{T2I}.sample calls DDIMSampler.sample without guidance (l.203-210)")
    #: Unconditional prompt when guidance > 1.
    negative_prompt: str = cited(
        "", "not stated by the original (it runs without guidance); chosen because '' is the LDM's unconditional text"
    )
    #: Rule building the prompt (:data:`~xreal_bench.generators.prompts.PROMPT_RULES`); ``labels`` puts the label names first.
    prompt_rule: str = cited(
        "machex",
        f"{C} cheff/machex.py MimicT2IDataset.__getitem__ caption = meta['report'] (l.83), configs/cheff-diff-t2i.yml "
        "cond_stage_key: caption (l.11); saiboxx/machex machex.py MIMICParser._get_meta_data builds 'report' (l.404-428)",
    )
    #: Prompt when the rule's fields (report text, then label names) are all empty.
    fallback_prompt: str = cited(
        "",
        "saiboxx/machex machex.py MIMICParser._get_meta_data sets report = '' for a study without a report file "
        f"(l.410), which {C} cheff/machex.py passes on as the caption (l.83): Cheff trained on '' for those studies",
    )
    #: BERT tokens per prompt (longer reports are truncated, as the original does).
    max_tokens: int = cited(
        150, f"{C} cheff/ldm/modules/encoders/modules.py BERTEmbedder max_seq_len=150 (l.103), passed to BERTTokenizer (l.108)"
    )
    #: Use the EMA UNet weights (``model_ema.*``) instead of the ones the original inference uses.
    ema: bool = cited(
        False,
        f"{C} cheff/ldm/models/diffusion/ddim.py p_sample_ddim calls model.apply_model (non-EMA); "
        "cheff/ldm/inference.py never enters ema_scope",
    )
    #: CompVis YAML of the LDM's architecture; "" = the released ``CheffLDMT2I`` architecture.
    original_config: str = cited("", f"{T2I}._get_config_dict / _get_unet_config_dict (l.253-303)")
    #: Add Cheff's super-resolution stage (needs cheff_sr_fine.pt).
    super_resolution: bool = cited(
        False, f"{T2I}.sample returns the 256 px image (l.192-217); {SR} is a separate optional stage ({NOTEBOOK} cell 9)"
    )
    #: Output side of the super-resolution stage.
    sr_size: int = cited(1024, f"{SR}.sample resize(img, [1024, 1024]) (l.81)")
    #: SR sampler: ``ddpm`` = every one of the 2000 steps (slow: 20x DDIM's 100); ``ddim`` = ``sr_steps``, ``sr_eta``.
    sr_sampler: Literal["ddpm", "ddim"] = cited(
        "ddpm", f"{NOTEBOOK} cell 9 cheff_sr.sample(img=imgs, method='ddpm') ({SR}.sample's own default is 'ddim', l.75)"
    )
    #: DDIM steps of the SR stage (a divisor of its 2000 training steps; ``sr_sampler = "ddim"``).
    sr_steps: int = cited(100, f"{SR}.sample sampling_steps=100 (l.76)")
    #: DDIM eta of the SR stage (``sr_sampler = "ddim"``).
    sr_eta: float = cited(0.0, f"{SR}.sample eta=0. (l.77)")
    #: Feed the SR stage the 8-bit grayscale image the notebook makes (true) or the float luma (false).
    sr_input_8bit: bool = cited(
        True,
        f"{NOTEBOOK} cell 9 to_tensor(to_grayscale(to_pil_image(i))): channels truncated to uint8, PIL's rounded luma, / 255",
    )
    #: YAML with the SR UNet's arguments (dim, dim_mults, ...); "" = the released model.
    sr_config: str = cited(
        "", f"{SR}.__init__ Unet(dim=16, channels=2, out_dim=1, dim_mults=(1, 2, 4, 8, 16, 32, 32, 32)) (l.24-29)"
    )

    def validate(self) -> None:
        validate_sampling(self.steps, self.eta, self.guidance, self.max_tokens)
        check_prompt_rule(self.prompt_rule)
        if self.super_resolution:
            if self.sr_sampler == "ddim":
                try:
                    check_step_count(self.sr_steps, 2000, "sr_steps")
                except ValueError as exc:
                    require(False, "sr_steps", str(exc))
            require(64 <= self.sr_size <= 4096, "sr_size", f"expected 64..4096, got {self.sr_size}")
            require(self.sr_eta >= 0.0, "sr_eta", f"expected >= 0, got {self.sr_eta}")


class CheffGenerator(Generator):
    type_name = "cheff"
    description = f"Cheff: report-to-image latent diffusion (MIT); super_resolution = true also needs {CHEFF_SR.name}"
    inputs = frozenset({"text", "labels"})
    artifacts = (CHEFF_AUTOENCODER, CHEFF_T2I, BERT_TOKENIZER, CHEFF_SR)
    Options = CheffOptions

    @classmethod
    def required_artifacts(cls, options: CheffOptions) -> tuple[Artifact, ...]:
        """The super-resolution weights only with ``super_resolution = true``."""
        return tuple(a for a in cls.artifacts if a != CHEFF_SR or options.super_resolution)

    @classmethod
    def protocol_steps(cls, options: CheffOptions, context: GeneratorContext, condition: Condition | None) -> list[ProtocolStep]:
        original, problem = protocol.architecture(options.original_config, oc.CHEFF)
        steps = [
            protocol.prompt_step(options.prompt_rule, condition, options.fallback_prompt),
            protocol.text_encoder_step(context, options.max_tokens, "cheff-diff-t2i", C, "cheff"),
            protocol.scheduler_step(original, problem, options.steps, options.eta, f"{C} cheff/ldm/models/diffusion/ddim.py"),
            protocol.precision_step(context),
            protocol.preprocessing_step(context, original, reads_real_images=False),
            ProtocolStep("conditioning", "text only; the decoded image in [-1, 1] mapped to [0, 1]", f"{NOTEBOOK} cell 13"),
        ]
        if options.super_resolution:
            sampler = (
                "ancestral DDPM over all 2000 steps (x0 clamped to [-1, 1])"
                if options.sr_sampler == "ddpm"
                else f"DDIM {options.sr_steps} of 2000 steps, eta {options.sr_eta}"
            )
            source = "8-bit grayscale (PIL round trip)" if options.sr_input_8bit else "float ITU-R 601 luma"
            steps.append(
                ProtocolStep(
                    "super_resolution",
                    f"{source} of the 256 px image, bicubic to {options.sr_size} px, SR3 UNet, cosine schedule; {sampler}",
                    f"{SR}.sample (l.72-99); cheff/sr/diffusor.py SR3Diffusor.p_sample (l.167-176) / "
                    "SR3DDIMDiffusor.p_sample (l.335-359); cheff/sr/schedule.py CosineSchedule (l.84-108)",
                )
            )
        return [*steps, protocol.weights_step(context, cls.required_artifacts(options))]

    def __init__(self, name: str, options: CheffOptions, context: GeneratorContext):
        from xreal_bench.generators.diffusion.latent_models import Source, load_latent_diffusion
        from xreal_bench.generators.diffusion.text import BertPromptEncoder, load_bert_tokenizer

        super().__init__(name, options, context)
        self.log = adapter_logger(context, name)
        paths = require_weights(context, self.required_artifacts(options))
        self.original = oc.load_original_config(options.original_config, oc.CHEFF)
        try:
            check_step_count(options.steps, oc.schedule(self.original)[2])
        except ValueError as exc:
            raise UserFacingError(f"generators.{name}.{exc}") from None
        self.device, dtype = device_and_dtype(context, self.log)
        sources = [Source(paths["cheff-autoencoder"], "autoencoder"), Source(paths["cheff-diff-t2i"], "ldm")]
        self.model = load_latent_diffusion(sources, self.original, device=self.device, dtype=dtype, log=self.log, ema=options.ema)
        tokenizer = load_bert_tokenizer(paths["bert-tokenizer"])
        self.prompts = BertPromptEncoder(
            tokenizer, self.model.text_encoder, max_length=options.max_tokens, device=self.device, log=self.log, model=name
        )
        self.scheduler = self.model.scheduler()
        self.sr = self.sr_sampler = None
        if options.super_resolution:
            self.sr, self.sr_sampler = load_super_resolution(
                paths[CHEFF_SR.name], options.sr_config, options.sr_sampler, self.device, dtype, self.log
            )

    @property
    def resolution(self) -> int:
        return self.options.sr_size if self.options.super_resolution else self.model.image_size

    @torch.no_grad()
    def generate(self, conditions: Sequence[Condition]) -> GeneratorOutput:
        from xreal_bench.generators.diffusion.sr3 import super_resolve

        o = self.options
        notes = Notes(conditions, self.log, self.name)
        prompts = rule_prompts(o.prompt_rule, conditions, notes, fallback=o.fallback_prompt)
        texts = [p.text for p in prompts]
        cut = self.prompts.tokens_cut(texts)
        uncond = self.prompts([o.negative_prompt]) if o.guidance != 1.0 else None
        denoise = LatentDenoiser(self.model.unet, self.prompts(texts), uncond_context=uncond, guidance=o.guidance)
        noise = SampleNoise.from_seeds([c.seed for c in conditions], self.device)
        z = ddim_sample(denoise, self.scheduler, noise, self.model.latent_shape, steps=o.steps, eta=o.eta)
        images = signed_to_unit(self.model.decode(z))
        if self.sr is not None and self.sr_sampler is not None:
            low = pil_gray_8bit(images) if o.sr_input_8bit else to_gray(images)
            images = super_resolve(self.sr, low, self.sr_sampler, noise, size=o.sr_size, steps=o.sr_steps, eta=o.sr_eta)
        return to_output(images, notes, [prompt_inputs(p, n) for p, n in zip(prompts, cut, strict=True)])


def load_super_resolution(path, config_path: str, sampler: str, device: torch.device, dtype: torch.dtype, log):
    """Cheff's SR UNet from ``cheff_sr_fine.pt`` (``['model']``, loaded strictly) and its sampler
    (the DDPM schedule or a DDIM scheduler)."""
    import yaml

    from xreal_bench.generators.diffusion.latent_models import place
    from xreal_bench.generators.diffusion.schedules import sr3_ddim_scheduler, sr3_ddpm_schedule
    from xreal_bench.generators.diffusion.sr3 import SR3Config, SR3UNet
    from xreal_bench.safe_load import read_checkpoint, state_dict_of

    try:
        config = SR3Config.from_dict(yaml.safe_load(open(config_path)) or {}) if config_path else SR3Config()
    except (OSError, ValueError, TypeError, yaml.YAMLError) as exc:
        raise UserFacingError(f"sr_config {config_path}: {exc}") from None
    state = state_dict_of(read_checkpoint(path, log), path, key="model")
    model = SR3UNet(config)
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    if missing or unexpected or wrong:
        raise UserFacingError(
            f"{path}: the SR checkpoint does not match the SR architecture {config}:"
            + (f"\n  not filled: {', '.join(missing[:10])}" if missing else "")
            + (f"\n  unused keys: {', '.join(unexpected[:10])}" if unexpected else "")
            + (f"\n  wrong shapes: {', '.join(wrong[:10])}" if wrong else "")
        )
    model.load_state_dict(state, strict=True)
    log.info("super-resolution: %s (%d tensors), %s, %s sampler", path, len(state), config, sampler)
    schedule = sr3_ddpm_schedule(config.timesteps) if sampler == "ddpm" else sr3_ddim_scheduler(config.timesteps)
    return place(model.eval().requires_grad_(False), device, dtype), schedule
