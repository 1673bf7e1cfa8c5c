"""CheXGenBench's test prompt file: their prompts, their image set and their labels on a scanned split.

CheXGenBench (github.com/Raman1121/CheXGenBench @ 9a201c1) generates one image per row of
``MIMIC_Splits/LLAVARAD_ANNOTATIONS_TEST.csv`` (LLaVA-Rad annotation format). The columns read here are the
ones its code reads (the test file itself was not readable when this was written; the formats below hold for
every row of the repository's other LLaVA-Rad file, ``training_data_20K.csv``):

- ``path``: the MIMIC-CXR-JPG image, ``files/p<2 digits>/p<subject_id>/s<study_id>/<dicom_id>.jpg``
  (metrics/fid.py ``--real_img_col`` default, joined to the MIMIC-CXR-JPG root at l.166-168); the case id is
  the ``dicom_id``.
- ``id``: ``<subject_id><study_id>`` (digits only; tools/generate_data_common.py l.293); checked against ``path``.
- ``annotated_prompt``: the prompt (tools/generate_data_common.py l.294; metrics/fid.py ``--real_caption_col``).
- ``chexpert_labels``: a Python dict literal of the 14 CheXpert labels, values 1.0, 0.0 or None (-1.0 is
  accepted too; the 20K file has none) (metrics/fid.py l.198-209 reads it with ``ast.literal_eval`` for the
  per-pathology subsets).

Rows repeating an earlier row's prompt are dropped, the first kept, as CheXGenBench does for both the
images it generates (generate_data_common.py l.369) and the real images it compares with (fid.py l.170).
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xreal_bench.config import LabelPolicy
from xreal_bench.data.csvfile import LINE, DatasetError, read_csv
from xreal_bench.data.mimic import DatasetScan, apply_label_policy, strata, stratified_subsample
from xreal_bench.labels import CHEXPERT_LABELS

FORMAT = "chexgenbench"
PATH_COLUMN, ID_COLUMN, PROMPT_COLUMN, LABELS_COLUMN = "path", "id", "annotated_prompt", "chexpert_labels"
REQUIRED_COLUMNS = (ID_COLUMN, PATH_COLUMN, PROMPT_COLUMN, LABELS_COLUMN)
IMAGE_PATH = re.compile(r"files/p(\d\d)/p(\d+)/s(\d+)/([^/]+)\.jpg")
LABEL_VALUES = (1.0, 0.0, -1.0)


@dataclass(frozen=True)
class PromptRow:
    """One kept row: ``labels`` are the file's values in CheXpert order (NaN where it says None)."""

    line: int
    dicom_id: str
    subject_id: str
    study_id: str
    prompt: str
    labels: tuple[float, ...]


@dataclass(frozen=True)
class PromptFile:
    """The rows kept (first of each prompt, in file order), how many repeated a prompt, and the file's sha256."""

    path: Path
    rows: tuple[PromptRow, ...]
    repeated_prompts: int
    sha256: str

    def by_case(self) -> dict[str, PromptRow]:
        return {row.dicom_id: row for row in self.rows}


def parse_labels(text: str, where: str) -> tuple[float, ...]:
    """The ``chexpert_labels`` literal as 14 floats in CheXpert order (NaN for None)."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise DatasetError(f"{where}: {LABELS_COLUMN} is not a Python dict literal: {text[:80]!r}") from None
    if not isinstance(value, dict):
        raise DatasetError(f"{where}: {LABELS_COLUMN} must be a dict of the 14 CheXpert labels, got {type(value).__name__}")
    missing = [name for name in CHEXPERT_LABELS if name not in value]
    unknown = sorted(str(k) for k in value if k not in CHEXPERT_LABELS)
    if missing or unknown:
        raise DatasetError(
            f"{where}: {LABELS_COLUMN} must name the 14 CheXpert labels"
            + (f"; missing {', '.join(missing)}" if missing else "")
            + (f"; unknown {', '.join(unknown)}" if unknown else "")
        )
    out = []
    for name in CHEXPERT_LABELS:
        v = value[name]
        if v is None:
            out.append(float("nan"))
        elif isinstance(v, int | float) and not isinstance(v, bool) and float(v) in LABEL_VALUES:
            out.append(float(v))
        else:
            raise DatasetError(f"{where}: {LABELS_COLUMN}[{name!r}] is {v!r}; expected 1.0, 0.0, -1.0 or None")
    return tuple(out)


def parse_row(path: Path, record: Mapping[str, object]) -> PromptRow:
    line = int(str(record[LINE]))
    where = f"{path}, line {line}"
    image = str(record[PATH_COLUMN])
    match = IMAGE_PATH.fullmatch(image)
    if match is None:
        raise DatasetError(f"{where}: {PATH_COLUMN} {image!r} is not files/pNN/p<subject_id>/s<study_id>/<dicom_id>.jpg")
    folder, subject, study, dicom = match.groups()
    if subject[:2] != folder:
        raise DatasetError(f"{where}: {PATH_COLUMN} {image!r}: folder p{folder} does not hold subject p{subject}")
    case_id = str(record[ID_COLUMN]).strip()
    if case_id != subject + study:
        raise DatasetError(f"{where}: {ID_COLUMN} {case_id!r} is not <subject_id><study_id> of its path ({subject + study!r})")
    prompt = str(record[PROMPT_COLUMN])  # as written, ends stripped by read_csv (they use the raw string)
    if not prompt.strip() or prompt == "nan":
        raise DatasetError(f"{where}: blank {PROMPT_COLUMN}")
    return PromptRow(line, dicom, subject, study, prompt, parse_labels(str(record[LABELS_COLUMN]), where))


def read_prompt_file(path: str | Path) -> PromptFile:
    """Read and check a CheXGenBench test prompt file; drop rows repeating an earlier prompt (first kept)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(
            f"prompt file not found: {path}\n  unzip MIMIC_Splits/llavarad_annotations.zip of github.com/Raman1121/CheXGenBench "
            "and point [dataset].prompts_file at LLAVARAD_ANNOTATIONS_TEST.csv"
        )
    frame = read_csv(path, REQUIRED_COLUMNS, REQUIRED_COLUMNS, keys=(ID_COLUMN, PATH_COLUMN, LABELS_COLUMN))
    kept: list[PromptRow] = []
    seen_prompts: set[str] = set()
    first_line: dict[str, int] = {}
    for record in frame.to_dict("records"):
        row = parse_row(path, record)
        if row.prompt in seen_prompts:
            continue
        if row.dicom_id in first_line:
            raise DatasetError(f"{path}, line {row.line}: image {row.dicom_id} already listed at line {first_line[row.dicom_id]}")
        seen_prompts.add(row.prompt)
        first_line[row.dicom_id] = row.line
        kept.append(row)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return PromptFile(path, tuple(kept), repeated_prompts=len(frame) - len(kept), sha256=digest)


