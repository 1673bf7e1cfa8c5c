"""Cheff (saiboxx/chexray-diffusion): report-to-image latent diffusion, optional 4x super-resolution.

As ``CheffLDMT2I.sample``: the released T2I LDM (same architecture as XReal's backbone) with
``cheff_autoencoder.pt`` as first stage and ``cheff_diff_t2i.pt`` as the model (whose embedded
parts, if any, replace the autoencoder file's, as in the original load order). Prompt: the
report text (the impression by default, as selected by ``[conditioning].report_section``), else
the positive label names, else ``fallback_prompt`` (each fallback noted). DDIM 100 steps, eta 1,
no guidance; the decoded image lives in [-1, 1] and is mapped to [0, 1].

``super_resolution = true`` adds Cheff's SR stage (``cheff_sr_fine.pt``): the 256 px result,
in grayscale, upsampled to 1024 px by the SR3 model (:mod:`xreal_bench.generators.diffusion.sr3`);
the harness then resizes it like any output.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from xreal_bench.errors import UserFacingError
from xreal_bench.generators.artifacts import BERT_TOKENIZER, CHEFF_AUTOENCODER, CHEFF_SR, CHEFF_T2I
from xreal_bench.generators.base import Generator, GeneratorContext, GeneratorOutput
from xreal_bench.generators.diffusion import original_config as oc
from xreal_bench.generators.diffusion.conditions import Notes, choose_prompt
from xreal_bench.generators.diffusion.denoisers import LatentDenoiser
from xreal_bench.generators.diffusion.images import signed_to_unit, to_gray
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
from xreal_bench.weights import Artifact


@dataclass
class CheffOptions:
    #: DDIM steps (a divisor of the 1000 training steps).
    steps: int = 100
    #: DDIM eta (1.0 as released).
    eta: float = 1.0
    #: Classifier-free guidance scale (1 = none, the released setting).
    guidance: float = 1.0
    #: Unconditional prompt when guidance > 1.
    negative_prompt: str = ""
    #: First choice of prompt: the report text, or the positive label names.
    prompt_source: Literal["report", "labels"] = "report"
    #: Prompt when the report and the label names are both empty.
    fallback_prompt: str = "No Finding"
    #: BERT tokens per prompt (longer reports are truncated, as the original does).
    max_tokens: int = 150
    #: Use the EMA UNet weights (``model_ema.*``) instead of the ones the original inference uses.
    ema: bool = False
    #: CompVis YAML of the LDM's architecture; "" = the released ``CheffLDMT2I`` architecture.
    original_config: str = ""
    #: Add Cheff's super-resolution stage (needs cheff_sr_fine.pt).
    super_resolution: bool = False
    #: Output side of the super-resolution stage.
    sr_size: int = 1024
    #: DDIM steps of the SR stage (a divisor of its 2000 training steps).
    sr_steps: int = 100
    #: DDIM eta of the SR stage (0 in ``CheffSRModel.sample``).
    sr_eta: float = 0.0
    #: YAML with the SR UNet's arguments (dim, dim_mults, ...); "" = the released model.
    sr_config: str = ""

    def validate(self) -> None:
        validate_sampling(self.steps, self.eta, self.guidance, self.max_tokens)
        if self.super_resolution:
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
        self.sr = self.sr_scheduler = None
        if options.super_resolution:
            self.sr, self.sr_scheduler = load_super_resolution(
                paths[CHEFF_SR.name], options.sr_config, self.device, dtype, self.log
            )

    @property
    def resolution(self) -> int:
        return self.options.sr_size if self.options.super_resolution else self.model.image_size

    def prompt_for(self, index: int, condition: Condition, notes: Notes) -> str:
        report, labels = ("report", condition.report), ("label names", condition.prompt)
        first, second = (report, labels) if self.options.prompt_source == "report" else (labels, report)
        return choose_prompt(index, [first, second, ("fallback_prompt", self.options.fallback_prompt)], notes)

    @torch.no_grad()
    def generate(self, conditions: Sequence[Condition]) -> GeneratorOutput:
        from xreal_bench.generators.diffusion.sr3 import super_resolve

        notes = Notes(conditions, self.log, self.name)
        prompts = [self.prompt_for(i, c, notes) for i, c in enumerate(conditions)]
        self.prompts.tokens_cut(prompts)
        uncond = self.prompts([self.options.negative_prompt]) if self.options.guidance != 1.0 else None
        denoise = LatentDenoiser(self.model.unet, self.prompts(prompts), uncond_context=uncond, guidance=self.options.guidance)
        noise = SampleNoise.from_seeds([c.seed for c in conditions], self.device)
        z = ddim_sample(denoise, self.scheduler, noise, self.model.latent_shape, steps=self.options.steps, eta=self.options.eta)
        images = signed_to_unit(self.model.decode(z))
        if self.sr is not None:
            o = self.options
            images = super_resolve(
                self.sr, to_gray(images), self.sr_scheduler, noise, size=o.sr_size, steps=o.sr_steps, eta=o.sr_eta
            )
        return to_output(images, notes)


def load_super_resolution(path, config_path: str, device: torch.device, dtype: torch.dtype, log):
    """Cheff's SR UNet from ``cheff_sr_fine.pt`` (``['model']``, loaded strictly) and its DDIM scheduler."""
    import yaml

    from xreal_bench.generators.diffusion.latent_models import place
    from xreal_bench.generators.diffusion.schedules import sr3_ddim_scheduler
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
    log.info("super-resolution: %s (%d tensors), %s", path, len(state), config)
    return place(model.eval().requires_grad_(False), device, dtype), sr3_ddim_scheduler(config.timesteps)
