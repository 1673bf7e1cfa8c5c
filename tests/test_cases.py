"""Case facts: ``cases.jsonl`` written by a real run on the synthetic set, checked against the
dataset's own files; the reader study takes labels, view and boxes from it, never from a manifest."""

from __future__ import annotations

import csv
import gzip
import json
import sqlite3
from dataclasses import asdict
from pathlib import Path

import pytest

from xreal_bench.cases import CasesFileError, facts_from_json, facts_to_json, read_cases
from xreal_bench.config import StudyConfig, config_from_dict
from xreal_bench.demo import synthetic
from xreal_bench.demo.study import write_sample_run
from xreal_bench.errors import UserFacingError
from xreal_bench.labels import CHEXPERT_LABELS
from xreal_bench.pipeline import generate, open_session
from xreal_bench.reader_study import create_study
from xreal_bench.rundir import GeneratorDir
from xreal_bench.types import Box, BoxSet, Case, CaseFacts

SCHEMA = {
    "case_id", "subject_id", "study_id", "split", "view", "image_path", "labels", "positives", "report", "boxes", "sample_boxes",
    "study_date", "demographics", "stated", "prompt_text",
}  # fmt: skip


def make_cfg(root: Path, out: Path, generators: dict, show_box: bool = False):
    return config_from_dict(
        {
            "dataset": {
                "kind": "synthetic",
                "root": str(root),
                "synthetic": {"n_subjects": 40, "image_size": 64},
                "label_policy": {"uncertain": "ignore"},
            },
            "conditioning": {"resolution": 64},
            "generators": generators,
            "run": {"out": str(out), "resolution": 192, "samples_per_condition": 2, "batch_size": 8},
            "study": {"show_box": show_box},
        }
    )


def run_generate(cfg):
    session = open_session(cfg, progress=False)
    generate(session, progress=False)
    return session


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cases") / "data"


@pytest.fixture(scope="module")
def run(data):
    """``real`` (reads no boxes) and ``phantom`` (reads pathology) through the generate pipeline."""
    cfg = make_cfg(data, data.parent / "run", {"real": {}, "phantom": {}})
    return cfg, run_generate(cfg)


def csv_rows(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="") as f:
        return list(csv.DictReader(f))


