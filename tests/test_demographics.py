"""MIMIC-IV demographics joined onto cases: MIMIC-IV-format CSVs written here, every rule checked
against values worked out by hand; the scan, its fingerprint, the run identity, cases.jsonl and
the synthetic demo carry them."""

from __future__ import annotations

import csv
import gzip
import io
import json
from dataclasses import replace
from pathlib import Path

import pytest
from mimic_tree import did, write_mimic_iv, write_mimic_tree

from xreal_bench.cases import facts_from_json, facts_to_json, read_cases, write_cases
from xreal_bench.config import config_from_dict
from xreal_bench.data.csvfile import DatasetError
from xreal_bench.data.dataset import load_dataset
from xreal_bench.data.demographics import RACE_GROUPS, demographics_digest, read_demographics
from xreal_bench.data.mimic import scan_mimic
from xreal_bench.data.summary import format_summary, summarize
from xreal_bench.demo.synthetic import ADMISSIONS_CSV, PATIENTS_CSV, write_dataset
from xreal_bench.identity import run_fields
from xreal_bench.types import CaseFacts, Demographics

CAP_NOTE = "anchor_age 91 is MIMIC-IV's cap for patients over 89: age {} is not the true age"
PATIENTS = [
    ("100", "F", 50, 2180),  # age rule across years
    ("101", "M", 91, 2150),  # capped
    ("102", "f", 30, 2160),  # majority over a variant of the same group
    ("103", "M", 40, 2160),  # tie, rows out of time order
    ("104", "X", 20, 2160),  # unknown values left out; sex unknown
    ("105", "F", 60, 2160),  # only unknown values
    ("106", "M", 70, 2160),  # OTHER wins: outside the vocabulary
    ("107", "F", 45, 2160),  # no admission
    ("108", "M", "", 2160),  # blank anchor_age
]
ADMISSIONS = [
    ("100", "2179-01-01 10:00:00", "WHITE"),
    ("101", "2150-03-01 10:00:00", "BLACK/AFRICAN AMERICAN"),
    ("102", "2159-01-01 10:00:00", "BLACK/CAPE VERDEAN"),
    ("102", "2159-06-01 10:00:00", "WHITE - RUSSIAN"),
    ("102", "2160-01-01 10:00:00", "WHITE"),
    ("103", "2161-05-01 09:00:00", "ASIAN - CHINESE"),  # the later admission, written first
    ("103", "2158-05-01 09:00:00", "HISPANIC/LATINO - CUBAN"),
    ("104", "2160-01-01 10:00:00", "UNKNOWN"),
    ("104", "2160-02-01 10:00:00", "UNABLE TO OBTAIN"),
    ("104", "2160-03-01 10:00:00", "PATIENT DECLINED TO ANSWER"),
    ("104", "2160-04-01 10:00:00", "hispanic or latino"),
    ("105", "2160-01-01 10:00:00", "UNKNOWN"),
    ("105", "2160-02-01 10:00:00", ""),
    ("106", "2160-01-01 10:00:00", "OTHER"),
    ("106", "2160-02-01 10:00:00", "OTHER"),
    ("106", "2160-03-01 10:00:00", "WHITE"),
    ("999", "2160-03-01 10:00:00", "WHITE"),  # a subject with no patients row
]


@pytest.fixture(params=[True, False], ids=["csv.gz", "csv"])
def iv(request, tmp_path) -> Path:
    return write_mimic_iv(tmp_path / "mimic-iv", PATIENTS, ADMISSIONS, gz=request.param)


def table(root: Path):
    return read_demographics(root)[0]


def test_age_is_anchor_age_plus_the_years_since_the_anchor(iv):
    t = table(iv)
    assert t.for_case("100", "21820315").age == 52
    assert t.for_case("100", "21800101").age == 50
    assert t.for_case("100", "21771231").age == 47
    assert t.for_case("100", "21820315") == Demographics(age=52, sex="female", race="WHITE", source="mimic-iv", anchor_age=50)
    no_date = t.for_case("100", "")
    assert no_date.age is None and no_date.notes == ("no StudyDate for this image: age unknown",)
    before_birth = t.for_case("100", "21290101")
    assert before_birth.age is None and "before the birth" in before_birth.notes[0]


def test_capped_age_is_kept_and_noted(iv):
    found = table(iv).for_case("101", "21530704")
    assert (found.age, found.sex, found.race) == (94, "male", "BLACK")
    assert found.notes == (CAP_NOTE.format(94),)