def follow_prompt_file(
    scan: DatasetScan,
    prompts: PromptFile,
    *,
    labels_from: str = "file",
    policy: LabelPolicy | None = None,
    num_cases: int = 0,
    seed: int = 0,
) -> DatasetScan:
    """Restrict ``scan`` to the prompt file's images, each case carrying its prompt (``Case.prompt_text``).

    ``labels_from = "file"`` replaces each case's labels by the file's ``chexpert_labels`` under ``policy``
    (CheXGenBench's per-label subsets); ``"mimic"`` keeps the label CSV's. An image of the file that the
    scan did not select (another split, a view left out, absent from the CSVs) is an error naming its line;
    one whose file is missing or corrupt stays excluded with the scan's reason. ``num_cases > 0`` keeps a
    stratified draw (seed ``seed``) of the cases found.
    """
    if labels_from not in ("file", "mimic"):
        raise ValueError(f"labels_from must be 'file' or 'mimic', got {labels_from!r}")
    policy = policy or LabelPolicy()
    found = {case.case_id: case for case in scan.cases}
    excluded = set(scan.missing) | set(scan.corrupt)
    unselected = [row for row in prompts.rows if row.dicom_id not in found and row.dicom_id not in excluded]
    if unselected:
        row = unselected[0]
        raise DatasetError(
            f"{prompts.path}, line {row.line}: image {row.dicom_id} is not among the {len(found)} image(s) of split "
            f"{scan.split!r} (views {', '.join(sorted(scan.by_view)) or 'none'}) under {scan.root} "
            f"({len(unselected)} such row(s)); check [dataset].split and [dataset].views, and that the prompt file "
            "matches this MIMIC-CXR-JPG copy"
        )
    rows = [row for row in prompts.rows if row.dicom_id in found]
    values = np.array([row.labels for row in rows], dtype=float).reshape(len(rows), len(CHEXPERT_LABELS))
    file_labels = apply_label_policy(values, np.zeros(len(rows), dtype=bool), policy)
    cases = []
    for i, row in enumerate(rows):
        case = found[row.dicom_id]
        if labels_from == "file":
            labels = tuple(int(v) for v in file_labels[i])
            stated = tuple(int(v == 1.0) for v in values[i])
            case = dataclasses.replace(case, labels=labels, stated=stated, prompt_text=row.prompt)
        else:
            case = dataclasses.replace(case, prompt_text=row.prompt)
        cases.append(case)
    if num_cases > 0:
        keep = stratified_subsample(strata(np.array([c.labels for c in cases]).reshape(len(cases), -1)), num_cases, seed)
        cases = [cases[i] for i in keep]
    cases.sort(key=lambda c: c.case_id)
    notes = [*scan.notes]
    if prompts.repeated_prompts:
        notes.append(f"{prompts.repeated_prompts} row(s) of {prompts.path.name} repeat an earlier prompt: dropped (first kept)")
    settings = {"prompts_file": prompts.sha256, "labels_from": labels_from, "policy": policy.describe(), "num_cases": num_cases}
    digest = hashlib.sha256(json.dumps([scan.fingerprint, settings], sort_keys=True).encode())
    for case in cases:
        digest.update(json.dumps([case.case_id, case.prompt_text, case.labels]).encode())
    kept_ids = {c.case_id for c in cases}
    return dataclasses.replace(
        scan,
        cases=cases,
        missing=[i for i in scan.missing if i in prompts.by_case()],
        corrupt=[i for i in scan.corrupt if i in prompts.by_case()],
        by_view={v: n for v in sorted({c.view for c in cases}) if (n := sum(c.view == v for c in cases))},
        positives={name: sum(c.labels[j] == 1 for c in cases) for j, name in enumerate(CHEXPERT_LABELS)},
        label_policy=policy.describe() if labels_from == "file" else scan.label_policy,
        fingerprint=digest.hexdigest(),
        reasons={k: v for k, v in scan.reasons.items() if k in prompts.by_case()},
        image_sizes={k: v for k, v in scan.image_sizes.items() if k in kept_ids},
        available=len(rows),
        with_report=sum(bool(c.findings or c.impression) for c in cases),
        notes=notes,
    )
