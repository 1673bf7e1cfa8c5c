"""The ``Generator`` protocol every model adapter and reference generator implements.

A generator is built once per run from its ``[generators.<name>]`` table (parsed into its
``Options`` dataclass) and a :class:`GeneratorContext`, then called on batches of
:class:`~xreal_bench.types.Condition`. It returns a :class:`GeneratorOutput`: one image per
condition (float values in [0, 1], shaped ``H x W`` or ``1 x H x W``, numpy or torch) and
optionally one tuple of notes per image. The harness brings every image to the run's image
format; generators never write files themselves.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from xreal_bench.imaging import Geometry
from xreal_bench.types import INPUT_KINDS, Case, Condition  # noqa: F401 - INPUT_KINDS lives in core; re-exported
from xreal_bench.weights import Artifact

if TYPE_CHECKING:
    import torch

    from xreal_bench.weights import WeightsManager


#: Option metadata key holding the citation of the option's default.
SOURCE = "source"


def cited(default: Any, source: str) -> Any:
    """A dataclass field for an adapter option whose default comes from ``source``: the original's
    repository and file (line or function), or its paper's section; or, where the original is
    silent, ``"not stated by the original; chosen because ..."``. ``generators show`` and the
    README's protocol table print it."""
    if isinstance(default, (list, dict, set)):
        raise TypeError("cited() takes immutable defaults")
    return field(default=default, metadata={SOURCE: source})


def option_sources(options_type: type) -> dict[str, str]:
    """``{option: citation}`` for every field of an Options dataclass ("" where none is given)."""
    return {f.name: str(f.metadata.get(SOURCE, "")) for f in fields(options_type)}


@dataclass(frozen=True)
class ProtocolStep:
    """One line of the protocol a generator runs: what, its value, and where that value comes from."""

    key: str
    value: str
    source: str = ""


def option_steps(options: Any) -> list[ProtocolStep]:
    """One :class:`ProtocolStep` per option field: its value, and its default's citation — or, for
    a value the configuration changed, ``"set in the config (default ...)"``."""
    if not dataclasses.is_dataclass(options):
        return []
    steps = []
    for f in fields(options):
        value = getattr(options, f.name)
        default: Any = f.default
        if default is dataclasses.MISSING:
            factory = f.default_factory
            default = None if factory is dataclasses.MISSING else factory()  # type: ignore[operator]
        source = str(f.metadata.get(SOURCE, ""))
        if value != default:
            source = f"set in the config (default {default!r})"
        steps.append(ProtocolStep(f.name, repr(value), source))
    return steps


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
    intensity: str = "none"
    device: str = "cpu"
    precision: str = "fp32"
    weights: WeightsManager | None = None
    log: Any = None
    #: The memorization audit's training cases (``dataset.train_split``, its seeded subsample), loaded on first call.
    training_cases: Callable[[], Sequence[Case]] | None = None

    def torch_device(self) -> torch.device:
        import torch

        return torch.device(self.device)

    @property
    def geometry(self) -> Geometry:
        """The run's square mode and intensity rule, for real images a generator reads itself."""
        return Geometry(self.square, self.intensity)


@dataclass(frozen=True, eq=False)
class GeneratorOutput:
    """What ``Generator.generate`` returns for a batch of conditions.

    ``images``: one [0, 1] grayscale image per condition, in order (a batched array or tensor
    counts along its first axis). ``notes``: empty, or one tuple per image of the generator's
    remarks on that sample (a clipped box, a fallback prompt, ...). ``inputs``: empty, or one
    JSON-able mapping per image of the model inputs actually used (the exact prompt string, the
    tokens cut by truncation, where the demographics came from, ...). The harness stores both in
    the sample's manifest line.
    """

    images: Sequence[np.ndarray | torch.Tensor]
    notes: Sequence[tuple[str, ...]] = ()
    inputs: Sequence[Mapping[str, Any]] = ()

    def __post_init__(self) -> None:
        if any(isinstance(n, str) for n in self.notes):
            raise TypeError("GeneratorOutput.notes holds one tuple of strings per image, not strings")
        object.__setattr__(self, "images", tuple(self.images))
        object.__setattr__(self, "notes", tuple(tuple(n) for n in self.notes))
        object.__setattr__(self, "inputs", tuple(dict(i) for i in self.inputs))
        for field_name in ("notes", "inputs"):
            count = len(getattr(self, field_name))
            if count and count != len(self.images):
                raise ValueError(f"GeneratorOutput has {count} {field_name} for {len(self.images)} images")

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

    @classmethod
    def protocol(cls, options: Any, context: GeneratorContext, condition: Condition | None = None) -> list[ProtocolStep]:
        """The protocol this generator runs with ``options``, built without loading any weights: one
        step per option (with its citation) followed by the adapter's own :meth:`protocol_steps`."""
        return option_steps(options) + cls.protocol_steps(options, context, condition)

    @classmethod
    def protocol_steps(cls, options: Any, context: GeneratorContext, condition: Condition | None) -> list[ProtocolStep]:
        """Adapter-specific steps: the prompt built for ``condition``, text encoder, scheduler,
        precision, preprocessing, conditioning sources. None by default."""
        return []

    @property
    def resolution(self) -> int:
        """Native output side length in pixels (the harness resizes to the run's resolution)."""
        return self.context.resolution

    @abstractmethod
    def generate(self, conditions: Sequence[Condition]) -> GeneratorOutput:
        """Return one [0, 1] grayscale image per condition, in order, with optional per-image notes."""
