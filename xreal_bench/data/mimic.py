"""MIMIC-CXR-JPG loader: CSVs + image tree -> :class:`DatasetScan` of :class:`~xreal_bench.types.Case`.

Inputs under ``root`` (each CSV may be ``.csv`` or ``.csv.gz``):

- ``mimic-cxr-2.0.0-split.csv`` (dicom_id, study_id, subject_id, split),
- ``mimic-cxr-2.0.0-chexpert.csv`` or ``-negbio.csv`` (subject_id, study_id, 14 labels),
- ``mimic-cxr-2.0.0-metadata.csv`` (dicom_id, ViewPosition, Rows, Columns, StudyDate, ...),
- ``files/p<first two digits>/p<subject_id>/s<study_id>/<dicom_id>.jpg``,
- optionally reports ``files/p../p<subject_id>/s<study_id>.txt`` under ``reports_root``
  (or under ``root`` when ``reports_root`` is empty): each case gets the FINDINGS and IMPRESSION
  sections and the MaCheX report text of its study's file (:mod:`xreal_bench.data.reports`),
- optionally a MIMIC-IV root (``demographics``): each case gets the demographics of its subject
  at its StudyDate (:mod:`xreal_bench.data.demographics`).

Reading the CSVs: a ``.gz`` file is decompressed in full first; a truncated or damaged
stream, text that is not UTF-8, a row with the wrong number of fields or an unclosed quote is a
:class:`DatasetError` naming the file and the line (the header is line 1; lines are physical
lines). Blank lines are skipped. ``dicom_id``, ``subject_id`` and ``study_id`` must not be
blank; a ``dicom_id`` must be a safe file name (:data:`xreal_bench.names.NAME_RULE`);
``subject_id``/``study_id`` must be integers — a value written as an integral float
(``10000032.0``, e.g. after a spreadsheet round trip) is read as the integer with a note in
:attr:`DatasetScan.notes`, anything else is refused naming the line. A ``dicom_id`` listed
twice in the split (or metadata) CSV is kept once when the rows are identical (with a note) and
refused, naming the ids and lines, when they differ; a study listed twice in the label CSV is
refused. Rows/Columns must be numbers or blank; StudyDate (optional column, required with
demographics) eight digits (YYYYMMDD) or blank.

Rules, in order:

1. **split**: rows of the split CSV with ``split == split``.
2. **views**: ``ViewPosition`` compared case-insensitively with ``views``; a blank (or a
   dicom_id absent from the metadata CSV) counts as ``"UNKNOWN"`` and is kept only when
   ``views`` contains ``"UNKNOWN"``.
3. **labels** (per study, shared by its images) through the :class:`LabelPolicy`: 1.0 -> 1,
   0.0 -> 0, -1.0 -> ``policy.uncertain``, blank -> ``policy.blank``, study absent from the
   label CSV -> ``policy.missing_study``; ``"ignore"`` becomes :data:`IGNORE` (-1).
4. **file check** of every image left: *missing* (no file; the reason names the looked-for
   path) or *corrupt* (0 bytes, unreadable, more than :data:`~xreal_bench.imaging.MAX_PIXELS`
   pixels, a pixel mode :mod:`xreal_bench.imaging` refuses, or PIL cannot decode the whole
   stream — a JPEG at 1/8 scale via ``draft``, which still reads every entropy-coded byte, so
   truncated files fail). Both are recorded and excluded; the scan never raises for a bad image,
   except when *every* selected image is missing: that is a wrong root or wrong ids, and the
   :class:`DatasetError` shows the first looked-for paths. The check reads each file once, in a
   thread pool, and hashes the bytes it decodes (sha256).
5. **subsample** (``num_cases > 0``) of the images that passed the file check: seeded and
   stratified by pathology — the stratum of an image is its first positive pathology in
   CheXpert order (``No Finding`` and ``Support Devices`` are not pathologies), else
   ``"No Finding"``; quotas are proportional to stratum size (largest remainder, ties in
   CheXpert order), drawn with ``numpy.random.default_rng(seed)`` in CheXpert order.

The scan's ``fingerprint`` (the key of every cache of real-image results) is a sha256 over
split, views, labeler and label policy plus, per kept image, its dicom_id, relative path,
the sha256 of its bytes and its labels (and, with demographics, that they are configured and
the image's joined age, sex, race, source and notes): it is content-derived, so replacing an
image (even by one of equal size with the old mtime restored), relabelling it or changing its
subject's MIMIC-IV rows changes the fingerprint, while touching a file or copying the tree does
not. Without demographics it is what it was before they existed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from xreal_bench.config import LabelPolicy
from xreal_bench.data.csvfile import LINE, DatasetError, drop_identical_duplicates, find_csv, numeric, read_csv, refuse_rows
from xreal_bench.data.demographics import attach_demographics
from xreal_bench.data.reports import ReportSections, read_report, report_path
from xreal_bench.imaging import ImageDecodeError, open_image, pil_to_gray, refuse_signed_samples
from xreal_bench.labels import CHEXPERT_LABELS, NON_PATHOLOGY_LABELS
from xreal_bench.types import IGNORE, Case, Demographics

__all__ = ["DatasetError", "DatasetScan", "ImageCheck", "check_image", "scan_mimic"]

SPLIT_CSV = "mimic-cxr-2.0.0-split.csv"
METADATA_CSV = "mimic-cxr-2.0.0-metadata.csv"
LABEL_CSVS = {"chexpert": "mimic-cxr-2.0.0-chexpert.csv", "negbio": "mimic-cxr-2.0.0-negbio.csv"}
UNKNOWN_VIEW = "UNKNOWN"
NO_FINDING = "No Finding"
LOOKED_FOR_SHOWN = 3

SPLIT_COLUMNS = ("dicom_id", "study_id", "subject_id", "split")
METADATA_COLUMNS = ("dicom_id", "ViewPosition", "Rows", "Columns")
STUDY_DATE = "StudyDate"  # optional column (YYYYMMDD); required with demographics
STUDY_DATE_FORMAT = re.compile(r"\d{8}")
LABEL_KEY_COLUMNS = ("subject_id", "study_id")


@dataclass
class DatasetScan:
    """The kept images of one split plus what was excluded and why."""

    root: Path
    cases: list[Case]  # kept images, sorted by case_id (= dicom_id)
    missing: list[str]  # dicom_ids whose file is absent
    corrupt: list[str]  # dicom_ids whose file is empty / undecodable / truncated / refused
    by_view: dict[str, int]  # kept images per ViewPosition
    positives: dict[str, int]  # per CheXpert label, positives among kept images after the policy
    label_policy: dict  # LabelPolicy.describe()
    fingerprint: str  # see scan_fingerprint
    reasons: dict[str, str] = field(default_factory=dict)  # dicom_id -> why it was excluded (missing: the looked-for path)
    image_sizes: dict[str, tuple[int, int]] = field(default_factory=dict)  # case_id -> (Rows, Columns)
    available: int = 0  # good images before subsampling
    with_report: int = 0  # kept images whose report file was found
    split: str = "test"
    notes: list[str] = field(default_factory=list)  # what was read leniently (float ids, identical repeated rows)
    demographics: str = ""  # the MIMIC-IV root joined onto the cases; "" none


@dataclass(frozen=True)
class ImageCheck:
    """The file check of one image: ``status`` is ``ok``, ``missing`` or ``corrupt``."""

    status: str
    size: int = 0
    sha256: str = ""
    reason: str = ""


def locate_csvs(root: Path, labeler: str) -> dict[str, Path]:
    """Paths of the split, label and metadata CSVs, or one error naming all that are missing."""
    if labeler not in LABEL_CSVS:
        raise DatasetError(f"unknown labeler {labeler!r}; expected one of {', '.join(LABEL_CSVS)}")
    if not root.is_dir():
        raise DatasetError(
            f"MIMIC-CXR-JPG root not found: {root}\n"
            "  expected the folder holding mimic-cxr-2.0.0-*.csv(.gz) and files/ "
            "(set [dataset].root or pass --root)"
        )
    wanted = {"split": SPLIT_CSV, "labels": LABEL_CSVS[labeler], "metadata": METADATA_CSV}
    found = {key: find_csv(root, name) for key, name in wanted.items()}
    absent = [name for key, name in wanted.items() if found[key] is None]
    if absent:
        raise DatasetError(
            f"not a MIMIC-CXR-JPG root: {root}\n"
            + "".join(f"  missing {name} (or {name}.gz)\n" for name in absent)
            + "  download them from PhysioNet (mimic-cxr-jpg/2.0.0) into that folder, or point "
            "[dataset].root / --root at the folder that holds them"
        )
    return found  # type: ignore[return-value]


def policy_value(value) -> int:
    return IGNORE if value == "ignore" else int(value)


def apply_label_policy(values: np.ndarray, absent: np.ndarray, policy: LabelPolicy) -> np.ndarray:
    """Map raw CheXpert values (float, NaN = blank) of shape [N, 14] to int8 labels."""
    out = np.full(values.shape, policy_value(policy.blank), dtype=np.int8)
    out[values == 1.0] = 1
    out[values == 0.0] = 0
    out[values == -1.0] = policy_value(policy.uncertain)
    out[absent] = policy_value(policy.missing_study)
    return out


def label_matrix(frame: pd.DataFrame, path: Path) -> np.ndarray:
    """The 14 label columns as floats (NaN = blank), refusing values other than 1, 0, -1."""
    lacking = [c for c in CHEXPERT_LABELS if c not in frame.columns]
    if lacking:
        raise DatasetError(f"{path}: missing label column(s) {', '.join(lacking)}")
    raw = frame[list(CHEXPERT_LABELS)].apply(lambda col: col.str.strip())
    values = raw.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    raw_blank = (raw.isna() | (raw == "")).to_numpy()
    bad = (~raw_blank & np.isnan(values)) | (~np.isnan(values) & ~np.isin(values, (1.0, 0.0, -1.0)))
    if bad.any():
        row, col = map(int, np.argwhere(bad)[0])
        raise DatasetError(
            f"{path}, line {frame[LINE].iloc[row]}: {int(bad.sum())} label value(s) are not 1.0, 0.0, -1.0 or blank; "
            f"first: column {CHEXPERT_LABELS[col]!r}, study {frame['study_id'].iloc[row]}, "
            f"value {raw[CHEXPERT_LABELS[col]].iloc[row]!r}"
        )
    return values


def check_image(path: Path) -> ImageCheck:
    """Read the file once: hash its bytes and decode them (a JPEG at 1/8 scale) by the pixel rules of
    :mod:`xreal_bench.imaging`. Never raises for a bad file."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return ImageCheck("missing", reason=f"file not found: {path}")
    except OSError as exc:
        return ImageCheck("corrupt", reason=f"cannot read ({exc.strerror or exc})")
    if not data:
        return ImageCheck("corrupt", reason="file is empty (0 bytes)")
    digest = hashlib.sha256(data).hexdigest()
    try:
        with open_image(path, data) as img:
            refuse_signed_samples(img, path)
            img.draft("L", (max(1, img.width // 8), max(1, img.height // 8)))
            img.load()
            pil_to_gray(img, name=path)
    except ImageDecodeError as exc:
        return ImageCheck("corrupt", len(data), digest, str(exc).removeprefix(f"{path}: "))
    except Exception as exc:  # noqa: BLE001 - any decoder failure marks the file corrupt
        return ImageCheck("corrupt", len(data), digest, f"cannot decode ({type(exc).__name__}: {exc})")
    return ImageCheck("ok", len(data), digest)


def check_images(paths: list[Path], progress: bool) -> list[ImageCheck]:
    workers = min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(check_image, paths)
        return list(tqdm(results, total=len(paths), disable=not progress, desc="checking images", unit="img"))


def strata(labels: np.ndarray) -> list[str]:
    """First positive pathology per row in CheXpert order, else ``"No Finding"``."""
    pathology = np.array([name not in NON_PATHOLOGY_LABELS for name in CHEXPERT_LABELS])
    positive = (labels == 1) & pathology[None, :]
    first = positive.argmax(axis=1)
    return [CHEXPERT_LABELS[j] if positive[i, j] else NO_FINDING for i, j in enumerate(first)]


def stratified_subsample(groups: list[str], n: int, seed: int) -> np.ndarray:
    """Sorted indices of a seeded, proportionally stratified subsample of size ``min(n, len)``."""
    total = len(groups)
    if n >= total:
        return np.arange(total)
    order = [s for s in CHEXPERT_LABELS if s in set(groups)]  # "No Finding" has its CheXpert slot
    members = {s: np.array([i for i, g in enumerate(groups) if g == s]) for s in order}
    exact = {s: n * len(members[s]) / total for s in order}
    quota = {s: int(np.floor(exact[s])) for s in order}
    by_remainder = sorted(order, key=lambda s: (-(exact[s] - quota[s]), order.index(s)))
    for s in by_remainder[: n - sum(quota.values())]:
        quota[s] += 1
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(members[s], size=quota[s], replace=False) for s in order]
    return np.sort(np.concatenate(chosen))


def scan_fingerprint(rows: Iterable[tuple], settings: dict) -> str:
    """sha256 over ``settings`` and the sorted ``(case_id, relative path, sha256 of the file, labels)``."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for row in sorted(rows):
        digest.update(json.dumps(row).encode())
    return digest.hexdigest()


def image_relpaths(frame: pd.DataFrame) -> pd.Series:
    subject = frame["subject_id"]
    return "files/p" + subject.str[:2] + "/p" + subject + "/s" + frame["study_id"] + "/" + frame["dicom_id"] + ".jpg"


def study_dates(path: Path, meta: pd.DataFrame, required: bool) -> pd.Series:
    """The StudyDate column as ``YYYYMMDD`` text (``""`` blank); refused when malformed, or absent but ``required``."""
    if STUDY_DATE not in meta.columns:
        if required:
            raise DatasetError(
                f"{path}: missing column {STUDY_DATE} (needed for the age at the study with [dataset].demographics)"
            )
        return pd.Series("", index=meta.index, dtype=str)
    dates = meta[STUDY_DATE].fillna("").str.strip().str.replace(r"^(\d{8})\.0+$", r"\1", regex=True)  # re-saved: 21800506.0
    bad = (dates != "") & ~dates.str.fullmatch(STUDY_DATE_FORMAT.pattern).astype(bool)
    refuse_rows(path, meta, bad, f"{STUDY_DATE} {first_value(dates, bad)!r} is not a date written YYYYMMDD")
    return dates


def first_value(values: pd.Series, mask: pd.Series) -> object:
    return values[mask].iloc[0] if mask.any() else None


def select_images(
    paths: dict[str, Path], split: str, wanted_views: set[str], notes: list[str], *, need_dates: bool = False
) -> pd.DataFrame:
    """Rows of ``split`` whose view is wanted: dicom_id, study_id, subject_id, view, Rows, Columns, StudyDate."""
    split_df = read_csv(
        paths["split"],
        SPLIT_COLUMNS,
        SPLIT_COLUMNS,
        keys=SPLIT_COLUMNS,
        ids=LABEL_KEY_COLUMNS,
        file_names=("dicom_id",),
        notes=notes,
    )
    split_df = drop_identical_duplicates(paths["split"], split_df, "dicom_id", SPLIT_COLUMNS, notes)
    known_splits = sorted(split_df["split"].unique())
    if split not in known_splits:
        raise DatasetError(f"{paths['split']}: no image has split {split!r} (values present: {', '.join(known_splits)})")
    frame = split_df.loc[split_df["split"] == split, ["dicom_id", "study_id", "subject_id"]]
    text = ("dicom_id", "ViewPosition", STUDY_DATE)
    meta = read_csv(paths["metadata"], METADATA_COLUMNS, text, keys=("dicom_id",), notes=notes)
    meta["Rows"], meta["Columns"] = numeric(paths["metadata"], meta, "Rows"), numeric(paths["metadata"], meta, "Columns")
    meta[STUDY_DATE] = study_dates(paths["metadata"], meta, need_dates)
    columns = [*METADATA_COLUMNS, STUDY_DATE]
    meta = drop_identical_duplicates(paths["metadata"], meta, "dicom_id", columns, notes)[columns]
    frame = frame.merge(meta, on="dicom_id", how="left")
    frame[STUDY_DATE] = frame[STUDY_DATE].fillna("")
    view = frame["ViewPosition"].fillna("").astype(str).str.strip().str.upper()
    frame["view"] = view.where(view != "", UNKNOWN_VIEW)
    return frame[frame["view"].isin(wanted_views)].drop(columns="ViewPosition")


def attach_labels(
    frame: pd.DataFrame, path: Path, policy: LabelPolicy, notes: list[str]
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Join the per-study label CSV; return the frame sorted by dicom_id and its [N, 14] labels."""
    labels_df = read_csv(
        path,
        LABEL_KEY_COLUMNS,
        (*LABEL_KEY_COLUMNS, *CHEXPERT_LABELS),
        keys=LABEL_KEY_COLUMNS,
        ids=LABEL_KEY_COLUMNS,
        notes=notes,
    )
    duplicated = labels_df.duplicated(list(LABEL_KEY_COLUMNS), keep=False)
    if duplicated.any():
        repeated = labels_df.loc[duplicated]
        first = repeated["study_id"].iloc[0]
        lines = repeated.loc[repeated["study_id"] == first, LINE].tolist()
        raise DatasetError(
            f"{path}: study {first} appears more than once (lines {', '.join(map(str, lines))}; "
            f"{int(labels_df.duplicated(list(LABEL_KEY_COLUMNS)).sum())} repeated row(s) in all)"
        )
    numeric_labels = pd.DataFrame(label_matrix(labels_df, path), columns=list(CHEXPERT_LABELS))
    numeric_labels[list(LABEL_KEY_COLUMNS)] = labels_df[list(LABEL_KEY_COLUMNS)].to_numpy()
    frame = frame.merge(numeric_labels, on=list(LABEL_KEY_COLUMNS), how="left", indicator=True)
    frame = frame.sort_values("dicom_id", kind="stable").reset_index(drop=True)
    absent = (frame["_merge"] == "left_only").to_numpy()
    values = frame[list(CHEXPERT_LABELS)].to_numpy(dtype=float)
    labels = apply_label_policy(values, absent, policy)
    stated = (values == 1.0).astype(np.int8)  # before the policy: what the labeler wrote as positive
    return frame.drop(columns=[*CHEXPERT_LABELS, "_merge"]), labels, stated


def refuse_if_none_found(root: Path, paths: list[Path], checks: list[ImageCheck], split: str, views: set[str]) -> None:
    """Every selected image missing means a wrong root or wrong ids: say where the files were looked for."""
    if not checks or any(c.status != "missing" for c in checks):
        return
    shown = "".join(f"\n  {p}" for p in paths[:LOOKED_FOR_SHOWN])
    raise DatasetError(
        f"none of the {len(paths)} image(s) of split {split!r} (views {', '.join(sorted(views))}) exists under {root}; "
        f"looked for:{shown}" + ("\n  ..." if len(paths) > LOOKED_FOR_SHOWN else "") + "\n  point [dataset].root / --root "
        "at the folder holding files/p10 ... p19, and check that the CSV ids match the folder names"
    )


def reports_base(root: Path, reports_root) -> Path:
    if not reports_root:
        return root
    base = Path(reports_root)
    if not (base / "files").is_dir():
        raise DatasetError(
            f"reports tree not found: {base / 'files'}\n"
            "  [dataset].reports_root must be the folder holding MIMIC-CXR's files/p../p<subject>/s<study>.txt"
        )
    return base


def scan_mimic(
    root,
    *,
    split: str = "test",
    views=("AP", "PA"),
    labeler: str = "chexpert",
    policy: LabelPolicy | None = None,
    reports_root=None,
    demographics: str | Path | None = None,
    num_cases: int = 0,
    seed: int = 0,
    progress: bool = True,
    preselect: int = 0,
) -> DatasetScan:
    """Scan a MIMIC-CXR-JPG root (with ``demographics``: a MIMIC-IV root joined onto every kept
    case); see the module docstring for every rule applied. ``preselect > 0`` keeps a seeded uniform draw of
    that many rows (in ``dicom_id`` order, seed ``seed``) *before* the file check, so only those files are read
    (the memorization audit's subsample of a large training split)."""
    root = Path(root)
    policy = policy or LabelPolicy()
    wanted_views = {v.strip().upper() for v in ([views] if isinstance(views, str) else views)}
    paths = locate_csvs(root, labeler)
    report_root = reports_base(root, reports_root)
    notes: list[str] = []
    selected = select_images(paths, split, wanted_views, notes, need_dates=bool(demographics))
    frame, labels, stated = attach_labels(selected, paths["labels"], policy, notes)
    if 0 < preselect < len(frame):
        order = np.argsort(frame["dicom_id"].to_numpy(), kind="stable")
        drawn = np.sort(order[np.random.default_rng(seed).choice(len(frame), size=preselect, replace=False)])
        notes.append(f"{preselect} of {len(frame)} rows drawn (seed {seed}) before the file check")
        frame, labels, stated = frame.iloc[drawn].reset_index(drop=True), labels[drawn], stated[drawn]

    relpaths = image_relpaths(frame).tolist()
    image_paths = [root / rel for rel in relpaths]
    checks = check_images(image_paths, progress)
    refuse_if_none_found(root, image_paths, checks, split, wanted_views)
    status = np.array([c.status for c in checks], dtype=object)
    ids = frame["dicom_id"].tolist()
    good = np.flatnonzero(status == "ok")
    keep = good[stratified_subsample(strata(labels[good]), num_cases, seed)] if num_cases > 0 else good

    cases, rows, sizes, with_report = [], [], {}, 0
    reports: dict[str, ReportSections | None] = {}
    records = frame.to_dict("records")
    for i in keep:
        rec = records[i]
        subject, study = rec["subject_id"], rec["study_id"]
        if study not in reports:
            reports[study] = read_report(report_path(report_root, subject, study))
        report = reports[study] or ReportSections()
        with_report += reports[study] is not None
        case_labels = tuple(int(v) for v in labels[i])
        cases.append(
            Case(
                case_id=rec["dicom_id"],
                image_path=root / relpaths[i],
                subject_id=subject,
                study_id=study,
                view=rec["view"],
                labels=case_labels,
                findings=report.findings,
                impression=report.impression,
                split=split,
                report_text=report.report_text,
                study_date=rec[STUDY_DATE],
                stated=tuple(int(v) for v in stated[i]),
            )
        )
        if pd.notna(rec["Rows"]) and pd.notna(rec["Columns"]):
            sizes[rec["dicom_id"]] = (int(rec["Rows"]), int(rec["Columns"]))

    settings = {"split": split, "views": sorted(wanted_views), "labeler": labeler, "policy": policy.describe()}
    if demographics:
        cases, demographic_notes = attach_demographics(cases, demographics)
        notes += demographic_notes
        settings["demographics"] = "mimic-iv"
    for case, i in zip(cases, keep, strict=True):
        row: tuple = (case.case_id, relpaths[i], checks[i].sha256, case.labels)
        rows.append((*row, demographics_row(case.demographics)) if demographics else row)
    return DatasetScan(
        root=root,
        cases=cases,
        missing=[ids[i] for i in np.flatnonzero(status == "missing")],
        corrupt=[ids[i] for i in np.flatnonzero(status == "corrupt")],
        by_view=dict(sorted(Counter(c.view for c in cases).items())),
        positives={name: int((labels[keep, j] == 1).sum()) for j, name in enumerate(CHEXPERT_LABELS)},
        label_policy=policy.describe(),
        fingerprint=scan_fingerprint(rows, settings),
        reasons={ids[i]: checks[i].reason for i in np.flatnonzero(status != "ok")},
        image_sizes=sizes,
        available=len(good),
        with_report=with_report,
        split=split,
        notes=notes,
        demographics=str(demographics or ""),
    )


def demographics_row(found: Demographics | None) -> list:
    """A case's joined demographics as fingerprinted."""
    found = found or Demographics()
    return [found.age, found.sex, found.race, found.source, list(found.notes)]
