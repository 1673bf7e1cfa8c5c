"""DINOv2 ViT-L/14 features (metric ``fd_dinov2``), as Stein et al. 2023's dgm-eval extracts them.

The ``dinov2-vitl14`` snapshot is ``facebook/dinov2-large`` (``config.json``, ``model.safetensors``),
loaded offline with transformers' ``Dinov2Model``. What dgm-eval does, read at
layer6ai-labs/dgm-eval@74c79f7 (its default ``--clean_resize`` off, ``__main__.py`` L84-85):

- ``dataloaders.py`` L44: each file is opened with Pillow and converted to RGB (8 bit).
- ``models/dinov2.py`` L33-43: ``torch.hub.load('facebookresearch/dinov2', 'dinov2_vitl14')``.
- ``models/dinov2.py`` L48-59: ``Resize((224, 224), BICUBIC)`` on the Pillow image (Pillow's
  bicubic, a = -0.5, antialiased: its kernel widens by the downscale factor), no crop (the
  aspect ratio is not kept), ``ToTensor`` (``/ 255``), ``Normalize`` with the ImageNet mean
  (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225).
- ``representations.py`` L49-63: the features are the model's output, not L2-normalised
  (``normalized=False``, ``__main__.py`` L142).

The hub model's output is the layer-normed CLS token (facebookresearch/dinov2@b8931f7,
``dinov2/models/vision_transformer.py`` L264-266 and L325-330, ``head`` = identity): transformers'
``pooler_output`` (1024-d). At 224 px the hub resamples its 37 x 37 position embeddings to 16 x 16
with bicubic ``scale_factor = (16 + 0.1) / 37`` and no antialiasing (L195-209;
``dinov2/hub/backbones.py`` L27-28), whereas transformers asks for ``size = 16``, a slightly
different sampling grid. The loader therefore resamples them once the hub's way
(:func:`hub_position_embeddings`), so transformers then uses them as they are.

Here: ``round(x * 255)`` (the 8-bit file dgm-eval reads), Pillow bicubic resize of the grey image to
224 x 224 (equal to each band of the RGB resize), ``/ 255``, three identical channels, ImageNet
normalisation, ``pooler_output``. The snapshot's ``preprocessor_config.json`` (shortest edge 256,
centre crop 224) is not dgm-eval's preprocessing and is not used.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from xreal_bench.metrics.evaluators.base import FeatureExtractor
from xreal_bench.metrics.evaluators.snapshots import load_model, model_input, resized_batch
from xreal_bench.weights import Artifact, WeightsManager

ARTIFACT = Artifact(
    name="dinov2-vitl14",
    path="dinov2-vitl14",
    kind="dir",
    files=("config.json", "model.safetensors"),
    fetch_files=("config.json", "model.safetensors", "preprocessor_config.json"),
    source="https://huggingface.co/facebook/dinov2-large",
    hub_id="facebook/dinov2-large",
    license="Apache-2.0",
    description="DINOv2 ViT-L/14 encoder (metric fd_dinov2, dgm-eval's feature space)",
)
INPUT_SIZE = 224
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: The hub's offset when it resamples position embeddings (``interpolate_offset``).
HUB_INTERPOLATE_OFFSET = 0.1


def dgm_eval_resize(image: Image.Image) -> Image.Image:
    return image.resize((INPUT_SIZE, INPUT_SIZE), Image.Resampling.BICUBIC)


def hub_position_embeddings(position_embeddings: torch.Tensor, *, grid: int) -> torch.Tensor:
    """``[1, 1 + M*M, D]`` -> ``[1, 1 + grid*grid, D]``: the patch embeddings resampled as the DINOv2 hub
    model does for a ``grid x grid`` input (bicubic, ``scale_factor = (grid + 0.1) / M``, no antialias)."""
    cls, patches = position_embeddings[:, :1], position_embeddings[:, 1:]
    side = math.isqrt(patches.shape[1])
    if side * side != patches.shape[1]:
        raise ValueError(f"{patches.shape[1]} position embeddings are not a square grid")
    if side == grid:
        return position_embeddings
    scale = (grid + HUB_INTERPOLATE_OFFSET) / side
    square = patches.float().reshape(1, side, side, -1).permute(0, 3, 1, 2)
    resampled = F.interpolate(square, scale_factor=(scale, scale), mode="bicubic", antialias=False)
    if resampled.shape[-2:] != (grid, grid):
        raise ValueError(f"resampling {side}x{side} position embeddings gave {tuple(resampled.shape[-2:])}, not {grid}x{grid}")
    flat = resampled.permute(0, 2, 3, 1).reshape(1, grid * grid, -1)
    return torch.cat([cls.float(), flat], dim=1).to(position_embeddings.dtype)


class DinoV2Features(FeatureExtractor):
    """Layer-normed CLS token of DINOv2 ViT-L/14 (1024-d), dgm-eval's preprocessing."""

    artifacts = (ARTIFACT,)
    preprocessing = (
        "[0,1] gray -> uint8 by rounding -> Pillow bicubic (antialiased) resize to 224x224, no crop -> /255 -> "
        "3 channels -> ImageNet mean/std; DINOv2 layer-normed CLS (pooler_output), position embeddings resampled "
        "as torch.hub dinov2 (dgm-eval)"
    )

    def __init__(self, *, weights: WeightsManager, device: torch.device, name: str = "dinov2-vitl14"):
        from transformers import Dinov2Model

        folder = weights.require(ARTIFACT)
        trust = weights.trust(ARTIFACT)
        model = load_model(Dinov2Model, folder, what="DINOv2", model_type="dinov2")
        embeddings = model.embeddings.position_embeddings
        grid = INPUT_SIZE // model.config.patch_size
        model.embeddings.position_embeddings = nn.Parameter(hub_position_embeddings(embeddings.data, grid=grid))
        self.name = name
        self.dim = int(model.config.hidden_size)
        self.device = device
        self.model = model.to(device)
        self.weights_hash, self.weights_status = trust.sha256, trust.status

    def pixel_values(self, images: torch.Tensor) -> torch.Tensor:
        """The model input dgm-eval builds: float32 ``[B, 3, 224, 224]``."""
        return model_input(resized_batch(images, dgm_eval_resize).to(self.device), IMAGENET_MEAN, IMAGENET_STD)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=self.pixel_values(images)).pooler_output.float()