def test_cases_file_holds_the_dataset_facts(run, data):
    cfg, session = run
    out = Path(cfg.run.out)
    lines = (out / "cases.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert all(set(r) == SCHEMA for r in records)
    assert [r["case_id"] for r in records] == sorted(c.case_id for c in session.scan.cases)  # every case, sorted, once

    # labels after the policy (uncertain -> ignore), from the label CSV itself
    raw = {(r["subject_id"], r["study_id"]): r for r in csv_rows(data / synthetic.CHEXPERT_CSV)}
    policy = {"1.0": 1, "0.0": 0, "-1.0": -1, "": 0}
    boxes = {}
    for row in csv_rows(data / synthetic.BOXES_CSV):
        w, h = float(row["image_width"]), float(row["image_height"])
        x0, y0 = float(row["x"]), float(row["y"])
        x1, y1 = x0 + float(row["w"]), y0 + float(row["h"])
        boxes.setdefault(row["dicom_id"], []).append((row["category_name"], x0 / w, y0 / h, x1 / w, y1 / h))
    facts = read_cases(out)
    by_id = {c.case_id: c for c in session.scan.cases}
    ignored = 0
    for record in records:
        case = by_id[record["case_id"]]
        labels = raw[(case.subject_id.lstrip("p"), case.study_id.lstrip("s"))]
        expected = {name: policy[labels[name]] for name in CHEXPERT_LABELS}
        assert record["labels"] == expected
        ignored += sum(v == -1 for v in expected.values())
        pathologies = [n for n in CHEXPERT_LABELS if n not in ("No Finding", "Support Devices")]
        assert record["positives"] == [n for n in pathologies if expected[n] == 1]
        assert (record["subject_id"], record["study_id"], record["view"], record["split"]) == (
            case.subject_id, case.study_id, case.view, "test",
        )  # fmt: skip
        assert record["report"] == {"findings": case.findings, "impression": case.impression, "text": case.report_text}
        assert record["study_date"] == case.study_date and len(case.study_date) == 8
        assert record["demographics"] is None  # [dataset].demographics is not set here
        assert record["report"]["findings"] or record["report"]["impression"]
        assert Path(record["image_path"]) == Path(case.image_path).resolve()
        assert record["sample_boxes"] == []
        if record["positives"]:  # the synthetic set boxes every positive finding
            assert record["boxes"]["source"] == "boxes_csv"
            got = [(b["label"], b["x0"], b["y0"], b["x1"], b["y1"]) for b in record["boxes"]["boxes"]]
            assert got == [pytest.approx(b) for b in boxes[case.case_id]]
            assert {b[0] for b in got} == set(record["positives"])
        else:
            assert record["boxes"] == {"source": "none", "boxes": [], "notes": ["no positive pathology; no box"]}
        assert facts[case.case_id] == facts_from_json(record)
        assert facts[case.case_id].case.labels == case.labels
    assert ignored > 0  # the policy did something to check
    assert any(r["positives"] for r in records) and any(not r["positives"] for r in records)


def test_manifests_keep_a_summary_but_are_not_the_source_of_case_facts(run):
    cfg, _ = run
    facts = read_cases(cfg.run.out)
    phantom, real = (GeneratorDir(cfg.run.out, g).ok_entries() for g in ("phantom", "real"))
    assert len(phantom) == len(real) == 2 * len(facts)
    for entry in phantom:
        assert entry.condition["boxes"] == [asdict(b) for b in facts[entry.case_id].boxes_for(entry.sample_index).boxes]
    assert all(e.condition["boxes"] == [] for e in real)  # `real` reads no boxes: its manifest has none
    assert any(f.boxes.boxes for f in facts.values())


def test_study_with_show_box_has_the_boxes_of_the_run(run, tmp_path):
    cfg, _ = run
    facts = read_cases(cfg.run.out)
    settings = StudyConfig(n_cases=4, show_box=True, generators=["phantom"], readers=["r1"], image_size=64, duplicate_fraction=0)
    created = create_study([Path(cfg.run.out)], tmp_path / "study", settings)
    con = sqlite3.connect(created.study_dir / "study.sqlite")
    try:
        rows = con.execute("SELECT case_id, positives, boxes, view FROM cases WHERE role = 'study'").fetchall()
    finally:
        con.close()
    assert len(rows) == 4
    for case_id, positives, boxes, view in rows:
        case = facts[case_id]
        assert json.loads(positives) == list(case.case.positives) and view == case.case.view
        assert json.loads(boxes) == [asdict(b) for b in case.boxes.boxes]
    assert any(json.loads(boxes) for _, _, boxes, _ in rows)  # strata put positive cases in the study


@pytest.mark.parametrize("show_box", [True, False])
def test_boxes_are_computed_for_show_box_even_without_a_pathology_generator(data, tmp_path, show_box):
    cfg = make_cfg(data, tmp_path / "run", {"real": {}}, show_box=show_box)
    run_generate(cfg)
    facts = read_cases(cfg.run.out)
    assert all(f.has_boxes == show_box for f in facts.values())
    if show_box:
        assert any(f.boxes.source == "boxes_csv" for f in facts.values())


def test_random_fallback_boxes_are_stored_per_sample(data, tmp_path):
    cfg = make_cfg(data, tmp_path / "run", {"phantom": {}})
    cfg.conditioning.boxes_csv = str(tmp_path / "no-boxes.csv")
    (tmp_path / "no-boxes.csv").write_text(",".join(synthetic.BOXES_HEADER) + "\n")
    cfg.conditioning.box_fallback = "random"
    run_generate(cfg)
    facts = read_cases(cfg.run.out)
    positive = [f for f in facts.values() if f.case.positives]
    assert positive and all(f.boxes is None and len(f.sample_boxes) == 2 for f in positive)
    assert all(s.source == "random" for f in positive for s in f.sample_boxes)
    assert any(f.sample_boxes[0] != f.sample_boxes[1] for f in positive)
    for entry in GeneratorDir(cfg.run.out, "phantom").ok_entries():
        assert entry.condition["boxes"] == [asdict(b) for b in facts[entry.case_id].boxes_for(entry.sample_index).boxes]


def test_facts_round_trip_through_json(tmp_path):
    case = Case("c1", (tmp_path / "c1.jpg").resolve(), "p1", "s2", "AP", tuple([1, -1] + [0] * 12), "F.", "I.", "test")
    per_sample = tuple(BoxSet("random", (Box("Atelectasis", 0.1, 0.2, 0.3 + k / 7, 0.4),), ()) for k in range(3))
    for facts in (CaseFacts(case), CaseFacts(case, boxes=BoxSet(notes=("n",))), CaseFacts(case, sample_boxes=per_sample)):
        assert facts_from_json(json.loads(json.dumps(facts_to_json(facts)))) == facts


def test_study_of_a_run_without_cases_file_says_to_regenerate(tmp_path):
    run = write_sample_run(tmp_path / "run", n_cases=6)
    (run / "cases.jsonl").unlink()
    with pytest.raises(UserFacingError, match=r"cases\.jsonl not found.*re-run `xreal-bench generate`"):
        create_study([run], tmp_path / "study", StudyConfig(n_cases=3, image_size=64))
    assert not (tmp_path / "study").exists()


def test_corrupt_cases_file_names_the_file_and_line(tmp_path):
    run = write_sample_run(tmp_path / "run", n_cases=3)
    path = run / "cases.jsonl"
    path.write_text(path.read_text() + '{"case_id": "x"}\n')
    with pytest.raises(CasesFileError, match=rf"{path}: line 4 is not a case record .*xreal-bench generate"):
        read_cases(run)
