"""The synthetic demo set, written in exactly the MIMIC-CXR-JPG layout so that the same loader
(:func:`xreal_bench.data.mimic.scan_mimic`) reads it and real data alike.

Under ``root``:

- ``files/p1X/p1XXXXXXX/sXXXXXXXX/<dicom_id>.jpg`` — 8-bit grayscale JPEG (quality 95),
  ``image_size`` square; frontal views are phantoms from :mod:`xreal_bench.demo.phantoms`,
  LATERAL views a lateral-looking rendering;
- ``files/p1X/p1XXXXXXX/sXXXXXXXX.txt`` — MIMIC-CXR-style report with ``FINDINGS:`` and
  ``IMPRESSION:`` naming every drawn finding and its side (about 6 % lack FINDINGS and 4 %
  IMPRESSION; the remaining section still names everything);
- ``mimic-cxr-2.0.0-{split,chexpert,negbio,metadata}.csv.gz`` with the real columns (the
  metadata's ``StudyDate`` in shifted years 2110-2190, as MIMIC's);
- ``mimic-iv/hosp/patients.csv.gz`` and ``mimic-iv/hosp/admissions.csv.gz`` -- MIMIC-IV-format
  demographics of the subjects (:func:`write_demographics`; ``[dataset].demographics`` of the demo
  points at ``mimic-iv``);
- ``anatomy/<dicom_id>.png`` — ground-truth label maps (0 background, 1 patient's left lung,
  2 right lung, 3 heart, 4 aortic knob) of every frontal image;
- ``ms-cxr-boxes.csv`` — MS-CXR-style boxes (pixels of the written image) of every drawn
  finding on every frontal image;
- ``xreal-bench-synthetic.json`` — the stamp (parameters, generator version, lung shapes),
  written last.

Content rules:

- Splits are by subject: 25 % test, 15 % validate, the rest train (each at least one).
  Subjects have 1–3 studies; each study has one AP or PA image, sometimes a LATERAL, a
  second frontal (AP) or a frontal with a blank ViewPosition (filtered out by default).
- Findings are assigned per split with fixed quotas, so every split (test included) has
  positives and negatives of each of the eight drawn findings; about a fifth of studies are
  normal (``No Finding`` = 1.0). Labels are per study; every frontal image of a study shows
  the study's findings on the same side. LATERAL images draw no findings.
- Label values: a drawn finding is 1.0 in both label CSVs. 0.0 marks a finding the report
  explicitly negates ("No pneumothorax."), blank one it does not mention. -1.0 (uncertain)
  appears only for findings that are NOT drawn (about 12 % of abnormal studies, with a
  hedge such as "Pneumonia cannot be excluded."), so the default label policy
  (uncertain -> 0, as XReal) yields labels that match the pixels exactly, and a policy
  mapping uncertain -> 1 visibly adds label noise. The negbio file differs only in how
  undrawn findings are marked (some 0.0 become blank and some -1.0 become 0.0).
- Deterministic: the same parameters give byte-identical files (gzip headers carry no time
  or name); another seed gives other data.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import os
import shutil
import textwrap
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from xreal_bench.config import SyntheticConfig
from xreal_bench.demo import phantoms
from xreal_bench.demo.phantoms import (
    DRAWN_FINDINGS,
    ONE_SIDED,
    Geometry,
    Patient,
    Phantom,
    box_pixels,
    sample_patient,
)
from xreal_bench.errors import UserFacingError
from xreal_bench.imaging import quantize
from xreal_bench.labels import CHEXPERT_LABELS

#: Bump whenever rendering or layout changes: ensure_dataset then rewrites old trees.
GENERATOR_VERSION = "2"
STAMP_NAME = "xreal-bench-synthetic.json"
JPEG_QUALITY = 95
SPLIT_CSV = "mimic-cxr-2.0.0-split.csv.gz"
CHEXPERT_CSV = "mimic-cxr-2.0.0-chexpert.csv.gz"
NEGBIO_CSV = "mimic-cxr-2.0.0-negbio.csv.gz"
METADATA_CSV = "mimic-cxr-2.0.0-metadata.csv.gz"
BOXES_CSV = "ms-cxr-boxes.csv"
ANATOMY_DIR = "anatomy"
MIMIC_IV_DIR = "mimic-iv"
PATIENTS_CSV = f"{MIMIC_IV_DIR}/hosp/patients.csv.gz"
ADMISSIONS_CSV = f"{MIMIC_IV_DIR}/hosp/admissions.csv.gz"
PATIENTS_HEADER = ("subject_id", "gender", "anchor_age", "anchor_year", "anchor_year_group", "dod")
ADMISSIONS_HEADER = (
    "subject_id", "hadm_id", "admittime", "dischtime", "deathtime", "admission_type", "admit_provider_id",
    "admission_location", "discharge_location", "insurance", "language", "marital_status", "race", "edregtime",
    "edouttime", "hospital_expire_flag",
)  # fmt: skip
#: Per split, shares of subjects: in patients.csv with admissions, without admissions, absent from both.
DEMOGRAPHIC_PRESENCE = (0.87, 0.05, 0.08)
#: A subject's usual race value (MIMIC-IV strings) and its share of subjects.
USUAL_RACE = {
    "WHITE": 0.52, "WHITE - OTHER EUROPEAN": 0.05, "BLACK/AFRICAN AMERICAN": 0.14, "HISPANIC/LATINO - PUERTO RICAN": 0.05,
    "HISPANIC OR LATINO": 0.03, "ASIAN": 0.04, "ASIAN - CHINESE": 0.03, "OTHER": 0.04, "AMERICAN INDIAN/ALASKA NATIVE": 0.01,
    "UNKNOWN": 0.05, "UNABLE TO OBTAIN": 0.02, "PATIENT DECLINED TO ANSWER": 0.02,
}  # fmt: skip
#: What one admission records instead of the usual value, and how often.
ADMISSION_RACE = {"usual": 0.72, "UNKNOWN": 0.1, "UNABLE TO OBTAIN": 0.04, "other": 0.14}
YEAR_GROUPS = ("2008 - 2010", "2011 - 2013", "2014 - 2016", "2017 - 2019", "2020 - 2022")
EXTRA_PATIENTS = 12  # MIMIC-IV patients without any chest X-ray
CAPPED_AGE = 91  # MIMIC-IV's anchor_age for every patient over 89

SPLIT_HEADER = ("dicom_id", "study_id", "subject_id", "split")
LABEL_HEADER = ("subject_id", "study_id", *CHEXPERT_LABELS)
METADATA_HEADER = (
    "dicom_id",
    "subject_id",
    "study_id",
    "PerformedProcedureStepDescription",
    "ViewPosition",
    "Rows",
    "Columns",
    "StudyDate",
    "StudyTime",
    "ProcedureCodeSequence_CodeMeaning",
    "ViewCodeSequence_CodeMeaning",
    "PatientOrientationCodeSequence_CodeMeaning",
)
BOXES_HEADER = ("dicom_id", "category_name", "label_text", "x", "y", "w", "h", "image_width", "image_height")

SPLIT_FRACTIONS = (("test", 0.25), ("validate", 0.15))  # the rest is train
STUDIES_PER_SUBJECT = (0.4, 0.35, 0.25)  # shares of subjects with 1, 2, 3 studies
EXTRA_IMAGE = {"none": 0.48, "LATERAL": 0.32, "AP": 0.16, "": 0.04}  # a study's second image
NORMAL_FRACTION = 0.22  # studies with nothing drawn
FINDING_RATE = 0.2  # per drawn finding, among abnormal studies
VIEW_MEANING = {"AP": "antero-posterior", "PA": "postero-anterior", "LATERAL": "lateral", "": ""}
#: Findings whose box lies inside the lung parenchyma: spread over both sides when several.
PARENCHYMAL = ("Consolidation", "Lung Opacity", "Pneumonia", "Atelectasis")


@dataclass(frozen=True)
class SyntheticInfo:
    """What :func:`write_dataset` wrote."""

    root: Path
    seed: int
    image_size: int
    n_subjects: int
    n_studies: int
    n_images: int
    images: dict[str, int]  # per split, every view
    frontal: dict[str, int]  # per split, AP/PA images (kept by the default view filter)
    positives: dict[str, dict[str, int]]  # split -> drawn finding -> positive AP/PA images
    seconds: float


# --------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class ImagePlan:
    dicom_id: str
    view: str  # "AP", "PA", "LATERAL" or "" (blank ViewPosition, rendered frontal)
    seed: int


@dataclass(frozen=True)
class StudyPlan:
    subject_id: str
    study_id: str
    split: str
    date: str
    time: str
    images: tuple[ImagePlan, ...]
    findings: tuple[str, ...] = ()
    sides: dict[str, str] = field(default_factory=dict)
    report_seed: int = 0

    @property
    def procedure(self) -> str:
        views = {im.view for im in self.images}
        if "LATERAL" in views:
            return "CHEST (PA AND LAT)"
        return "CHEST (PORTABLE AP)" if self.images[0].view == "AP" else "CHEST (PA)"


@dataclass(frozen=True)
class SubjectPlan:
    subject_id: str
    split: str
    patient_seed: int
    studies: tuple[StudyPlan, ...]


def dicom_id(rng: np.random.Generator) -> str:
    """A MIMIC-style dicom_id: five dash-separated groups of 8 hex digits."""
    digits = rng.integers(0, 16, size=40)
    text = "".join("0123456789abcdef"[d] for d in digits)
    return "-".join(text[i : i + 8] for i in range(0, 40, 8))


def unique_ids(rng: np.random.Generator, n: int, low: int, high: int) -> list[int]:
    return sorted(int(v) for v in rng.choice(high - low, size=n, replace=False) + low)


def quotas(rng: np.random.Generator, n: int, shares: tuple[float, ...]) -> np.ndarray:
    """``n`` category indices in exactly proportional counts (largest remainder), shuffled."""
    exact = np.asarray(shares, dtype=float) / sum(shares) * n
    counts = np.floor(exact).astype(int)
    counts[np.argsort(-(exact - counts), kind="stable")[: n - counts.sum()]] += 1
    return rng.permutation(np.repeat(np.arange(len(shares)), counts))


def plan_dataset(n_subjects: int, seed: int) -> list[SubjectPlan]:
    """Subjects, splits, studies, images and findings: everything but the pixels.

    Within each split the numbers of studies per subject, extra images per study, normal
    studies and positives per finding are fixed quotas (shuffled), so counts do not swing
    with the seed: 120 subjects give 338 images, 64 of them AP/PA in the test split.
    """
    if n_subjects < 4:
        raise ValueError(f"n_subjects must be at least 4 (one subject per split and two for train), got {n_subjects}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED]))
    subject_ids = [str(i) for i in unique_ids(rng, n_subjects, 10_000_000, 20_000_000)]
    order = rng.permutation(n_subjects)
    members: dict[str, list[int]] = {}
    start = 0
    for name, frac in SPLIT_FRACTIONS:
        k = max(1, int(round(frac * n_subjects)))
        members[name] = sorted(int(i) for i in order[start : start + k])
        start += k
    members["train"] = sorted(int(i) for i in order[start:])

    subjects: list[SubjectPlan] = []
    for split in ("train", "validate", "test"):
        n_studies = 1 + quotas(rng, len(members[split]), STUDIES_PER_SUBJECT)
        extras = iter(quotas(rng, int(n_studies.sum()), tuple(EXTRA_IMAGE.values())))
        plans: list[list[StudyPlan]] = [[] for _ in members[split]]
        for k, i in enumerate(members[split]):
            day = int(rng.integers(0, 25_000))
            for _ in range(int(n_studies[k])):
                day += int(rng.integers(1, 400))
                clock = f"{int(rng.integers(0, 24)):02d}{int(rng.integers(0, 60)):02d}{int(rng.integers(0, 60)):02d}"
                plans[k].append(
                    StudyPlan(
                        subject_id=subject_ids[i],
                        study_id="",
                        split=split,
                        date=study_date(day),
                        time=f"{clock}.{int(rng.integers(0, 1000)):03d}",
                        images=plan_images(rng, list(EXTRA_IMAGE)[int(next(extras))]),
                        report_seed=int(rng.integers(2**63)),
                    )
                )
        plans = assign_findings(plans, rng)
        subjects += [
            SubjectPlan(subject_ids[i], split, int(rng.integers(2**63)), tuple(studies))
            for i, studies in zip(members[split], plans, strict=True)
        ]
    subjects.sort(key=lambda s: s.subject_id)
    study_ids = iter(unique_ids(rng, sum(len(s.studies) for s in subjects), 50_000_000, 60_000_000))
    return [replace(s, studies=tuple(replace(st, study_id=str(next(study_ids))) for st in s.studies)) for s in subjects]


def study_date(day: int) -> str:
    """MIMIC-style shifted date (years 2110-2190) as YYYYMMDD."""
    base = np.datetime64("2110-01-01") + np.timedelta64(day, "D")
    return str(base).replace("-", "")


def plan_images(rng: np.random.Generator, extra: str) -> tuple[ImagePlan, ...]:
    """One AP or PA image, plus the ``extra`` view ("none", "LATERAL", "AP" or "" = blank)."""
    views = ["AP" if rng.random() < 0.5 else "PA"]
    if extra != "none":
        views.append(extra)
    return tuple(ImagePlan(dicom_id(rng), v, int(rng.integers(2**63))) for v in views)


def assign_findings(plans: list[list[StudyPlan]], rng: np.random.Generator) -> list[list[StudyPlan]]:
    """One split: a fixed share of normal studies, then fixed positive counts per finding
    among the others (each abnormal study gets at least one). With two or more studies the
    split has negatives of every finding; with five or more abnormal ones, positives too."""
    flat = [st for studies in plans for st in studies]
    n = len(flat)
    n_normal = max(1, int(round(NORMAL_FRACTION * n))) if n >= 2 else 0
    abnormal = sorted(int(i) for i in rng.permutation(n)[n_normal:])
    found: dict[int, set[str]] = {i: set() for i in range(n)}
    for name in DRAWN_FINDINGS:
        k = int(round(FINDING_RATE * len(abnormal)))
        if len(abnormal) >= 5:  # room for every finding: at least one positive each
            k = max(1, k)
        for j in rng.choice(len(abnormal), size=k, replace=False):
            found[abnormal[int(j)]].add(name)
    for i in abnormal:
        if not found[i]:
            found[i].add(DRAWN_FINDINGS[int(rng.integers(len(DRAWN_FINDINGS)))])
    out, pos = [], 0
    for studies in plans:
        row = []
        for st in studies:
            names = tuple(f for f in DRAWN_FINDINGS if f in found[pos])
            row.append(replace(st, findings=names, sides=choose_sides(names, rng)))
            pos += 1
        out.append(row)
    return out


def choose_sides(findings: tuple[str, ...], rng: np.random.Generator) -> dict[str, str]:
    """Patient's side per finding; parenchymal findings alternate sides to limit overlap."""
    sides: dict[str, str] = {}
    flip = rng.random() < 0.5
    for name in findings:
        if name in PARENCHYMAL:
            sides[name] = "left" if flip else "right"
            flip = not flip
        elif name in ONE_SIDED:
            sides[name] = "left" if rng.random() < 0.5 else "right"
        elif name == "Edema":
            sides[name] = "bilateral"
        else:
            sides[name] = ""
    return sides


