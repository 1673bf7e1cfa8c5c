"""Writes small MIMIC-CXR-JPG trees for tests, with the real CSV names and columns.

``write_mimic_tree(root, gz=...)`` writes a hand-made table of 17 images (listed in
``HAND_IMAGES``) covering: frontal, lateral (LATERAL, LL) and blank views, a dicom_id absent
from the metadata CSV, uncertain (-1.0) and blank labels, a study absent from the label CSV,
multi-image studies, train/validate/test splits, a missing file, a zero-byte file, a truncated
JPEG, and reports with both sections, one section, neither, and no report file; StudyDates
in several years and one blank. ``n_random`` adds seeded single-image test studies with random
labels (for subsample tests). ``write_mimic_iv`` writes MIMIC-IV ``hosp/patients`` and
``hosp/admissions`` CSVs from rows given by the test.

:class:`Expected` recomputes every number a loader should report with plain loops over the
rows written here — it never calls the loader.
"""

from __future__ import annotations

import csv
import gzip
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

LABELS = (
    "Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Enlarged Cardiomediastinum", "Fracture",
    "Lung Lesion", "Lung Opacity", "No Finding", "Pleural Effusion", "Pleural Other", "Pneumonia",
    "Pneumothorax", "Support Devices",
)  # fmt: skip
NOT_PATHOLOGY = {"No Finding", "Support Devices"}
METADATA_HEADER = (
    "dicom_id", "subject_id", "study_id", "PerformedProcedureStepDescription", "ViewPosition", "Rows",
    "Columns", "StudyDate", "StudyTime", "ProcedureCodeSequence_CodeMeaning", "ViewCodeSequence_CodeMeaning",
    "PatientOrientationCodeSequence_CodeMeaning",
)  # fmt: skip

REPORT_BOTH = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___ with cough.

 COMPARISON:  None.

 FINDINGS:

 The heart is enlarged.   Mild
 pulmonary vascular congestion.

 IMPRESSION:

 Cardiomegaly with mild   edema.
"""
REPORT_IMPRESSION_ONLY = """ FINAL REPORT
 INDICATION: Chest pain.
 IMPRESSION: Small left pleural effusion. Right apical pneumothorax.
 NOTIFICATION: Findings discussed with Dr. ___ at 10:00.
"""
REPORT_FINDINGS_ONLY = """EXAMINATION: CHEST PORTABLE
FINDINGS: Lungs are clear.
No effusion.
"""
REPORT_NEITHER = """                                 FINAL REPORT
 HISTORY: Fever.
 Portable chest radiograph was obtained. No acute process.
