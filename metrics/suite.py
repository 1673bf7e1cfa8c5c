"""Which evaluator serves which metric: the evaluator suite of a run.

Two suites: ``standard`` (the real evaluators: Inception for ``fid``, torchxrayvision
DenseNet features for ``fid_xrv``, PSPNet for Dice, DenseNet classifier for F1/AUC) and
``demo`` (small networks trained by the project on the synthetic phantoms; their numbers are
labelled as demo numbers everywhere). Any role can be overridden by name in ``[metrics]``.
Only the evaluators that enabled metrics need are built, so missing weights fail early and
only for what is used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from xreal_bench.metrics import table
from xreal_bench.metrics.evaluators.base import Classifier, Evaluator, FeatureExtractor, Segmenter
from xreal_bench.metrics.evaluators.registry import build_evaluator

if TYPE_CHECKING:
    from xreal_bench.config import MetricsConfig
    from xreal_bench.weights import WeightsManager

ROLE_KINDS = {
    **dict.fromkeys(table.FEATURE_ROLES, "feature"),
    "segmenter": "segmenter",
    "classifier": "classifier",
}

SUITES: dict[str, dict[str, str]] = {
    "standard": {
        "features": "inception",
        "domain_features": "xrv-densenet-features",
        "dinov2": "dinov2-vitl14",
        "raddino": "rad-dino",
        "clip": "clip-vitl14-336",
        "segmenter": "xrv-pspnet",
        "classifier": "xrv-densenet-mimic_ch",
    },
    "demo": {
        "features": "demo-classifier-features",
        "domain_features": "demo-segmenter-features",
        "dinov2": "demo-pixels",
        "raddino": "demo-classifier-block2",
        "clip": "demo-segmenter-encoder",
        "segmenter": "demo-segmenter",
        "classifier": "demo-classifier",
    },
}


def resolve_role(role: str, cfg: MetricsConfig) -> str:
    """``embedding`` -> the feature role ``metrics.embedding`` names; other roles as they are."""
    return cfg.embedding if role == table.EMBEDDING else role


def chosen_evaluators(cfg: MetricsConfig) -> dict[str, tuple[str, str]]:
    """``role -> (kind, name)`` of every evaluator the enabled metrics need (``embedding`` resolved):
    the ``[metrics]`` override of the role, else the suite's default."""
    defaults = SUITES[cfg.evaluators]
    roles = {resolve_role(role, cfg) for role in table.roles(cfg.enabled)}
    return {role: (ROLE_KINDS[role], getattr(cfg, role) or defaults[role]) for role in sorted(roles)}


@dataclass
class Suite:
    """The built evaluators of a run, by role."""

    name: str
    features: dict[str, FeatureExtractor] = field(default_factory=dict)  # role -> extractor
    segmenter: Segmenter | None = None
    classifier: Classifier | None = None

    def evaluator_name(self, role: str) -> str:
        if role in self.features:
            return self.features[role].name
        ev = {"segmenter": self.segmenter, "classifier": self.classifier}.get(role)
        return ev.name if ev is not None else ""

    def label(self, metric: str, *, embedding: str = "dinov2") -> str:
        """The ``evaluator`` column for a metric: evaluator name, prefixed ``demo:`` in the demo suite
        (``embedding``: the feature role ``metrics.embedding`` names)."""
        role = table.row_metric(metric).role
        if role is None:
            return "pixels"
        name = self.evaluator_name(embedding if role == table.EMBEDDING else role)
        return f"demo:{name}" if self.name == "demo" else name

    def describe(self) -> dict[str, dict[str, str]]:
        """Provenance: each role's evaluator name, weights hash and preprocessing."""
        out = {role: ex.describe() for role, ex in self.features.items()}
        if self.segmenter is not None:
            out["segmenter"] = self.segmenter.describe()
        if self.classifier is not None:
            out["classifier"] = self.classifier.describe()
        return out


def build_suite(cfg: MetricsConfig, weights: WeightsManager, device) -> Suite:
    """Build the evaluators needed by ``cfg.enabled`` (missing weights raise here, before any pass)."""
    suite = Suite(cfg.evaluators)
    built: dict[tuple[str, str], Evaluator] = {}
    for role, key in chosen_evaluators(cfg).items():
        if key not in built:
            options = {"pspnet_left_lung": cfg.pspnet_left_lung} if key == ("segmenter", "xrv-pspnet") else {}
            built[key] = build_evaluator(*key, weights=weights, device=device, **options)
        evaluator = built[key]
        if isinstance(evaluator, FeatureExtractor):
            suite.features[role] = evaluator
        else:
            setattr(suite, role, evaluator)
    return suite