# --------------------------------------------------------------------------- labels & reports

NEGATIONS = {
    "Atelectasis": "No atelectasis.",
    "Cardiomegaly": "Heart size is normal.",
    "Consolidation": "No focal consolidation.",
    "Edema": "No pulmonary edema.",
    "Enlarged Cardiomediastinum": "The mediastinal contours are normal.",
    "Fracture": "No displaced rib fracture.",
    "Lung Opacity": "No new opacity.",
    "Pleural Effusion": "No pleural effusion.",
    "Pneumonia": "No evidence of pneumonia.",
    "Pneumothorax": "No pneumothorax.",
}
#: A negation is not written when one of these is drawn (it would contradict the image).
CONTRADICTS = {
    "Lung Opacity": {"Atelectasis", "Consolidation", "Edema", "Pneumonia"},
    "Enlarged Cardiomediastinum": {"Cardiomegaly"},
    "Pneumonia": {"Consolidation"},
}
HEDGES = {
    "Pneumonia": "Early pneumonia cannot be excluded.",
    "Atelectasis": "Possible minimal bibasilar atelectasis.",
    "Edema": "Possible mild vascular congestion.",
    "Consolidation": "An early consolidation is not excluded.",
}


def zone(g: Geometry, finding_boxes: list, side: str) -> str:
    """upper / mid / lower third of the lung holding the box centre."""
    one_side = phantoms.as_side(side)
    if not finding_boxes or one_side is None:
        return "lower"
    _, y0, _, y1 = g.lung_box(one_side)
    px = box_pixels(finding_boxes[0], g.size)
    rel = ((px[1] + px[3]) / 2 - y0) / max(y1 - y0, 1)
    return "upper" if rel < 1 / 3 else "mid" if rel < 2 / 3 else "lower"