"""
SECTIONS = {
    "both": ("The heart is enlarged. Mild pulmonary vascular congestion.", "Cardiomegaly with mild edema."),
    "impression": ("", "Small left pleural effusion. Right apical pneumothorax."),
    "findings": ("Lungs are clear. No effusion.", ""),
    "neither": ("", ""),
}
#: MaCheX's ``report`` of each fixture, worked out by hand from the rule in saiboxx/machex
#: ``MIMICParser._get_meta_data``: after the last FINDINGS: (else IMPRESSION:, else everything),
#: IMPRESSION: dropped, line breaks dropped (not spaced: "clear.\nNo" -> "clear.No"), spaces squeezed.
MACHEX = {
    "both": "The heart is enlarged. Mild pulmonary vascular congestion. Cardiomegaly with mild edema.",
    "impression": "Small left pleural effusion. Right apical pneumothorax. NOTIFICATION: Findings discussed with Dr. ___ at 10:00.",
    "findings": "Lungs are clear.No effusion.",
    "neither": "FINAL REPORT HISTORY: Fever. Portable chest radiograph was obtained. No acute process.",
}
REPORT_TEXT = {
    "both": REPORT_BOTH,
    "impression": REPORT_IMPRESSION_ONLY,
    "findings": REPORT_FINDINGS_ONLY,
    "neither": REPORT_NEITHER,
}


@dataclass(frozen=True)
class ImageRow:
    dicom_id: str
    subject_id: str
    study_id: str
    split: str
    view: str | None  # None: dicom_id absent from the metadata CSV
    state: str = "ok"  # ok | missing | empty | truncated
    height: int = 80
    width: int = 64


def lab(**values: float | None) -> list[float | None]:
    """A 14-value label row; keys use underscores for spaces (``Pleural_Effusion=1.0``)."""
    row: list[float | None] = [None] * len(LABELS)
    for key, value in values.items():
        row[LABELS.index(key.replace("_", " "))] = value
    return row


def did(n: int) -> str:
    return f"{n:08x}-3f1e2a6c-9b0d4e7f-5a8c1b2d-7e6f0a9c"


HAND_IMAGES = (
    ImageRow(did(1), "10000032", "50000001", "test", "AP"),
    ImageRow(did(2), "10000032", "50000001", "test", "LATERAL"),
    ImageRow(did(3), "10000032", "50000001", "test", "PA", height=72, width=96),
    ImageRow(did(4), "10000032", "50000002", "train", "PA"),
    ImageRow(did(5), "10000045", "50000003", "test", "AP"),
    ImageRow(did(6), "10000045", "50000003", "test", ""),
    ImageRow(did(7), "10000045", "50000003", "test", "LL"),
    ImageRow(did(8), "10000045", "50000004", "test", "PA"),
    ImageRow(did(9), "11000011", "50000005", "test", "AP", state="missing"),
    ImageRow(did(10), "11000011", "50000005", "test", "AP"),
    ImageRow(did(11), "11000011", "50000006", "test", "PA", state="empty"),
    ImageRow(did(12), "11000011", "50000006", "test", "PA", state="truncated"),
    ImageRow(did(13), "11000011", "50000006", "test", "ap"),
    ImageRow(did(14), "12000022", "50000007", "validate", "AP"),
    ImageRow(did(15), "12000022", "50000008", "test", "PA"),
    ImageRow(did(16), "12000022", "50000008", "test", "LATERAL"),
    ImageRow(did(17), "12000022", "50000008", "test", None),
)
#: CheXpert labels per study; 50000004 is absent from the label CSV on purpose.
HAND_LABELS = {
    "50000001": lab(Cardiomegaly=1.0, Edema=-1.0, Atelectasis=0.0, Support_Devices=1.0),
    "50000002": lab(No_Finding=1.0),
    "50000003": lab(Pleural_Effusion=1.0, Pneumothorax=1.0, Support_Devices=1.0, Lung_Opacity=-1.0),
    "50000005": lab(),  # a row whose 14 cells are all blank
    "50000006": lab(Pneumonia=-1.0, Lung_Opacity=1.0, No_Finding=0.0),
    "50000007": lab(Atelectasis=1.0),
    "50000008": lab(Edema=1.0, Consolidation=0.0, Fracture=-1.0),
}
#: The NegBio file differs in one cell so tests can tell which file was read.
NEGBIO_CHANGES = {("50000001", "Cardiomegaly"): 0.0}
HAND_REPORTS = {"50000001": "both", "50000003": "impression", "50000004": "findings", "50000005": "neither"}
#: StudyDate per study (YYYYMMDD); studies not listed: DEFAULT_DATE; 50000008's is blank.
STUDY_DATES = {"50000001": "21800506", "50000002": "21781231", "50000003": "21830101", "50000005": "21790915", "50000008": ""}
DEFAULT_DATE = "21800506"


@dataclass
class Expected:
    """The rows written, and the numbers a correct loader reports, computed by plain loops."""

    root: Path
    images: list[ImageRow]
    labels: dict[str, dict[str, list[float | None]]]  # labeler -> study_id -> raw values
    reports: dict[str, str] = field(default_factory=dict)  # study_id -> key of SECTIONS

    def selected(self, split: str = "test", views=("AP", "PA")) -> list[ImageRow]:
        wanted = {v.upper() for v in views}
        out = []
        for row in self.images:
            view = (row.view or "").strip().upper() or "UNKNOWN"
            if row.split == split and view in wanted:
                out.append(row)
        return out

    def kept_ids(self, split: str = "test", views=("AP", "PA")) -> list[str]:
        return sorted(r.dicom_id for r in self.selected(split, views) if r.state == "ok")

    def missing_ids(self, split: str = "test", views=("AP", "PA")) -> list[str]:
        return sorted(r.dicom_id for r in self.selected(split, views) if r.state == "missing")

    def corrupt_ids(self, split: str = "test", views=("AP", "PA")) -> list[str]:
        return sorted(r.dicom_id for r in self.selected(split, views) if r.state in ("empty", "truncated"))

    def row(self, dicom_id: str) -> ImageRow:
        return next(r for r in self.images if r.dicom_id == dicom_id)

    def case_labels(self, dicom_id: str, policy: dict, labeler: str = "chexpert") -> tuple[int, ...]:
        """``policy`` keys: uncertain, blank, missing_study; values 0, 1 or "ignore"."""
        as_int = {0: 0, 1: 1, "ignore": -1}
        raw = self.labels[labeler].get(self.row(dicom_id).study_id)
        if raw is None:
            return tuple(as_int[policy["missing_study"]] for _ in LABELS)
        out = []
        for value in raw:
            if value is None:
                out.append(as_int[policy["blank"]])
            elif value == -1.0:
                out.append(as_int[policy["uncertain"]])
            else:
                out.append(int(value))
        return tuple(out)

    def study_date(self, dicom_id: str) -> str:
        return STUDY_DATES.get(self.row(dicom_id).study_id, DEFAULT_DATE)

    def machex(self, dicom_id: str) -> str:
        key = self.reports.get(self.row(dicom_id).study_id)
        return MACHEX[key] if key else ""

    def sections(self, dicom_id: str) -> tuple[str, str]:
        key = self.reports.get(self.row(dicom_id).study_id)
        return SECTIONS[key] if key else ("", "")

    def summary(self, split="test", views=("AP", "PA"), policy=None, labeler="chexpert") -> dict:
        policy = policy or {"uncertain": 0, "blank": 0, "missing_study": 0}
        kept = self.kept_ids(split, views)
        by_view: dict[str, int] = {}
        positives = dict.fromkeys(LABELS, 0)
        for dicom_id in kept:
            view = (self.row(dicom_id).view or "").strip().upper() or "UNKNOWN"
            by_view[view] = by_view.get(view, 0) + 1
            for name, value in zip(LABELS, self.case_labels(dicom_id, policy, labeler)):
                positives[name] += value == 1
        return {
            "cases": len(kept),
            "by_view": by_view,
            "positives": positives,
            "missing": len(self.missing_ids(split, views)),
            "corrupt": len(self.corrupt_ids(split, views)),
        }


def jpeg_bytes(height: int, width: int, seed: int) -> bytes:
    """A noisy grayscale JPEG (noise keeps the entropy-coded stream long enough to truncate)."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(30, 200, width)[None, :] + np.zeros((height, 1))
    pixels = np.clip(ramp + rng.normal(0, 25, (height, width)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def write_csv(path: Path, header, rows, gz: bool) -> None:
    path = path.with_name(path.name + ".gz") if gz else path
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(header)
    writer.writerows(rows)
    data = text.getvalue().encode()
    path.write_bytes(gzip.compress(data) if gz else data)


def cell(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


def random_rows(n: int, seed: int) -> tuple[list[ImageRow], dict[str, list[float | None]]]:
    """``n`` single-image test studies with seeded random labels (each cell 1/0/-1/blank)."""
    rng = np.random.default_rng(seed)
    images, labels = [], {}
    choices = (1.0, 0.0, -1.0, None)
    for k in range(n):
        subject, study = f"{19000000 + k}", f"{59000000 + k}"
        images.append(ImageRow(did(0x1000 + k), subject, study, "test", "AP" if k % 2 else "PA"))
        labels[study] = [choices[i] for i in rng.choice(4, size=len(LABELS), p=(0.15, 0.5, 0.05, 0.3))]
    return images, labels


def write_mimic_tree(root: Path, *, gz: bool = False, n_random: int = 0, seed: int = 0, reports: bool = True) -> Expected:
    """Write the tree under ``root`` and return what a loader must find in it."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    images = list(HAND_IMAGES)
    chexpert = {k: list(v) for k, v in HAND_LABELS.items()}
    extra_images, extra_labels = random_rows(n_random, seed)
    images += extra_images
    chexpert.update(extra_labels)
    negbio = {k: list(v) for k, v in chexpert.items()}
    for (study, name), value in NEGBIO_CHANGES.items():
        negbio[study][LABELS.index(name)] = value

    write_csv(root / "mimic-cxr-2.0.0-split.csv", ("dicom_id", "study_id", "subject_id", "split"),
              [(r.dicom_id, r.study_id, r.subject_id, r.split) for r in images], gz)  # fmt: skip
    meta_rows = [
        (r.dicom_id, r.subject_id, r.study_id, "CHEST (PA AND LAT)", r.view, r.height, r.width,
         STUDY_DATES.get(r.study_id, DEFAULT_DATE),
         "213014.531", "CHEST (PA AND LAT)", "postero-anterior", "Erect")
        for r in images if r.view is not None
    ]  # fmt: skip
    write_csv(root / "mimic-cxr-2.0.0-metadata.csv", METADATA_HEADER, meta_rows, gz)
    subject_of = {r.study_id: r.subject_id for r in images}
    for name, table in (("chexpert", chexpert), ("negbio", negbio)):
        rows = [(subject_of[study], study, *map(cell, values)) for study, values in table.items()]
        write_csv(root / f"mimic-cxr-2.0.0-{name}.csv", ("subject_id", "study_id", *LABELS), rows, gz)

    for i, r in enumerate(images):
        path = root / "files" / f"p{r.subject_id[:2]}" / f"p{r.subject_id}" / f"s{r.study_id}" / f"{r.dicom_id}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        if r.state == "missing":
            continue
        data = jpeg_bytes(r.height, r.width, seed=i)
        path.write_bytes(b"" if r.state == "empty" else data[: len(data) // 2] if r.state == "truncated" else data)
    if reports:
        for study, key in HAND_REPORTS.items():
            subject = subject_of[study]
            path = root / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}.txt"
            path.write_text(REPORT_TEXT[key])
    return Expected(root, images, {"chexpert": chexpert, "negbio": negbio}, dict(HAND_REPORTS) if reports else {})


PATIENTS_HEADER = ("subject_id", "gender", "anchor_age", "anchor_year", "anchor_year_group", "dod")
ADMISSIONS_HEADER = (
    "subject_id",
    "hadm_id",
    "admittime",
    "dischtime",
    "admission_type",
    "insurance",
    "race",
    "hospital_expire_flag",
)


def write_mimic_iv(root: Path, patients, admissions, *, gz: bool = True, race_column: str = "race") -> Path:
    """``root/hosp/{patients,admissions}.csv[.gz]``; ``patients`` rows are (subject, gender, anchor_age,
    anchor_year), ``admissions`` rows (subject, admittime, race); the other columns are filled in."""
    hosp = Path(root) / "hosp"
    hosp.mkdir(parents=True, exist_ok=True)
    rows = [(s, g, a, y, "2011 - 2013", "") for s, g, a, y in patients]
    write_csv(hosp / "patients.csv", PATIENTS_HEADER, rows, gz)
    header = tuple(race_column if c == "race" else c for c in ADMISSIONS_HEADER)
    rows = [(s, 20000000 + i, t, t, "EW EMER.", "Medicare", race, 0) for i, (s, t, race) in enumerate(admissions)]
    write_csv(hosp / "admissions.csv", header, rows, gz)
    return Path(root)
