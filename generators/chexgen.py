"""ChexGen (era-ai-biomed/ChexGen, NEJM AI 2026): a latent diffusion transformer for chest X-rays.

Reproduces the released inference (tools/sample.py, tools/sample_control.py) from the released
files, loaded offline:

- the DiT checkpoint ``.pth`` (key ``state_dict_ema``, ``module.`` prefixes stripped), read
  tensors-only through :mod:`xreal_bench.safe_load` into the plain-torch network of
  :mod:`xreal_bench.generators.chexgen_model` with ``strict=True``;
- T5 v1.1 XXL (``DeepFloyd/t5-v1_1-xxl`` snapshot) through transformers, run in bf16 as the
  original's ``T5Embedder`` does; prompts cleaned as its ``clean_caption`` (twice), tokenised to 120
  tokens (padding to 120, truncation);
- the SD VAE ``stabilityai/sd-vae-ft-ema`` through diffusers ``AutoencoderKL`` (latent scale 0.18215);
- IDDPM ancestral sampling: linear betas over 1000 steps respaced to 100, learned-range variance,
  classifier-free guidance 4.0 against the learnt null token sequence, on the first three noise
  channels only, as ``forward_with_cfg`` does.

Variants (option ``checkpoint``): ``256`` (pretrained_256.pth), ``512-impression``,
``512-demographics`` (prompt ``"sex:Male, age:71.0, race:Black. <impression>"``) and ``mask``
(finetuned_control_siim_512.pth: the case's pathology mask, VAE-encoded, drives 13 control
blocks; the released control sampler applies no guidance, dit_control.py:142-145, and neither
does the suite).

Where the suite differs, on purpose: one CPU generator per image (initial noise, the mask
latent's sample, then one noise draw per step), so an image does not depend on its batch (the
original draws from the global CUDA generator); float output reduced to grayscale instead of an
8-bit RGB PNG; fp32 DiT everywhere (as the original's ``model.float()``).
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote_plus

import torch
import torch.nn.functional as F

from xreal_bench.errors import UserFacingError
from xreal_bench.generators.artifacts import CHEXGEN, CHEXGEN_T5, CHEXGEN_VAE
from xreal_bench.generators.base import Generator, GeneratorContext, GeneratorOutput, ProtocolStep, cited
from xreal_bench.generators.chexgen_model import (
    XL_HEADS,
    ChexGenControlDiT,
    ChexGenDiT,
    DiTShape,
    RespacedSchedule,
    ddpm_step,
    guided_output,
)
from xreal_bench.generators.diffusion.conditions import Notes
from xreal_bench.generators.diffusion.runtime import adapter_logger, require_weights, to_output
from xreal_bench.generators.prompts import PROMPT_RULES, Prompt, build_prompt, demographic_values
from xreal_bench.safe_load import read_checkpoint, state_dict_of
from xreal_bench.types import Condition, Demographics
from xreal_bench.validation import require
from xreal_bench.weights import Artifact

REPO = "era-ai-biomed/ChexGen"
SAMPLE = f"{REPO} tools/sample.py"
CONTROL = f"{REPO} tools/sample_control.py"
T5_SOURCE = f"{REPO} radiffuser/models/t5.py"
#: VAE latent scale (tools/sample.py:194, tools/sample_control.py:190).
LATENT_SCALE = 0.18215
#: Control-path position table scale of the 512 px releases (configs/sample/*_512.py:6 ``pos_embed_scale=2.0``).
POS_EMBED_SCALE_512 = 2.0
CHECKPOINTS = ("256", "512-impression", "512-demographics", "mask")
DEMOGRAPHIC_TEMPLATE = "sex:{sex}, age:{age:.1f}, race:{race}. {text}"
#: The race groups of ChexGen's demographic fine-tune (paper/aioa2500799_appendix.pdf, 'Model bias detection');
#: another group is passed through as its word, with a note on the image.
TRAINED_RACES = ("White", "Asian", "Black")
DEMOGRAPHIC_SOURCE = (
    f"{REPO} data/mimic_val_p19_demographic_impression_example.csv:2-11 and README l.124-130 "
    '("sex:Male, age:71.0, race:Black. <impression>": sex and race capitalised, age with one decimal); the age is '
    "the age at the study: the appendix (paper/aioa2500799_appendix.pdf, 'Model bias detection') takes age and race "
    "per study following Glocker et al. 2023 (ref. 34), whose biomedia-mira/chexploration notebooks/mimic.sample.ipynb "
    "cell 13 computes anchor_age + floor(StudyDate / 10000) - anchor_year, a float (hence '71.0')"
)
DEMOGRAPHIC_CSV = f"{REPO} data/mimic_val_p19_demographic_impression_example.csv:2-11"


def clean_caption(text: str) -> str:
    """The caption cleaning of t5.py ``T5Embedder.clean_caption`` (l.127-232), rules relevant to
    report text: lower case; URL-quoted text unquoted; HTML entities decoded; dashes unified;
    quotes unified; IP-like numbers, 6+ digit numbers, letter+digit codes and ``NxM`` sizes
    removed; runs of dots and the punctuation ``#®•©™&@·º½¾¿¡§~()[]{}|\\/*`` become spaces; a space
    after ``,./`` following a non-digit; whitespace collapsed; leading/trailing quote and
    punctuation trimmed. Not reproduced (never present in radiology text): URL, HTML-tag, CJK,
    @nickname, file name and web-shop phrases."""
    s = unquote_plus(str(text)).strip().lower()
    s = re.sub(r"[\u002d\u058a\u05be\u1400\u1806\u2010-\u2015\u2e17\u2e1a\u2e3a\u2e3b\u2e40\u301c\u3030\u30a0"
               r"\ufe31\ufe32\ufe58\ufe63\uff0d]+", "-", s)  # fmt: skip
    s = re.sub(r"[`´«»“”¨]", '"', s)
    s = re.sub(r"[‘’]", "'", s)
    s = re.sub(r"&quot;?|&amp", "", s)
    s = re.sub(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}", " ", s)
    s = re.sub(r"\d:\d\d\s+$", "", s)
    s = re.sub(r"\\n", " ", s)
    s = re.sub(r"#\d{1,3}\b|#\d{5,}\b|\b\d{6,}\b", "", s)
    s = re.sub(r"[\"']{2,}", '"', s)
    s = re.sub(r"\.{2,}", " ", s)
    s = re.sub(r"[#®•©™&@·º½¾¿¡§~)(\]\[}{|\\/*]+", " ", s)
    s = re.sub(r"\s+\.\s+", " ", s)
    if len(re.findall(r"[-_]", s)) > 3:
        s = re.sub(r"[-_]", " ", s)
    s = html.unescape(html.unescape(s)).strip()
    s = re.sub(r"\b[a-zA-Z]{1,3}\d{3,15}\b|\b[a-zA-Z]+\d+[a-zA-Z]+\b|\b\d+[a-zA-Z]+\d+\b", "", s)
    s = re.sub(r"\b\d*[a-zA-Z]+\d+[a-zA-Z]+\d+[a-zA-Z\d]*\b", " ", s)
    s = re.sub(r"\b\d+\.?\d*[xх×]\d+\.?\d*\b", "", s)
    s = re.sub(r"\b\s+:\s+", ": ", s)
    s = re.sub(r"(\D[,./])\b", r"\1 ", s)
    s = re.sub(r"\s+", " ", s)
    s = re.sub(r"^[\"']([\w\W]+)[\"']$", r"\1", s)
    s = re.sub(r"^['_,\-:;]", "", s)
    s = re.sub(r"['_,\-:+]$", "", s)
    s = re.sub(r"^\.\S+$", "", s)
    return s.strip()


@dataclass
class ChexGenOptions:
    #: Which release: "256" (pretraining), "512-impression", "512-demographics", "mask" (SIIM pneumothorax mask).
    checkpoint: Literal["256", "512-impression", "512-demographics", "mask"] = cited(
        "512-impression", f"{REPO} README 'Text-to-image' (the default text-to-X-ray path uses finetuned_impression_512.pth)"
    )
    #: Denoising steps (respacing of the 1000 training steps).
    steps: int = cited(100, f"{SAMPLE}:48 and {CONTROL}:78 (--num-sampling-steps 100); README l.197")
    #: Classifier-free guidance on the text variants (the mask variant applies none, as released).
    guidance: float = cited(4.0, f"{SAMPLE}:47 (--cfg-scale 4.0); scripts/sample_impression.sh:21 (CFG_SCALE=4); README l.196")
    #: Key of the checkpoint's state dict.
    checkpoint_key: str = cited("state_dict_ema", f"{SAMPLE}:44 (--checkpoint-key state_dict_ema)")
    #: Attention heads of the DiT (not readable from tensor shapes).
    attention_heads: int = cited(XL_HEADS, f"{REPO} configs/sample/*.py:8 (DiT_XL_2) -> radiffuser/models/dit.py:313-314")
    #: T5 tokens (padding and truncation length).
    max_tokens: int = cited(120, f"{REPO} configs/sample/*.py:7 (token_num=120); {SAMPLE}:133,173")
    #: dtype T5 runs in.
    #: The T5 encoder's dtype on CUDA (elsewhere fp32, as every half precision of the suite).
    t5_dtype: Literal["bf16", "fp32"] = cited("bf16", f"{T5_SOURCE}:19-21 (torch_dtype defaults to torch.bfloat16)")
    #: "chexgen": clean_caption applied twice (t5.py:112-117); "none": lower case and strip (t5.py:119).
    text_cleaning: Literal["chexgen", "none"] = cited("chexgen", f"{T5_SOURCE}:16,112-117 (use_text_preprocessing=True)")
    #: A rule of xreal_bench.generators.prompts.PROMPT_RULES giving the impression text.
    prompt_rule: str = cited(
        "impression",
        f"{REPO} README 'Prompt Files' and data/mimic_val_p19_impression_example.csv (prompt column 'impression')",
    )
    #: Demographics for a case whose value is unknown (512-demographics; recorded per image).
    age: int = cited(
        65,
        "not stated by the original (every example prompt carries the patient's age); chosen because it is the suite's "
        f"usual default and the patient of {REPO} paper/aioa2500799_appendix.pdf's report-curation example ('Age: 65 years')",
    )
    race: str = cited(
        "White",
        "not stated by the original; chosen because it is the first of the three race groups of the appendix's fairness experiments "
        "(Glocker et al.'s White, Asian, Black) and the race of its report-curation example "
        f"({REPO} paper/aioa2500799_appendix.pdf); the example CSV has Black 5, White 4, Asian 1 of 10 ({DEMOGRAPHIC_CSV})",
    )
    sex: str = cited(
        "Male", f"not stated by the original; chosen because it is the most frequent sex (9 of 10) of {DEMOGRAPHIC_CSV}"
    )
    #: Text used when a case has no impression and no positive labels.
    fallback_prompt: str = cited(
        "No acute cardiopulmonary process.",
        "not stated by the original; chosen because it is the suite's usual fallback, the commonest MIMIC impression",
    )

    def validate(self) -> None:
        require(
            self.checkpoint in CHECKPOINTS, "checkpoint", f"expected one of {', '.join(CHECKPOINTS)}, got {self.checkpoint!r}"
        )
        require(1 <= self.steps <= 1000, "steps", f"expected 1..1000 (respaced from 1000), got {self.steps}")
        require(self.guidance >= 0.0, "guidance", f"expected >= 0 (1 = none), got {self.guidance}")
        require(self.attention_heads >= 1, "attention_heads", f"expected >= 1, got {self.attention_heads}")
        require(self.max_tokens >= 1, "max_tokens", f"expected >= 1, got {self.max_tokens}")
        require(0 <= self.age <= 120, "age", f"expected 0..120, got {self.age}")
        require(self.sex in ("Male", "Female"), "sex", f"expected Male or Female (the example prompts' words), got {self.sex!r}")
        require(bool(self.race.strip()), "race", "expected a race word such as White, Black, Asian")
        known = ", ".join(PROMPT_RULES)
        require(self.prompt_rule in PROMPT_RULES, "prompt_rule", f"unknown rule {self.prompt_rule!r} (known: {known})")
        require(
            not PROMPT_RULES[self.prompt_rule].demographic,
            "prompt_rule",
            "expected a rule without demographics (checkpoint = '512-demographics' adds them in ChexGen's format)",
        )

    @property
    def resolution(self) -> int:
        return 256 if self.checkpoint == "256" else 512

    def prompt(self, condition: Condition) -> Prompt:
        """The prompt of ``condition``: the rule's text; for 512-demographics prefixed as the released CSV."""
        base = build_prompt(PROMPT_RULES[self.prompt_rule], condition, fallback=self.fallback_prompt)
        if self.checkpoint != "512-demographics":
            return base
        fallback = Demographics(age=self.age, race=self.race, sex=self.sex.lower())
        values, provenance = demographic_values(condition.demographics, fallback)
        race = str(values["race"]).title()
        text = DEMOGRAPHIC_TEMPLATE.format(
            sex=str(values["sex"]).capitalize(),
            age=float(str(values["age"])),
            race=race,
            text=base.text,
        )
        notes = base.notes + (() if provenance == "mimic-iv" else (f"demographics: {provenance}",))
        if race not in TRAINED_RACES:
            notes += (f"race {race} is outside the groups ChexGen was fine-tuned with ({', '.join(TRAINED_RACES)})",)
        return Prompt(text=text, field=base.field, rule="chexgen_demographics", demographics=provenance, notes=notes)