def finding_phrase(name: str, side: str, where: str, rng: np.random.Generator) -> tuple[str, str]:
    """(FINDINGS sentence, IMPRESSION / MS-CXR phrase) for a drawn finding."""
    size = ("Small", "Moderate")[int(rng.integers(2))]
    if name == "Cardiomegaly":
        return "The heart is enlarged (cardiomegaly), with a cardiothoracic ratio above one half.", "Cardiomegaly"
    if name == "Edema":
        return (
            "Bilateral perihilar haziness with Kerley B lines at the lung bases, consistent with pulmonary edema.",
            "Pulmonary edema",
        )
    if name == "Pleural Effusion":
        return (
            f"{size} {side} pleural effusion with a meniscus and blunting of the {side} costophrenic angle.",
            f"{size} {side} pleural effusion",
        )
    if name == "Pneumothorax":
        return (
            f"{size} {side} apical pneumothorax; a visceral pleural line is seen with no lung markings beyond it.",
            f"{size} {side} apical pneumothorax",
        )
    if name == "Consolidation":
        return (
            f"Dense consolidation in the {side} {where} lung with air bronchograms.",
            f"Consolidation in the {side} {where} lung",
        )
    if name == "Lung Opacity":
        return (
            f"Hazy ill-defined opacity in the {side} {where} lung.",
            f"Opacity in the {side} {where} lung",
        )
    if name == "Pneumonia":
        return (
            f"Patchy nodular airspace opacities, concerning for pneumonia in the {side} {where} lung.",
            f"Pneumonia in the {side} {where} lung",
        )
    if name == "Atelectasis":
        return (
            f"Plate-like atelectasis in the {side} {where} lung with mild volume loss and elevation of the {side} hemidiaphragm.",
            f"Plate-like atelectasis in the {side} {where} lung",
        )
    raise ValueError(f"no phrase for {name!r}")


