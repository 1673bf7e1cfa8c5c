"""``<run.out>/cases.jsonl``: the run's case facts, written once before generation.

Every later stage (reader study, analyses) takes case facts from here or from the dataset, never
from a generator's manifest. One JSON object per line, sorted by case id::

    {"case_id": "...", "subject_id": "...", "study_id": "...", "split": "test", "view": "PA",
     "image_path": "/abs/path.jpg",
     "labels": {"Atelectasis": 0, ...},          every CheXpert label after the label policy (1, 0, -1 ignore)
     "stated": {"Atelectasis": 0, ...},          1 where the label CSV says 1.0 (before the policy); null: unknown
     "positives": ["Cardiomegaly"],              positive pathologies (CheXpert order)
     "report": {"findings": "...", "impression": "...", "text": "..."},   text: the MaCheX report text
     "study_date": "21800506",                   StudyDate (YYYYMMDD), "" unknown
     "prompt_text": "...",                       the case's prompt from [dataset].prompts_file, "" none
     "demographics": {"age": 64, "anchor_age": 62, "sex": "female", "race": "WHITE", "source": "mimic-iv", "notes": [...]},
                                                 null when [dataset].demographics is not set
     "boxes": {"source": "boxes_csv", "boxes": [{"label": ..., "x0": ..., "y0": ..., "x1": ..., "y1": ...}],
               "notes": [...]},                 shared by every sample; null when not computed or per sample
     "sample_boxes": [{"source": "random", ...}]}  the random fallback's boxes, one per sample index

Boxes are in fractions of the square working image; ``source`` is ``boxes_csv``,
``anatomy_rule``, ``random`` or ``none``. When the run computes them: see
:mod:`xreal_bench.conditioning.prepare`. Files written before ``report.text``, ``study_date`` and
``demographics`` existed are read with those empty (``""``, ``""``, ``None``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from xreal_bench.atomic import write_text_atomic
from xreal_bench.errors import UserFacingError
from xreal_bench.labels import CHEXPERT_LABELS
from xreal_bench.types import Box, BoxSet, Case, CaseFacts, Demographics

CASES_FILE = "cases.jsonl"
RERUN_HINT = "re-run `xreal-bench generate` with the run's config (finished images are kept) to write it"


class CasesFileError(UserFacingError):
    """``cases.jsonl`` is missing or unreadable."""


def cases_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / CASES_FILE


def box_set_to_json(box_set: BoxSet) -> dict[str, Any]:
    return {"source": box_set.source, "boxes": [asdict(b) for b in box_set.boxes], "notes": list(box_set.notes)}


def box_set_from_json(data: dict[str, Any]) -> BoxSet:
    return BoxSet(data["source"], tuple(Box(**b) for b in data["boxes"]), tuple(data["notes"]))


def demographics_to_json(found: Demographics | None) -> dict[str, Any] | None:
    return None if found is None else {**asdict(found), "notes": list(found.notes)}


def demographics_from_json(data: dict[str, Any] | None) -> Demographics | None:
    if data is None:
        return None
    return Demographics(
        data["age"], data["sex"], data["race"], data["source"], tuple(data["notes"]), anchor_age=data.get("anchor_age")
    )


def facts_to_json(facts: CaseFacts) -> dict[str, Any]:
    case = facts.case
    return {
        "case_id": case.case_id,
        "subject_id": case.subject_id,
        "study_id": case.study_id,
        "split": case.split,
        "view": case.view,
        "image_path": str(Path(case.image_path).resolve()),
        "labels": dict(zip(CHEXPERT_LABELS, case.labels)),
        "stated": dict(zip(CHEXPERT_LABELS, case.stated)) if case.stated else None,
        "positives": list(case.positives),
        "report": {"findings": case.findings, "impression": case.impression, "text": case.report_text},
        "study_date": case.study_date,
        "prompt_text": case.prompt_text,
        "demographics": demographics_to_json(case.demographics),
        "boxes": None if facts.boxes is None else box_set_to_json(facts.boxes),
        "sample_boxes": [box_set_to_json(s) for s in facts.sample_boxes],
    }


def facts_from_json(data: dict[str, Any]) -> CaseFacts:
    labels = data["labels"]
    if set(labels) != set(CHEXPERT_LABELS):
        raise ValueError(f"labels must name the {len(CHEXPERT_LABELS)} CheXpert labels")
    case = Case(
        case_id=data["case_id"],
        image_path=Path(data["image_path"]),
        subject_id=data["subject_id"],
        study_id=data["study_id"],
        view=data["view"],
        labels=tuple(int(labels[name]) for name in CHEXPERT_LABELS),
        stated=tuple(int(data["stated"][name]) for name in CHEXPERT_LABELS) if data.get("stated") else (),
        findings=data["report"]["findings"],
        impression=data["report"]["impression"],
        split=data["split"],
        report_text=data["report"].get("text", ""),
        study_date=data.get("study_date", ""),
        prompt_text=data.get("prompt_text", ""),
        demographics=demographics_from_json(data.get("demographics")),
    )
    boxes = None if data["boxes"] is None else box_set_from_json(data["boxes"])
    return CaseFacts(case, boxes=boxes, sample_boxes=tuple(box_set_from_json(s) for s in data["sample_boxes"]))


def write_cases(run_dir: str | Path, facts: Iterable[CaseFacts]) -> Path:
    """Write ``<run_dir>/cases.jsonl`` atomically (one line per case, sorted by case id)."""
    path = cases_path(run_dir)
    facts = sorted(facts, key=lambda f: f.case_id)
    repeated = sorted({a.case_id for a, b in zip(facts, facts[1:]) if a.case_id == b.case_id})
    if repeated:
        raise ValueError(f"case id(s) given twice: {', '.join(repeated[:5])}")
    lines = [json.dumps(facts_to_json(f)) + "\n" for f in facts]
    write_text_atomic(path, "".join(lines))
    return path


def read_cases(run_dir: str | Path) -> dict[str, CaseFacts]:
    """case_id -> :class:`CaseFacts` from ``<run_dir>/cases.jsonl``; a clear error when it is missing or corrupt."""
    path = cases_path(run_dir)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise CasesFileError(f"{path} not found: this run has no case facts; {RERUN_HINT}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CasesFileError(f"cannot read {path} ({exc}); {RERUN_HINT}") from None
    facts: dict[str, CaseFacts] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            record = facts_from_json(json.loads(line))
        except (ValueError, KeyError, TypeError) as exc:
            why = f"{type(exc).__name__}: {exc}"
            raise CasesFileError(f"{path}: line {number} is not a case record ({why}); {RERUN_HINT}") from None
        facts[record.case_id] = record
    return facts
