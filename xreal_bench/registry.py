"""One registry class for everything the suite finds by name: generator types and evaluators.

A :class:`Registry` knows its built-ins as ``"module:attribute"`` strings (imported on first
use, so core modules never import the stages above them), objects registered in-process with
:meth:`Registry.register`, and plugins from an entry-point group. The rules are the same for
every registry: a name is defined once (a second definition, built-in, in-process or entry
point, is a :class:`RegistryError` naming both, unless ``replace=True`` in-process), and an
unknown name is a :class:`RegistryError` listing the known ones.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Mapping
from importlib.metadata import EntryPoint, entry_points
from types import ModuleType
from typing import Any

from xreal_bench.errors import UserFacingError

#: A built-in: ``"module:attribute"``, or that with keyword options bound to the loaded callable.
Builtin = str | tuple[str, Mapping[str, Any]]


class RegistryError(UserFacingError):
    """An unknown name, or a name defined twice, in a registry."""


def import_target(target: str) -> Any:
    """The object named by ``"package.module:attribute"``."""
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


class Registry:
    """Name -> object (a class or factory), from built-ins, in-process registrations and plugins."""

    def __init__(self, kind: str, *, group: str, prefix: str = "", builtins: Mapping[str, Builtin] | None = None):
        self.kind = kind
        self.group = group
        self.prefix = prefix  # entry points of this registry are named "<prefix><name>"
        self.builtins: dict[str, Builtin] = dict(builtins or {})
        self.registered: dict[str, Any] = {}
        self.loaded: dict[str, Any] = {}

    def plugins(self) -> list[EntryPoint]:
        return [ep for ep in entry_points(group=self.group) if ep.name.startswith(self.prefix)]

    def origins(self, name: str) -> list[str]:
        """Every definition of ``name``, described for messages."""
        found = [f"registered in-process ({self.registered[name]!r})"] if name in self.registered else []
        if name in self.builtins:
            builtin = self.builtins[name]
            found.append(f"built in ({builtin if isinstance(builtin, str) else builtin[0]})")
        for ep in self.plugins():
            if ep.name[len(self.prefix) :] == name:
                package = ep.dist.name if ep.dist is not None else "unknown package"
                found.append(f"entry point {self.group}:{ep.name} = {ep.value} (package {package})")
        return found

    def names(self) -> list[str]:
        """Every known name, sorted."""
        return sorted({*self.builtins, *self.registered, *(ep.name[len(self.prefix) :] for ep in self.plugins())})

    def register(self, name: str, obj: Any, *, replace: bool = False) -> None:
        """Make ``obj`` known as ``name`` in this process; an existing name needs ``replace=True``."""
        if not replace and (origins := self.origins(name)):
            raise RegistryError(
                f"{self.kind} {name!r} is already defined: {'; '.join(origins)} (pass replace=True to override it)"
            )
        self.registered[name] = obj
        self.loaded.pop(name, None)

    def unregister(self, name: str) -> None:
        self.registered.pop(name, None)
        self.loaded.pop(name, None)

    def get(self, name: str) -> Any:
        """The object for ``name`` (imported on first use); :class:`RegistryError` if unknown or ambiguous."""
        if name in self.registered:
            return self.registered[name]
        if name in self.loaded:
            return self.loaded[name]
        origins = self.origins(name)
        if not origins:
            raise RegistryError(f"unknown {self.kind} {name!r}; available: {', '.join(self.names()) or 'none'}")
        if len(origins) > 1:
            raise RegistryError(f"{self.kind} {name!r} is defined more than once: {'; '.join(origins)}")
        if name in self.builtins:
            builtin = self.builtins[name]
            target, options = (builtin, {}) if isinstance(builtin, str) else builtin
            obj = import_target(target)
            if options:
                obj = functools.partial(obj, **options)
        else:
            obj = next(ep for ep in self.plugins() if ep.name[len(self.prefix) :] == name).load()
        self.loaded[name] = obj
        return obj


def metric_table() -> ModuleType:
    """:mod:`xreal_bench.metrics.table`, imported on first use (the core validates metric names with it)."""
    return importlib.import_module("xreal_bench.metrics.table")


def declared(obj: Any, attribute: str) -> Any:
    """An attribute declared by a registered class or factory (looking through ``functools.partial``)."""
    return getattr(obj.func if isinstance(obj, functools.partial) else obj, attribute, ())


GENERATORS = Registry(
    "generator",
    group="xreal_bench.generators",
    builtins={
        "real": "xreal_bench.generators.reference:RealGenerator",
        "noise": "xreal_bench.generators.reference:NoiseGenerator",
        "shuffled": "xreal_bench.generators.reference:ShuffledGenerator",
        "memorizer": "xreal_bench.generators.reference:MemorizerGenerator",
        "phantom": "xreal_bench.demo.generator:PhantomGenerator",
        "xreal": "xreal_bench.generators.xreal:XRealGenerator",
        "controlnet": "xreal_bench.generators.controlnet:ControlNetGenerator",
        "cheff": "xreal_bench.generators.cheff:CheffGenerator",
        "roentgen": "xreal_bench.generators.roentgen:RoentGenGenerator",
        "diffusers": "xreal_bench.generators.diffusers_pipeline:DiffusersGenerator",
        "chexgen": "xreal_bench.generators.chexgen:ChexGenGenerator",
        "radedit": "xreal_bench.generators.radedit:RadEditGenerator",
    },
)

#: Weights-manifest entries not declared by one generator type (snapshots the generic ``diffusers``
#: type loads by artifact name): ``name -> "module:attribute"`` of a tuple of Artifact records.
ARTIFACT_SETS: dict[str, str] = {
    "chexgenbench": "xreal_bench.generators.artifacts_chexgenbench:ARTIFACTS",
}

#: torchxrayvision DenseNet weight sets selectable as classifier / feature extractor.
XRV_TAGS: tuple[str, ...] = ("mimic_ch", "mimic_nb", "chex", "all")
XRV = "xreal_bench.metrics.evaluators.xrv"
DEMO = "xreal_bench.demo.evaluators"

#: Evaluators by kind; entry points are named ``<kind>.<name>`` in the ``xreal_bench.evaluators`` group.
EVALUATORS: dict[str, Registry] = {
    "feature": Registry(
        "feature evaluator",
        group="xreal_bench.evaluators",
        prefix="feature.",
        builtins={
            "inception": "xreal_bench.metrics.evaluators.inception:InceptionFeatures",
            "xrv-densenet-features": (f"{XRV}:XRVDenseNetFeatures", {"tag": "mimic_ch"}),
            **{f"xrv-densenet-features-{t}": (f"{XRV}:XRVDenseNetFeatures", {"tag": t}) for t in XRV_TAGS},
            "rad-dino": "xreal_bench.metrics.evaluators.raddino:RadDinoFeatures",
            "dinov2-vitl14": "xreal_bench.metrics.evaluators.dinov2:DinoV2Features",
            "clip-vitl14-336": "xreal_bench.metrics.evaluators.clip:ClipFeatures",
            "demo-classifier-features": f"{DEMO}:DemoClassifierFeatures",
            "demo-segmenter-features": f"{DEMO}:DemoSegmenterFeatures",
            "demo-pixels": f"{DEMO}:DemoPixels",
            "demo-classifier-block2": f"{DEMO}:DemoClassifierBlock2",
            "demo-segmenter-encoder": f"{DEMO}:DemoSegmenterEncoder",
        },
    ),
    "segmenter": Registry(
        "segmenter evaluator",
        group="xreal_bench.evaluators",
        prefix="segmenter.",
        builtins={"xrv-pspnet": f"{XRV}:XRVPSPNet", "demo-segmenter": f"{DEMO}:DemoSegmenter"},
    ),
    "classifier": Registry(
        "classifier evaluator",
        group="xreal_bench.evaluators",
        prefix="classifier.",
        builtins={
            **{f"xrv-densenet-{t}": (f"{XRV}:XRVDenseNetClassifier", {"tag": t}) for t in XRV_TAGS},
            "demo-classifier": f"{DEMO}:DemoClassifier",
        },
    ),
}