def test_race_is_the_most_frequent_group(iv):
    found = table(iv).for_case("102", "21600101")
    assert (found.sex, found.race) == ("female", "WHITE")  # lower-case gender accepted
    assert found.notes == ("race WHITE from differing admissions (WHITE x2, BLACK x1; the most frequent)",)


def test_race_tie_goes_to_the_latest_admission_not_the_later_line(iv):
    found = table(iv).for_case("103", "21600101")
    assert found.race == "ASIAN"
    assert found.notes == ("race ASIAN from differing admissions (ASIAN x1, HISPANIC x1; tie broken by the latest admission)",)


def test_unknown_values_are_left_out_before_counting(iv):
    found = table(iv).for_case("104", "21600101")
    assert (found.race, found.sex) == ("HISPANIC", "")
    assert found.notes == ("gender 'X' is not F or M: sex unknown",)
    only_unknown = table(iv).for_case("105", "21600101")
    assert only_unknown.race == "" and only_unknown.notes == ("race not recorded (UNKNOWN x1, blank x1): race unknown",)


def test_a_winner_outside_the_vocabulary_gives_no_race(iv):
    found = table(iv).for_case("106", "21600101")
    assert found.race == "" and found.complete is False
    assert found.notes == (
        "race OTHER from differing admissions (OTHER x2, WHITE x1; the most frequent)",
        "race 'OTHER' is not in RoentGen v2's vocabulary (WHITE, BLACK, ASIAN, HISPANIC): race unknown",
    )


def test_no_admission_blank_anchor_and_missing_subject(iv):
    t = table(iv)
    assert t.for_case("107", "21600101") == Demographics(
        age=45,
        sex="female",
        race="",
        source="mimic-iv",
        notes=("no admission in hosp/admissions.csv: race unknown",),
        anchor_age=45,
    )
    blank = t.for_case("108", "21600101")
    assert blank.age is None and blank.notes[0] == "anchor_age or anchor_year is blank: age unknown"
    assert t.for_case("999", "21600101") == Demographics(source="none", notes=("subject 999 is not in hosp/patients.csv",))


def test_mapping_table_covers_every_mimic_iv_value():
    expected = {
        "WHITE": ["WHITE", "WHITE - BRAZILIAN", "WHITE - EASTERN EUROPEAN", "WHITE - OTHER EUROPEAN", "WHITE - RUSSIAN"],
        "BLACK": ["BLACK/AFRICAN AMERICAN", "BLACK/AFRICAN", "BLACK/CAPE VERDEAN", "BLACK/CARIBBEAN ISLAND"],
        "ASIAN": ["ASIAN", "ASIAN - ASIAN INDIAN", "ASIAN - CHINESE", "ASIAN - KOREAN", "ASIAN - SOUTH EAST ASIAN"],
        "HISPANIC": ["HISPANIC OR LATINO", "HISPANIC/LATINO"]
        + [f"HISPANIC/LATINO - {o}" for o in ("CENTRAL AMERICAN", "COLUMBIAN", "CUBAN", "DOMINICAN", "GUATEMALAN")]
        + [f"HISPANIC/LATINO - {o}" for o in ("HONDURAN", "MEXICAN", "PUERTO RICAN", "SALVADORAN")],
    }
    assert RACE_GROUPS == {value: group for group, values in expected.items() for value in values}
    outside = ("AMERICAN INDIAN/ALASKA NATIVE", "NATIVE HAWAIIAN OR OTHER PACIFIC ISLANDER", "MULTIPLE RACE/ETHNICITY")
    assert not set(outside + ("OTHER", "PORTUGUESE", "SOUTH AMERICAN")) & set(RACE_GROUPS)


def test_mimic_iv_v1_ethnicity_column(tmp_path):
    root = write_mimic_iv(
        tmp_path, [("1", "M", 33, 2130)], [("1", "2130-01-01 00:00:00", "HISPANIC/LATINO")], race_column="ethnicity"
    )
    assert table(root).for_case("1", "21300601").race == "HISPANIC"