@dataclass(frozen=True)
class StudyText:
    report: str
    phrases: dict[str, str]  # finding -> MS-CXR label_text
    chexpert: dict[str, str]  # label -> CSV cell
    negbio: dict[str, str]


def describe_study(study: StudyPlan, anatomy: np.ndarray | None, boxes: tuple) -> StudyText:
    """Report text and label cells of a study (zones read from its first frontal image)."""
    rng = np.random.default_rng(study.report_seed)
    g = Geometry.of(anatomy) if anatomy is not None else None
    sentences, impressions, phrases = [], [], {}
    for name in study.findings:
        side = study.sides.get(name, "")
        where = zone(g, [b for b in boxes if b.label == name], side) if g is not None else "lower"
        sentence, phrase = finding_phrase(name, side, where, rng)
        sentences.append(sentence)
        impressions.append(phrase)
        phrases[name] = phrase

    cells = dict.fromkeys(CHEXPERT_LABELS, "")
    for name in study.findings:
        cells[name] = "1.0"
    undrawn = [n for n in NEGATIONS if cells[n] == "" and not CONTRADICTS.get(n, set()) & set(study.findings)]
    negated = [undrawn[i] for i in sorted(rng.choice(len(undrawn), size=int(rng.integers(1, 4)), replace=False))]
    hedged = ""
    if study.findings and rng.random() < 0.12:
        options = [n for n in HEDGES if cells[n] == "" and n not in negated]
        if options:
            hedged = options[int(rng.integers(len(options)))]
    for name in negated:
        cells[name] = "0.0"
        sentences.append(NEGATIONS[name])
    if hedged:
        cells[hedged] = "-1.0"
        sentences.append(HEDGES[hedged])
    if not study.findings:
        cells["No Finding"] = "1.0"
        sentences.insert(0, "The lungs are clear.")
        impressions = ["No acute cardiopulmonary process"]

    negbio = dict(cells)
    for name in negated:
        if rng.random() < 0.3:
            negbio[name] = ""
    if hedged and rng.random() < 0.3:
        negbio[hedged] = "0.0"

    findings_text = " ".join(sentences)
    impression_text = (
        " ".join(f"{i + 1}. {p}." for i, p in enumerate(impressions)) if len(impressions) > 1 else f"{impressions[0]}."
    )
    if hedged:
        impression_text += " " + HEDGES[hedged]
    missing = rng.random()
    sections = [("FINDINGS", findings_text), ("IMPRESSION", impression_text)]
    if missing < 0.06:  # no FINDINGS: the impression carries the negations instead
        sections = [("IMPRESSION", " ".join([impression_text, *(NEGATIONS[n] for n in negated)]))]
    elif missing < 0.10:
        sections = sections[:1]
    return StudyText(report_text(study, sections, rng), phrases, cells, negbio)


