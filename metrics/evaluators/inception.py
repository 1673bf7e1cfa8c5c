"""FID Inception-v3 features (metric ``fid``) through torch-fidelity's own network.

torch-fidelity's ``FeatureExtractorInceptionV3`` is the PyTorch port of the TensorFlow FID
graph (2048-d pool features, tested against TF to 1e-6). It is loaded strictly from the
weights manager's ``inception-fid`` file and never downloads. It takes ``uint8 [B, 3, H, W]``
and resizes to 299 itself with TF1-compatible bilinear interpolation (no antialiasing).
"""

from __future__ import annotations

import torch

from xreal_bench.metrics.evaluators.base import FeatureExtractor, WeightsLoadError
from xreal_bench.weights import Artifact, WeightsManager

RELEASE = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
ARTIFACT = Artifact(
    name="inception-fid",
    path="inception/weights-inception-2015-12-05-6726825d.pth",
    source=RELEASE,
    url=RELEASE,
    license="Apache-2.0 (torch-fidelity port of the TF Inception graph)",
    description="Inception-v3 FID feature extractor, torch-fidelity weights (metric `fid`)",
)
FEATURE = "2048"


class InceptionFeatures(FeatureExtractor):
    artifacts = (ARTIFACT,)
    preprocessing = (
        "[0,1] gray -> uint8 by rounding (x*255) -> 3 identical channels -> torch-fidelity "
        "TF1-compatible bilinear resize to 299 -> (x-128)/128 -> Inception-v3 pool3 (2048-d)"
    )

    def __init__(self, *, weights: WeightsManager, device: torch.device, name: str = "inception"):
        from torch_fidelity.feature_extractor_inceptionv3 import (
            FeatureExtractorInceptionV3,
        )

        path = weights.require(ARTIFACT)
        try:
            model = FeatureExtractorInceptionV3("inception-v3-compat", [FEATURE], feature_extractor_weights_path=str(path))
        except Exception as exc:
            raise WeightsLoadError(
                f"{path} is not torch-fidelity's Inception-v3 state dict ({type(exc).__name__}: {exc}); "
                f"replace it (xreal-bench weights fetch {ARTIFACT.name})"
            ) from exc
        self.name = name
        self.dim = 2048
        self.device = device
        self.model = model.to(device).eval()
        self.weights_hash = weights.file_hash(ARTIFACT)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pixels = torch.round(images * 255.0).to(torch.uint8).expand(-1, 3, -1, -1)
        (features,) = self.model(pixels)
        return features.float()
