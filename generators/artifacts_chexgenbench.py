"""Weights-manifest entries of CheXGenBench's released fine-tunes (configs/chexgenbench.toml).

Full pipelines are diffusers snapshot folders (``model_index.json``); SD 3.5 Medium and Lumina 2.0 were
released as LoRA files loaded onto their base pipelines (CheXGenBench @ 9a201c1 tools/generate_data_common.py
l.148-197: base ids l.151 and l.177, LoRA file names l.152 and l.178), so each has a LoRA entry and a
base-snapshot entry. Where the ids come from: CheXGenBench's README named only the collection
huggingface.co/collections/raman07/chexgenbench-models-6823ec3c57b8ecbcc296e3d2 (README l.12 at 7eebd6e, removed
for anonymisation in 393ae4a); no repository id appears in its code, scripts or docs. The ids below were read
from huggingface.co/raman07/models ("models 12"; the eight listed in the copy read: CheXGenBench-Models-Sana-e20,
-SDV-Sana-e50, -SDV-Flux, -Pixart-Sigma, -SDV3-5, -SDV-2-1, -Lumina2 and Patient_ReIdentification_MIMIC). No
SD 1.4, SD 1.5 or SD 2 repository was seen: those three ids are UNCONFIRMED guesses following the naming of
-SDV-2-1 (the raman07/SD-finetuned-MIMIC-* repositories belong to an earlier paper, arXiv:2305.08252, not to
CheXGenBench). Licences are those of each base model; the fine-tunes' model cards state none.
"""

from __future__ import annotations

from xreal_bench.weights import Artifact

SNAPSHOT = ("model_index.json",)
SOURCE = "https://huggingface.co/raman07 (CheXGenBench fine-tunes on MIMIC-CXR; arXiv:2505.10496)"
MIMIC_TERMS = "trained on MIMIC-CXR (PhysioNet credentialed data use agreement applies to derived weights)"
OPENRAIL_M = f"CreativeML OpenRAIL-M (Stable Diffusion 1.x base); {MIMIC_TERMS}"
OPENRAIL_PP = f"CreativeML OpenRAIL++-M (Stable Diffusion 2.x base); {MIMIC_TERMS}"


def snapshot(name: str, hub_id: str, license: str, description: str, *, confirmed: bool = True) -> Artifact:
    return Artifact(
        name=name,
        path=f"chexgenbench/{hub_id.split('/')[1]}",
        kind="dir",
        files=SNAPSHOT,
        source=f"https://huggingface.co/{hub_id}"
        + ("" if confirmed else " (UNCONFIRMED id: not seen on huggingface.co/raman07/models; check the collection)"),
        hub_id=hub_id,
        license=license,
        description=description,
    )


def lora(name: str, hub_id: str, weight_name: str, license: str, description: str) -> Artifact:
    return Artifact(
        name=name,
        path=f"chexgenbench/{hub_id.split('/')[1]}",
        kind="dir",
        files=(weight_name,),
        source=f"https://huggingface.co/{hub_id}",
        hub_id=hub_id,
        license=license,
        description=description,
        fetch_files=(weight_name,),
    )


ARTIFACTS: tuple[Artifact, ...] = (
    snapshot("chexgenbench-sd-v1-4", "raman07/CheXGenBench-Models-SDV-1-4", OPENRAIL_M, "SD 1.4 fine-tune", confirmed=False),
    snapshot("chexgenbench-sd-v1-5", "raman07/CheXGenBench-Models-SDV-1-5", OPENRAIL_M, "SD 1.5 fine-tune", confirmed=False),
    snapshot("chexgenbench-sd-v2", "raman07/CheXGenBench-Models-SDV-2", OPENRAIL_PP, "SD 2 fine-tune", confirmed=False),
    snapshot("chexgenbench-sd-v2-1", "raman07/CheXGenBench-Models-SDV-2-1", OPENRAIL_PP, "SD 2.1 fine-tune"),
    snapshot(
        "chexgenbench-pixart-sigma",
        "raman07/CheXGenBench-Models-Pixart-Sigma",
        f"PixArt-Sigma: CreativeML OpenRAIL++-M; T5 encoder Apache-2.0; {MIMIC_TERMS}",
        "PixArt-Sigma fine-tune (diffusers PixArtSigmaPipeline snapshot; CheXGenBench ships "
        "tools/convert_pixart_to_diffusers.py)",
    ),
    snapshot(
        "chexgenbench-sana",
        "raman07/CheXGenBench-Models-Sana-e20",
        f"Sana: Efficient-Large-Model (NVIDIA) model licence of the base, not verified here; Gemma 2 encoder: Gemma terms; {MIMIC_TERMS}",
        "Sana 0.6B fine-tune, 20 epochs (raman07 also released -SDV-Sana-e50, 50 epochs; which one the leaderboard's "
        "Sana row used is not stated)",
    ),
    snapshot(
        "chexgenbench-flux",
        "raman07/CheXGenBench-Models-SDV-Flux",
        f"FLUX.1-dev Non-Commercial License (gated base); {MIMIC_TERMS}",
        "Flux.1-dev fine-tune (layout not read: no loader in CheXGenBench's generate_data_common.py; the Hub lists it "
        "without a pipeline tag, like the LoRA-only -SDV3-5, so it may be a LoRA rather than a full pipeline)",
    ),
    lora(
        "chexgenbench-sd-v3-5-lora",
        "raman07/CheXGenBench-Models-SDV3-5",
        "sd3-5_medium_lora.safetensors",
        f"Stability AI Community License (SD 3.5 Medium base); {MIMIC_TERMS}",
        "SD 3.5 Medium LoRA (generate_data_common.py l.152)",
    ),
    lora(
        "chexgenbench-lumina2-lora",
        "raman07/CheXGenBench-Models-Lumina2",
        "lumina2_lora.safetensors",
        f"Lumina-Image 2.0: Apache-2.0; Gemma 2 encoder: Gemma terms; {MIMIC_TERMS}",
        "Lumina 2.0 LoRA (generate_data_common.py l.178)",
    ),
    Artifact(
        name="sd-3-5-medium",
        path="chexgenbench/base/stable-diffusion-3.5-medium",
        kind="dir",
        files=SNAPSHOT,
        source="https://huggingface.co/stabilityai/stable-diffusion-3.5-medium (gated: accept the licence)",
        hub_id="stabilityai/stable-diffusion-3.5-medium",
        license="Stability AI Community License (gated)",
        description="SD 3.5 Medium base pipeline for the CheXGenBench LoRA (generate_data_common.py l.151)",
    ),
    Artifact(
        name="lumina-image-2",
        path="chexgenbench/base/Lumina-Image-2.0",
        kind="dir",
        files=SNAPSHOT,
        source="https://huggingface.co/Alpha-VLLM/Lumina-Image-2.0",
        hub_id="Alpha-VLLM/Lumina-Image-2.0",
        license="Apache-2.0 (Gemma 2 text encoder under Gemma terms)",
        description="Lumina 2.0 base pipeline for the CheXGenBench LoRA (generate_data_common.py l.177)",
    ),
)
