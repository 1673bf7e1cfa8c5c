"""RAD-DINO (microsoft/rad-dino) CLS features: an optional chest-X-ray FID feature space.

Model and image processor load from the weights manager's local ``rad-dino`` snapshot
(``local_files_only=True``); the processor applies the model's documented preprocessing from
its ``preprocessor_config.json`` (resize, centre crop, normalisation). Features are the
``pooler_output`` (layer-normed CLS token), as in the model card.
"""

from __future__ import annotations

import torch

from xreal_bench.metrics.evaluators.base import FeatureExtractor, WeightsLoadError
from xreal_bench.weights import Artifact, MissingWeightsError, WeightsManager

ARTIFACT = Artifact(
    name="rad-dino",
    path="rad-dino",
    kind="dir",
    files=("config.json", "model.safetensors", "preprocessor_config.json"),
    source="https://huggingface.co/microsoft/rad-dino",
    hub_id="microsoft/rad-dino",
    license="MSRLA (research use)",
    description="RAD-DINO ViT-B/14 chest X-ray encoder (optional FID feature space)",
)
PROCESSOR_FILE = "preprocessor_config.json"


class RadDinoFeatures(FeatureExtractor):
    artifacts = (ARTIFACT,)
    preprocessing = "[0,1] gray -> uint8 by rounding -> 3 channels -> the snapshot's AutoImageProcessor; pooler_output (CLS)"

    def __init__(self, *, weights: WeightsManager, device: torch.device, name: str = "rad-dino"):
        from transformers import AutoImageProcessor, AutoModel

        folder = weights.require(ARTIFACT)
        if not (folder / PROCESSOR_FILE).is_file():
            raise MissingWeightsError(weights.missing_message(ARTIFACT, [folder / PROCESSOR_FILE]))
        try:
            self.processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
            model = AutoModel.from_pretrained(folder, local_files_only=True)
        except Exception as exc:
            raise WeightsLoadError(f"{folder} is not a loadable RAD-DINO snapshot ({type(exc).__name__}: {exc})") from exc
        self.name = name
        self.dim = int(model.config.hidden_size)
        self.device = device
        self.model = model.eval().to(device)
        self.weights_hash = weights.file_hash(ARTIFACT)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pixels = torch.round(images * 255.0).to(torch.uint8).expand(-1, 3, -1, -1).cpu()
        inputs = self.processor(images=list(pixels), return_tensors="pt")
        return self.model(pixel_values=inputs["pixel_values"].to(self.device)).pooler_output.float()
