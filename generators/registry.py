"""Registry of generator types: built-ins plus plugins from the ``xreal_bench.generators``
entry point group (``name = "package.module:GeneratorClass"``)."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from xreal_bench.generators.base import Generator

#: Built-in generator types, imported on first use so that heavy dependencies load lazily.
BUILTINS: dict[str, str] = {
    "real": "xreal_bench.generators.reference:RealGenerator",
    "noise": "xreal_bench.generators.reference:NoiseGenerator",
    "shuffled": "xreal_bench.generators.reference:ShuffledGenerator",
    "phantom": "xreal_bench.demo.generator:PhantomGenerator",
    "xreal": "xreal_bench.generators.xreal:XRealGenerator",
    "controlnet": "xreal_bench.generators.controlnet:ControlNetGenerator",
    "cheff": "xreal_bench.generators.cheff:CheffGenerator",
    "roentgen": "xreal_bench.generators.roentgen:RoentGenGenerator",
}

REGISTERED: dict[str, type[Generator]] = {}
ENTRY_POINT_GROUP = "xreal_bench.generators"


def register_generator(cls: type[Generator]) -> type[Generator]:
    """Class decorator registering a generator type in this process (plugins use entry points)."""
    REGISTERED[cls.type_name] = cls
    return cls


def import_target(target: str) -> type[Generator]:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def plugin_targets() -> dict[str, object]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_generators() -> list[str]:
    """Every known generator type name, sorted."""
    return sorted({*BUILTINS, *REGISTERED, *plugin_targets()})


def generator_class(type_name: str) -> type[Generator]:
    """The generator class for ``type_name``; KeyError listing available names if unknown."""
    if type_name in REGISTERED:
        return REGISTERED[type_name]
    if type_name in BUILTINS:
        cls = import_target(BUILTINS[type_name])
    else:
        plugins = plugin_targets()
        if type_name not in plugins:
            raise KeyError(
                f"unknown generator {type_name!r}; available generators: {', '.join(available_generators())}"
            )
        cls = plugins[type_name].load()
    if not (isinstance(cls, type) and issubclass(cls, Generator)):
        raise TypeError(f"generator {type_name!r} must be a subclass of generators.Generator, got {cls!r}")
    REGISTERED[type_name] = cls
    return cls
