"""Typed records passed between stages: ``Case`` (a real test image), ``CaseFacts`` (a case with
its pathology boxes, as written to ``<run.out>/cases.jsonl``) and ``Condition`` (what a generator
receives for one sample), plus :data:`INPUT_KINDS`, the inputs a generator may declare it reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xreal_bench.labels import positive_names

#: Label value meaning "not known; leave out of label-based metrics" (label policy ``ignore``).
IGNORE = -1

#: What a generator may declare it reads from a Condition.
INPUT_KINDS: dict[str, str] = {
    "labels": "the case's CheXpert labels / pathology prompt",
    "text": "report text (impression or findings)",
    "anatomy": "anatomy label map (lungs, heart, aorta)",
    "pathology": "pathology mask / boxes",
    "image": "the case's real image",
    "training": "training-split images (dataset.train_split, its seeded subsample)",
}


#: ``Demographics.source`` values: joined from MIMIC-IV, or not known for this case.
DEMOGRAPHIC_SOURCES = ("mimic-iv", "none")


@dataclass(frozen=True)
class Demographics:
    """A patient's demographics at the time of the study, as the data layer found them.

    ``age`` in whole years at the study (``None``: unknown); ``anchor_age`` MIMIC-IV's
    ``anchor_age`` as recorded (the age in the patient's anchor year, 91 for anyone older than 89),
    which RoentGen v2's official prompts carry; ``sex`` ``"female"``/``"male"`` (``""``: unknown);
    ``race`` in the vocabulary of RoentGen v2's prompts (``""``: unknown or not reported);
    ``source`` one of :data:`DEMOGRAPHIC_SOURCES`; ``notes`` remarks on how they were derived.
    """

    age: int | None = None
    sex: str = ""
    race: str = ""
    source: str = "none"
    notes: tuple[str, ...] = ()
    anchor_age: int | None = None

    @property
    def complete(self) -> bool:
        return self.age is not None and bool(self.sex) and bool(self.race)


@dataclass(frozen=True)
class Case:
    """One real image of the evaluation split.

    ``labels`` holds one value per :data:`CHEXPERT_LABELS` entry after the label policy:
    1 positive, 0 negative, -1 (:data:`IGNORE`) excluded from label metrics.
    """

    case_id: str
    image_path: Path
    subject_id: str
    study_id: str
    view: str
    labels: tuple[int, ...]
    findings: str = ""
    impression: str = ""
    split: str = "test"
    #: The report as MaCheX (Cheff's training data) stores it: see
    #: :func:`xreal_bench.data.reports.machex_report`.
    report_text: str = ""
    #: ``StudyDate`` of the MIMIC-CXR-JPG metadata (``YYYYMMDD``, shifted like MIMIC-IV); "" unknown.
    study_date: str = ""
    demographics: Demographics | None = None
    #: Per CheXpert label, 1 where the label CSV says 1.0, else 0: the labels *before* the label
    #: policy (which may count uncertain or blank values as positive for the metrics). The models'
    #: label prompts read these, as their training code did; ``()``: the same as ``labels == 1``.
    stated: tuple[int, ...] = ()
    #: The prompt an external prompt file gives this image (``[dataset].prompts_file``); "" none.
    prompt_text: str = ""

    @property
    def positives(self) -> tuple[str, ...]:
        """Positive pathology names in CheXpert order (``No Finding``/``Support Devices`` left out)."""
        return positive_names(self.labels)


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in fractions of the square working image (0..1, x right, y down)."""

    label: str
    x0: float
    y0: float
    x1: float
    y1: float

    def clipped(self) -> Box:
        c = lambda v: min(max(float(v), 0.0), 1.0)  # noqa: E731
        return Box(self.label, c(self.x0), c(self.y0), c(self.x1), c(self.y1))

    def pixels(self, size: int) -> tuple[int, int, int, int]:
        """Integer pixel bounds ``(x0, y0, x1, y1)`` (x1/y1 exclusive) at ``size``; never empty."""
        x0, y0 = int(np.floor(self.x0 * size)), int(np.floor(self.y0 * size))
        x1, y1 = int(np.ceil(self.x1 * size)), int(np.ceil(self.y1 * size))
        x0, y0 = min(max(x0, 0), size - 1), min(max(y0, 0), size - 1)
        return x0, y0, max(min(x1, size), x0 + 1), max(min(y1, size), y0 + 1)


@dataclass(frozen=True)
class BoxSet:
    """The pathology boxes of a sample, where they came from and remarks on them.

    ``source``: ``boxes_csv``, ``anatomy_rule``, ``random`` or ``none`` (no box)."""

    source: str = "none"
    boxes: tuple[Box, ...] = ()
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class CaseFacts:
    """What is known of a case before any generation: the dataset's record and its pathology boxes.

    ``boxes`` holds the boxes every sample shares; the seeded ``random`` fallback gives each sample
    its own, in ``sample_boxes`` (index = sample index). Both empty: the run computed no boxes.
    """

    case: Case
    boxes: BoxSet | None = None
    sample_boxes: tuple[BoxSet, ...] = ()

    @property
    def case_id(self) -> str:
        return self.case.case_id

    @property
    def has_boxes(self) -> bool:
        return self.boxes is not None or bool(self.sample_boxes)

    def boxes_for(self, sample_index: int) -> BoxSet:
        """The boxes of sample ``sample_index``; ``RuntimeError`` when none were prepared for it."""
        if self.boxes is not None:
            return self.boxes
        if 0 <= sample_index < len(self.sample_boxes):
            return self.sample_boxes[sample_index]
        raise RuntimeError(f"no pathology boxes were prepared for case {self.case_id!r} sample {sample_index}")


@dataclass(frozen=True, eq=False)
class Condition:
    """Everything a generator may read for one sample. Generators read only what they declare.

    ``prompt`` is the positive pathology names joined by ``[conditioning].prompt_separator`` and
    ``report`` the configured report section; ``findings``, ``impression``, ``report_text`` (the
    MaCheX report) and ``demographics`` are the case's own, for adapters' prompt rules
    (:mod:`xreal_bench.generators.prompts`).

    ``anatomy`` is a uint8 label map (0 background, 1 left lung, 2 right lung, 3 heart,
    4 aorta; patient's sides) and ``pathology_mask`` a bool map, both square at the
    conditioning resolution. ``seed`` is the generation seed of this exact image.
    """

    case_id: str
    sample_index: int
    seed: int
    labels: tuple[int, ...]
    prompt: str
    report: str
    image_path: Path
    view: str = ""
    anatomy: np.ndarray | None = None
    pathology_mask: np.ndarray | None = None
    boxes: tuple[Box, ...] = field(default=())
    mask_source: str = "none"
    notes: tuple[str, ...] = field(default=())
    findings: str = ""
    impression: str = ""
    report_text: str = ""
    demographics: Demographics | None = None
    stated: tuple[int, ...] = ()
    prompt_text: str = ""  # the case's prompt from [dataset].prompts_file; "" none

    @property
    def positives(self) -> tuple[str, ...]:
        return positive_names(self.labels)
