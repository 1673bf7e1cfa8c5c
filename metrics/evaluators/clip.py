"""CLIP ViT-L/14 @ 336 px image embeddings (metric ``cmmd``), as the CMMD reference computes them.

The ``clip-vitl14-336`` snapshot is ``openai/clip-vit-large-patch14-336`` (``config.json``,
``model.safetensors``, ``preprocessor_config.json``), loaded offline with transformers'
``CLIPVisionModelWithProjection`` (the text tower's weights in the file are ignored). The
reference is Jayasumana et al. 2024's code, google-research/google-research ``cmmd/`` (JAX), and
its PyTorch port sayakpaul/cmmd-pytorch@f7673a9, which uses this snapshot and these classes
(line numbers of the port; the JAX ``io_util.py`` reads images the same way):

- ``io_util.py`` L49-57: the 8-bit image is centre-cropped to a square of its shorter
  side (``top = (h - l) // 2``, ``left = (w - l) // 2``), then resized to 336 x 336 with Pillow's
  bicubic (antialiased); L60-73: to float32, grey repeated to 3 channels; L107-108: ``/ 255``.
- ``embedding.py`` L26-30 and L57: a second bicubic resize to the crop size (336 -> 336, the
  identity); L58-65: the snapshot's ``CLIPImageProcessor`` with ``do_resize``,
  ``do_center_crop`` and ``do_rescale`` off: only ``(x - image_mean) / image_std``.
- ``embedding.py`` L69-70: ``image_embeds`` (the projection, 768-d) divided by its L2 norm.
  The JAX original normalises too (scenic's ``CLIP.encode_image``, ``normalize=True``).

Here: ``round(x * 255)``, the same crop and Pillow resize to the processor's crop size, ``/ 255``,
3 channels, the processor's mean and std, ``image_embeds`` L2-normalised: the features are unit
vectors (:attr:`ClipFeatures.normalized`).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from PIL import Image

from xreal_bench.metrics.evaluators.base import FeatureExtractor
from xreal_bench.metrics.evaluators.snapshots import load_model, model_input, pil_processor, resized_batch
from xreal_bench.weights import Artifact, WeightsManager

ARTIFACT = Artifact(
    name="clip-vitl14-336",
    path="clip-vitl14-336",
    kind="dir",
    files=("config.json", "model.safetensors", "preprocessor_config.json"),
    fetch_files=("config.json", "model.safetensors", "preprocessor_config.json"),
    source="https://huggingface.co/openai/clip-vit-large-patch14-336",
    hub_id="openai/clip-vit-large-patch14-336",
    license="MIT (openai/CLIP)",
    description="CLIP ViT-L/14 @ 336 px image encoder (metric cmmd)",
)


def square_resize(size: int):
    """Centre crop to the shorter side, then Pillow bicubic to ``size x size`` (CMMD's ``io_util``)."""

    def resize(image: Image.Image) -> Image.Image:
        w, h = image.size
        side = min(w, h)
        top, left = (h - side) // 2, (w - side) // 2
        return image.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.BICUBIC)

    return resize


class ClipFeatures(FeatureExtractor):
    """L2-normalised ``image_embeds`` of CLIP ViT-L/14-336 (768-d), CMMD's preprocessing."""

    #: The features are unit vectors already (CMMD's embedding normalises them).
    normalized: ClassVar[bool] = True
    artifacts = (ARTIFACT,)
    preprocessing = (
        "[0,1] gray -> uint8 by rounding -> centre crop to a square -> Pillow bicubic (antialiased) resize to 336x336 -> "
        "/255 -> 3 channels -> CLIP processor mean/std (no second resize/crop/rescale); image_embeds, L2-normalised (CMMD)"
    )

    def __init__(self, *, weights: WeightsManager, device: torch.device, name: str = "clip-vitl14-336"):
        from transformers import CLIPVisionModelWithProjection

        folder = weights.require(ARTIFACT)
        trust = weights.trust(ARTIFACT)
        processor = pil_processor(folder, what="CLIP", weights=weights, artifact=ARTIFACT)
        model = load_model(
            CLIPVisionModelWithProjection, folder, what="CLIP", model_type="clip_vision_model", allow_unexpected=True
        )
        self.size = int(processor.crop_size["height"])
        self.mean, self.std = tuple(processor.image_mean), tuple(processor.image_std)
        self.resize = square_resize(self.size)
        self.name = name
        self.dim = int(model.config.projection_dim)
        self.device = device
        self.model = model.to(device)
        self.weights_hash, self.weights_status = trust.sha256, trust.status

    def pixel_values(self, images: torch.Tensor) -> torch.Tensor:
        """The model input CMMD builds: float32 ``[B, 3, size, size]``."""
        return model_input(resized_batch(images, self.resize).to(self.device), self.mean, self.std)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        embeds = self.model(pixel_values=self.pixel_values(images)).image_embeds.float()
        return embeds / torch.linalg.vector_norm(embeds, dim=-1, keepdim=True)
