"""RAD-DINO (microsoft/rad-dino) CLS features (metric ``fd_raddino``).

The ``rad-dino`` snapshot (``config.json``, ``model.safetensors``, ``preprocessor_config.json``) is
loaded offline as the model card shows: ``AutoModel`` (a ``Dinov2Model``, ViT-B/14) and
``AutoImageProcessor``, features = ``pooler_output``, the layer-normed CLS token (768-d), input a
Pillow RGB image. The snapshot's processor is a ``BitImageProcessor``: resize of the shorter side to
518 with Pillow bicubic, centre crop 518 x 518, ``/ 255``, mean 0.5307 and std 0.2583 on every
channel. The card predates transformers 5, whose ``AutoImageProcessor`` returns a torchvision
implementation by default; the Pillow one the card used is asked for explicitly
(:func:`~xreal_bench.metrics.evaluators.snapshots.pil_processor`).

CheXGenBench (Raman1121/CheXGenBench@9a201c1, ``metrics/fid.py`` L34-40, L55-71, L233-238,
L285) uses the same model, processor and ``pooler_output``, but first stretches every image to
299 x 299 (torchvision ``Resize``, bilinear) and truncates ``x * 255`` to uint8; that detour is its
own, not the model authors', and is not reproduced.

Here: ``round(x * 255)`` -> 8-bit grey -> RGB Pillow image -> the snapshot's processor -> ``pooler_output``.
"""

from __future__ import annotations

import torch

from xreal_bench.metrics.evaluators.base import FeatureExtractor
from xreal_bench.metrics.evaluators.snapshots import gray_pil_images, load_model, pil_processor
from xreal_bench.weights import Artifact, WeightsManager

ARTIFACT = Artifact(
    name="rad-dino",
    path="rad-dino",
    kind="dir",
    files=("config.json", "model.safetensors", "preprocessor_config.json"),
    fetch_files=("config.json", "model.safetensors", "preprocessor_config.json"),
    source="https://huggingface.co/microsoft/rad-dino",
    hub_id="microsoft/rad-dino",
    license="MSRLA (research use)",
    description="RAD-DINO ViT-B/14 chest X-ray encoder (metric fd_raddino)",
)


class RadDinoFeatures(FeatureExtractor):
    artifacts = (ARTIFACT,)
    preprocessing = (
        "[0,1] gray -> uint8 by rounding -> RGB Pillow image -> the snapshot's image processor, Pillow implementation "
        "(model card: shorter side to 518 bicubic, centre crop 518, /255, mean 0.5307, std 0.2583); pooler_output (CLS)"
    )

    def __init__(self, *, weights: WeightsManager, device: torch.device, name: str = "rad-dino"):
        from transformers import AutoModel

        folder = weights.require(ARTIFACT)
        trust = weights.trust(ARTIFACT)
        self.processor = pil_processor(folder, what="RAD-DINO", weights=weights, artifact=ARTIFACT)
        model = load_model(AutoModel, folder, what="RAD-DINO", model_type="dinov2")
        self.name = name
        self.dim = int(model.config.hidden_size)
        self.device = device
        self.model = model.to(device)
        self.weights_hash, self.weights_status = trust.sha256, trust.status

    def pixel_values(self, images: torch.Tensor) -> torch.Tensor:
        rgb = [image.convert("RGB") for image in gray_pil_images(images)]
        return self.processor(images=rgb, return_tensors="pt")["pixel_values"].to(self.device, torch.float32)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=self.pixel_values(images)).pooler_output.float()