def report_text(study: StudyPlan, sections: list[tuple[str, str]], rng: np.random.Generator) -> str:
    """A MIMIC-CXR-style report: title, header sections, wrapped FINDINGS / IMPRESSION."""
    indications = ("cough and fever", "shortness of breath", "chest pain", "hypoxia", "evaluate for pneumonia")
    who = ("man", "woman")[int(rng.integers(2))]
    views = ", ".join(sorted({VIEW_MEANING[im.view] or "frontal" for im in study.images}))
    lines = [
        "                                 FINAL REPORT",
        f" EXAMINATION:  {study.procedure}",
        "",
        f" INDICATION:  ___-year-old {who} with {indications[int(rng.integers(len(indications)))]}.",
        "",
        f" TECHNIQUE:  Chest radiographs ({views}).",
        "",
        " COMPARISON:  " + ("None." if rng.random() < 0.5 else "Chest radiograph from ___."),
        "",
    ]
    for header, body in sections:
        lines += [f" {header}:", ""]
        lines += [" " + line for line in textwrap.wrap(body, 76, break_on_hyphens=False)]
        lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------------- writing


def study_dir(root: Path, subject_id: str, study_id: str) -> Path:
    """``files/p<first two digits>/p<subject>/s<study>`` (the MIMIC-CXR-JPG layout)."""
    return root / "files" / f"p{subject_id[:2]}" / f"p{subject_id}" / f"s{study_id}"


