"""The three evaluator protocols: feature extractor, segmenter, classifier.

Every evaluator takes the SAME input — the run's standardised images as a float tensor
``[B, 1, H, W]`` in [0, 1] on any device — and applies its own documented preprocessing
(``preprocessing``), so the evaluation engine never preprocesses per evaluator. Outputs come
back on the CPU. ``weights_hash`` (sha256 of the weights file) and ``weights_status``
(``"verified"`` against a published hash, else ``"unverified (no published hash)"``, from
:meth:`~xreal_bench.weights.WeightsManager.trust`) go into the results' provenance. Subclasses implement :meth:`forward`; ``__call__`` validates input and output and
runs under ``torch.no_grad``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch

from xreal_bench.errors import UserFacingError
from xreal_bench.metrics.dice import MASK_CHANNELS
from xreal_bench.metrics.gradcam import grad_cam, upsample
from xreal_bench.weights import UNVERIFIED, WeightsLoadError

__all__ = [
    "Classifier",
    "Evaluator",
    "EvidenceTarget",
    "FeatureExtractor",
    "NoEvidenceMapsError",
    "Segmenter",
    "WeightsLoadError",
    "check_images",
    "no_evidence_message",
]


def check_images(images: torch.Tensor, evaluator: str) -> None:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 1:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"{evaluator}: images must be a [B, 1, H, W] tensor, got {shape}")
    if not images.is_floating_point():
        raise TypeError(f"{evaluator}: images must be float in [0, 1], got {images.dtype}")
    if not bool(torch.isfinite(images).all()):
        raise ValueError(f"{evaluator}: images contain NaN or infinite values")
    if images.numel() and (float(images.min()) < 0.0 or float(images.max()) > 1.0):
        raise ValueError(f"{evaluator}: images must lie in [0, 1], got [{float(images.min()):.4g}, {float(images.max()):.4g}]")


class Evaluator(ABC):
    """Shared behaviour: validated ``__call__`` on ``[B, 1, H, W]`` [0, 1] images."""

    kind: ClassVar[str]
    name: str
    weights_hash: str
    #: "verified" (a published hash confirms the weights) or "unverified (no published hash)".
    weights_status: str = UNVERIFIED
    #: One line describing the preprocessing applied to the [0, 1] input (recorded in provenance).
    preprocessing: str
    device: torch.device

    @abstractmethod
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images already validated and on ``self.device``; return the raw output."""

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        check_images(images, self.name)
        with torch.no_grad():
            out = self.forward(images.to(self.device, torch.float32))
        out = out.cpu()
        self.check_output(images, out)
        return out

    @abstractmethod
    def check_output(self, images: torch.Tensor, out: torch.Tensor) -> None:
        """Raise if ``out`` breaks the protocol (shape, dtype)."""

    def describe(self) -> dict[str, str]:
        """Provenance record: kind, name, weights hash and its status, preprocessing."""
        return {
            "kind": self.kind,
            "name": self.name,
            "weights_sha256": self.weights_hash,
            "weights_status": self.weights_status,
            "preprocessing": self.preprocessing,
        }


class FeatureExtractor(Evaluator):
    """``images -> float32 [B, dim]`` feature vectors (for FID / KID)."""

    kind = "feature"
    dim: int
    #: Whether every feature vector is already unit-norm (CLIP for CMMD); consumers need not normalise again.
    normalized: ClassVar[bool] = False

    def check_output(self, images: torch.Tensor, out: torch.Tensor) -> None:
        if out.shape != (images.shape[0], self.dim) or out.dtype != torch.float32:
            raise RuntimeError(
                f"{self.name} returned {out.dtype} {tuple(out.shape)}, expected float32 [{images.shape[0]}, {self.dim}]"
            )


class Segmenter(Evaluator):
    """``images -> bool [B, 4, H, W]`` masks at the input size, channels
    :data:`~xreal_bench.metrics.dice.MASK_CHANNELS` (patient's sides: the left lung is on the image's right)."""

    kind = "segmenter"
    channels: tuple[str, ...] = MASK_CHANNELS

    def check_output(self, images: torch.Tensor, out: torch.Tensor) -> None:
        b, _, h, w = images.shape
        if out.shape != (b, len(self.channels), h, w) or out.dtype != torch.bool:
            raise RuntimeError(
                f"{self.name} returned {out.dtype} {tuple(out.shape)}, expected bool [{b}, {len(self.channels)}, {h}, {w}]"
            )