def load_t5_tokenizer(folder: Path) -> Any:
    """The T5 tokenizer of a transformers snapshot; the released DeepFloyd/t5-v1_1-xxl has ``spiece.model`` and no
    ``tokenizer.json``, which transformers reads through sentencepiece (a dependency). ``legacy=True`` as in ChexGen's
    radiffuser/models/t5.py l.87."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder), local_files_only=True, legacy=True)


class ChexGenGenerator(Generator):
    type_name = "chexgen"
    description = (
        "ChexGen: diffusion transformer + T5-XXL + SD VAE (256, 512 impression, 512 demographics, mask control; "
        "credentialed weights)"
    )
    inputs = frozenset({"text", "labels", "pathology"})
    artifacts = (*CHEXGEN.values(), CHEXGEN_T5, CHEXGEN_VAE)
    Options = ChexGenOptions

    @classmethod
    def required_artifacts(cls, options: ChexGenOptions) -> tuple[Artifact, ...]:
        return (CHEXGEN[options.checkpoint], CHEXGEN_T5, CHEXGEN_VAE)

    def __init__(self, name: str, options: ChexGenOptions, context: GeneratorContext):
        from diffusers import AutoencoderKL
        from transformers import T5EncoderModel

        super().__init__(name, options, context)
        self.log = adapter_logger(context, name)
        ckpt, t5, vae = self.required_artifacts(options)
        paths = require_weights(context, [ckpt, t5, vae])
        self.device = context.torch_device()
        self.model = self.load_dit(paths[ckpt.name]).to(self.device)
        dtype = torch.bfloat16 if options.t5_dtype == "bf16" and self.device.type == "cuda" else torch.float32
        if options.t5_dtype == "bf16" and dtype == torch.float32:
            self.log.warning("%s: T5 in fp32 on %s (bf16 is used on CUDA only, as every half precision)", name, self.device)
        try:
            self.tokenizer = load_t5_tokenizer(paths[t5.name])
            self.t5 = T5EncoderModel.from_pretrained(
                str(paths[t5.name]), local_files_only=True, use_safetensors=True, dtype=dtype
            ).eval()
            self.vae = AutoencoderKL.from_pretrained(str(paths[vae.name]), local_files_only=True, use_safetensors=True).eval()
        except (OSError, ValueError) as exc:
            raise UserFacingError(f"{name}: cannot load the T5 encoder or the VAE: {exc}") from None
        self.t5.to(self.device)
        self.vae.to(self.device)
        self.schedule = RespacedSchedule.linear(options.steps)
        self.log.info(
            "%s: ChexGen %s from %s, %d steps, guidance %s", name, options.checkpoint, paths[ckpt.name], options.steps,
            "none (released control sampler)" if options.checkpoint == "mask" else f"{options.guidance:g}",
        )  # fmt: skip

    def load_dit(self, path: Path) -> ChexGenDiT | ChexGenControlDiT:
        """The released network with the checkpoint's weights (strict: every key used, none missing)."""
        raw = state_dict_of(read_checkpoint(path, self.log), path, key=self.options.checkpoint_key)
        state = {k.removeprefix("module."): v.float() for k, v in raw.items()}
        heads = self.options.attention_heads
        model: ChexGenDiT | ChexGenControlDiT
        try:
            if self.options.checkpoint == "mask":
                shape = DiTShape.of(state, heads=heads, prefix="base_model.")
                model = ChexGenControlDiT(shape, pos_embed_scale=POS_EMBED_SCALE_512)
            else:
                model = ChexGenDiT(DiTShape.of(state, heads=heads))
            model.load_state_dict(state, strict=True)
        except (KeyError, RuntimeError, ValueError) as exc:
            raise UserFacingError(
                f"{path} is not a ChexGen {self.options.checkpoint!r} checkpoint in the released layout: {str(exc)[:600]}"
            ) from None
        expected = self.options.resolution // 8
        if model_latent(model) != expected:
            raise UserFacingError(
                f"{path}: latent {model_latent(model)} px, but checkpoint {self.options.checkpoint!r} samples at "
                f"{self.options.resolution} px (latent {expected})"
            )
        return model.eval()

    @property
    def resolution(self) -> int:
        return self.options.resolution

    def encode_text(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        """T5 tokens ``(B, max_tokens, dim)`` in fp32, their keep mask, and the tokens cut per prompt."""
        o = self.options
        cleaned = [clean_caption(clean_caption(t)) if o.text_cleaning == "chexgen" else t.lower().strip() for t in texts]
        batch = self.tokenizer(
            cleaned, max_length=o.max_tokens, padding="max_length", truncation=True, add_special_tokens=True, return_tensors="pt"
        )
        full = self.tokenizer(cleaned, add_special_tokens=True)["input_ids"]
        cut = [max(0, len(ids) - o.max_tokens) for ids in full]
        ids, mask = batch["input_ids"].to(self.device), batch["attention_mask"].to(self.device)
        hidden = self.t5(input_ids=ids, attention_mask=mask).last_hidden_state
        return hidden.float(), mask.bool(), cut

    def mask_images(self, conditions: Sequence[Condition], notes: Notes) -> torch.Tensor:
        """Each case's pathology mask as sample_control.py feeds it: 3 channels, resized to 512, in [-1, 1]."""
        side = self.options.resolution
        masks = []
        for index, c in enumerate(conditions):
            if c.pathology_mask is None:
                notes.add(index, "no pathology mask: an empty mask was used")
                masks.append(torch.zeros(1, 1, side, side))
                continue
            m = torch.as_tensor(c.pathology_mask, dtype=torch.float32)[None, None]
            masks.append(F.interpolate(m, size=(side, side), mode="bilinear", antialias=True, align_corners=False))
        return (torch.cat(masks).clamp(0, 1) * 2 - 1).expand(-1, 3, -1, -1).to(self.device)

    @torch.no_grad()
    def generate(self, conditions: Sequence[Condition]) -> GeneratorOutput:
        o = self.options
        notes = Notes(conditions, self.log, self.name)
        prompts = [o.prompt(c) for c in conditions]
        for index, prompt in enumerate(prompts):
            for note in prompt.notes:
                notes.add(index, note)
        generators = [torch.Generator("cpu").manual_seed(int(c.seed)) for c in conditions]
        latent = o.resolution // 8
        shape = (4, latent, latent)
        x = torch.stack([torch.randn(shape, generator=g) for g in generators]).to(self.device)
        text, keep, cut = self.encode_text([p.text for p in prompts])
        control = None
        if o.checkpoint == "mask":
            dist = self.vae.encode(self.mask_images(conditions, notes)).latent_dist
            draws = torch.stack([torch.randn(dist.mean.shape[1:], generator=g) for g in generators]).to(self.device)
            control = (dist.mean + dist.std * draws) * LATENT_SCALE
        null = self.model_null().expand(len(conditions), -1, -1)
        for i in reversed(range(len(self.schedule.timesteps))):
            t = torch.full((len(conditions),), int(self.schedule.timesteps[i]), device=self.device)
            if isinstance(self.model, ChexGenControlDiT):
                assert control is not None
                output = self.model(x, t, text, keep, control)
            else:
                both = self.model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([text, null]), torch.cat([keep, keep]))
                cond, uncond = both.chunk(2)
                output = guided_output(cond, uncond, o.guidance)
            noise = torch.stack([torch.randn(shape, generator=g) for g in generators]).to(self.device)
            x = ddpm_step(self.schedule, i, x, output, noise)
        images = (self.vae.decode(x / LATENT_SCALE).sample.clamp(-1, 1) + 1) / 2
        out = to_output(images, notes)
        inputs = [{**p.record(), "tokens_truncated": n, "checkpoint": o.checkpoint} for p, n in zip(prompts, cut, strict=True)]
        return GeneratorOutput(out.images, out.notes, inputs)

    def model_null(self) -> torch.Tensor:
        base = self.model.base_model if isinstance(self.model, ChexGenControlDiT) else self.model
        return base.y_embedder.y_embedding[None].float()

    @classmethod
    def protocol_steps(
        cls, options: ChexGenOptions, context: GeneratorContext, condition: Condition | None
    ) -> list[ProtocolStep]:
        o = options
        ckpt = CHEXGEN[o.checkpoint]
        steps = [
            ProtocolStep(
                "checkpoint",
                f"{ckpt.path} (key {o.checkpoint_key!r}, 'module.' stripped)",
                f"{REPO} README 'Available Checkpoints'",
            )
        ]
        if condition is not None:
            prompt = o.prompt(condition)
            steps.append(ProtocolStep("prompt", repr(prompt.text), f"case {condition.case_id}: text from {prompt.field}"))
        if o.checkpoint == "512-demographics":
            steps.append(ProtocolStep("prompt format", repr(DEMOGRAPHIC_TEMPLATE), DEMOGRAPHIC_SOURCE))
        steps += [
            ProtocolStep(
                "text encoder",
                f"T5 v1.1 XXL encoder ({CHEXGEN_T5.path}), {o.t5_dtype}, {o.max_tokens} tokens padded, truncated; "
                f"cleaning {o.text_cleaning}",
                f"{T5_SOURCE}:13,16-21,90-110; README 'Encoders (VAE & T5)'",
            ),
            ProtocolStep(
                "network",
                f"DiT-XL/2 ({o.attention_heads} heads), {o.resolution} px, latent {o.resolution // 8}",
                f"{REPO} configs/sample/*.py; radiffuser/models/dit.py",
            ),
            ProtocolStep(
                "sampler",
                f"IDDPM ancestral, linear betas 1e-4..0.02 over 1000 steps respaced to {o.steps}, learned-range variance, "
                "x0 not clipped",
                f"{REPO} radiffuser/diffusion/__init__.py:10-46, respace.py:12-62; {SAMPLE}:129,183-191 (clip_denoised=False)",
            ),
        ]
        if o.checkpoint == "mask":
            steps += [
                ProtocolStep(
                    "guidance",
                    "none (conditional pass only)",
                    f"{REPO} radiffuser/models/dit_control.py:142-145 (forward_with_cfg ignores cfg_scale)",
                ),
                ProtocolStep(
                    "mask",
                    "the case's pathology mask, 0/1 -> 3 channels, resized to 512 (bilinear), [-1, 1], VAE latent sampled "
                    "with the image's generator, x 0.18215; 13 control blocks",
                    f"{CONTROL}:50-54,65-66 (PIL RGB, Resize, ToTensor, Normalize 0.5),189-192; "
                    "radiffuser/models/dit_control.py:52-135",
                ),
            ]
        else:
            steps.append(
                ProtocolStep(
                    "guidance",
                    f"{o.guidance:g} on noise channels 0-2 against the learnt null tokens",
                    f"{REPO} radiffuser/models/dit.py:242-255; {SAMPLE}:176-181",
                )
            )
        steps += [
            ProtocolStep(
                "VAE", f"{CHEXGEN_VAE.path} (AutoencoderKL), decode of latent / 0.18215", f"{SAMPLE}:130,194 (--vae ema)"
            ),
            ProtocolStep(
                "batch and seeds",
                "[run].batch_size; one CPU generator per image: initial noise, mask latent sample, one draw per step",
                f"original: the global CUDA generator seeded once ({SAMPLE}:91-99), batch size 1 (README 'Common Parameters')",
            ),
            ProtocolStep(
                "output",
                f"{o.resolution} px float [0, 1], decode clamped to [-1, 1], reduced to grayscale",
                f"original: 8-bit RGB PNG via save_image ({SAMPLE}:202)",
            ),
        ]
        return steps


def model_latent(model: ChexGenDiT | ChexGenControlDiT) -> int:
    return (model.base_model if isinstance(model, ChexGenControlDiT) else model).shape.latent
