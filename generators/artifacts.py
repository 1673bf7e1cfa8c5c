"""The weight files of the built-in model adapters, as :class:`~xreal_bench.weights.Artifact`
records. Each adapter declares the ones it loads in its ``artifacts`` class attribute; the
weights manager lists and checks them from there (``xreal-bench weights list``)."""

from __future__ import annotations

from xreal_bench.generators.diffusion.text import BERT_TOKENIZER
from xreal_bench.weights import Artifact

XREAL_SOURCE = "https://github.com/BioMedIA-MBZUAI/XReal (README: 'saved_models' archive)"
XREAL_LICENSE = "CC BY-NC 4.0 (non-commercial)"
CHEFF_SOURCE = "https://github.com/saiboxx/chexray-diffusion (README download links; reported dead in 2026)"
CHEFF_LICENSE = "MIT (chexray-diffusion)"
ROENTGEN_LICENSE = "gated; MIMIC-CXR data use agreement"
RADEDIT_LICENSE = (
    "research use only, no clinical use (model card: 'license: other', gated behind Microsoft's research-only "
    "disclaimer); weights may not be redistributed"
)

XREAL_BACKBONE = Artifact(
    name="xreal-backbone",
    path="xreal/saved_models/backbone.pth",
    source=XREAL_SOURCE,
    license=XREAL_LICENSE,
    description="XReal latent diffusion backbone (UNet + BERT-style text encoder)",
)
XREAL_LDM_AE = Artifact(
    name="xreal-ldm-ae",
    path="xreal/saved_models/ldm_ae.pth",
    source=XREAL_SOURCE,
    license=XREAL_LICENSE,
    description="XReal latent autoencoder (KL-f4, 3 latent channels)",
)
XREAL_ANATOMY_CONTROLLER = Artifact(
    name="xreal-anatomy-controller",
    path="xreal/saved_models/anatomy_controller.pth",
    source=XREAL_SOURCE,
    license=XREAL_LICENSE,
    description="XReal anatomy controller (autoencoder: label map -> anatomy image)",
)
XREAL_CONTROLNET = Artifact(
    name="xreal-controlnet",
    path="xreal/controlnet.ckpt",
    source="not public: train with the XReal/ControlNet code, then place the checkpoint here",
    license="depends on your checkpoint",
    description="ControlNet on XReal's backbone (lllyasviel/CompVis key layout)",
)
CHEFF_AUTOENCODER = Artifact(
    name="cheff-autoencoder",
    path="cheff/cheff_autoencoder.pt",
    source=CHEFF_SOURCE,
    license=CHEFF_LICENSE,
    description="Cheff latent autoencoder",
)
CHEFF_T2I = Artifact(
    name="cheff-diff-t2i",
    path="cheff/cheff_diff_t2i.pt",
    source=CHEFF_SOURCE,
    license=CHEFF_LICENSE,
    description="Cheff text-to-image latent diffusion model",
)
CHEFF_SR = Artifact(
    name="cheff-sr-fine",
    path="cheff/cheff_sr_fine.pt",
    source=CHEFF_SOURCE,
    license=CHEFF_LICENSE,
    description="Cheff super-resolution model 256 -> 1024 (optional)",
)
ROENTGEN = {
    "v1": Artifact(
        name="roentgen-v1",
        path="roentgen/roent-gen-v1-0",
        kind="dir",
        files=("model_index.json",),
        source="https://huggingface.co/StanfordAIMI/roent-gen-v1-0 (gated: PhysioNet credentialing)",
        hub_id="StanfordAIMI/roent-gen-v1-0",
        license=ROENTGEN_LICENSE,
        description="RoentGen v1 Stable Diffusion pipeline snapshot (diffusers layout)",
    ),
    "v2": Artifact(
        name="roentgen-v2",
        path="roentgen/RoentGen-v2",
        kind="dir",
        files=("model_index.json",),
        source="https://huggingface.co/stanfordmimi/RoentGen-v2 (gated)",
        hub_id="stanfordmimi/RoentGen-v2",
        license=ROENTGEN_LICENSE,
        description="RoentGen v2 Stable Diffusion pipeline snapshot (diffusers layout)",
    ),
}

