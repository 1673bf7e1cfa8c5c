"""RadEdit (Microsoft Health Futures): text-to-image latent diffusion for chest X-rays.

The release is three snapshots, placed where the weights manager says and loaded offline:

- ``microsoft/radedit`` — the diffusers ``UNet2DConditionModel`` (``unet/``), trained from scratch;
- ``stabilityai/sdxl-vae`` — the SDXL autoencoder the UNet's latents belong to;
- ``microsoft/BiomedVLP-BioViL-T`` — the text encoder (CXR-BERT of BioViL-T) and its tokenizer.

CheXGenBench's loader (:data:`CHEXGENBENCH` l.79-119; the gated model card's usage block was not readable when this
was checked, so CheXGenBench's code is the source cited) builds a plain
``StableDiffusionPipeline`` from them: BioViL-T through ``AutoModel(..., trust_remote_code=True)``, the
tokenizer at ``model_max_length=128``, and a DDIM scheduler (:data:`OFFICIAL_SCHEDULER`); CheXGenBench samples
100 steps at guidance 7.5 (l.316-320). The suite never runs remote code: the remote class ``CXRBertModel`` is
a ``BertForMaskedLM`` whose first output is the last hidden state of its BERT (hi-ml
``modelling_cxrbert.py`` forward, l.72-120; the Hub's ``modeling_cxrbert.py`` is the copy remote code runs); that is what the pipeline feeds the UNet's cross-attention
(``encode_prompt`` takes ``text_encoder(ids)[0]``). So the suite loads the same weights into transformers'
own ``BertModel`` (no pooler; the masked-LM head and the ``cls_projection_head`` — the 128-d joint-space
projection — are not used by generation and are skipped) and feeds its ``last_hidden_state`` for the
128-token padded prompt, without an attention mask (diffusers passes one only when the encoder's config
sets ``use_attention_mask``, which CXRBertConfig, a BertConfig, does not), exactly as the pipeline does.

Where the suite differs, on purpose: each prompt is encoded on its own and one CPU generator per image is
seeded with the image's seed (an image does not depend on its batch; CheXGenBench seeds the global RNG once
and samples batch by batch); the UNet runs in ``[run].precision`` on CUDA, the text encoder and the SDXL VAE
in fp32 (the SDXL VAE overflows in fp16 — its config says ``force_upcast`` — and the Stable Diffusion
pipeline does not upcast it); the 3-channel decode is reduced to grayscale by ITU-R 601 luma.

RadEdit's editing mode (inpainting a region under an edit mask while keep masks pin the rest) is not offered:
it needs, per image, an edit prompt, an edit mask and one or more keep masks (anatomy segmentations) and the
released editing pipeline's sampler; the suite's inputs give one pathology mask and no keep masks, so a
faithful run cannot be built from a case (see docs/issue16/radedit.md).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from xreal_bench.errors import UserFacingError
from xreal_bench.generators.artifacts import BIOVIL_T, RADEDIT_UNET, SDXL_VAE
from xreal_bench.generators.base import Generator, GeneratorContext, GeneratorOutput, ProtocolStep, cited
from xreal_bench.generators.diffusion.conditions import Notes
from xreal_bench.generators.diffusion.runtime import adapter_logger, device_and_dtype, require_weights, to_output
from xreal_bench.generators.prompts import PROMPT_RULES, Prompt, build_prompt
from xreal_bench.types import Condition
from xreal_bench.validation import require

MODEL_CARD = "huggingface.co/microsoft/radedit README.md (model card, 'Usage')"
CHEXGENBENCH = "Raman1121/CheXGenBench tools/generate_data_common.py"
CXRBERT = "microsoft/hi-ml hi-ml-multimodal/src/health_multimodal/text/model/modelling_cxrbert.py"
#: Tokenizer length of the released usage (CheXGenBench l.93-96: AutoTokenizer(..., model_max_length=128)).
BIOVIL_TOKENS = 128
#: The released DDIM scheduler (CheXGenBench l.100-106); the other settings are DDIMScheduler's defaults.
OFFICIAL_SCHEDULER: dict[str, Any] = {
    "beta_schedule": "linear",
    "clip_sample": False,
    "prediction_type": "epsilon",
    "timestep_spacing": "trailing",
    "steps_offset": 1,
}
SCHEDULER_SOURCE = (
    f"{CHEXGENBENCH}:100-106 (CheXGenBench's RadEdit loader); beta_start 0.0001, beta_end 0.02, 1000 training steps and "
    "set_alpha_to_one True are diffusers' DDIMScheduler defaults"
)
ENCODER_SOURCE = (
    f"{CHEXGENBENCH}:89-96 (AutoModel/AutoTokenizer of microsoft/BiomedVLP-BioViL-T, trust_remote_code, 128 "
    f"tokens); {CXRBERT}:72-120 (CXRBertModel.forward: output[0] = BertForMaskedLM hidden_states[-1], l.100); "
    "diffusers StableDiffusionPipeline.encode_prompt (text_encoder(ids)[0], mask only if config.use_attention_mask)"
)
#: Weight file names a transformers snapshot may hold, in the order they are tried.
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
#: config.json keys of CXRBertConfig that BertConfig does not take.
CXRBERT_ONLY_KEYS = ("auto_map", "architectures", "model_type", "projection_size", "transformers_version")


@dataclass
class RadEditOptions:
    #: Denoising steps.
    steps: int = cited(100, f"{CHEXGENBENCH}:316-320 (PIPELINE_CONSTANTS['radedit'], num_inference_steps)")
    #: Classifier-free guidance scale (1 = none).
    guidance: float = cited(7.5, f"{CHEXGENBENCH}:316-320 (PIPELINE_CONSTANTS['radedit'], guidance_scale)")
    #: A rule of xreal_bench.generators.prompts.PROMPT_RULES.
    prompt_rule: str = cited(
        "impression",
        f"{MODEL_CARD}: the model is trained 'to generate chest X-rays from either the impression section of a "
        "radiology report ... or a list of radiographic observations'; the impression is the first (rule 'labels' "
        "gives the observation list)",
    )
    #: Text used when a case has neither impression nor positive labels.
    fallback_prompt: str = cited(
        "No acute cardiopulmonary process.",
        "not stated by the original; chosen because it is the standard normal impression (the RoentGen adapter's fallback too)",
    )
    #: Unconditional prompt of classifier-free guidance.
    negative_prompt: str = cited(
        "",
        f"{CHEXGENBENCH}:270-279 passes no negative prompt, so StableDiffusionPipeline.encode_prompt uses '' "
        "(uncond_tokens = [''] * batch_size)",
    )
    #: Output side in pixels.
    resolution: int = cited(
        512,
        f"{CHEXGENBENCH} calls the pipeline without height/width, so it samples at unet.config.sample_size (64) x "
        "the SDXL VAE's factor 8 = 512",
    )

    def validate(self) -> None:
        require(self.steps >= 1, "steps", f"expected >= 1, got {self.steps}")
        require(self.guidance >= 0.0, "guidance", f"expected >= 0 (1 = none), got {self.guidance}")
        require(
            self.resolution >= 64 and self.resolution % 8 == 0,
            "resolution",
            f"expected a multiple of 8 >= 64, got {self.resolution}",
        )
        known = ", ".join(PROMPT_RULES)
        require(self.prompt_rule in PROMPT_RULES, "prompt_rule", f"unknown rule {self.prompt_rule!r} (known: {known})")
        require(
            not PROMPT_RULES[self.prompt_rule].demographic,
            "prompt_rule",
            f"{self.prompt_rule!r} adds demographics, which RadEdit was not trained with",
        )

    def prompt(self, condition: Condition) -> Prompt:
        """The prompt of ``condition`` under these options."""
        return build_prompt(PROMPT_RULES[self.prompt_rule], condition, fallback=self.fallback_prompt)


def weight_file(folder: Path) -> Path:
    """The BioViL-T snapshot's weight file (``model.safetensors`` or ``pytorch_model.bin``)."""
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    raise UserFacingError(f"the BioViL-T snapshot {folder} has no weight file (looked for {' and '.join(WEIGHT_FILES)})")