class Classifier(Evaluator):
    """``images -> float32 [B, len(labels)]`` probabilities for CheXpert label names ``labels``.

    ``calibrated_thresholds`` maps labels to operating points in the same probability space
    (predict positive when ``p >= threshold``), or is ``None`` when the model has none.
    """

    kind = "classifier"
    labels: tuple[str, ...]
    calibrated_thresholds: dict[str, float] | None

    def check_output(self, images: torch.Tensor, out: torch.Tensor) -> None:
        if out.shape != (images.shape[0], len(self.labels)) or out.dtype != torch.float32:
            raise RuntimeError(
                f"{self.name} returned {out.dtype} {tuple(out.shape)}, expected float32 [{images.shape[0]}, {len(self.labels)}]"
            )

    #: The feature map Grad-CAM reads (provenance); "" when the classifier gives no evidence maps.
    evidence_layer: str = ""

    def evidence_target(self, images: torch.Tensor) -> EvidenceTarget:
        """The last convolutional feature map and the pre-sigmoid logits (``labels`` order) of
        validated ``images`` on ``self.device``, computed with gradients. Classifiers that give
        evidence maps override it and set :attr:`evidence_layer`."""
        raise NoEvidenceMapsError(no_evidence_message(self.name))

    def evidence_maps(self, images: torch.Tensor, label_indices: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """``float32 [B, H, W]`` Grad-CAM maps (:mod:`xreal_bench.metrics.gradcam`) of each image's label
        ``labels[label_indices[b]]`` at the input size, on the CPU: the gradient of that label's pre-sigmoid
        logit with respect to :attr:`evidence_layer`. Input validated as for ``__call__``; runs with grad."""
        check_images(images, self.name)
        b, _, h, w = images.shape
        indices = torch.as_tensor(label_indices, dtype=torch.long)
        if indices.shape != (b,) or (b and (int(indices.min()) < 0 or int(indices.max()) >= len(self.labels))):
            raise ValueError(
                f"{self.name}: label_indices must be {b} indices into its {len(self.labels)} labels, got {indices.tolist()}"
            )
        with torch.enable_grad():
            target = self.evidence_target(images.detach().to(self.device, torch.float32).requires_grad_(True))
            if target.logits.shape != (b, len(self.labels)) or target.activations.ndim != 4:
                raise RuntimeError(
                    f"{self.name}: evidence target gave logits {tuple(target.logits.shape)} and activations "
                    f"{tuple(target.activations.shape)}, expected [{b}, {len(self.labels)}] and [{b}, C, h, w]"
                )
            scores = target.logits.gather(1, indices.to(target.logits.device)[:, None])[:, 0]
            cams = grad_cam(target.activations, scores)
        top, left, height, width = target.region or (0, 0, h, w)
        maps = torch.zeros((b, h, w), dtype=torch.float32)
        maps[:, top : top + height, left : left + width] = upsample(cams.float(), (height, width)).cpu()
        return maps


def no_evidence_message(classifier: str) -> str:
    return (
        f"classifier {classifier!r} gives no Grad-CAM evidence maps: it does not expose its last convolutional "
        "feature map (Classifier.evidence_target); use one that does (xrv-densenet-*, demo-classifier)"
    )


class NoEvidenceMapsError(UserFacingError):
    """The classifier cannot give Grad-CAM evidence maps."""


@dataclass(frozen=True)
class EvidenceTarget:
    """What Grad-CAM needs of a classifier's forward pass on a batch."""

    activations: torch.Tensor  # [B, C, h, w] last convolutional feature map, in the graph of ``logits``
    logits: torch.Tensor  # [B, len(labels)] pre-sigmoid, ``labels`` order
    #: ``(top, left, height, width)`` of the input image the feature map covers (a centre crop); None: all of it.
    region: tuple[int, int, int, int] | None = None
