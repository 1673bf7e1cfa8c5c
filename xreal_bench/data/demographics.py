"""MIMIC-IV demographics joined onto MIMIC-CXR cases by ``subject_id`` (``[dataset] demographics``).

MIMIC-CXR-JPG carries no demographics; MIMIC-IV (same PhysioNet credential, same subject_ids,
dates shifted consistently per patient) does. Under the configured MIMIC-IV root (each file may
be ``.csv`` or ``.csv.gz``, read by :mod:`xreal_bench.data.csvfile`, so a missing file or column
and a malformed row are errors naming the file and line):

- ``hosp/patients.csv``: ``subject_id, gender, anchor_age, anchor_year`` (other columns ignored);
- ``hosp/admissions.csv``: ``subject_id, admittime`` and ``race`` (``ethnicity`` in MIMIC-IV v1.0).

Per case (:class:`~xreal_bench.types.Demographics` with ``source = "mimic-iv"``, remarks in ``notes``):

- **sex**: ``gender`` F -> ``"female"``, M -> ``"male"`` (case-insensitive); anything else ``""``.
- **age at the study**: ``anchor_age + (study year - anchor_year)``, the study year being the
  first four digits of the image's ``StudyDate`` (MIMIC-CXR-JPG metadata, YYYYMMDD) -- whole
  years; MIMIC-IV has no birth date, so the birthday within the year is unknown. MIMIC-IV stores
  ``anchor_age = 91`` for every patient older than 89 in the anchor year: that capped value is
  used as it is (the age is then a stand-in, not the true age) and noted. No StudyDate, a blank
  anchor or a negative result: age ``None``.
- **race**: over the subject's admissions, values meaning "not known" (:data:`UNKNOWN_RACES`) are
  left out; each other value is mapped by :data:`RACE_GROUPS` (below) to RoentGen v2's vocabulary,
  a value outside it counting as itself; the most frequent wins. A tie goes to the tied value
  recorded at the latest ``admittime`` (then the later line of the file). ``OTHER`` is a recorded
  answer, not an unknown: a subject with OTHER twice and WHITE once is not called WHITE. A winner
  outside the vocabulary, no admission, or no known value gives race ``""``.
- A subject absent from ``patients.csv``: ``Demographics(source="none")``. Unknown values are
  left empty here; the generator's fallback is applied, and recorded, where its prompt is built.

RoentGen v2's prompt vocabulary is ``WHITE``, ``BLACK``, ``ASIAN``, ``HISPANIC`` in upper case,
with sex ``female``/``male`` and the age in years: StanfordMIMI/RoentGen-v2 (commit 236cd595)
``demo_data/demo_inference_prompts.csv`` (columns ``gender, anchor_age, race, impression_short,
prompt_variation``; e.g. ``86 year old BLACK female. No evidence of ...``) and
``demo_data/demo_datafiles/prompt_dir/*.txt``; its quality check
(``roentgenv2/inference_code/run_inference_w_quality_check.py``, ``check_race``) compares White,
Black and Asian. That CSV names its age column ``anchor_age``: the authors' preprocessing is
unpublished and may have used the anchor age unadjusted. This module gives both: ``age`` at the
study and ``anchor_age`` as recorded; RoentGen v2's default prompt rule (``roentgen_v2``) takes
``anchor_age``, as the official prompt file does, and ``roentgen_v2_age_at_study`` the age at the study.

The mapping, for every value of MIMIC-IV v1.0's ``ethnicity`` and v2's ``race`` (matched
case-insensitively, surrounding spaces ignored):

- ``WHITE`` <- WHITE, WHITE - BRAZILIAN, WHITE - EASTERN EUROPEAN, WHITE - OTHER EUROPEAN,
  WHITE - RUSSIAN;
- ``BLACK`` <- BLACK/AFRICAN AMERICAN, BLACK/AFRICAN, BLACK/CAPE VERDEAN, BLACK/CARIBBEAN ISLAND;
- ``ASIAN`` <- ASIAN, ASIAN - ASIAN INDIAN, ASIAN - CHINESE, ASIAN - KOREAN, ASIAN - SOUTH EAST ASIAN;
- ``HISPANIC`` <- HISPANIC OR LATINO, HISPANIC/LATINO (v1.0), and "HISPANIC/LATINO - " followed
  by CENTRAL AMERICAN, COLUMBIAN (MIMIC's spelling), CUBAN, DOMINICAN, GUATEMALAN, HONDURAN,
  MEXICAN, PUERTO RICAN or SALVADORAN;
- outside the vocabulary (counted, race ``""`` when it wins): AMERICAN INDIAN/ALASKA NATIVE,
  NATIVE HAWAIIAN OR OTHER PACIFIC ISLANDER, MULTIPLE RACE/ETHNICITY, OTHER, and PORTUGUESE and
  SOUTH AMERICAN (neither names one of the four groups; the original's grouping is unpublished),
  and any value not listed here;
- not known (left out before counting): UNKNOWN, UNABLE TO OBTAIN, PATIENT DECLINED TO ANSWER,
  UNKNOWN/NOT SPECIFIED, blank.

:func:`demographics_digest` fingerprints the two files' content for caches and run identity.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from xreal_bench.data.csvfile import DatasetError, drop_identical_duplicates, find_csv, numeric, read_bytes, read_csv, refuse_rows
from xreal_bench.types import Case, Demographics

PATIENTS_CSV = "hosp/patients.csv"
ADMISSIONS_CSV = "hosp/admissions.csv"
PATIENT_COLUMNS = ("subject_id", "gender", "anchor_age", "anchor_year")
RACE_COLUMNS = ("race", "ethnicity")  # MIMIC-IV v2.0+, v1.0
SEXES = {"F": "female", "M": "male"}
#: MIMIC-IV's ``anchor_age`` for every patient older than 89 in the anchor year.
CAPPED_AGE = 91
RACE_VOCABULARY = ("WHITE", "BLACK", "ASIAN", "HISPANIC")
HISPANIC_ORIGINS = (
    "CENTRAL AMERICAN", "COLUMBIAN", "CUBAN", "DOMINICAN", "GUATEMALAN", "HONDURAN", "MEXICAN", "PUERTO RICAN", "SALVADORAN",
)  # fmt: skip
#: MIMIC-IV race/ethnicity value (upper case) -> RoentGen v2 vocabulary (see the module docstring).
RACE_GROUPS: dict[str, str] = {
    **dict.fromkeys(
        ("WHITE", "WHITE - BRAZILIAN", "WHITE - EASTERN EUROPEAN", "WHITE - OTHER EUROPEAN", "WHITE - RUSSIAN"), "WHITE"
    ),
    **dict.fromkeys(("BLACK/AFRICAN AMERICAN", "BLACK/AFRICAN", "BLACK/CAPE VERDEAN", "BLACK/CARIBBEAN ISLAND"), "BLACK"),
    **dict.fromkeys(("ASIAN", "ASIAN - ASIAN INDIAN", "ASIAN - CHINESE", "ASIAN - KOREAN", "ASIAN - SOUTH EAST ASIAN"), "ASIAN"),
    **dict.fromkeys(("HISPANIC OR LATINO", "HISPANIC/LATINO", *(f"HISPANIC/LATINO - {o}" for o in HISPANIC_ORIGINS)), "HISPANIC"),
}
#: Values meaning "not known": left out before the most frequent value is chosen.
UNKNOWN_RACES = frozenset({"", "UNKNOWN", "UNABLE TO OBTAIN", "PATIENT DECLINED TO ANSWER", "UNKNOWN/NOT SPECIFIED"})
STUDY_DATE = re.compile(r"\d{8}")
ADMITTIME = re.compile(r"\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?")


@dataclass(frozen=True)
class PatientRecord:
    """One row of ``patients.csv``: sex in the prompt vocabulary and the anchor (``None``: blank)."""

    sex: str
    anchor_age: int | None
    anchor_year: int | None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class RaceChoice:
    """The race chosen from a subject's admissions (``""``: unknown) and how."""

    race: str
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class MimicIVDemographics:
    """The patients and race choices of the subjects asked for, read from one MIMIC-IV root."""

    root: Path
    patients: dict[str, PatientRecord]
    races: dict[str, RaceChoice]

    def for_case(self, subject_id: str, study_date: str) -> Demographics:
        """The subject's demographics at a study on ``study_date`` (YYYYMMDD; ``""``: unknown)."""
        patient = self.patients.get(subject_id)
        if patient is None:
            return Demographics(source="none", notes=(f"subject {subject_id} is not in {PATIENTS_CSV}",))
        age, age_notes = age_at(patient, study_date)
        race = self.races.get(subject_id, RaceChoice("", (f"no admission in {ADMISSIONS_CSV}: race unknown",)))
        return Demographics(
            age=age,
            sex=patient.sex,
            race=race.race,
            source="mimic-iv",
            notes=(*patient.notes, *age_notes, *race.notes),
            anchor_age=patient.anchor_age,
        )


