"""FID Inception-v3 features (metric ``fid``) through torch-fidelity's own network.

torch-fidelity's ``FeatureExtractorInceptionV3`` is the PyTorch port of the TensorFlow FID
graph (2048-d pool features, tested against TF to 1e-6). The weights manager's
``inception-fid`` file must carry the sha256 prefix of its published name (``6726825d``);
it is read by :mod:`xreal_bench.safe_load` (tensors only) and loaded strictly; nothing is
downloaded. The network takes ``uint8 [B, 3, H, W]`` and resizes to 299 itself with
TF1-compatible bilinear interpolation (no antialiasing).

torch-fidelity's constructor always loads weights itself: it downloads them when given no
path, and otherwise calls ``torch.load(path, weights_only=False)``, which would run code from a
crafted file. It is therefore never given the file: it receives an in-memory buffer holding
only the state dict the safe loader already read (:func:`state_dict_buffer`).
"""

from __future__ import annotations

import io
from pathlib import Path

import torch

from xreal_bench.metrics.evaluators.base import FeatureExtractor, WeightsLoadError
from xreal_bench.safe_load import read_checkpoint, state_dict_of
from xreal_bench.weights import Artifact, WeightsManager

RELEASE = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
ARTIFACT = Artifact(
    name="inception-fid",
    path="inception/weights-inception-2015-12-05-6726825d.pth",
    source=RELEASE,
    url=RELEASE,
    license="Apache-2.0 (torch-fidelity port of the TF Inception graph)",
    description="Inception-v3 FID feature extractor, torch-fidelity weights (metric `fid`)",
    sha256_prefix="6726825d",
)
FEATURE = "2048"


def state_dict_buffer(state: dict[str, torch.Tensor]) -> io.BytesIO:
    """``state`` serialised in memory: what torch-fidelity's constructor may ``torch.load`` instead of a file."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return buffer


def build_inception(state: dict[str, torch.Tensor], path: Path):
    """torch-fidelity's ``FeatureExtractorInceptionV3`` (2048-d pool features) with ``state`` loaded strictly."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    try:
        return FeatureExtractorInceptionV3(
            "inception-v3-compat", [FEATURE], feature_extractor_weights_path=state_dict_buffer(state)
        )
    except RuntimeError as exc:
        raise WeightsLoadError(
            f"{path} is not torch-fidelity's Inception-v3 state dict ({exc}); replace it (xreal-bench weights fetch {ARTIFACT.name})"
        ) from None


class InceptionFeatures(FeatureExtractor):
    artifacts = (ARTIFACT,)
    preprocessing = (
        "[0,1] gray -> uint8 by rounding (x*255) -> 3 identical channels -> torch-fidelity "
        "TF1-compatible bilinear resize to 299 -> (x-128)/128 -> Inception-v3 pool3 (2048-d)"
    )

    def __init__(self, *, weights: WeightsManager, device: torch.device, name: str = "inception"):
        path = weights.require(ARTIFACT)
        trust = weights.trust(ARTIFACT)
        try:
            state = state_dict_of(read_checkpoint(path), path)
        except WeightsLoadError as exc:
            raise WeightsLoadError(f"{exc}; replace it (xreal-bench weights fetch {ARTIFACT.name})") from None
        model = build_inception(state, path)
        self.name = name
        self.dim = 2048
        self.device = device
        self.model = model.to(device).eval()
        self.weights_hash, self.weights_status = trust.sha256, trust.status

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pixels = torch.round(images * 255.0).to(torch.uint8).expand(-1, 3, -1, -1)
        (features,) = self.model(pixels)
        return features.float()
