"""Any diffusers text-to-image pipeline snapshot as a generator (type ``diffusers``).

The ``snapshot`` option names a weights-manager artifact or a folder under the weights folder
holding a diffusers snapshot (``model_index.json`` plus one folder per component). The pipeline
class is read from ``model_index.json`` and must be one of :data:`FAMILIES`; the snapshot is
loaded with ``from_pretrained(folder, local_files_only=True, use_safetensors=True)`` — nothing is
downloaded, and a component stored only as pickled ``.bin``/``.pt``/``.ckpt`` files is refused.

Noise, per family (diffusers 0.42). Every family draws its initial latents with
``randn_tensor``; given a list of CPU generators, row ``i`` comes from generator ``i``. The
adapter draws each image's initial latents itself from a CPU generator seeded with the image's
seed, in the shape the pipeline would (``(C, H/f, W/f)`` for Stable Diffusion 1.x/2.x, SDXL,
SD3/3.5, PixArt-α/Σ, Sana and Lumina 2; Flux packs ``(C/4, 2*(H/2f), 2*(W/2f))`` into
``(H/2f * W/2f, C)`` tokens with the pipeline's own ``_pack_latents``), and hands them to the
pipeline as ``latents=`` together with the same generators (already advanced past the latents,
as inside the pipeline) for schedulers that draw noise at each step (DDPM, Euler ancestral,
DDIM with eta > 0: one row per generator). An image therefore depends on its seed only, never on
the other images of its batch; it equals the plain pipeline call with ``generator=[its
generator]``. Pipelines that scale the initial noise (``init_noise_sigma``) do so on the given
latents too.

Where the suite departs from the pipelines' own defaults: PixArt and Sana run with
``clean_caption=False`` (the caption cleaner needs optional packages, so its output would depend
on the environment) and ``use_resolution_binning=False`` (a square output at a bin's own size is
unchanged by binning); Flux's ``negative_prompt`` is used only through ``true_cfg_scale``, which
the adapter leaves at 1 (no negative prompt); no safety checker (meaningless on radiographs).
An empty ``negative_prompt`` is not passed at all, so each pipeline applies its own default (SDXL:
zero embeddings, ``force_zeros_for_empty_prompt``; the others encode ``""``).

``call_options`` are further keyword arguments of the pipeline's ``__call__`` (CheXGenBench: SD 3.5
``max_sequence_length=512``, Lumina 2 ``cfg_trunc_ratio=0.25, cfg_normalization=True``), checked
against its signature when the generator is built. LoRA weights are loaded as CheXGenBench loads
its SD 3.5 and Lumina 2 fine-tunes (``load_lora_weights(folder, weight_name=..., adapter_name=...)``,
not fused) and weighted with ``set_adapters(..., adapter_weights=lora_scale)``.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from xreal_bench.errors import UserFacingError
from xreal_bench.generators.base import SOURCE, Generator, GeneratorContext, GeneratorOutput, ProtocolStep, cited
from xreal_bench.generators.diffusion.conditions import Notes
from xreal_bench.generators.diffusion.precision import DTYPES
from xreal_bench.generators.diffusion.runtime import adapter_logger, require_weights, to_output
from xreal_bench.generators.prompts import PROMPT_RULES, Prompt, PromptRule, build_prompt
from xreal_bench.types import Condition
from xreal_bench.validation import require
from xreal_bench.weights import Artifact, WeightsManager, collect_artifacts

DIFFUSERS = "huggingface/diffusers v0.42 src/diffusers/pipelines"
#: File endings of pickled weights, never unpickled by this adapter.
PICKLED = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
#: Component folders without weights.
NO_WEIGHTS = ("tokenizer", "scheduler", "feature_extractor", "image_processor")
TEMPLATE_FIELDS = {"text": "", "age": 0, "race": "", "sex": ""}


@dataclass(frozen=True)
class Family:
    """One allowed pipeline class: its family name, ``__call__`` defaults with their source, how it
    lays out noise, and which tokenizers it truncates at which length (``sequence_tokenizer``: the
    one whose length ``max_sequence_length`` sets; ``prefix``: the pipeline argument whose text it
    puts before every prompt, inside that tokenizer's budget)."""

    name: str
    steps: int
    guidance: float
    source: str
    tokenizers: tuple[tuple[str, int], ...]
    packed: bool = False
    #: The pipeline draws its initial noise in float32 whatever its dtype (Sana), else in the prompt embeddings' dtype.
    noise_fp32: bool = False
    #: The pipeline lower-cases and strips each prompt before tokenizing (PixArt, Sana: ``_text_preprocessing`` with
    #: clean_caption=False, e.g. pipeline_sana.py:514); truncation is counted on that text.
    lowercase: bool = False
    negative_prompt: bool = True
    extra: tuple[tuple[str, Any], ...] = ()
    sequence_tokenizer: str = ""
    prefix: Literal["", "system_prompt", "complex_human_instruction"] = ""


CLIP = 77
CAPTION = (("clean_caption", False), ("use_resolution_binning", False))
#: Allowed pipeline classes (``_class_name`` of ``model_index.json``) and their families.
FAMILIES: dict[str, Family] = {
    "StableDiffusionPipeline": Family(
        "Stable Diffusion 1.x/2.x",
        50,
        7.5,
        f"{DIFFUSERS}/stable_diffusion/pipeline_stable_diffusion.py:785,788 (__call__ defaults)",
        (("tokenizer", CLIP),),
    ),
    "StableDiffusionXLPipeline": Family(
        "SDXL",
        50,
        5.0,
        f"{DIFFUSERS}/stable_diffusion_xl/pipeline_stable_diffusion_xl.py:831,835 (__call__ defaults)",
        (("tokenizer", CLIP), ("tokenizer_2", CLIP)),
    ),
    "StableDiffusion3Pipeline": Family(
        "SD3/3.5",
        28,
        7.0,
        f"{DIFFUSERS}/stable_diffusion_3/pipeline_stable_diffusion_3.py:781,783 (__call__ defaults; T5 at "
        "max_sequence_length 256, l.802)",
        (("tokenizer", CLIP), ("tokenizer_2", CLIP), ("tokenizer_3", 256)),
        sequence_tokenizer="tokenizer_3",
    ),
    "PixArtAlphaPipeline": Family(
        "PixArt-α",
        20,
        4.5,
        f"{DIFFUSERS}/pixart_alpha/pipeline_pixart_alpha.py:692,695 (__call__ defaults; T5 at 120 tokens, l.712)",
        (("tokenizer", 120),),
        extra=CAPTION,
        lowercase=True,
        sequence_tokenizer="tokenizer",
    ),
    "PixArtSigmaPipeline": Family(
        "PixArt-Σ",
        20,
        4.5,
        f"{DIFFUSERS}/pixart_alpha/pipeline_pixart_sigma.py:637,640 (__call__ defaults; T5 at 300 tokens, l.657)",
        (("tokenizer", 300),),
        extra=CAPTION,
        lowercase=True,
        sequence_tokenizer="tokenizer",
    ),
    "SanaPipeline": Family(
        "Sana",
        20,
        4.5,
        f"{DIFFUSERS}/sana/pipeline_sana.py:679,682 (__call__ defaults; Gemma at 300 tokens after the default "
        "complex_human_instruction, l.700-701 and l.254-260)",
        (("tokenizer", 300),),
        extra=CAPTION,
        lowercase=True,
        sequence_tokenizer="tokenizer",
        prefix="complex_human_instruction",
        noise_fp32=True,  # pipeline_sana.py:891 (prepare_latents(..., torch.float32, ...))
    ),
    "Lumina2Pipeline": Family(
        "Lumina 2",
        30,
        4.0,
        f"{DIFFUSERS}/lumina2/pipeline_lumina2.py:477,478 (__call__ defaults; Gemma at 256 tokens, l.496, after "
        "the system prompt, l.184 and l.284-287)",
        (("tokenizer", 256),),
        sequence_tokenizer="tokenizer",
        prefix="system_prompt",
    ),
    "FluxPipeline": Family(
        "Flux",
        28,
        3.5,
        f"{DIFFUSERS}/flux/pipeline_flux.py:611,613 (__call__ defaults; guidance is the distilled guidance "
        "embedding; T5 at 512 tokens, l.630)",
        (("tokenizer", CLIP), ("tokenizer_2", 512)),
        packed=True,
        negative_prompt=False,
        sequence_tokenizer="tokenizer_2",
    ),
}
FAMILIES["Lumina2Text2ImgPipeline"] = FAMILIES["Lumina2Pipeline"]  # the older name of the same class

#: Scheduler classes selectable by ``scheduler``; a choice must also be in the snapshot scheduler's ``compatibles``.
SCHEDULERS = (
    "DDIMScheduler",
    "DDPMScheduler",
    "PNDMScheduler",
    "EulerDiscreteScheduler",
    "EulerAncestralDiscreteScheduler",
    "DPMSolverMultistepScheduler",
    "UniPCMultistepScheduler",
    "FlowMatchEulerDiscreteScheduler",
    "FlowMatchHeunDiscreteScheduler",
)
FAMILY_DEFAULT = "not stated by the original; chosen because 0 / -1 means the family's default (protocol step 'family')"
#: ``__call__`` arguments the adapter sets itself (plus each family's ``extra``); ``call_options`` may not set them.
ADAPTER_ARGUMENTS = frozenset(
    {"latents", "generator", "num_inference_steps", "guidance_scale", "height", "width", "output_type", "return_dict"}
    | {"num_images_per_prompt", "timesteps", "sigmas", "callback", "callback_steps"}
)
#: ``__call__`` argument prefixes the adapter owns: prompts and their embeddings, image prompts, step callbacks.
ADAPTER_PREFIXES = ("prompt", "negative_prompt", "pooled_prompt", "negative_pooled_prompt", "ip_adapter", "callback")
#: Name under which the LoRA weights are loaded (as CheXGenBench names its adapters, gdc l.164 and l.193).
LORA_ADAPTER = "xreal_bench_lora"
CallValue = bool | int | float | str


@dataclass
class DiffusersOptions:
    #: A weights-manager artifact name, or a folder relative to the weights folder, holding the diffusers snapshot.
    snapshot: str = cited("", "not stated by the original; required: the snapshot to run")
    #: A rule of xreal_bench.generators.prompts.PROMPT_RULES.
    prompt_rule: str = cited(
        "impression",
        "not stated by the original; chosen because the text-to-image fine-tunes of MIMIC-CXR (RoentGen, "
        f"CheXGenBench) are prompted with report impressions ({PROMPT_RULES['impression'].source})",
    )
    #: Replaces the rule's template ({text}, {age}, {race}, {sex}); "" = the rule's own.
    prompt_template: str = cited("", "not stated by the original; chosen because empty means the rule's own template")
    #: Text used as {text} when a case has none of the rule's fields.
    fallback_prompt: str = cited(
        "No acute cardiopulmonary process.",
        "not stated by the original; chosen because it is the most frequent MIMIC-CXR impression (the RoentGen "
        "adapter's fallback)",
    )
    #: Unconditional prompt of classifier-free guidance (not used by Flux); "" = the pipeline's own default.
    negative_prompt: str = cited(
        "",
        "the pipelines' own default: empty = not passed (pipeline_pixart_sigma.py:636 negative_prompt=''; SDXL zero "
        "embeddings, pipeline_stable_diffusion_xl.py:424)",
    )
    #: Denoising steps; 0 = the family's default.
    steps: int = cited(0, FAMILY_DEFAULT)
    #: Guidance scale; -1 = the family's default (Flux: the distilled guidance embedding).
    guidance: float = cited(-1.0, FAMILY_DEFAULT)
    #: "snapshot" = the snapshot's scheduler, or a class of SCHEDULERS built from its config.
    scheduler: str = cited("snapshot", "not stated by the original; chosen because the snapshot's scheduler is its release's")
    #: Output side in pixels; 0 = the snapshot's native size (denoiser sample size x VAE scale factor).
    resolution: int = cited(0, "the pipelines' own default when height/width are None (e.g. default_sample_size)")
    #: "run" = [run].precision; else the dtype the whole pipeline runs in (half precision on CUDA only).
    precision: Literal["run", "fp32", "fp16", "bf16"] = cited("run", "not stated by the original; the run's setting")
    #: Optional LoRA weights (.safetensors): an artifact name or a file relative to the weights folder; "" = none.
    lora: str = cited("", "not stated by the original; no adapter weights unless configured")
    #: Weight of the LoRA adapter (set_adapters adapter_weights); the LoRA is loaded unfused, as CheXGenBench does.
    lora_scale: float = cited(
        1.0,
        "CheXGenBench tools/generate_data_common.py:161-165,190-194 (load_lora_weights with an adapter_name, no "
        "fuse_lora or set_adapters: weight 1.0)",
    )
    #: Further keyword arguments of the pipeline's __call__ (e.g. max_sequence_length, cfg_trunc_ratio); checked
    #: against its signature when the generator is built. Prompts, noise, steps, guidance and size are refused.
    call_options: dict[str, CallValue] = field(
        default_factory=dict,
        metadata={SOURCE: "not stated by the original; chosen because empty means the pipeline's own __call__ defaults"},
    )

    def validate(self) -> None:
        require(bool(self.snapshot.strip()), "snapshot", "required: an artifact name or a folder under the weights folder")
        for key in ("snapshot", "lora"):
            value = getattr(self, key)
            require(
                not value or (not Path(value).is_absolute() and ".." not in Path(value).parts),
                key,
                f"expected an artifact name or a path relative to the weights folder, got {value!r}",
            )
        require(self.steps >= 0, "steps", f"expected >= 1 (0 = the family's default), got {self.steps}")
        require(
            self.guidance >= 0 or self.guidance == -1,
            "guidance",
            f"expected >= 0 (-1 = the family's default), got {self.guidance}",
        )
        require(
            self.resolution == 0 or (self.resolution >= 32 and self.resolution % 16 == 0),
            "resolution",
            f"expected a multiple of 16 >= 32 (0 = the snapshot's native size), got {self.resolution}",
        )
        require(
            self.scheduler in ("snapshot", *SCHEDULERS),
            "scheduler",
            f"unknown scheduler {self.scheduler!r} (known: snapshot, {', '.join(SCHEDULERS)})",
        )
        known = ", ".join(PROMPT_RULES)
        require(self.prompt_rule in PROMPT_RULES, "prompt_rule", f"unknown rule {self.prompt_rule!r} (known: {known})")
        if self.prompt_template:
            try:
                self.prompt_template.format(**TEMPLATE_FIELDS)
            except (KeyError, IndexError, ValueError) as exc:
                require(
                    False, "prompt_template", f"unknown or malformed field {exc} (fields: {{text}}, {{age}}, {{race}}, {{sex}})"
                )
            require("{text}" in self.prompt_template, "prompt_template", f"{self.prompt_template!r} has no {{text}}")
        for key in self.call_options:
            require(key not in ADAPTER_ARGUMENTS and not key.startswith(ADAPTER_PREFIXES), "call_options", adapter_owned(key))

    @property
    def rule(self) -> PromptRule:
        rule = PROMPT_RULES[self.prompt_rule]
        if self.prompt_template:
            rule = dataclasses.replace(rule, name=f"{rule.name} (template set in the config)", template=self.prompt_template)
        return rule

    def prompt(self, condition: Condition) -> Prompt:
        return build_prompt(self.rule, condition, fallback=self.fallback_prompt)


def adapter_owned(key: str) -> str:
    return (
        f"{key!r} is set by the adapter (prompts: prompt_rule, negative_prompt; noise: the image seeds; steps, guidance, "
        "resolution: their options) and cannot be a call option"
    )


def check_call_options(pipeline_class: str, family: Family, options: dict[str, CallValue]) -> None:
    """Refuse a call option that ``pipeline_class.__call__`` does not take, that the adapter sets itself, or whose
    value does not have the type of the argument's default."""
    import diffusers

    parameters = inspect.signature(getattr(diffusers, pipeline_class).__call__).parameters
    named = {k: p for k, p in parameters.items() if k != "self" and p.kind is not inspect.Parameter.VAR_KEYWORD}
    fixed = dict(family.extra)
    for key, value in options.items():
        if key in fixed or key in ADAPTER_ARGUMENTS or key.startswith(ADAPTER_PREFIXES):
            raise UserFacingError(f"call_options: {adapter_owned(key)}" + (f" (fixed at {fixed[key]!r})" if key in fixed else ""))
        if key not in named:
            known = ", ".join(
                k for k in named if k not in ADAPTER_ARGUMENTS and not k.startswith(ADAPTER_PREFIXES) and k not in fixed
            )
            raise UserFacingError(f"call_options: {pipeline_class}.__call__ takes no argument {key!r} (it takes: {known})")
        default = named[key].default
        if not isinstance(default, (bool, int, float, str)):  # no typed default (None, a list): any scalar
            continue
        if not (type(value) is type(default) or (type(default) is float and type(value) is int)):
            raise UserFacingError(
                f"call_options: {pipeline_class}.__call__ argument {key!r} expects {type(default).__name__} "
                f"(default {default!r}), got {value!r}"
            )


def require_peft(name: str) -> None:
    """diffusers loads LoRA weights through peft; without it, say how to install it before loading anything."""
    try:
        import peft  # noqa: F401
    except ImportError:
        raise UserFacingError(f"{name}: LoRA weights need the peft package: pip install 'xreal-bench[lora]'") from None


def local_artifact(value: str, kind: str) -> Artifact:
    """The artifact named ``value``, or one for the folder/file ``value`` under the weights folder."""
    known = collect_artifacts().artifacts
    if value in known:
        return known[value]
    what = "diffusers snapshot folder" if kind == "dir" else "LoRA weights file (.safetensors)"
    return Artifact(
        name=value,
        path=value,
        kind=kind,
        files=("model_index.json",) if kind == "dir" else (),
        source=f"your own {what}, placed under the weights folder",
        license="that of the model you place there",
        description=what,
    )


def lora_file(artifact: Artifact, path: Path) -> Path:
    """The LoRA ``.safetensors`` of an artifact: the file itself, or a folder artifact's one listed ``.safetensors``
    (a released LoRA repository such as CheXGenBench's ``-SDV3-5``)."""
    if artifact.kind == "file":
        return path
    listed = [f for f in artifact.files if f.endswith(".safetensors")]
    if len(listed) != 1:
        raise UserFacingError(f"artifact {artifact.name!r} lists {len(listed)} .safetensors files; a LoRA needs exactly one")
    return path / listed[0]


def snapshot_index(folder: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((folder / "model_index.json").read_text()))
    except (OSError, ValueError) as exc:
        raise UserFacingError(f"cannot read {folder / 'model_index.json'}: {exc}") from None


def family_of(folder: Path) -> tuple[str, Family]:
    """``(pipeline class, family)`` from the snapshot's ``model_index.json``; refused outside :data:`FAMILIES`."""
    name = str(snapshot_index(folder).get("_class_name", ""))
    if name not in FAMILIES:
        allowed = ", ".join(sorted(FAMILIES))
        raise UserFacingError(f"{folder / 'model_index.json'}: pipeline class {name!r} is not supported (allowed: {allowed})")
    return name, FAMILIES[name]


def refuse_unsafe(folder: Path) -> None:
    """Refuse a snapshot that could run code or unpickle: a component declared from a library other than
    diffusers or transformers (or a diffusers pipeline module), a ``.py`` file in a component folder, or a
    component folder with pickled weights and no ``.safetensors``."""
    import diffusers.pipelines

    for key, value in snapshot_index(folder).items():
        component = folder / key
        if key.startswith("_") or not isinstance(value, list) or value[0] is None:
            continue
        library = str(value[0])
        if library not in ("diffusers", "transformers") and not hasattr(diffusers.pipelines, library):
            raise UserFacingError(
                f"{folder / 'model_index.json'}: component {key!r} comes from {library!r}; only diffusers and "
                "transformers components are loaded (no custom code)"
            )
        if component.is_dir() and (code := sorted(p.name for p in component.glob("*.py"))):
            raise UserFacingError(f"{component}: code files ({', '.join(code)}) in a snapshot are never run; remove them")
        if key.startswith(NO_WEIGHTS):
            continue
        if not component.is_dir():
            continue
        files = [p for p in component.iterdir() if p.is_file()]
        pickled = sorted(p.name for p in files if p.suffix in PICKLED)
        if pickled and not any(p.suffix == ".safetensors" for p in files):
            raise UserFacingError(
                f"{component}: pickled weights only ({', '.join(pickled)}); pickles can run code when loaded. "
                "Convert them to .safetensors (e.g. save_pretrained(..., safe_serialization=True) on a trusted machine)"
            )


def noise_shape(pipe: Any, family: Family, side: int) -> tuple[int, ...]:
    """The unpacked initial-latent shape of one image, as the pipeline's ``prepare_latents`` draws it."""
    denoiser = pipe.unet if getattr(pipe, "unet", None) is not None else pipe.transformer
    channels, factor = int(denoiser.config.in_channels), int(pipe.vae_scale_factor)
    if family.packed:
        size = 2 * (side // (factor * 2))
        return (1, channels // 4, size, size)
    return (1, channels, side // factor, side // factor)


def initial_latents(
    pipe: Any, family: Family, side: int, generators: Sequence[torch.Generator], device: torch.device
) -> torch.Tensor:
    """Each image's initial latents from its own CPU generator, stacked (packed for Flux)."""
    from diffusers.utils.torch_utils import randn_tensor

    shape = noise_shape(pipe, family, side)
    dtype = torch.float32 if family.noise_fp32 else pipe.dtype
    rows = [randn_tensor(shape, generator=g, device=device, dtype=dtype) for g in generators]
    if family.packed:
        rows = [pipe._pack_latents(r, 1, shape[1], shape[2], shape[3]) for r in rows]
    return torch.cat(rows)


def native_side(pipe: Any) -> int:
    """The side the pipeline generates when height/width are not given."""
    default = getattr(pipe, "default_sample_size", None)
    if default is None:
        denoiser = pipe.unet if getattr(pipe, "unet", None) is not None else pipe.transformer
        default = denoiser.config.sample_size
    return int(default) * int(pipe.vae_scale_factor)


class DiffusersGenerator(Generator):
    type_name = "diffusers"
    description = (
        "any diffusers text-to-image snapshot (SD 1.x/2.x, SDXL, SD3/3.5, PixArt-α/Σ, Sana, Lumina 2, Flux), offline, "
        "safetensors only, one seeded generator per image"
    )
    inputs = frozenset({"text", "labels"})
    Options = DiffusersOptions

    @classmethod
    def required_artifacts(cls, options: DiffusersOptions) -> tuple[Artifact, ...]:
        found = (local_artifact(options.snapshot, "dir"),)
        return found + ((local_artifact(options.lora, "file"),) if options.lora else ())

    def __init__(self, name: str, options: DiffusersOptions, context: GeneratorContext):
        import diffusers

        from xreal_bench.generators.diffusion.text import TruncationCounter

        super().__init__(name, options, context)
        self.log = adapter_logger(context, name)
        artifacts = self.required_artifacts(options)
        paths = require_weights(context, artifacts)
        folder = paths[artifacts[0].name]
        self.snapshot = folder
        self.pipeline_class, self.family = family_of(folder)
        if options.negative_prompt and not self.family.negative_prompt:
            raise UserFacingError(f"{name}: {self.family.name} takes no negative prompt; leave negative_prompt empty")
        check_call_options(self.pipeline_class, self.family, options.call_options)
        if options.lora:
            require_peft(name)
        refuse_unsafe(folder)
        self.device = context.torch_device()
        self.dtype = run_dtype(options, context, self.log)
        extra = (
            {"safety_checker": None, "requires_safety_checker": False} if self.pipeline_class == "StableDiffusionPipeline" else {}
        )
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*torch_dtype.*", category=FutureWarning)
                pipe = getattr(diffusers, self.pipeline_class).from_pretrained(
                    str(folder), local_files_only=True, use_safetensors=True, torch_dtype=self.dtype, **extra
                )
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            raise UserFacingError(f"cannot load the {self.pipeline_class} snapshot from {folder}: {exc}") from None
        if options.scheduler != "snapshot":
            pipe.scheduler = self.override_scheduler(pipe.scheduler, options.scheduler)
        if options.lora:
            self.load_lora(pipe, lora_file(artifacts[1], paths[artifacts[1].name]))
        pipe.set_progress_bar_config(disable=True)
        self.pipe = pipe.to(self.device)
        self.side = options.resolution or native_side(pipe)
        self.steps = options.steps or self.family.steps
        self.guidance = self.family.guidance if options.guidance == -1 else options.guidance
        self.prefixes: dict[str, str] = {}
        self.truncation = {}
        for attr, (prefix, limit) in token_budgets(pipe, self.family, options.call_options).items():
            self.prefixes[attr] = prefix
            self.truncation[attr] = TruncationCounter(getattr(pipe, attr), limit, self.log, name)
        self.log.info(
            "%s: %s (%s) from %s, %s, %d steps, guidance %.3g, %d px, %s, prompt rule %s",
            name,
            self.pipeline_class,
            self.family.name,
            folder,
            type(pipe.scheduler).__name__,
            self.steps,
            self.guidance,
            self.side,
            self.dtype,
            options.rule.name,
        )

    def override_scheduler(self, current: Any, choice: str) -> Any:
        import diffusers

        compatible = {type(s).__name__ if not isinstance(s, type) else s.__name__ for s in current.compatibles}
        compatible.add(type(current).__name__)
        if choice not in compatible:
            raise UserFacingError(
                f"{self.name}: scheduler {choice} does not fit this snapshot's {type(current).__name__} "
                f"(compatible: {', '.join(sorted(c for c in compatible if c in SCHEDULERS))})"
            )
        return getattr(diffusers, choice).from_config(current.config)

    def load_lora(self, pipe: Any, path: Path) -> None:
        """As CheXGenBench (gdc l.161-165, l.190-194): ``load_lora_weights`` under an adapter name, not fused;
        ``lora_scale`` is the adapter's weight."""
        if path.suffix != ".safetensors":
            raise UserFacingError(f"{self.name}: LoRA weights must be a .safetensors file, got {path}")
        if not hasattr(pipe, "load_lora_weights"):
            raise UserFacingError(f"{self.name}: {self.pipeline_class} does not load LoRA weights")
        try:
            pipe.load_lora_weights(
                str(path.parent), weight_name=path.name, adapter_name=LORA_ADAPTER, use_safetensors=True, local_files_only=True
            )
            pipe.set_adapters([LORA_ADAPTER], adapter_weights=[self.options.lora_scale])
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise UserFacingError(f"{self.name}: cannot load the LoRA weights {path}: {exc}") from None

    @property
    def resolution(self) -> int:
        return self.side

    @classmethod
    def protocol_steps(
        cls, options: DiffusersOptions, context: GeneratorContext, condition: Condition | None
    ) -> list[ProtocolStep]:
        rule = options.rule
        steps = [
            ProtocolStep(
                "prompt rule", f"{rule.name}: {rule.template!r} with {{text}} from {' > '.join(rule.chain)}", rule.source
            )
        ]
        if condition is not None:
            steps.append(ProtocolStep("prompt", repr(options.prompt(condition).text), f"case {condition.case_id}"))
        manager = context.weights or WeightsManager()
        folder = manager.path(local_artifact(options.snapshot, "dir"))
        try:
            pipeline_class, family = family_of(folder)
        except UserFacingError as exc:
            steps.append(ProtocolStep("family", f"unknown until the snapshot is readable ({exc})", ""))
        else:
            try:
                check_call_options(pipeline_class, family, options.call_options)
            except UserFacingError as exc:
                steps.append(ProtocolStep("call options refused", str(exc), "the generator will not load"))
            steps += [
                ProtocolStep("family", f"{family.name} ({pipeline_class} from {folder / 'model_index.json'})", ""),
                ProtocolStep(
                    "steps", str(options.steps or family.steps), family.source if not options.steps else "set in the config"
                ),
                ProtocolStep(
                    "guidance",
                    f"{family.guidance if options.guidance == -1 else options.guidance:g}",
                    family.source if options.guidance == -1 else "set in the config",
                ),
                ProtocolStep(
                    "tokens",
                    ", ".join(
                        f"{attr} {sequence_limits(family, options.call_options).get(attr, limit)}"
                        for attr, limit in family.tokenizers
                    )
                    + (f" after the pipeline's {family.prefix}" if family.prefix else "")
                    + " (longer prompts truncated; cut counted)",
                    family.source if "max_sequence_length" not in options.call_options else "call_options max_sequence_length",
                ),
                ProtocolStep(
                    "pipeline arguments",
                    ", ".join(f"{k}={v!r}" for k, v in (*family.extra, *options.call_options.items()))
                    or "none beyond the options",
                    "module docstring of xreal_bench.generators.diffusers_pipeline"
                    + ("; call_options set in the config" if options.call_options else ""),
                ),
            ]
        steps += [
            ProtocolStep("scheduler", options.scheduler if options.scheduler != "snapshot" else "the snapshot's scheduler", ""),
            ProtocolStep(
                "batch and seeds",
                "[run].batch_size; each image's initial latents from a CPU generator seeded with its seed, passed as "
                "latents= (Flux: packed), the same generators for per-step scheduler noise",
                "module docstring of xreal_bench.generators.diffusers_pipeline",
            ),
            ProtocolStep("output", "RGB decode in [0, 1] reduced to grayscale by ITU-R 601 luma", ""),
        ]
        return steps

    @torch.no_grad()
    def generate(self, conditions: Sequence[Condition]) -> GeneratorOutput:
        notes = Notes(conditions, self.log, self.name)
        prompts = [self.options.prompt(c) for c in conditions]
        for index, prompt in enumerate(prompts):
            for note in prompt.notes:
                notes.add(index, note)
        texts = [p.text for p in prompts]
        seen = [t.lower().strip() for t in texts] if self.family.lowercase else texts
        cut = {attr: counter.count([self.prefixes[attr] + t for t in seen]) for attr, counter in self.truncation.items()}
        generators = [torch.Generator("cpu").manual_seed(int(c.seed)) for c in conditions]
        kwargs: dict[str, Any] = {**dict(self.family.extra), **self.options.call_options}
        if self.family.negative_prompt and self.options.negative_prompt:
            kwargs["negative_prompt"] = [self.options.negative_prompt] * len(texts)
        result = self.pipe(
            prompt=texts,
            num_inference_steps=self.steps,
            guidance_scale=self.guidance,
            height=self.side,
            width=self.side,
            latents=initial_latents(self.pipe, self.family, self.side, generators, self.device),
            generator=generators,
            output_type="pt",
            **kwargs,
        )
        inputs = [
            {**p.record(), "tokens_truncated": {attr: counts[i] for attr, counts in cut.items()}, "pipeline": self.pipeline_class}
            for i, p in enumerate(prompts)
        ]
        return to_output(result.images, notes, inputs)


def sequence_limits(family: Family, call_options: dict[str, CallValue]) -> dict[str, int]:
    """The length ``max_sequence_length`` (when set) gives the family's long-text tokenizer."""
    length = call_options.get("max_sequence_length")
    return {family.sequence_tokenizer: int(length)} if family.sequence_tokenizer and isinstance(length, int) else {}


def token_budgets(pipe: Any, family: Family, call_options: dict[str, CallValue]) -> dict[str, tuple[str, int]]:
    """Per tokenizer of the pipeline: the text the pipeline puts before each prompt and the token budget of the
    whole, so that ``len(tokens(prefix + prompt)) - budget`` is what the pipeline's truncation cuts.

    Lumina 2 tokenizes ``system_prompt + " <Prompt Start> " + prompt`` at ``max_sequence_length``
    (pipeline_lumina2.py l.284-287, l.199-204); Sana tokenizes the lines of its default
    ``complex_human_instruction`` joined by newlines, then the prompt, at ``tokens(instruction) +
    max_sequence_length - 2`` (pipeline_sana.py l.254-260)."""
    limits = dict(family.tokenizers) | sequence_limits(family, call_options)
    budgets = {attr: ("", limit) for attr, limit in limits.items() if getattr(pipe, attr, None) is not None}
    if family.prefix == "system_prompt":
        system = call_options.get("system_prompt", pipe.system_prompt)
        attr = family.sequence_tokenizer
        budgets[attr] = (f"{system} <Prompt Start> ", budgets[attr][1])
    elif family.prefix == "complex_human_instruction":
        default = inspect.signature(type(pipe).__call__).parameters["complex_human_instruction"].default
        instruction = "\n".join(default or [])
        attr = family.sequence_tokenizer
        if instruction:
            extra = len(getattr(pipe, attr).encode(instruction)) - 2
            budgets[attr] = (instruction, budgets[attr][1] + extra)
    return budgets


def run_dtype(options: DiffusersOptions, context: GeneratorContext, log: Any) -> torch.dtype:
    """The pipeline's dtype: the option (or ``[run].precision``); half precision on CUDA only."""
    precision = context.precision if options.precision == "run" else options.precision
    if context.torch_device().type != "cuda" and precision != "fp32":
        log.warning(
            "precision %s requested on %s: running in fp32 (half precision is used on CUDA only)", precision, context.device
        )
        return torch.float32
    return DTYPES[precision]
