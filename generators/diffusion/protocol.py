"""The protocol steps the LDM adapters (XReal, ControlNet, Cheff) share, for ``generators show``.

Everything here is built from the options, the run context and the architecture config (a YAML
at most): no weights are loaded, and weight files are only checked for existence.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from xreal_bench.errors import UserFacingError
from xreal_bench.generators.base import GeneratorContext, ProtocolStep
from xreal_bench.generators.diffusion import original_config as oc
from xreal_bench.generators.diffusion.text import BERT_TOKENIZER
from xreal_bench.generators.prompts import build_prompt, prompt_rule
from xreal_bench.types import Condition
from xreal_bench.weights import Artifact, WeightsManager

XREAL = "BioMedIA-MBZUAI/XReal"
CHEFF = "saiboxx/chexray-diffusion"


def manager_of(context: GeneratorContext) -> WeightsManager:
    return context.weights if context.weights is not None else WeightsManager()


def prompt_step(rule_name: str, condition: Condition | None, fallback: str, key: str = "prompt") -> ProtocolStep:
    """The prompt the rule builds for ``condition`` (or ``(no case given)``), with the rule's citation."""
    try:
        rule = prompt_rule(rule_name)
    except KeyError as exc:
        return ProtocolStep(key, f"(invalid: {exc.args[0]})")
    if condition is None:
        value = "(no case given)"
    else:
        prompt = build_prompt(rule, condition, fallback=fallback)
        value = f"{prompt.text!r} (from {prompt.field})"
    return ProtocolStep(key, value, f"rule {rule.name!r}: {rule.description}; {rule.source or 'the suite'}")


def text_encoder_step(context: GeneratorContext, max_tokens: int, encoder_file: str, repo: str, package: str) -> ProtocolStep:
    vocab = manager_of(context).path(BERT_TOKENIZER) / "vocab.txt"
    return ProtocolStep(
        "text_encoder",
        f"bert-base-uncased WordPiece vocabulary {vocab} (lower-cased), truncated and padded to {max_tokens} tokens, "
        f"no attention mask -> the LDM's BERT transformer (cond_stage_model.*) from {encoder_file}",
        f"{repo} {package}/ldm/modules/encoders/modules.py BERTTokenizer (l.74-86: bert-base-uncased, max_length=150, "
        "padding='max_length') and BERTEmbedder (l.101-110)",
    )


def architecture(path: str, default: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """The architecture config (``None`` and the reason when it cannot be read)."""
    try:
        return oc.load_original_config(path, default), ""
    except UserFacingError as exc:
        return None, str(exc)


def scheduler_step(original: dict[str, Any] | None, problem: str, steps: int, eta: float, sampler_file: str) -> ProtocolStep:
    """``sampler_file``: the original's DDIM sampler, e.g. ``"BioMedIA-MBZUAI/XReal xreal/ldm/models/diffusion/ddim.py"``."""
    if original is None:
        return ProtocolStep("scheduler", f"(unknown: {problem})")
    start, end, timesteps = oc.schedule(original)
    stride = timesteps // steps if steps and timesteps % steps == 0 else 0
    visits = f"t = {1 + (steps - 1) * stride}, {1 + (steps - 2) * stride}, ..., 1" if stride and steps > 2 else "uniform"
    return ProtocolStep(
        "scheduler",
        f"DDIM {steps} of {timesteps} steps ({visits}), eta {eta}, epsilon prediction, last step to alphas_cumprod[0]; "
        f"LDM 'linear' schedule betas = linspace(sqrt({start}), sqrt({end}), {timesteps})**2",
        f"{sampler_file} DDIMSampler.make_schedule (ddim_discretize='uniform') and p_sample_ddim; "
        "linear_start / linear_end / timesteps of the architecture config",
    )


def precision_step(context: GeneratorContext) -> ProtocolStep:
    unet = context.precision
    if context.precision != "fp32" and not context.device.startswith("cuda"):
        unet = f"fp32 ({context.precision} applies on CUDA only)"
    return ProtocolStep(
        "precision",
        f"UNet/ControlNet {unet}; autoencoders, text encoder and latents fp32",
        "run.precision; the released inference runs everything in fp32",
    )


def preprocessing_step(context: GeneratorContext, original: dict[str, Any] | None, reads_real_images: bool) -> ProtocolStep:
    native = f"{oc.image_size(original)} px" if original is not None else "(unknown size)"
    geometry = context.geometry
    real = "; the case's real image enters the same way" if reads_real_images else ""
    return ProtocolStep(
        "preprocessing",
        f"model images {native}, brought by the harness to run.resolution = {context.resolution} with "
        f"dataset.square = {geometry.square!r}, dataset.intensity = {geometry.intensity!r}{real}",
        "the released models' image_size; the suite's one image path (xreal_bench.imaging)",
    )


def weights_step(context: GeneratorContext, artifacts: Sequence[Artifact]) -> ProtocolStep:
    manager = manager_of(context)
    files = [f"{a.name} {manager.path(a)}{' (MISSING)' if manager.missing_files(a) else ''}" for a in artifacts]
    return ProtocolStep("weights", "; ".join(files), "required_artifacts(options)")
