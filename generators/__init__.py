"""Generators: one ``Generator`` protocol, a registry, reference generators and model adapters."""

from xreal_bench.generators.base import INPUT_KINDS, Generator, GeneratorContext, GeneratorOutput, NoOptions
from xreal_bench.generators.registry import available_generators, generator_class, register_generator

__all__ = [
    "INPUT_KINDS",
    "Generator",
    "GeneratorContext",
    "GeneratorOutput",
    "NoOptions",
    "available_generators",
    "generator_class",
    "register_generator",
]
