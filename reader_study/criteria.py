"""What readers are asked: rating criteria (scores 1..5 with anchored descriptions) and the
visual Turing test's forced choice with confidence.

A :class:`Criterion` lists its allowed options; each option has the stored integer value, the
keyboard key that selects it in the app and the anchor text shown to the reader.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

#: Built-in criteria (the XReal paper's three): question and anchors for scores 1..5.
DEFAULT_CRITERIA: dict[str, tuple[str, tuple[str, ...]]] = {
    "anatomy_realism": (
        "How realistic is the anatomy (lungs, heart, mediastinum, bones)?",
        (
            "Clearly artificial anatomy",
            "Major anatomical implausibilities",
            "Noticeable but minor implausibilities",
            "Realistic with subtle doubts",
            "Indistinguishable from a real radiograph",
        ),
    ),
    "pathology_realism": (
        "How realistic is the stated pathology (or its absence)?",
        (
            "Pathology absent or clearly artificial",
            "Implausible appearance or location",
            "Plausible but atypical",
            "Realistic with subtle doubts",
            "Indistinguishable from real disease",
        ),
    ),
    "image_quality": (
        "Overall diagnostic image quality?",
        (
            "Non-diagnostic",
            "Poor: major artefacts",
            "Acceptable: some artefacts",
            "Good",
            "Excellent",
        ),
    ),
}

GENERIC_ANCHORS = ("Very poor", "Poor", "Fair", "Good", "Excellent")

#: Criterion names of the visual Turing test block (reserved: config criteria cannot use them).
TURING_CALL = "turing_call"
TURING_CONFIDENCE = "turing_confidence"
#: Stored values of the Turing call.
CALL_REAL, CALL_GENERATED = 0, 1


@dataclass(frozen=True)
class Option:
    value: int
    key: str  # keyboard key (a digit) that selects this option
    label: str


@dataclass(frozen=True)
class Criterion:
    name: str
    question: str
    options: tuple[Option, ...]

    @property
    def values(self) -> tuple[int, ...]:
        return tuple(o.value for o in self.options)

    def option_for_key(self, key: str) -> Option | None:
        return next((o for o in self.options if o.key == key), None)

    def label(self, value: int) -> str:
        return next(o.label for o in self.options if o.value == value)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Criterion:
        return Criterion(data["name"], data["question"], tuple(Option(**o) for o in data["options"]))


def likert(name: str, question: str, anchors: tuple[str, ...] | list[str]) -> Criterion:
    """A 1..5 criterion; digit ``k`` selects score ``k``."""
    if len(anchors) != 5:
        raise ValueError(f"criterion {name!r}: expected 5 anchors, got {len(anchors)}")
    return Criterion(name, question, tuple(Option(v, str(v), text) for v, text in enumerate(anchors, start=1)))


def rating_criteria(names: list[str], questions: dict[str, str], anchors: dict[str, list[str]]) -> list[Criterion]:
    """The rating criteria of a study: built-in texts, overridden by the config's tables."""
    result = []
    for name in names:
        default_question, default_anchors = DEFAULT_CRITERIA.get(name, (f"Rate the {name.replace('_', ' ')}.", GENERIC_ANCHORS))
        result.append(likert(name, questions.get(name, default_question), tuple(anchors.get(name, default_anchors))))
    return result


def turing_criteria() -> list[Criterion]:
    """Forced choice (1 = real, 2 = generated) then confidence 1..5."""
    call = Criterion(
        TURING_CALL,
        "Is this radiograph real or generated?",
        (Option(CALL_REAL, "1", "Real"), Option(CALL_GENERATED, "2", "Generated")),
    )
    confidence = likert(
        TURING_CONFIDENCE,
        "How confident are you?",
        ("Pure guess", "Slightly confident", "Moderately confident", "Very confident", "Certain"),
    )
    return [call, confidence]
