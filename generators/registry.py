"""Generator types by name: the built-ins and plugins from the ``xreal_bench.generators`` entry
point group (``name = "package.module:GeneratorClass"``), through the one
:class:`xreal_bench.registry.Registry`."""

from __future__ import annotations

from xreal_bench.generators.base import Generator
from xreal_bench.registry import GENERATORS


def register_generator(cls: type[Generator]) -> type[Generator]:
    """Class decorator registering a generator type in this process (plugins use entry points)."""
    GENERATORS.register(cls.type_name, cls)
    return cls


def available_generators() -> list[str]:
    """Every known generator type name, sorted."""
    return GENERATORS.names()


def generator_class(type_name: str) -> type[Generator]:
    """The generator class for ``type_name`` (:class:`~xreal_bench.registry.RegistryError` if unknown)."""
    cls = GENERATORS.get(type_name)
    if not (isinstance(cls, type) and issubclass(cls, Generator)):
        raise TypeError(f"generator {type_name!r} must be a subclass of xreal_bench.generators.Generator, got {cls!r}")
    return cls