def bert_state(path: Path) -> dict[str, torch.Tensor]:
    """The BERT encoder's tensors of a CXRBertModel checkpoint, with the ``bert.`` prefix removed; the
    masked-LM head (``cls.``), the projection head (``cls_projection_head.``) and the non-persistent
    position/token-type id buffers some checkpoints carry are left out."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        raw = load_file(str(path))
    else:
        from xreal_bench.safe_load import read_checkpoint

        raw = read_checkpoint(path)
    prefix = "bert."
    return {
        key[len(prefix) :]: value
        for key, value in raw.items()
        if key.startswith(prefix) and not key.endswith(("embeddings.position_ids", "embeddings.token_type_ids"))
    }


def load_biovil_encoder(folder: Path):
    """BioViL-T's CXR-BERT as ``transformers.BertModel`` (no pooler), every BERT weight loaded strictly."""
    from transformers import BertConfig, BertModel

    try:
        fields = json.loads((folder / "config.json").read_text())
        config = BertConfig(**{k: v for k, v in fields.items() if k not in CXRBERT_ONLY_KEYS})
        encoder = BertModel(config, add_pooling_layer=False)
        encoder.load_state_dict(bert_state(weight_file(folder)), strict=True)
    except (OSError, ValueError, RuntimeError, TypeError) as exc:
        raise UserFacingError(f"cannot load the BioViL-T text encoder from {folder}: {exc}") from None
    return encoder.eval()


