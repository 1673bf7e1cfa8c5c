"""RoentGen (Stanford AIMI): Stable Diffusion fine-tuned on MIMIC-CXR, through diffusers.

The released models are diffusers ``StableDiffusionPipeline`` snapshots, gated on Hugging Face
(MIMIC credentialing); place the snapshot folder where the weights manager says and it is
loaded with ``from_pretrained(folder, local_files_only=True)`` — nothing is ever downloaded.

- v1 (``StanfordAIMI/roent-gen-v1-0``): prompt = the report impression; 75 steps, guidance 4.0,
  the snapshot's own scheduler.
- v2 (``stanfordmimi/RoentGen-v2``): prompt ``"{age} year old {race} {sex}. {impression}"``
  with the demographics set by the options (MIMIC-CXR-JPG carries none, so they are the same
  for every prompt); 75 steps, guidance 3.0, PNDM scheduler.

Both at 512 px, classifier-free guidance against ``negative_prompt`` (""), one CPU generator
per sample (so an image does not depend on its batch), no safety checker (the Stable Diffusion
NSFW filter is meaningless on radiographs and would blank flagged images). Prompts longer than
CLIP's 77 tokens are truncated by the pipeline's tokenizer, as in the original, and counted.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from xreal_bench.errors import UserFacingError
from xreal_bench.generators.artifacts import ROENTGEN
from xreal_bench.generators.base import Generator, GeneratorContext, GeneratorOutput
from xreal_bench.generators.diffusion.conditions import Notes, choose_prompt
from xreal_bench.generators.diffusion.runtime import (
    adapter_logger,
    device_and_dtype,
    require_weights,
    to_output,
)
from xreal_bench.types import Condition
from xreal_bench.validation import require
from xreal_bench.weights import Artifact

#: Per-version defaults: artifact, prompt format, scheduler.
VERSIONS = {
    "v1": {"prompt_format": "{impression}", "scheduler": "snapshot"},
    "v2": {"prompt_format": "{age} year old {race} {sex}. {impression}", "scheduler": "pndm"},
}
PROMPT_FIELDS = ("age", "race", "sex", "impression", "labels")


@dataclass
class RoentGenOptions:
    #: Which release: v1 (roent-gen-v1-0) or v2 (RoentGen-v2).
    version: Literal["v1", "v2"] = "v1"
    #: Denoising steps.
    steps: int = 75
    #: Classifier-free guidance scale used with v1 (1 = none).
    guidance_v1: float = 4.0
    #: Classifier-free guidance scale used with v2.
    guidance_v2: float = 3.0
    #: Scheduler: "auto" = the snapshot's for v1, PNDM for v2.
    scheduler: Literal["auto", "snapshot", "pndm", "ddim"] = "auto"
    #: Prompt template with {impression}, {labels}, {age}, {race}, {sex}; "" = the version's format.
    prompt_format: str = ""
    #: Demographics for v2-style prompts.
    age: int = 65
    race: str = "white"
    sex: str = "female"
    #: Text used as {impression} when a case has neither report nor positive labels.
    fallback_prompt: str = "No acute cardiopulmonary process."
    #: Unconditional prompt of classifier-free guidance.
    negative_prompt: str = ""
    #: Output side in pixels (the models were trained at 512).
    resolution: int = 512

    def validate(self) -> None:
        require(self.steps >= 1, "steps", f"expected >= 1, got {self.steps}")
        for key in ("guidance_v1", "guidance_v2"):
            require(getattr(self, key) >= 0.0, key, f"expected >= 0 (1 = none), got {getattr(self, key)}")
        require(
            self.resolution >= 64 and self.resolution % 8 == 0,
            "resolution",
            f"expected a multiple of 8 >= 64, got {self.resolution}",
        )
        require(0 <= self.age <= 120, "age", f"expected 0..120, got {self.age}")
        try:
            self.prompt_format.format(**dict.fromkeys(PROMPT_FIELDS, ""))
        except (KeyError, IndexError, ValueError) as exc:
            require(False, "prompt_format", f"unknown or malformed field {exc} (fields: {', '.join(PROMPT_FIELDS)})")

    @property
    def effective_guidance(self) -> float:
        return self.guidance_v1 if self.version == "v1" else self.guidance_v2

    @property
    def effective_format(self) -> str:
        return self.prompt_format or VERSIONS[self.version]["prompt_format"]

    @property
    def effective_scheduler(self) -> str:
        return VERSIONS[self.version]["scheduler"] if self.scheduler == "auto" else self.scheduler


class RoentGenGenerator(Generator):
    type_name = "roentgen"
    description = (
        "RoentGen v1/v2: Stable Diffusion fine-tuned on MIMIC-CXR (gated; needs the snapshot of the chosen version only)"
    )
    inputs = frozenset({"text", "labels"})
    artifacts = tuple(ROENTGEN.values())
    Options = RoentGenOptions

    @classmethod
    def required_artifacts(cls, options: RoentGenOptions) -> tuple[Artifact, ...]:
        """The snapshot of the chosen version only."""
        return (ROENTGEN[options.version],)

    def __init__(self, name: str, options: RoentGenOptions, context: GeneratorContext):
        from diffusers import DDIMScheduler, PNDMScheduler, StableDiffusionPipeline

        from xreal_bench.generators.diffusion.text import TruncationCounter

        super().__init__(name, options, context)
        self.log = adapter_logger(context, name)
        (artifact,) = self.required_artifacts(options)
        folder = require_weights(context, [artifact])[artifact.name]
        self.device, dtype = device_and_dtype(context, self.log)
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings(
                    "ignore", message=".*torch_dtype.*", category=FutureWarning
                )  # renamed `dtype` in new diffusers
                pipe = StableDiffusionPipeline.from_pretrained(
                    str(folder), local_files_only=True, torch_dtype=dtype, safety_checker=None, requires_safety_checker=False
                )
        except (OSError, ValueError) as exc:
            raise UserFacingError(f"cannot load the RoentGen {options.version} pipeline from {folder}: {exc}") from None
        scheduler = options.effective_scheduler
        if scheduler == "pndm":
            pipe.scheduler = PNDMScheduler.from_config(pipe.scheduler.config)
        elif scheduler == "ddim":
            pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
        self.log.info(
            "%s: RoentGen %s from %s, %s scheduler, %d steps, guidance %.3g",
            name,
            options.version,
            folder,
            type(pipe.scheduler).__name__,
            options.steps,
            options.effective_guidance,
        )
        pipe.set_progress_bar_config(disable=True)
        self.pipe = pipe.to(self.device)
        self.truncation = TruncationCounter(pipe.tokenizer, pipe.tokenizer.model_max_length, self.log, name)

    @property
    def resolution(self) -> int:
        return self.options.resolution

    def prompt_for(self, index: int, condition: Condition, notes: Notes) -> str:
        o = self.options
        impression = choose_prompt(
            index,
            [("report", condition.report), ("label names", condition.prompt), ("fallback_prompt", o.fallback_prompt)],
            notes,
        )
        return o.effective_format.format(age=o.age, race=o.race, sex=o.sex, impression=impression, labels=condition.prompt)

    @torch.no_grad()
    def generate(self, conditions: Sequence[Condition]) -> GeneratorOutput:
        notes = Notes(conditions, self.log, self.name)
        prompts = [self.prompt_for(i, c, notes) for i, c in enumerate(conditions)]
        self.truncation.count(prompts)
        o = self.options
        result = self.pipe(
            prompt=prompts,
            negative_prompt=[o.negative_prompt] * len(prompts),
            num_inference_steps=o.steps,
            guidance_scale=o.effective_guidance,
            height=o.resolution,
            width=o.resolution,
            generator=[torch.Generator("cpu").manual_seed(int(c.seed)) for c in conditions],
            output_type="pt",
        )
        return to_output(result.images, notes)