def test_clear_errors_for_missing_files_and_columns(tmp_path):
    with pytest.raises(DatasetError, match="MIMIC-IV root not found"):
        read_demographics(tmp_path / "nowhere")
    root = write_mimic_iv(tmp_path / "a", PATIENTS, ADMISSIONS, gz=True)
    (root / "hosp/admissions.csv.gz").unlink()
    with pytest.raises(DatasetError, match=r"hosp/admissions.csv \(or hosp/admissions.csv.gz\) not found"):
        read_demographics(root)

    root = write_mimic_iv(tmp_path / "b", PATIENTS, ADMISSIONS, gz=False, race_column="language")
    with pytest.raises(DatasetError, match=r"admissions.csv: missing column race \(or ethnicity, as MIMIC-IV v1.0 names it\)"):
        read_demographics(root)

    root = write_mimic_iv(tmp_path / "c", PATIENTS, ADMISSIONS, gz=False)
    path = root / "hosp/patients.csv"
    path.write_text(path.read_text().replace("anchor_year,", "year,", 1))
    with pytest.raises(DatasetError, match=r"patients.csv: missing column\(s\) anchor_year \(found: subject_id, gender"):
        read_demographics(root)
    path.write_text(path.read_text().replace("year,", "anchor_year,", 1).replace("F,50,", "F,fifty,", 1))
    with pytest.raises(DatasetError, match=r"patients.csv, line 2: anchor_age 'fifty' is not a number"):
        read_demographics(root)
    # an age no MIMIC-IV file holds would reach a prompt ("-5 year old ..."): refused by line
    previous = "fifty"
    for bad in ("-5", "1000", "99999999999999999999"):
        path.write_text(path.read_text().replace(f"F,{previous},", f"F,{bad},", 1))
        previous = bad
        with pytest.raises(DatasetError, match=r"patients.csv, line 2: anchor_age is not within 0..91 \(1 row\(s\); lines 2\)"):
            read_demographics(root)


def hand_iv(root: Path, anchor_age_10000032: int = 60) -> Path:
    """Demographics for the hand tree's test subjects; 12000022 is left out of patients.csv."""
    patients = [("10000032", "F", anchor_age_10000032, 2180), ("10000045", "M", 91, 2181), ("11000011", "M", 40, 2170)]
    admissions = [
        ("10000032", "2180-01-01 00:00:00", "WHITE"),
        ("10000045", "2181-01-01 00:00:00", "ASIAN"),
        ("11000011", "2170-01-01 00:00:00", "UNKNOWN"),
        ("12000022", "2170-01-01 00:00:00", "BLACK/AFRICAN"),
    ]
    return write_mimic_iv(root, patients, admissions)


def test_scan_joins_demographics_onto_every_case(tmp_path):
    tree = write_mimic_tree(tmp_path / "jpg")
    plain = scan_mimic(tree.root, progress=False)
    assert all(c.demographics is None for c in plain.cases) and "demographics" not in summarize(plain)
    scan = scan_mimic(tree.root, demographics=hand_iv(tmp_path / "iv"), progress=False)
    got = {c.case_id: c.demographics for c in scan.cases}
    assert got[did(1)] == Demographics(60, "female", "WHITE", "mimic-iv", anchor_age=60)  # StudyDate 2180-05-06
    assert got[did(5)] == Demographics(93, "male", "ASIAN", "mimic-iv", (CAP_NOTE.format(93),), anchor_age=91)  # 2183
    assert got[did(8)] == Demographics(90, "male", "ASIAN", "mimic-iv", (CAP_NOTE.format(90),), anchor_age=91)  # 2180
    assert got[did(10)].age == 49 and got[did(10)].race == ""  # 2179, UNKNOWN only
    assert got[did(15)] == Demographics(source="none", notes=("subject 12000022 is not in hosp/patients.csv",))
    assert summarize(scan)["demographics"] == {"complete": 4, "age": 6, "sex": 6, "race": 4, "not_found": 1}
    assert "demographics:  4 of 7 complete (age, sex and race)" in format_summary(scan)


