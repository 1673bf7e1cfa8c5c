"""RoentGen (Stanford AIMI): Stable Diffusion fine-tuned on MIMIC-CXR, through diffusers.

The released models are diffusers ``StableDiffusionPipeline`` snapshots, gated on Hugging Face
(MIMIC credentialing); place the snapshot folder where the weights manager says and it is
loaded with ``from_pretrained(folder, local_files_only=True)`` — nothing is ever downloaded.

- v1 (``StanfordAIMI/roent-gen-v1-0``): prompt = the report impression (rule ``impression``);
  75 steps, guidance 4.0, the snapshot's own scheduler.
- v2 (``stanfordmimi/RoentGen-v2``), as its official ``run_inference.py`` runs it: prompt
  ``"{age} year old {race} {sex}. {impression}"`` with each patient's demographics (rule
  ``roentgen_v2``; an unknown value comes from the ``age``/``race``/``sex`` options and the
  manifest says so); the CLIP text encoder and tokenizer from the snapshot's
  ``text_encoder_and_tokenizer/`` folder (the save code leaves ``text_encoder/`` as the base
  model's); PNDM with the official explicit settings (:data:`OFFICIAL_SCHEDULER`), whatever the
  snapshot's scheduler config says; 75 steps, guidance 3.0.

Where the suite differs from the official v2 run, on purpose: the official run is bf16 with
batches of 4 and one generator per batch (seeded with the batch index), and saves 8-bit RGB
JPEGs. The suite keeps its own defaults: ``[run].precision`` (fp32), ``[run].batch_size``, one
CPU generator per image seeded with the image's seed (an image does not depend on its batch),
and float grayscale images written in the run's format. ``[run].precision = "bf16"`` runs the
whole pipeline in bf16 as the original did.

Both versions at 512 px, classifier-free guidance against ``negative_prompt`` (""), no safety
checker (the Stable Diffusion NSFW filter is meaningless on radiographs and would blank flagged
images). Prompts longer than CLIP's 77 tokens are truncated by the tokenizer, as in the original;
the tokens cut are recorded per image. Each image's manifest line stores the exact prompt, its
rule and source field, where the demographics came from, the tokens cut and the text encoder used.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from xreal_bench.errors import UserFacingError
from xreal_bench.generators.artifacts import ROENTGEN
from xreal_bench.generators.base import Generator, GeneratorContext, GeneratorOutput, ProtocolStep, cited
from xreal_bench.generators.diffusion.conditions import Notes
from xreal_bench.generators.diffusion.runtime import (
    adapter_logger,
    device_and_dtype,
    require_weights,
    to_output,
)
from xreal_bench.generators.prompts import PROMPT_RULES, Prompt, PromptRule, build_prompt
from xreal_bench.types import Condition, Demographics
from xreal_bench.validation import require
from xreal_bench.weights import Artifact

V2_REPO = "StanfordMIMI/RoentGen-v2"
V2_INFERENCE = f"{V2_REPO} roentgenv2/inference_code"
V2_CONFIG = f"{V2_REPO} configs/infer_config_demo.yaml"
#: The snapshot folder the official v2 inference loads the fine-tuned CLIP encoder and tokenizer from.
ENCODER_FOLDER = "text_encoder_and_tokenizer"
#: Tokenizer length the official v2 inference enforces (infer_config_demo.yaml:15, models.py:125-141).
CLIP_TOKENS = 77
#: The scheduler of the official v2 inference (run_inference.py:94-103).
OFFICIAL_SCHEDULER: dict[str, Any] = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
}
#: Per-version defaults of the "auto" options.
VERSION_RULES = {"v1": "impression", "v2": "roentgen_v2"}
VERSION_SCHEDULERS = {"v1": "snapshot", "v2": "pndm"}
SEXES = ("female", "male")
TEMPLATE_FIELDS = {"text": "", "age": 0, "race": "", "sex": ""}

ENCODER_SOURCE = (
    f"{V2_INFERENCE}/models.py:23-36,107-141 (CLIPTextModel and CLIPTokenizer, chosen for the SD-2.1-base text "
    "encoder of infer_config_demo.yaml:14, from the subfolder text_encoder_and_tokenizer; the override at l.37-51 does "
    "not apply to stanfordmimi/RoentGen-v2, infer_config_demo.yaml:16; the config is read from the same folder, "
    "l.81-88); the save code leaves text_encoder/ as the base model's "
    f"({V2_REPO} roentgenv2/train_code/pipeline.py:32-36,49-59,73-79)"
)
SCHEDULER_SOURCE = (
    f"v1: no released inference script; diffusers' from_pretrained keeps the snapshot's scheduler/. "
    f"v2: {V2_INFERENCE}/run_inference.py:94-103 (PNDMScheduler with explicit settings)"
)


@dataclass
class RoentGenOptions:
    #: Which release: v1 (roent-gen-v1-0) or v2 (RoentGen-v2).
    version: Literal["v1", "v2"] = cited(
        "v1", "not stated by the original; chosen because v1 is the release the RoentGen paper (arXiv:2211.12737) evaluates"
    )
    #: Denoising steps.
    steps: int = cited(
        75,
        f"v2: {V2_CONFIG}:11 (num_inference_steps); v1: not stated by the original (no released inference script); "
        "chosen because it is v2's official count, and the setting reported as common for roent-gen-v1-0 (not verified "
        "offline against a primary source: check the RoentGen paper's sampling settings before relying on it)",
    )
    #: Classifier-free guidance scale used with v1 (1 = none).
    guidance_v1: float = cited(
        4.0,
        "not stated by the original (no released v1 inference script); chosen because it is the setting reported as "
        "common for roent-gen-v1-0 (not verified offline against a primary source: check the RoentGen paper's sampling "
        "settings before relying on it)",
    )
    #: Classifier-free guidance scale used with v2.
    guidance_v2: float = cited(3.0, f"{V2_CONFIG}:10 (guidance_scale: 3)")
    #: "auto" = v1: the snapshot's; v2: "pndm". "pndm": PNDM with the official v2 settings;
    #: "snapshot": the snapshot's scheduler config; "ddim": DDIM built from the snapshot's config.
    scheduler: Literal["auto", "pndm", "snapshot", "ddim"] = cited("auto", SCHEDULER_SOURCE)
    #: Where the CLIP text encoder and tokenizer come from: "auto" = text_encoder_and_tokenizer/
    #: when the snapshot has it, else the pipeline's text_encoder/ and tokenizer/.
    text_encoder_source: Literal["auto", "text_encoder_and_tokenizer", "pipeline"] = cited("auto", ENCODER_SOURCE)
    #: A rule of xreal_bench.generators.prompts.PROMPT_RULES; "auto" = v1 "impression", v2 "roentgen_v2".
    prompt_rule: str = cited("auto", f"v1: {PROMPT_RULES['impression'].source}; v2: {PROMPT_RULES['roentgen_v2'].source}")
    #: Replaces the rule's template ({text}, {age}, {race}, {sex}); "" = the rule's own.
    prompt_template: str = cited(
        "", "not stated by the original; chosen because empty means the rule's own template (the original's) is used"
    )
    #: Demographics for a case whose MIMIC-IV value is unknown (recorded per image as a fallback).
    age: int = cited(
        65,
        "not stated by the original (every official prompt carries the patient's own age); chosen because it is the "
        "suite's earlier default, an adult age inside the official demo prompts' range 25-86",
    )
    race: str = cited(
        "WHITE",
        f"not stated by the original (every official prompt carries the patient's race); chosen because it is the "
        f"suite's earlier default, spelled in capitals as the official prompts do ({V2_REPO} "
        "demo_data/demo_inference_prompts.csv)",
    )
    sex: str = cited(
        "female",
        "not stated by the original (every official prompt carries the patient's sex); chosen because it is the "
        "suite's earlier default, in the official prompts' words female/male",
    )
    #: Text used as {text} when a case has neither impression nor positive labels.
    fallback_prompt: str = cited(
        "No acute cardiopulmonary process.",
        f"not stated by the original; chosen because it is the most frequent impression of the official demo prompts (4 of 10 rows of "
        f"{V2_REPO} demo_data/demo_inference_prompts.csv, written there with a space before the full stop)",
    )
    #: Unconditional prompt of classifier-free guidance.
    negative_prompt: str = cited("", f"{V2_INFERENCE}/dataset_inference.py:30-37 (the unconditional prompt is '')")
    #: Output side in pixels (the models were trained at 512).
    resolution: int = cited(512, f"{V2_INFERENCE}/inference_config.py:24 and run_inference.py:152-153")

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
        require(self.sex in SEXES, "sex", f"expected one of {', '.join(SEXES)} (the v2 prompts' words), got {self.sex!r}")
        require(
            bool(self.race.strip()) and self.race == self.race.upper(),
            "race",
            f"expected capitals as in the v2 prompts (WHITE, BLACK, ASIAN, HISPANIC), got {self.race!r}",
        )
        known = ", ".join(["auto", *PROMPT_RULES])
        require(self.prompt_rule in ("auto", *PROMPT_RULES), "prompt_rule", f"unknown rule {self.prompt_rule!r} (known: {known})")
        if self.prompt_template:
            fields = ", ".join("{" + f + "}" for f in TEMPLATE_FIELDS)
            try:
                self.prompt_template.format(**TEMPLATE_FIELDS)
            except (KeyError, IndexError, ValueError) as exc:
                require(False, "prompt_template", f"unknown or malformed field {exc} (fields: {fields})")
            require("{text}" in self.prompt_template, "prompt_template", f"{self.prompt_template!r} has no {{text}}")

    @property
    def effective_guidance(self) -> float:
        return self.guidance_v1 if self.version == "v1" else self.guidance_v2

    @property
    def effective_scheduler(self) -> str:
        return VERSION_SCHEDULERS[self.version] if self.scheduler == "auto" else self.scheduler

    @property
    def effective_rule(self) -> PromptRule:
        rule = PROMPT_RULES[VERSION_RULES[self.version] if self.prompt_rule == "auto" else self.prompt_rule]
        if self.prompt_template:
            rule = dataclasses.replace(rule, name=f"{rule.name} (template set in the config)", template=self.prompt_template)
        return rule

    @property
    def demographics_fallback(self) -> Demographics:
        return Demographics(age=self.age, race=self.race, sex=self.sex)

    def prompt(self, condition: Condition) -> Prompt:
        """The prompt of ``condition`` under these options."""
        return build_prompt(
            self.effective_rule, condition, fallback=self.fallback_prompt, demographics_fallback=self.demographics_fallback
        )


def encoder_folder(snapshot: Path, source: str) -> Path | None:
    """Where the CLIP text encoder and tokenizer are loaded from: the snapshot's
    ``text_encoder_and_tokenizer/`` (the official v2 inference), or None for the pipeline's own
    ``text_encoder/`` and ``tokenizer/``. ``"auto"`` takes the former when the snapshot has it."""
    own = snapshot / ENCODER_FOLDER
    if source == "pipeline" or (source == "auto" and not own.is_dir()):
        return None
    return own


def describe_encoder(snapshot: Path | None, source: str) -> str:
    """The text encoder a run with ``source`` would load, read from the folder layout only."""
    if source == "pipeline":
        return "text_encoder/ and tokenizer/ of the snapshot (the pipeline's own)"
    if snapshot is None or not snapshot.is_dir():
        where = f" (snapshot not found at {snapshot})" if snapshot is not None else ""
        if source == "auto":
            return f"{ENCODER_FOLDER}/ when the snapshot has it, else text_encoder/ and tokenizer/{where}"
        return f"{ENCODER_FOLDER}/ (CLIPTextModel + CLIPTokenizer, {CLIP_TOKENS} tokens){where}"
    folder = encoder_folder(snapshot, source)
    if folder is None:
        return f"{snapshot}/text_encoder and tokenizer (the snapshot has no {ENCODER_FOLDER}/)"
    missing = "" if folder.is_dir() else " — MISSING: the run stops"
    return f"{folder} (CLIPTextModel + CLIPTokenizer, {CLIP_TOKENS} tokens){missing}"


def precision_used(context: GeneratorContext) -> str:
    """The dtype the pipeline runs in: ``[run].precision`` on CUDA, fp32 elsewhere."""
    if context.precision == "fp32" or context.device.startswith("cuda"):
        return f"{context.precision} ([run].precision)"
    return f"fp32 ([run].precision {context.precision} applies on CUDA only)"


def describe_scheduler(choice: str) -> str:
    if choice == "pndm":
        return "PNDMScheduler(" + ", ".join(f"{k}={v!r}" for k, v in OFFICIAL_SCHEDULER.items()) + ")"
    if choice == "ddim":
        return "DDIMScheduler from the snapshot's scheduler config"
    return "the snapshot's scheduler (scheduler/scheduler_config.json)"


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
        text_parts, self.encoder_source = self.load_text_encoder(folder, dtype)
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings(
                    "ignore", message=".*torch_dtype.*", category=FutureWarning
                )  # renamed `dtype` in new diffusers
                pipe = StableDiffusionPipeline.from_pretrained(
                    str(folder),
                    local_files_only=True,
                    torch_dtype=dtype,
                    safety_checker=None,
                    requires_safety_checker=False,
                    **text_parts,
                )
        except (OSError, ValueError) as exc:
            raise UserFacingError(f"cannot load the RoentGen {options.version} pipeline from {folder}: {exc}") from None
        scheduler = options.effective_scheduler
        if scheduler == "pndm":
            pipe.scheduler = PNDMScheduler(**OFFICIAL_SCHEDULER)
        elif scheduler == "ddim":
            pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
        self.log.info(
            "%s: RoentGen %s from %s, text encoder and tokenizer from %s, %s scheduler (%s), %d steps, guidance %.3g, "
            "prompt rule %s",
            name,
            options.version,
            folder,
            self.encoder_source,
            type(pipe.scheduler).__name__,
            scheduler,
            options.steps,
            options.effective_guidance,
            options.effective_rule.name,
        )
        pipe.set_progress_bar_config(disable=True)
        self.pipe = pipe.to(self.device)
        self.truncation = TruncationCounter(pipe.tokenizer, pipe.tokenizer.model_max_length, self.log, name)

    def load_text_encoder(self, snapshot: Path, dtype: torch.dtype) -> tuple[dict[str, Any], str]:
        """``({text_encoder, tokenizer} to hand to the pipeline, or {}; the folder they come from)``,
        as the official v2 inference loads them (CLIPTextModel, CLIPTokenizer at 77 tokens)."""
        from transformers import CLIPTextModel, CLIPTokenizer

        source = self.options.text_encoder_source
        folder = encoder_folder(snapshot, source)
        if folder is None:
            return {}, "text_encoder"
        if not folder.is_dir():
            raise UserFacingError(
                f"{self.name}: text_encoder_source = {source!r} but the snapshot has no {ENCODER_FOLDER}/ ({folder}); "
                f'use "auto" or "pipeline" to load text_encoder/ instead'
            )
        try:
            encoder = CLIPTextModel.from_pretrained(str(folder), local_files_only=True).to(dtype)
            tokenizer = CLIPTokenizer.from_pretrained(str(folder), local_files_only=True, model_max_length=CLIP_TOKENS)
        except (OSError, ValueError) as exc:
            raise UserFacingError(f"cannot load the RoentGen text encoder and tokenizer from {folder}: {exc}") from None
        return {"text_encoder": encoder, "tokenizer": tokenizer}, ENCODER_FOLDER

    @property
    def resolution(self) -> int:
        return self.options.resolution

    @classmethod
    def protocol_steps(
        cls, options: RoentGenOptions, context: GeneratorContext, condition: Condition | None
    ) -> list[ProtocolStep]:
        o = options
        rule = o.effective_rule
        steps = [
            ProtocolStep(
                "prompt rule", f"{rule.name}: {rule.template!r} with {{text}} from {' > '.join(rule.chain)}", rule.source
            )
        ]
        if condition is not None:
            prompt = o.prompt(condition)
            where = f"case {condition.case_id}: text from {prompt.field}"
            steps.append(
                ProtocolStep(
                    "prompt", repr(prompt.text), where + (f"; demographics {prompt.demographics}" if prompt.demographics else "")
                )
            )
        snapshot = context.weights.path(cls.required_artifacts(o)[0]) if context.weights is not None else None
        steps += [
            ProtocolStep("text encoder", describe_encoder(snapshot, o.text_encoder_source), ENCODER_SOURCE),
            ProtocolStep("scheduler", describe_scheduler(o.effective_scheduler), SCHEDULER_SOURCE),
            ProtocolStep("guidance", f"{o.effective_guidance:g} (version {o.version})", "guidance_v1 / guidance_v2 above"),
            ProtocolStep(
                "precision",
                precision_used(context),
                f"the suite's default is fp32; the official v2 run is bf16 ({V2_CONFIG}:12, README accelerate "
                "--mixed_precision bf16)",
            ),
            ProtocolStep(
                "batch and seeds",
                "[run].batch_size; one CPU generator per image, seeded with the image's seed",
                f"official v2: batches of 4 ({V2_CONFIG}:8), one generator per batch seeded with the batch index "
                f"({V2_INFERENCE}/run_inference.py:221-223)",
            ),
            ProtocolStep(
                "output",
                f"{o.resolution} px, float [0, 1], RGB decode reduced to grayscale by ITU-R 601 luma",
                f"official v2: 8-bit RGB JPEG ({V2_INFERENCE}/run_inference.py:292-307, utils.py:194-199)",
            ),
            ProtocolStep(
                "safety checker",
                "none",
                f"the official v2 inference runs the UNet and VAE directly ({V2_INFERENCE}/run_inference.py:258-292)",
            ),
        ]
        return steps

    @torch.no_grad()
    def generate(self, conditions: Sequence[Condition]) -> GeneratorOutput:
        notes = Notes(conditions, self.log, self.name)
        prompts = [self.options.prompt(c) for c in conditions]
        for index, prompt in enumerate(prompts):
            for note in prompt.notes:
                notes.add(index, note)
        cut = self.truncation.count([p.text for p in prompts])
        o = self.options
        result = self.pipe(
            prompt=[p.text for p in prompts],
            negative_prompt=[o.negative_prompt] * len(prompts),
            num_inference_steps=o.steps,
            guidance_scale=o.effective_guidance,
            height=o.resolution,
            width=o.resolution,
            generator=[torch.Generator("cpu").manual_seed(int(c.seed)) for c in conditions],
            output_type="pt",
        )
        output = to_output(result.images, notes)
        inputs = [
            {**p.record(), "tokens_truncated": n, "text_encoder": self.encoder_source} for p, n in zip(prompts, cut, strict=True)
        ]
        return GeneratorOutput(output.images, output.notes, inputs)
