"""Toy evaluators whose outputs can be recomputed by hand (for engine tests, also under torchrun)."""

from __future__ import annotations

from collections import Counter

import torch
import torch.nn.functional as F

from xreal_bench.metrics.evaluators.base import Classifier, FeatureExtractor, Segmenter
from xreal_bench.metrics.evaluators.registry import register_evaluator
from xreal_bench.registry import EVALUATORS

CALLS: Counter = Counter()  # evaluator name -> images seen


def toy_features(images: torch.Tensor) -> torch.Tensor:
    pooled = F.adaptive_avg_pool2d(images, 4).flatten(1)  # 16 dims
    return torch.cat([pooled, pooled**2], dim=1).float()  # 32 dims


class ToyFeatures(FeatureExtractor):
    name, dim, weights_hash, preprocessing = "toy-features", 32, "toy", "4x4 average pool and its square"
    device = torch.device("cpu")

    def forward(self, images):
        CALLS[self.name] += images.shape[0]
        return toy_features(images)


def toy_masks(images: torch.Tensor) -> torch.Tensor:
    x = images[:, 0]
    w = x.shape[-1]
    dark, bright = x < 0.4, x > 0.6
    left_half = torch.zeros_like(dark)
    left_half[..., : w // 2] = True
    return torch.stack([dark & ~left_half, dark & left_half, bright & ~left_half, x > 0.9], dim=1)


class ToySegmenter(Segmenter):
    name, weights_hash, preprocessing = "toy-segmenter", "toy", "intensity thresholds"
    device = torch.device("cpu")

    def forward(self, images):
        CALLS[self.name] += images.shape[0]
        return toy_masks(images)


class ToyClassifier(Classifier):
    name, weights_hash, preprocessing = "toy-classifier", "toy", "mean and std of the image"
    labels = ("Cardiomegaly", "Edema", "Pneumonia")
    calibrated_thresholds = {"Cardiomegaly": 0.5, "Edema": 0.5, "Pneumonia": 0.5}
    device = torch.device("cpu")

    def forward(self, images):
        CALLS[self.name] += images.shape[0]
        m, s = images.mean(dim=(1, 2, 3)), images.std(dim=(1, 2, 3))
        return torch.stack([torch.sigmoid(10 * (m - 0.5)), torch.sigmoid(10 * (s - 0.2)), torch.sigmoid(5 * (m - s))], 1).float()


TOYS = (("feature", ToyFeatures), ("segmenter", ToySegmenter), ("classifier", ToyClassifier))


def register() -> None:
    for kind, cls in TOYS:
        register_evaluator(kind, cls.name, lambda *, weights, device, cls=cls: cls(), replace=True)


def unregister() -> None:
    for kind, cls in TOYS:
        EVALUATORS[kind].unregister(cls.name)