def jpeg_bytes(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(quantize(image, 8)).save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def png_bytes(label_map: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(label_map.astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def csv_bytes(header: tuple[str, ...], rows: list[tuple]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue().encode("utf-8")


def write_gzip(path: Path, data: bytes) -> None:
    """gzip with no name and mtime 0 in its header, so equal content gives equal bytes."""
    path.write_bytes(gzip.compress(data, compresslevel=6, mtime=0))


def stamp(n_subjects: int, seed: int, image_size: int) -> dict:
    """What the tree's content depends on; a different stamp means rewrite."""
    lungs = hashlib.sha256(phantoms.lung_archive_digest().encode()).hexdigest()
    return {
        "kind": "xreal-bench synthetic MIMIC-CXR-JPG demo",
        "generator_version": GENERATOR_VERSION,
        "n_subjects": int(n_subjects),
        "seed": int(seed),
        "image_size": int(image_size),
        "lung_masks_sha256": lungs,
    }


def read_stamp(root: Path) -> dict | None:
    try:
        return json.loads((root / STAMP_NAME).read_text())
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
        return None


@dataclass
class Tables:
    """CSV rows and counts gathered while the images are written."""

    split: list[tuple] = field(default_factory=list)
    metadata: list[tuple] = field(default_factory=list)
    chexpert: list[tuple] = field(default_factory=list)
    negbio: list[tuple] = field(default_factory=list)
    boxes: list[tuple] = field(default_factory=list)
    images: dict[str, int] = field(default_factory=lambda: dict.fromkeys(("train", "validate", "test"), 0))
    frontal: dict[str, int] = field(default_factory=lambda: dict.fromkeys(("train", "validate", "test"), 0))
    positives: dict[str, dict[str, int]] = field(
        default_factory=lambda: {s: dict.fromkeys(DRAWN_FINDINGS, 0) for s in ("train", "validate", "test")}
    )


def write_tree(tmp: Path, n_subjects: int, seed: int, image_size: int) -> dict:
    """Render and write the whole tree into ``tmp`` (stamp last); return counts."""
    subjects = plan_dataset(n_subjects, seed)
    tables = Tables()
    (tmp / ANATOMY_DIR).mkdir(parents=True)
    total = sum(len(st.images) for s in subjects for st in s.studies)
    with tqdm(total=total, desc="writing synthetic demo", unit="img", leave=False, disable=None) as bar:
        for subject in subjects:
            patient = sample_patient(np.random.default_rng(subject.patient_seed))
            for study in subject.studies:
                write_study(tmp, study, patient, image_size, tables)
                bar.update(len(study.images))

    write_gzip(tmp / SPLIT_CSV, csv_bytes(SPLIT_HEADER, sorted(tables.split, key=lambda r: (r[2], r[1], r[0]))))
    write_gzip(tmp / METADATA_CSV, csv_bytes(METADATA_HEADER, sorted(tables.metadata, key=lambda r: (r[1], r[2], r[0]))))
    write_gzip(tmp / CHEXPERT_CSV, csv_bytes(LABEL_HEADER, sorted(tables.chexpert)))
    write_gzip(tmp / NEGBIO_CSV, csv_bytes(LABEL_HEADER, sorted(tables.negbio)))
    (tmp / BOXES_CSV).write_bytes(csv_bytes(BOXES_HEADER, sorted(tables.boxes, key=lambda r: (r[0], r[1], r[3], r[4]))))
    write_demographics(tmp, subjects, seed)
    (tmp / STAMP_NAME).write_text(json.dumps(stamp(n_subjects, seed, image_size), indent=2, sort_keys=True) + "\n")
    return {
        "n_studies": len(tables.chexpert),
        "n_images": total,
        "images": tables.images,
        "frontal": tables.frontal,
        "positives": tables.positives,
    }


def write_demographics(tmp: Path, subjects: list[SubjectPlan], seed: int) -> None:
    """MIMIC-IV-format ``hosp/patients.csv.gz`` and ``hosp/admissions.csv.gz`` for the subjects.

    Per split, fixed shares of subjects (:data:`DEMOGRAPHIC_PRESENCE`) are in patients.csv with
    1-4 admissions, in patients.csv without admissions, or absent from both. Ages at the anchor
    year run 18-97, stored capped at 91 above 89 as MIMIC-IV does; the anchor year lies within two
    years of the subject's first study. Each admission records the subject's usual race value
    (:data:`USUAL_RACE`, which includes the unknown values), or UNKNOWN / UNABLE TO OBTAIN, or
    another value (:data:`ADMISSION_RACE`), so some subjects have differing values and ties. A few
    extra patients have no chest X-ray. Drawn from a seed of their own: the images do not change.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xDE30]))
    presence: dict[str, int] = {}
    for split in ("train", "validate", "test"):
        members = [s.subject_id for s in subjects if s.split == split]
        presence.update(zip(members, (int(k) for k in quotas(rng, len(members), DEMOGRAPHIC_PRESENCE)), strict=True))
    extra = [(str(i), int(rng.integers(2120, 2180))) for i in unique_ids(rng, EXTRA_PATIENTS, 20_000_000, 21_000_000)]
    first_years = [(s.subject_id, int(s.studies[0].date[:4])) for s in subjects if presence[s.subject_id] < 2]
    patients, admissions = [], []
    hadm_ids = iter(unique_ids(rng, 4 * (len(first_years) + len(extra)), 20_000_000, 30_000_000))
    for subject, first_year in sorted(first_years + extra):
        anchor_year = first_year + int(rng.integers(-2, 3))
        age = int(rng.integers(18, 98))
        patients.append(
            (subject, "FM"[int(rng.integers(2))], CAPPED_AGE if age > 89 else age, anchor_year,
             YEAR_GROUPS[int(rng.integers(len(YEAR_GROUPS)))], "" if rng.random() < 0.9 else f"{anchor_year + 3}-06-01")
        )  # fmt: skip
        if presence.get(subject, 0) == 0:
            admissions += admission_rows(rng, subject, anchor_year, hadm_ids)
    write_table(tmp / PATIENTS_CSV, PATIENTS_HEADER, patients)
    write_table(tmp / ADMISSIONS_CSV, ADMISSIONS_HEADER, sorted(admissions, key=lambda r: (r[0], r[2])))


def admission_rows(rng: np.random.Generator, subject: str, anchor_year: int, hadm_ids) -> list[tuple]:
    """1-4 admissions of one subject in time order, each recording a race value."""
    usual = str(rng.choice(list(USUAL_RACE), p=list(USUAL_RACE.values())))
    admit = np.datetime64(f"{anchor_year - 2}-01-01T00:00") + np.timedelta64(int(rng.integers(0, 700 * 1440)), "m")
    rows = []
    for _ in range(int(rng.integers(1, 5))):
        admit += np.timedelta64(int(rng.integers(1440, 500 * 1440)), "m")
        kind = str(rng.choice(list(ADMISSION_RACE), p=list(ADMISSION_RACE.values())))
        race = usual if kind == "usual" else str(rng.choice(list(USUAL_RACE))) if kind == "other" else kind
        emergency = rng.random() < 0.6
        ed_in, ed_out = admit - np.timedelta64(int(rng.integers(120, 600)), "m"), admit - np.timedelta64(30, "m")
        rows.append(
            (subject, next(hadm_ids), timestamp(admit), timestamp(admit + np.timedelta64(int(rng.integers(1, 12)), "D")), "",
             "EW EMER." if emergency else "ELECTIVE", f"P{int(rng.integers(10_000, 99_999))}",
             "EMERGENCY ROOM" if emergency else "PHYSICIAN REFERRAL", "HOME", ("Medicare", "Medicaid", "Other")[int(rng.integers(3))],
             "ENGLISH", ("MARRIED", "SINGLE", "WIDOWED")[int(rng.integers(3))], race,
             timestamp(ed_in) if emergency else "", timestamp(ed_out) if emergency else "", 0)
        )  # fmt: skip
    return rows


def timestamp(when: np.datetime64) -> str:
    """MIMIC-IV's ``YYYY-MM-DD HH:MM:SS``."""
    return str(when.astype("datetime64[s]")).replace("T", " ")


def write_table(path: Path, header: tuple[str, ...], rows: list[tuple]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_gzip(path, csv_bytes(header, rows))


def write_study(tmp: Path, study: StudyPlan, patient: Patient, size: int, tables: Tables) -> None:
    """Render a study's images; write them, their anatomy maps and the report; add CSV rows."""
    folder = study_dir(tmp, study.subject_id, study.study_id)
    folder.mkdir(parents=True)
    rendered: list[tuple[ImagePlan, np.ndarray, Phantom | None]] = []
    for im in study.images:
        rng = np.random.default_rng(im.seed)
        if im.view == "LATERAL":
            rendered.append((im, phantoms.render_lateral(rng, size, patient), None))
        else:
            drawn = phantoms.render_phantom(rng, size, study.findings, patient, sides=study.sides)
            rendered.append((im, drawn.image, drawn))
    first = next((ph for _, _, ph in rendered if ph is not None), None)
    text = describe_study(study, first.anatomy if first else None, first.boxes if first else ())
    (folder.parent / f"s{study.study_id}.txt").write_text(text.report, encoding="utf-8")
    tables.chexpert.append((study.subject_id, study.study_id, *(text.chexpert[c] for c in CHEXPERT_LABELS)))
    tables.negbio.append((study.subject_id, study.study_id, *(text.negbio[c] for c in CHEXPERT_LABELS)))

    for im, image, ph in rendered:
        (folder / f"{im.dicom_id}.jpg").write_bytes(jpeg_bytes(image))
        tables.split.append((im.dicom_id, study.study_id, study.subject_id, study.split))
        tables.metadata.append(metadata_row(study, im, size))
        tables.images[study.split] += 1
        if ph is not None:
            (tmp / ANATOMY_DIR / f"{im.dicom_id}.png").write_bytes(png_bytes(ph.anatomy))
            for box in ph.boxes:
                x0, y0, x1, y1 = box_pixels(box, size)
                tables.boxes.append((im.dicom_id, box.label, text.phrases[box.label], x0, y0, x1 - x0, y1 - y0, size, size))
        if im.view in ("AP", "PA"):
            tables.frontal[study.split] += 1
            for name in study.findings:
                tables.positives[study.split][name] += 1


def metadata_row(study: StudyPlan, im: ImagePlan, size: int) -> tuple:
    procedure = study.procedure
    orientation = "" if im.view == "" else ("Recumbent" if im.view == "AP" and "PORTABLE" in procedure else "Erect")
    return (
        im.dicom_id,
        study.subject_id,
        study.study_id,
        procedure,
        im.view,
        size,
        size,
        study.date,
        study.time,
        procedure,
        VIEW_MEANING[im.view],
        orientation,
    )


def write_dataset(root: Path, n_subjects: int = 120, seed: int = 0, image_size: int = 256) -> SyntheticInfo:
    """Write the synthetic demo tree at ``root`` (replacing an older synthetic tree there).

    The tree is written to a temporary sibling folder and renamed into place, the stamp
    being its last file, so an interrupted write never leaves a tree that
    :func:`ensure_dataset` accepts. A non-empty ``root`` that is not a synthetic tree (no
    stamp) is never touched: that raises :class:`UserFacingError`.
    """
    SyntheticConfig(n_subjects=n_subjects, seed=seed, image_size=image_size).validate()
    root = Path(root)
    refuse_foreign(root)
    started = time.perf_counter()
    root.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(root)
    tmp = root.parent / f".{root.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        counts = write_tree(tmp, n_subjects, seed, image_size)
        install(tmp, root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return SyntheticInfo(
        root=root,
        seed=seed,
        image_size=image_size,
        n_subjects=n_subjects,
        seconds=time.perf_counter() - started,
        **counts,
    )


def refuse_foreign(root: Path) -> None:
    if root.exists() and (not root.is_dir() or (any(root.iterdir()) and read_stamp(root) is None)):
        raise UserFacingError(
            f"{root} exists and is not a synthetic demo tree (no {STAMP_NAME} in it); refusing to "
            "overwrite it. Point [dataset].root at an empty or new folder for the synthetic demo, "
            'or set [dataset].kind = "mimic" to use the data that is there.'
        )


def install(tmp: Path, root: Path) -> None:
    """Swap the finished ``tmp`` tree into ``root`` with renames."""
    old = root.parent / f".{root.name}.old-{os.getpid()}"
    if root.exists():
        if read_stamp(root) == read_stamp(tmp):  # another process wrote the same tree meanwhile
            return
        refuse_foreign(root)
        root.rename(old)
    try:
        tmp.rename(root)
    except OSError:
        if read_stamp(root) != read_stamp(tmp):  # not a concurrent identical write: a real error
            raise
    shutil.rmtree(old, ignore_errors=True)


def clean_stale(root: Path) -> None:
    """Remove leftovers of interrupted writes (``.<name>.partial-<pid>`` / ``.old-<pid>`` of dead pids)."""
    for path in root.parent.glob(f".{root.name}.*-*"):
        kind, _, pid = path.name[len(root.name) + 2 :].rpartition("-")
        if kind not in ("partial", "old") or not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
            alive = True
        except ProcessLookupError:
            alive = False
        except PermissionError:
            alive = True
        if not alive:
            shutil.rmtree(path, ignore_errors=True)


def ensure_dataset(root: Path, cfg: SyntheticConfig) -> Path:
    """Write the demo tree at ``root`` unless one with the same stamp is already there."""
    root = Path(root)
    if read_stamp(root) != stamp(cfg.n_subjects, cfg.seed, cfg.image_size):
        write_dataset(root, cfg.n_subjects, cfg.seed, cfg.image_size)
    return root
