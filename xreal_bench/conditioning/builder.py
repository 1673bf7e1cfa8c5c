"""Case facts -> the Condition of one sample: a pure function (:func:`build_condition`).

- prompt: ``[conditioning].prompt_separator`` joining the case's positive pathologies;
- report: IMPRESSION, else FINDINGS (``report_section = "findings"``: the reverse); the case's
  findings, impression, MaCheX report text and demographics as they are, for prompt rules;
- anatomy: the case's label map (a private copy), only for a generator that reads ``anatomy``;
- pathology boxes and mask: the boxes prepared for the sample (see
  :mod:`xreal_bench.conditioning.prepare`), only for a generator that reads ``pathology``.

Nothing here keeps state: the same arguments always give an equal Condition.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np

from xreal_bench.conditioning.boxes import boxes_mask
from xreal_bench.config import BenchConfig
from xreal_bench.types import Box, Case, CaseFacts, Condition

NO_TEXT_NOTE = "no FINDINGS/IMPRESSION text for this case; report is empty"


@dataclass(frozen=True)
class ConditionSettings:
    """The ``[conditioning]`` settings a Condition depends on."""

    resolution: int
    prompt_separator: str = ", "
    report_section: str = "impression"

    @staticmethod
    def from_config(cfg: BenchConfig) -> ConditionSettings:
        cc = cfg.conditioning
        return ConditionSettings(resolution=cc.resolution, prompt_separator=cc.prompt_separator, report_section=cc.report_section)


def report_text(case: Case, section: str) -> str:
    """The report section a condition carries: ``section`` first, the other one if it is empty."""
    order = (case.impression, case.findings)
    if section == "findings":
        order = order[::-1]
    return next((text for text in order if text), "")


def build_condition(
    facts: CaseFacts,
    *,
    sample_index: int,
    seed: int,
    reads: Collection[str],
    anatomy: np.ndarray | None,
    settings: ConditionSettings,
) -> Condition:
    """The Condition of sample ``sample_index`` for a generator reading ``reads``.

    ``seed`` is the sample's generation seed (recorded, not used here); ``anatomy`` the case's
    label map, required when ``reads`` holds ``anatomy``. Raises ``RuntimeError`` when an input
    the generator reads was not prepared.
    """
    case = facts.case
    notes: list[str] = []
    report = report_text(case, settings.report_section)
    if "text" in reads and not report:
        notes.append(NO_TEXT_NOTE)
    label_map = None
    if "anatomy" in reads:
        if anatomy is None:
            raise RuntimeError(f"no anatomy map prepared for case {case.case_id!r}")
        label_map = anatomy.copy()  # the generator's own copy
    boxes: tuple[Box, ...] = ()
    mask, source = None, "none"
    if "pathology" in reads:
        box_set = facts.boxes_for(sample_index)
        boxes, source = box_set.boxes, box_set.source
        notes.extend(box_set.notes)
        mask = boxes_mask(boxes, settings.resolution)
    return Condition(
        case_id=case.case_id,
        sample_index=sample_index,
        seed=seed,
        labels=case.labels,
        prompt=settings.prompt_separator.join(case.positives),
        report=report,
        image_path=case.image_path,
        view=case.view,
        anatomy=label_map,
        pathology_mask=mask,
        boxes=boxes,
        mask_source=source,
        notes=tuple(notes),
        findings=case.findings,
        impression=case.impression,
        report_text=case.report_text,
        demographics=case.demographics,
        stated=case.stated,
        prompt_text=case.prompt_text,
    )
