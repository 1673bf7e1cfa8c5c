"""Evaluator networks behind three small protocols, built by name from the registry.

>>> from xreal_bench.metrics.evaluators import build_segmenter
>>> seg = build_segmenter("xrv-pspnet", weights=WeightsManager(), device="cuda")  # doctest: +SKIP
>>> masks = seg(images)  # images: float [B, 1, H, W] in [0, 1] -> bool [B, 4, H, W]  # doctest: +SKIP
"""

from xreal_bench.metrics.evaluators.base import (
    Classifier,
    Evaluator,
    FeatureExtractor,
    Segmenter,
    WeightsLoadError,
)
from xreal_bench.metrics.evaluators.registry import (
    available_evaluators,
    build_classifier,
    build_evaluator,
    build_feature_extractor,
    build_segmenter,
    register_evaluator,
)

__all__ = [
    "Classifier",
    "Evaluator",
    "FeatureExtractor",
    "Segmenter",
    "WeightsLoadError",
    "available_evaluators",
    "build_classifier",
    "build_evaluator",
    "build_feature_extractor",
    "build_segmenter",
    "register_evaluator",
]