def age_at(patient: PatientRecord, study_date: str) -> tuple[int | None, tuple[str, ...]]:
    """``anchor_age + (study year - anchor_year)`` with the notes on how it was found."""
    if patient.anchor_age is None or patient.anchor_year is None:
        return None, ("anchor_age or anchor_year is blank: age unknown",)
    if not study_date:
        return None, ("no StudyDate for this image: age unknown",)
    age = patient.anchor_age + int(study_date[:4]) - patient.anchor_year
    if age < 0:
        return None, (f"StudyDate {study_date} is before the birth implied by anchor_age/anchor_year: age unknown",)
    if patient.anchor_age == CAPPED_AGE:
        return age, (f"anchor_age {patient.anchor_age} is MIMIC-IV's cap for patients over 89: age {age} is not the true age",)
    return age, ()


def locate(root: Path, name: str) -> Path:
    found = find_csv(root, name)
    if found is None:
        raise DatasetError(
            f"MIMIC-IV demographics: {root / name} (or {name}.gz) not found\n"
            "  [dataset].demographics must be the MIMIC-IV root holding hosp/patients.csv.gz and hosp/admissions.csv.gz"
        )
    return found


def whole_number(value: float) -> int | None:
    return None if pd.isna(value) else int(value)


def read_patients(path: Path, subjects: Collection[str] | None, notes: list[str]) -> dict[str, PatientRecord]:
    frame = read_csv(path, PATIENT_COLUMNS, ("subject_id", "gender"), keys=("subject_id",), ids=("subject_id",), notes=notes)
    if subjects is not None:
        frame = frame.loc[frame["subject_id"].isin(set(subjects))].reset_index(drop=True)
    for col in ("anchor_age", "anchor_year"):
        frame[col] = numeric(path, frame, col)
        fractional = frame[col].notna() & (frame[col] % 1 != 0)
        refuse_rows(path, frame, fractional, f"{col} is not a whole number")
    refuse_rows(
        path,
        frame,
        ~frame["anchor_age"].between(0, CAPPED_AGE) & frame["anchor_age"].notna(),
        f"anchor_age is not within 0..{CAPPED_AGE}",
    )
    refuse_rows(
        path, frame, ~frame["anchor_year"].between(1, 9999) & frame["anchor_year"].notna(), "anchor_year is not within 1..9999"
    )
    frame = drop_identical_duplicates(path, frame, "subject_id", PATIENT_COLUMNS, notes)
    out = {}
    columns = (frame[c].tolist() for c in PATIENT_COLUMNS)
    for subject, gender, age, year in zip(*columns, strict=True):
        gender = "" if pd.isna(gender) else gender
        sex = SEXES.get(gender.upper(), "")
        remarks = () if sex else (f"gender {gender!r} is not F or M: sex unknown",)
        out[subject] = PatientRecord(sex=sex, anchor_age=whole_number(age), anchor_year=whole_number(year), notes=remarks)
    return out


