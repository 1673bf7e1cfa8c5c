"""Evaluator networks by kind (``feature``, ``segmenter``, ``classifier``) and name, through the one
:class:`xreal_bench.registry.Registry` (one per kind, declared in :data:`xreal_bench.registry.EVALUATORS`).

A factory is any callable ``factory(*, weights: WeightsManager, device: torch.device)``
returning an instance of the kind's base class; it may declare the weight files it loads as
an ``artifacts`` attribute (``weights list`` shows them). Built-ins import their heavy
dependencies only when built. Add your own in-process with :func:`register_evaluator`, or
from a package through the ``xreal_bench.evaluators`` entry-point group, named ``<kind>.<name>``::

    [project.entry-points."xreal_bench.evaluators"]
    "feature.my-encoder" = "my_package.encoders:MyEncoder"
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from xreal_bench.metrics.evaluators.base import Classifier, Evaluator, FeatureExtractor, Segmenter
from xreal_bench.registry import EVALUATORS, Registry

if TYPE_CHECKING:
    import torch

    from xreal_bench.weights import WeightsManager

Factory = Callable[..., Evaluator]
KINDS: dict[str, type] = {"feature": FeatureExtractor, "segmenter": Segmenter, "classifier": Classifier}


def registry(kind: str) -> Registry:
    if kind not in EVALUATORS:
        raise ValueError(f"unknown evaluator kind {kind!r}; kinds: {', '.join(EVALUATORS)}")
    return EVALUATORS[kind]


def register_evaluator(kind: str, name: str, factory: Factory, *, replace: bool = False) -> None:
    """Make ``factory`` buildable as ``(kind, name)``; an existing name needs ``replace=True``."""
    registry(kind).register(name, factory, replace=replace)


def available_evaluators(kind: str) -> list[str]:
    """Every buildable name of ``kind``, sorted."""
    return registry(kind).names()


def build_evaluator(kind: str, name: str, *, weights: WeightsManager, device: str | torch.device = "cpu", **options) -> Evaluator:
    """Build the ``(kind, name)`` evaluator with its weights from ``weights`` on ``device``.

    ``options`` go to the factory (e.g. ``pspnet_left_lung="image-left"`` for ``xrv-pspnet``).
    Missing weights raise the weights manager's ``MissingWeightsError``; an unknown name
    raises :class:`~xreal_bench.registry.RegistryError` listing the known ones.
    """
    import torch

    factory = registry(kind).get(name)
    evaluator = factory(weights=weights, device=torch.device(device), **options)
    if not (isinstance(evaluator, Evaluator) and isinstance(evaluator, KINDS[kind])):
        raise TypeError(f"{kind} evaluator {name!r} built {type(evaluator).__name__}, which is not a {KINDS[kind].__name__}")
    return evaluator


def build_feature_extractor(
    name: str, *, weights: WeightsManager, device: str | torch.device = "cpu", **options
) -> FeatureExtractor:
    return build_evaluator("feature", name, weights=weights, device=device, **options)  # type: ignore[return-value]


def build_segmenter(name: str, *, weights: WeightsManager, device: str | torch.device = "cpu", **options) -> Segmenter:
    return build_evaluator("segmenter", name, weights=weights, device=device, **options)  # type: ignore[return-value]


def build_classifier(name: str, *, weights: WeightsManager, device: str | torch.device = "cpu", **options) -> Classifier:
    return build_evaluator("classifier", name, weights=weights, device=device, **options)  # type: ignore[return-value]