CHEXGEN_SOURCE = (
    "https://github.com/era-ai-biomed/ChexGen (README 'Request Weights': PhysioNet credentialed access, then the "
    "Model Access Request Form; place the .pth files here)"
)
CHEXGEN_LICENSE = "code Apache-2.0; weights behind PhysioNet credentialing (MIMIC-CXR data use agreement)"
CHEXGEN = {
    variant: Artifact(
        name=f"chexgen-{variant}",
        path=f"chexgen/{filename}",
        source=CHEXGEN_SOURCE,
        license=CHEXGEN_LICENSE,
        description=f"ChexGen DiT checkpoint ({what})",
    )
    for variant, filename, what in (
        ("256", "pretrained_256.pth", "256 px pretraining"),
        ("512-impression", "finetuned_impression_512.pth", "512 px, impression text"),
        ("512-demographics", "finetuned_demographic_impression_512.pth", "512 px, sex/age/race + impression"),
        ("mask", "finetuned_control_siim_512.pth", "512 px, SIIM pneumothorax mask control"),
    )
}
CHEXGEN_T5 = Artifact(
    name="t5-v1_1-xxl",
    path="chexgen/t5-v1_1-xxl",
    kind="dir",
    files=("config.json", "spiece.model", "tokenizer_config.json"),
    fetch_files=("config.json", "spiece.model", "tokenizer_config.json", "special_tokens_map.json", "*.safetensors*"),
    source="https://huggingface.co/DeepFloyd/t5-v1_1-xxl (ChexGen radiffuser/models/t5.py:66-68)",
    hub_id="DeepFloyd/t5-v1_1-xxl",
    license="no licence stated on DeepFloyd/t5-v1_1-xxl (no model card, not gated); Google's T5 v1.1 weights are Apache-2.0",
    description="T5 v1.1 XXL encoder and tokenizer used by ChexGen (transformers snapshot)",
)
CHEXGEN_VAE = Artifact(
    name="sd-vae-ft-ema",
    path="chexgen/sd-vae-ft-ema",
    kind="dir",
    files=("config.json",),
    source="https://huggingface.co/stabilityai/sd-vae-ft-ema (ChexGen tools/sample.py:130)",
    hub_id="stabilityai/sd-vae-ft-ema",
    license="MIT",
    description="Stable Diffusion VAE fine-tuned with EMA (diffusers AutoencoderKL snapshot)",
)
RADEDIT_UNET = Artifact(
    name="radedit-unet",
    path="radedit/radedit",
    kind="dir",
    files=("unet/config.json",),
    source="https://huggingface.co/microsoft/radedit (gated: accept the research-only disclaimer)",
    hub_id="microsoft/radedit",
    fetch_files=("unet/*",),
    license=RADEDIT_LICENSE,
    description="RadEdit latent diffusion UNet (diffusers UNet2DConditionModel in unet/)",
)
SDXL_VAE = Artifact(
    name="sdxl-vae",
    path="radedit/sdxl-vae",
    kind="dir",
    files=("config.json",),
    source="https://huggingface.co/stabilityai/sdxl-vae",
    hub_id="stabilityai/sdxl-vae",
    fetch_files=("config.json", "diffusion_pytorch_model.safetensors"),
    license="MIT (stabilityai/sdxl-vae)",
    description="SDXL autoencoder (diffusers AutoencoderKL), RadEdit's latent space",
)
BIOVIL_T = Artifact(
    name="biovil-t",
    path="radedit/BiomedVLP-BioViL-T",
    kind="dir",
    files=("config.json", "vocab.txt"),
    source="https://huggingface.co/microsoft/BiomedVLP-BioViL-T",
    hub_id="microsoft/BiomedVLP-BioViL-T",
    fetch_files=(
        "config.json",
        "vocab.txt",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "pytorch_model.bin",
        "model.safetensors",
    ),
    license="MIT (microsoft/BiomedVLP-BioViL-T)",
    description="BioViL-T CXR-BERT text encoder and tokenizer, RadEdit's prompt encoder (loaded as transformers BertModel)",
)

__all__ = [
    "BERT_TOKENIZER",
    "CHEXGEN",
    "CHEXGEN_T5",
    "CHEXGEN_VAE",
    "BIOVIL_T",
    "CHEFF_AUTOENCODER",
    "CHEFF_SR",
    "CHEFF_T2I",
    "RADEDIT_UNET",
    "ROENTGEN",
    "SDXL_VAE",
    "XREAL_ANATOMY_CONTROLLER",
    "XREAL_BACKBONE",
    "XREAL_CONTROLNET",
    "XREAL_LDM_AE",
]