def race_column(path: Path, frame: pd.DataFrame) -> str:
    for col in RACE_COLUMNS:
        if col in frame.columns:
            return col
    raise DatasetError(
        f"{path}: missing column race (or ethnicity, as MIMIC-IV v1.0 names it) (found: {', '.join(map(str, frame.columns))})"
    )


def read_races(path: Path, subjects: Collection[str] | None, notes: list[str]) -> dict[str, RaceChoice]:
    """Per subject with at least one admission, the race chosen by the module's rule."""
    text = ("subject_id", "admittime", *RACE_COLUMNS)
    frame = read_csv(path, ("subject_id", "admittime"), text, keys=("subject_id", "admittime"), ids=("subject_id",), notes=notes)
    column = race_column(path, frame)
    if subjects is not None:
        frame = frame.loc[frame["subject_id"].isin(set(subjects))].reset_index(drop=True)
    bad = ~frame["admittime"].str.fullmatch(ADMITTIME.pattern).astype(bool)
    refuse_rows(path, frame, bad, "admittime is not a date (YYYY-MM-DD HH:MM:SS)")
    frame = frame.assign(when=frame["admittime"].str.replace("T", " "), value=frame[column].fillna("").str.strip().str.upper())
    frame = frame.sort_values(["subject_id", "when"], kind="stable")  # file order kept among equal times
    values: dict[str, list[str]] = {}
    for subject, value in zip(frame["subject_id"].tolist(), frame["value"].tolist(), strict=True):
        values.setdefault(subject, []).append(value)
    return {subject: choose_race(found) for subject, found in values.items()}


