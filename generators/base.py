"""The ``Generator`` protocol every model adapter and reference generator implements.

A generator is built once per run from its ``[generators.<name>]`` table (parsed into its
``Options`` dataclass) and a :class:`GeneratorContext`, then called on batches of
:class:`~xreal_bench.types.Condition`. It returns a :class:`GeneratorOutput`: one image per
condition (float values in [0, 1], shaped ``H x W`` or ``1 x H x W``, numpy or torch) and
optionally one tuple of notes per image. The harness brings every image to the run's image
format; generators never write files themselves.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from xreal_bench.types import INPUT_KINDS, Case, Condition  # noqa: F401 - INPUT_KINDS lives in core; re-exported
from xreal_bench.weights import Artifact

if TYPE_CHECKING:
    import torch

    from xreal_bench.weights import WeightsManager


@dataclass
class NoOptions:
    """For generators without options of their own."""


@dataclass
class GeneratorContext:
    """What a generator may need beyond its options, supplied by the harness."""

    cases: Sequence[Case] = ()
    dataset_kind: str = "mimic"
    resolution: int = 256
    square: str = "crop"
    device: str = "cpu"
    precision: str = "fp32"
    weights: WeightsManager | None = None
    log: Any = None

    def torch_device(self) -> torch.device:
        import torch

        return torch.device(self.device)


@dataclass(frozen=True, eq=False)
class GeneratorOutput:
    """What ``Generator.generate`` returns for a batch of conditions.

    ``images``: one [0, 1] grayscale image per condition, in order (a batched array or tensor
    counts along its first axis). ``notes``: empty, or one tuple per image of the generator's
    remarks on that sample (a clipped box, a fallback prompt, ...); the harness stores them in
    the sample's manifest line.
    """

    images: Sequence[np.ndarray | torch.Tensor]
    notes: Sequence[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        if any(isinstance(n, str) for n in self.notes):
            raise TypeError("GeneratorOutput.notes holds one tuple of strings per image, not strings")
        object.__setattr__(self, "images", tuple(self.images))
        object.__setattr__(self, "notes", tuple(tuple(n) for n in self.notes))
        if self.notes and len(self.notes) != len(self.images):
            raise ValueError(f"GeneratorOutput has {len(self.notes)} notes for {len(self.images)} images")

    @classmethod
    def from_result(cls, result: object) -> GeneratorOutput:
        """``generate``'s return value as a GeneratorOutput.

        The one place where a plain list or tuple of images (or a batched array/tensor), as plugins
        may return, is accepted: it becomes an output without notes. Anything else is a ``TypeError``.
        """
        import torch

        if isinstance(result, GeneratorOutput):
            return result
        if isinstance(result, (list, tuple, np.ndarray, torch.Tensor)):
            return cls(tuple(result))
        raise TypeError(f"generate() returned {type(result).__name__}; expected a GeneratorOutput (or a list of images)")


class Generator(ABC):
    """Base class of every generator. Subclasses set the class attributes and ``generate``."""

    #: Registry name (the ``type`` in ``[generators.<name>]``).
    type_name: ClassVar[str]
    #: One line for ``xreal-bench generators list``.
    description: ClassVar[str] = ""
    #: Subset of :data:`INPUT_KINDS` this generator reads.
    inputs: ClassVar[frozenset[str]] = frozenset()
    #: The weight files this generator loads (``xreal-bench weights list`` shows them).
    artifacts: ClassVar[tuple[Artifact, ...]] = ()
    #: Dataclass of the generator's own options (validated from its config table).
    Options: ClassVar[type] = NoOptions

    @classmethod
    def required_artifacts(cls, options: Any) -> tuple[Artifact, ...]:
        """The artifacts a generator with these ``options`` loads, checked before any work
        (:mod:`xreal_bench.preflight`); every one of ``artifacts`` unless the options choose a subset."""
        return cls.artifacts

    def __init__(self, name: str, options: Any, context: GeneratorContext):
        self.name = name
        self.options = options
        self.context = context

    @property
    def resolution(self) -> int:
        """Native output side length in pixels (the harness resizes to the run's resolution)."""
        return self.context.resolution

    @abstractmethod
    def generate(self, conditions: Sequence[Condition]) -> GeneratorOutput:
        """Return one [0, 1] grayscale image per condition, in order, with optional per-image notes."""
