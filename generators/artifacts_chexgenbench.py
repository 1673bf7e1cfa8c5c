"""Weights-manifest entries of CheXGenBench's released fine-tunes (configs/chexgenbench.toml).

Full pipelines are diffusers snapshot folders (``model_index.json``); SD 3.5 Medium and Lumina 2.0 were
released as LoRA files loaded onto their base pipelines (CheXGenBench tools/generate_data_common.py
l.148-197), so each has a LoRA entry and a base-snapshot entry. Hub ids: huggingface.co/raman07 (model
list read 2026); ids marked UNCONFIRMED follow the naming of the listed ones and were not seen.
Licences are those of each base model; the fine-tunes' model cards state none.
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
        source=f"https://huggingface.co/{hub_id}" + ("" if confirmed else " (UNCONFIRMED id; see raman07's model list)"),
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
        "PixArt-Sigma fine-tune (converted to diffusers with tools/convert_pixart_to_diffusers.py)",
    ),
    snapshot(
        "chexgenbench-sana",
        "raman07/CheXGenBench-Models-Sana-e20",
        f"Sana: NVIDIA/Efficient-Large-Model licence (non-commercial); Gemma 2 encoder: Gemma terms; {MIMIC_TERMS}",
        "Sana 0.6B fine-tune, 20 epochs (the leaderboard's best; converted with tools/convert_sana_to_diffusers.py)",
    ),
    snapshot(
        "chexgenbench-flux",
        "raman07/CheXGenBench-Models-SDV-Flux",
        f"FLUX.1-dev Non-Commercial License (gated base); {MIMIC_TERMS}",
        "Flux.1-dev fine-tune (layout not read: no loader in CheXGenBench's generate_data_common.py)",
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