def choose_race(values: Iterable[str]) -> RaceChoice:
    """The most frequent known group among one subject's admissions (oldest first); ties: the latest."""
    values = list(values)
    unknown = Counter(v or "blank" for v in values if v in UNKNOWN_RACES)
    groups = [RACE_GROUPS.get(v, v) for v in values if v not in UNKNOWN_RACES]
    if not groups:
        counted = ", ".join(f"{v} x{n}" for v, n in sorted(unknown.items()))
        return RaceChoice("", (f"race not recorded ({counted}): race unknown",))
    counts = Counter(groups)
    top = max(counts.values())
    tied = {g for g, n in counts.items() if n == top}
    winner = next(g for g in reversed(groups) if g in tied)
    notes = []
    if len(counts) > 1:
        listed = ", ".join(f"{g} x{n}" for g, n in sorted(counts.items(), key=lambda item: (-item[1], item[0])))
        how = "tie broken by the latest admission" if len(tied) > 1 else "the most frequent"
        notes.append(f"race {winner} from differing admissions ({listed}; {how})")
    if winner not in RACE_VOCABULARY:
        notes.append(f"race {winner!r} is not in RoentGen v2's vocabulary ({', '.join(RACE_VOCABULARY)}): race unknown")
        winner = ""
    return RaceChoice(winner, tuple(notes))


def read_demographics(root: str | Path, subjects: Collection[str] | None = None) -> tuple[MimicIVDemographics, list[str]]:
    """Read the patients and admissions of ``subjects`` (all when ``None``) under the MIMIC-IV ``root``;
    also return the reader's notes (ids read leniently, repeated rows)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(
            f"MIMIC-IV root not found: {root}\n"
            "  [dataset].demographics must be the MIMIC-IV folder holding hosp/patients.csv.gz and hosp/admissions.csv.gz"
        )
    notes: list[str] = []
    patients = read_patients(locate(root, PATIENTS_CSV), subjects, notes)
    races = read_races(locate(root, ADMISSIONS_CSV), subjects, notes)
    return MimicIVDemographics(root, patients, races), notes


def attach_demographics(cases: Iterable[Case], root: str | Path) -> tuple[list[Case], list[str]]:
    """``cases`` with :attr:`Case.demographics` joined from the MIMIC-IV ``root`` (every case gets one)."""
    cases = list(cases)
    table, notes = read_demographics(root, {c.subject_id for c in cases})
    return [replace(c, demographics=table.for_case(c.subject_id, c.study_date)) for c in cases], notes


def demographics_digest(root: str | Path) -> str:
    """sha256 over the decompressed content of both files (``"absent"`` when one is missing): a change of
    any row changes it, recompressing a file does not."""
    root = Path(root)
    found = [(name, find_csv(root, name)) for name in (PATIENTS_CSV, ADMISSIONS_CSV)]
    files = tuple((name, str(path), *file_stamp(path)) for name, path in found if path is not None)
    return content_digest(files) if len(files) == len(found) else "absent"


def file_stamp(path: Path) -> tuple[int, int, int, int, int]:
    """What changes when a file is replaced or edited: device, inode, size, mtime and ctime."""
    st = path.stat()
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


@functools.lru_cache(maxsize=8)
def content_digest(files: tuple[tuple[Any, ...], ...]) -> str:
    """The digest of ``(name, path, *stamp)`` files, computed once per process for the same stamps
    (every text-reading generator's identity asks for it; the real files decompress to hundreds of MB)."""
    digest = hashlib.sha256()
    for name, path, *_ in files:
        data = read_bytes(Path(path))
        digest.update(f"{name}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()
