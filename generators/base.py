"""The ``Generator`` protocol every model adapter and reference generator implements.

A generator is built once per run from its ``[generators.<name>]`` table (parsed into its
``Options`` dataclass) and a :class:`GeneratorContext`, then called on batches of
:class:`~xreal_bench.types.Condition`. It returns one image per condition: float values in
[0, 1], shaped ``H x W`` or ``1 x H x W`` (numpy or torch). The harness brings every output
to the run's image format; generators never write files themselves.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

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
    weights: "WeightsManager | None" = None
    log: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    def torch_device(self) -> "torch.device":
        import torch

        return torch.device(self.device)


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

    def __init__(self, name: str, options: Any, context: GeneratorContext):
        self.name = name
        self.options = options
        self.context = context

    @property
    def resolution(self) -> int:
        """Native output side length in pixels (the harness resizes to the run's resolution)."""
        return self.context.resolution

    @abstractmethod
    def generate(self, conditions: Sequence[Condition]) -> Sequence["np.ndarray | torch.Tensor"]:
        """Return one [0, 1] grayscale image per condition, in order."""