def load_biovil_tokenizer(folder: Path):
    """The BioViL-T WordPiece tokenizer (CXRBertTokenizer is a plain BertTokenizer) at 128 tokens."""
    from transformers import BertTokenizerFast

    try:
        return BertTokenizerFast.from_pretrained(str(folder), local_files_only=True, model_max_length=BIOVIL_TOKENS)
    except (OSError, ValueError) as exc:
        raise UserFacingError(f"cannot load the BioViL-T tokenizer from {folder}: {exc}") from None


def precision_used(context: GeneratorContext) -> str:
    if context.precision == "fp32" or context.device.startswith("cuda"):
        return f"UNet {context.precision} ([run].precision); BioViL-T and SDXL VAE fp32"
    return f"fp32 ([run].precision {context.precision} applies on CUDA only)"


class RadEditGenerator(Generator):
    type_name = "radedit"
    description = (
        "RadEdit (microsoft/radedit): latent diffusion UNet + SDXL VAE + BioViL-T text encoder, text-to-image "
        "(research use only; gated)"
    )
    inputs = frozenset({"text", "labels"})
    artifacts = (RADEDIT_UNET, SDXL_VAE, BIOVIL_T)
    Options = RadEditOptions

    def __init__(self, name: str, options: RadEditOptions, context: GeneratorContext):
        from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel

        from xreal_bench.generators.diffusion.text import BertPromptEncoder

        super().__init__(name, options, context)
        self.log = adapter_logger(context, name)
        folders = require_weights(context, self.artifacts)
        self.device, self.dtype = device_and_dtype(context, self.log)
        try:
            unet = UNet2DConditionModel.from_pretrained(
                str(folders[RADEDIT_UNET.name]),
                subfolder="unet",
                local_files_only=True,
                use_safetensors=True,
                torch_dtype=self.dtype,
            )
            self.vae = AutoencoderKL.from_pretrained(str(folders[SDXL_VAE.name]), local_files_only=True, use_safetensors=True).to(
                self.device
            )
        except (OSError, ValueError) as exc:
            raise UserFacingError(f"cannot load the RadEdit UNet or the SDXL VAE: {exc}") from None
        biovil = folders[BIOVIL_T.name]
        encoder = load_biovil_encoder(biovil).to(self.device)
        if encoder.config.hidden_size != unet.config.cross_attention_dim:
            raise UserFacingError(
                f"{name}: the text encoder in {biovil} is {encoder.config.hidden_size} wide but the UNet attends to "
                f"{unet.config.cross_attention_dim}-wide contexts: not the BioViL-T snapshot RadEdit was trained with"
            )
        self.text = BertPromptEncoder(
            load_biovil_tokenizer(biovil), encoder, max_length=BIOVIL_TOKENS, device=self.device, log=self.log, model=name
        )
        self.pipe = StableDiffusionPipeline(
            vae=self.vae,
            text_encoder=None,
            tokenizer=None,
            unet=unet,
            scheduler=DDIMScheduler(**OFFICIAL_SCHEDULER),
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
        self.pipe.set_progress_bar_config(disable=True)
        self.pipe.unet.to(self.device)
        self.log.info(
            "%s: RadEdit UNet from %s, SDXL VAE from %s, BioViL-T from %s; DDIM (trailing) %d steps, guidance %.3g, "
            "prompt rule %s",
            name,
            folders[RADEDIT_UNET.name],
            folders[SDXL_VAE.name],
            biovil,
            options.steps,
            options.guidance,
            options.prompt_rule,
        )

    @property
    def resolution(self) -> int:
        return self.options.resolution

    @classmethod
    def protocol_steps(
        cls, options: RadEditOptions, context: GeneratorContext, condition: Condition | None
    ) -> list[ProtocolStep]:
        o = options
        rule = PROMPT_RULES[o.prompt_rule]
        source = f"prompt_rule above; the rule: {rule.source or rule.description}"
        steps = [ProtocolStep("prompt rule", f"{rule.name}: {rule.template!r} from {' > '.join(rule.chain)}", source)]
        if condition is not None:
            prompt = o.prompt(condition)
            steps.append(ProtocolStep("prompt", repr(prompt.text), f"case {condition.case_id}: text from {prompt.field}"))
        steps += [
            ProtocolStep(
                "text encoder",
                f"BioViL-T CXR-BERT as transformers BertModel: last hidden state (768 wide in the release) of the "
                f"prompt padded to {BIOVIL_TOKENS} tokens, no attention mask; projection head unused",
                ENCODER_SOURCE,
            ),
            ProtocolStep(
                "scheduler",
                "DDIMScheduler(" + ", ".join(f"{k}={v!r}" for k, v in OFFICIAL_SCHEDULER.items()) + ")",
                SCHEDULER_SOURCE,
            ),
            ProtocolStep("precision", precision_used(context), "the original runs everything in fp32 (no torch_dtype)"),
            ProtocolStep(
                "batch and seeds",
                "[run].batch_size; each prompt encoded alone; one CPU generator per image, seeded with the image's seed",
                f"{CHEXGENBENCH}:302 (seed_everything(42) once), l.270-279 (no generator passed)",
            ),
            ProtocolStep(
                "output",
                f"{o.resolution} px, SDXL VAE decode in fp32 (latents / scaling_factor), [-1, 1] -> [0, 1], grayscale by "
                "ITU-R 601 luma",
                "StableDiffusionPipeline's decode and postprocess; the original saves 8-bit RGB PNGs",
            ),
            ProtocolStep("editing mode", "not offered", "needs an edit mask and keep masks per image (module docstring)"),
        ]
        return steps

    def contexts(self, prompts: Sequence[str]) -> torch.Tensor:
        return self.text(prompts).to(self.device, self.dtype)

    @torch.no_grad()
    def generate(self, conditions: Sequence[Condition]) -> GeneratorOutput:
        o = self.options
        notes = Notes(conditions, self.log, self.name)
        prompts = [o.prompt(c) for c in conditions]
        for index, prompt in enumerate(prompts):
            for note in prompt.notes:
                notes.add(index, note)
        texts = [p.text for p in prompts]
        cut = self.text.tokens_cut(texts)
        latents = self.pipe(
            prompt_embeds=self.contexts(texts),
            negative_prompt_embeds=self.contexts([o.negative_prompt] * len(texts)),
            num_inference_steps=o.steps,
            guidance_scale=o.guidance,
            height=o.resolution,
            width=o.resolution,
            generator=[torch.Generator("cpu").manual_seed(int(c.seed)) for c in conditions],
            output_type="latent",
        ).images
        decoded = self.vae.decode(latents.float() / self.vae.config.scaling_factor).sample
        images = (decoded / 2 + 0.5).clamp(0.0, 1.0)
        inputs = [{**p.record(), "tokens_truncated": n} for p, n in zip(prompts, cut, strict=True)]
        return to_output(images, notes, inputs)