def test_fingerprint_and_identity_follow_the_demographics_content(tmp_path):
    tree = write_mimic_tree(tmp_path / "jpg")
    iv = hand_iv(tmp_path / "iv")
    plain = scan_mimic(tree.root, progress=False).fingerprint
    first = scan_mimic(tree.root, demographics=iv, progress=False).fingerprint
    assert first != plain
    cfg = config_from_dict({"dataset": {"kind": "mimic", "root": str(tree.root), "demographics": str(iv)}})
    digest = run_fields(cfg, {"text"})["dataset.demographics"]
    assert digest == demographics_digest(iv) and len(digest) == 64
    assert "dataset.demographics" not in run_fields(cfg, {"labels", "anatomy", "pathology"})
    assert "dataset.demographics" not in run_fields(replace(cfg, dataset=replace(cfg.dataset, demographics="")), {"text"})

    hand_iv(iv, anchor_age_10000032=61)  # one patients.csv row of a kept subject changes
    assert scan_mimic(tree.root, demographics=iv, progress=False).fingerprint != first
    assert run_fields(cfg, {"text"})["dataset.demographics"] != digest
    hand_iv(iv)
    assert scan_mimic(tree.root, demographics=iv, progress=False).fingerprint == first
    assert run_fields(cfg, {"text"})["dataset.demographics"] == digest
    for name in ("patients", "admissions"):  # recompressed content: the same digest
        path = iv / f"hosp/{name}.csv.gz"
        (iv / f"hosp/{name}.csv").write_bytes(gzip.decompress(path.read_bytes()))
        path.unlink()
    assert demographics_digest(iv) == digest
    (iv / "hosp/patients.csv").unlink()
    assert demographics_digest(iv) == "absent"


def test_cases_file_keeps_demographics_and_reads_older_files(tmp_path):
    tree = write_mimic_tree(tmp_path / "jpg")
    scan = scan_mimic(tree.root, demographics=hand_iv(tmp_path / "iv"), progress=False)
    write_cases(tmp_path / "run", [CaseFacts(c) for c in scan.cases])
    back = read_cases(tmp_path / "run")
    assert [back[c.case_id].case for c in scan.cases] == scan.cases
    record = json.loads((tmp_path / "run/cases.jsonl").read_text().splitlines()[0])
    assert record["demographics"] == {
        "age": 60,
        "sex": "female",
        "race": "WHITE",
        "source": "mimic-iv",
        "notes": [],
        "anchor_age": 60,
    }
    assert record["study_date"] == "21800506" and record["report"]["text"] == tree.machex(did(1))
    older = facts_to_json(CaseFacts(scan.cases[0]))
    del older["study_date"], older["demographics"], older["report"]["text"]
    case = facts_from_json(older).case
    assert (case.report_text, case.study_date, case.demographics) == ("", "", None)


def csv_rows(path: Path) -> list[dict]:
    return list(csv.DictReader(io.StringIO(gzip.decompress(path.read_bytes()).decode())))


def test_demo_dataset_carries_demographics(tmp_path):
    root = tmp_path / "data"
    write_dataset(root, n_subjects=40, seed=0, image_size=64)
    patients = {r["subject_id"]: r for r in csv_rows(root / PATIENTS_CSV)}
    admissions = csv_rows(root / ADMISSIONS_CSV)
    assert {"hadm_id", "admittime", "race"} <= set(admissions[0]) and {"anchor_year_group", "dod"} <= set(
        next(iter(patients.values()))
    )
    cfg = config_from_dict(
        {
            "dataset": {
                "kind": "synthetic",
                "root": str(root),
                "demographics": str(root / "mimic-iv"),
                "synthetic": {"n_subjects": 40, "image_size": 64},
            }
        }
    )
    cases = [c for split in ("train", "validate", "test") for c in load_dataset(cfg, split=split, progress=False).cases]
    assert cases and all(c.demographics is not None and len(c.study_date) == 8 for c in cases)
    missing = {c.subject_id for c in cases if c.subject_id not in patients}
    assert missing and all(c.demographics.source == "none" for c in cases if c.subject_id in missing)
    for c in cases:
        row = patients.get(c.subject_id)
        if row is None:
            continue
        expected_age = int(row["anchor_age"]) + int(c.study_date[:4]) - int(row["anchor_year"])
        assert (c.demographics.age, c.demographics.sex) == (expected_age, {"F": "female", "M": "male"}[row["gender"]])
    assert any(row["anchor_age"] == "91" for row in patients.values())
    values = {}
    for row in admissions:
        values.setdefault(row["subject_id"], set()).add(row["race"])
    assert any(len(v) > 1 for v in values.values()) and any("UNKNOWN" in v for v in values.values())
    races = {c.demographics.race for c in cases}
    assert "" in races and races - {""} <= {"WHITE", "BLACK", "ASIAN", "HISPANIC"} and len(races) > 2
    assert any(c.demographics.complete for c in cases)
