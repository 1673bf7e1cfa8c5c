"""Registry of evaluator networks by kind (``feature``, ``segmenter``, ``classifier``) and name.

A factory is any callable ``factory(*, weights: WeightsManager, device: torch.device)``
returning an instance of the kind's base class. Built-ins import their heavy dependencies
only when built. Add your own in-process with :func:`register_evaluator`, or from a package
through the ``xreal_bench.evaluators`` entry-point group, named ``<kind>.<name>``::

    [project.entry-points."xreal_bench.evaluators"]
    "feature.my-encoder" = "my_package.encoders:build_my_encoder"
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from xreal_bench.metrics.evaluators.base import Classifier, Evaluator, FeatureExtractor, Segmenter
from xreal_bench.errors import UserFacingError

if TYPE_CHECKING:
    import torch

    from xreal_bench.weights import WeightsManager

Factory = Callable[..., Evaluator]
KINDS: dict[str, type[Evaluator]] = {"feature": FeatureExtractor, "segmenter": Segmenter, "classifier": Classifier}
ENTRY_POINT_GROUP = "xreal_bench.evaluators"
XRV_TAGS: tuple[str, ...] = ("mimic_ch", "mimic_nb", "chex", "all")


class UnknownEvaluatorError(UserFacingError):
    """No evaluator of that kind and name is registered."""


def lazy(target: str, **options) -> Factory:
    """A factory that imports ``module:callable`` on first build and passes ``options`` on."""

    def factory(*, weights: WeightsManager, device: torch.device, **overrides) -> Evaluator:
        module, _, attr = target.partition(":")
        return getattr(importlib.import_module(module), attr)(weights=weights, device=device, **{**options, **overrides})

    factory.__qualname__ = f"lazy({target})"
    return factory


REGISTRY: dict[str, dict[str, Factory]] = {
    "feature": {
        "inception": lazy("xreal_bench.metrics.evaluators.inception:InceptionFeatures"),
        "xrv-densenet-features": lazy("xreal_bench.metrics.evaluators.xrv:XRVDenseNetFeatures", tag="mimic_ch"),
        **{f"xrv-densenet-features-{t}": lazy("xreal_bench.metrics.evaluators.xrv:XRVDenseNetFeatures", tag=t) for t in XRV_TAGS},
        "rad-dino": lazy("xreal_bench.metrics.evaluators.raddino:RadDinoFeatures"),
        "demo-classifier-features": lazy("xreal_bench.demo.evaluators:DemoClassifierFeatures"),
        "demo-segmenter-features": lazy("xreal_bench.demo.evaluators:DemoSegmenterFeatures"),
    },
    "segmenter": {
        "xrv-pspnet": lazy("xreal_bench.metrics.evaluators.xrv:XRVPSPNet"),
        "demo-segmenter": lazy("xreal_bench.demo.evaluators:DemoSegmenter"),
    },
    "classifier": {
        **{f"xrv-densenet-{t}": lazy("xreal_bench.metrics.evaluators.xrv:XRVDenseNetClassifier", tag=t) for t in XRV_TAGS},
        "demo-classifier": lazy("xreal_bench.demo.evaluators:DemoClassifier"),
    },
}


def check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown evaluator kind {kind!r}; kinds: {', '.join(KINDS)}")


def register_evaluator(kind: str, name: str, factory: Factory, *, replace: bool = False) -> None:
    """Make ``factory`` buildable as ``(kind, name)``; an existing name needs ``replace=True``."""
    check_kind(kind)
    if name in REGISTRY[kind] and not replace:
        raise ValueError(f"{kind} evaluator {name!r} is already registered (pass replace=True to override it)")
    REGISTRY[kind][name] = factory


def plugin_factories(kind: str) -> dict[str, object]:
    prefix = f"{kind}."
    return {ep.name[len(prefix) :]: ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name.startswith(prefix)}


def available_evaluators(kind: str) -> list[str]:
    """Every buildable name of ``kind``, sorted."""
    check_kind(kind)
    return sorted({*REGISTRY[kind], *plugin_factories(kind)})


def build_evaluator(
    kind: str, name: str, *, weights: WeightsManager, device: str | torch.device = "cpu", **options
) -> Evaluator:
    """Build the ``(kind, name)`` evaluator with its weights from ``weights`` on ``device``.

    ``options`` go to the factory (e.g. ``pspnet_left_lung="image-left"`` for ``xrv-pspnet``).
    Missing weights raise the weights manager's ``MissingWeightsError``; an unknown name
    raises :class:`UnknownEvaluatorError` listing the known ones.
    """
    import torch

    check_kind(kind)
    factory = REGISTRY[kind].get(name)
    if factory is None:
        plugins = plugin_factories(kind)
        if name not in plugins:
            raise UnknownEvaluatorError(f"unknown {kind} evaluator {name!r}; available: {', '.join(available_evaluators(kind))}")
        factory = plugins[name].load()
    evaluator = factory(weights=weights, device=torch.device(device), **options)
    if not isinstance(evaluator, KINDS[kind]):
        raise TypeError(f"{kind} evaluator {name!r} built {type(evaluator).__name__}, which is not a {KINDS[kind].__name__}")
    return evaluator


def build_feature_extractor(name: str, *, weights: WeightsManager, device: str | torch.device = "cpu", **options) -> FeatureExtractor:
    return build_evaluator("feature", name, weights=weights, device=device, **options)  # type: ignore[return-value]


def build_segmenter(name: str, *, weights: WeightsManager, device: str | torch.device = "cpu", **options) -> Segmenter:
    return build_evaluator("segmenter", name, weights=weights, device=device, **options)  # type: ignore[return-value]


def build_classifier(name: str, *, weights: WeightsManager, device: str | torch.device = "cpu", **options) -> Classifier:
    return build_evaluator("classifier", name, weights=weights, device=device, **options)  # type: ignore[return-value]
