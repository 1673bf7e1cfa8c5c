"""MIMIC-CXR-JPG loader, label policy, subsample, summary and report parsing, checked against
numbers the tree writer computes on its own (tests/mimic_tree.py)."""

from __future__ import annotations

import hashlib
import math
import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from mimic_tree import LABELS, MACHEX, NOT_PATHOLOGY, REPORT_TEXT, SECTIONS, did, write_mimic_tree
from PIL import Image

from xreal_bench.config import LabelPolicy, config_from_dict
from xreal_bench.data.dataset import load_dataset
from xreal_bench.data.mimic import DatasetError, ImageCheck, check_image, scan_mimic
from xreal_bench.data.reports import machex_report, parse_report
from xreal_bench.data.summary import SUMMARY_KEYS, format_summary, summarize
from xreal_bench.imaging import load_grayscale

DEFAULT_POLICY = {"uncertain": 0, "blank": 0, "missing_study": 0}


@pytest.fixture(scope="module", params=[False, True], ids=["csv", "csv.gz"])
def tree(request, tmp_path_factory):
    return write_mimic_tree(tmp_path_factory.mktemp("mimic"), gz=request.param)


@pytest.fixture(scope="module")
def big_tree(tmp_path_factory):
    return write_mimic_tree(tmp_path_factory.mktemp("mimic_big"), n_random=150, seed=3)


def scan(tree, **kw):
    return scan_mimic(tree.root, progress=False, **kw)


def test_default_scan_matches_the_written_rows(tree):
    s = scan(tree)
    assert [c.case_id for c in s.cases] == tree.kept_ids()
    assert len(s.cases) == 7  # d1, d3, d5, d8, d10, d13 ("ap"), d15
    assert s.missing == tree.missing_ids() == [did(9)]
    assert s.corrupt == tree.corrupt_ids() == [did(11), did(12)]
    assert "empty" in s.reasons[did(11)] and "truncated" in s.reasons[did(12)]
    assert "not found" in s.reasons[did(9)]
    expected = tree.summary()
    assert s.by_view == expected["by_view"] == {"AP": 4, "PA": 3}
    assert s.positives == expected["positives"]
    assert s.positives["Cardiomegaly"] == 2 and s.positives["Support Devices"] == 3
    for case in s.cases:
        row = tree.row(case.case_id)
        assert case.labels == tree.case_labels(case.case_id, DEFAULT_POLICY)
        assert (case.subject_id, case.study_id, case.split) == (row.subject_id, row.study_id, "test")
        assert case.image_path.is_file() and case.image_path.name == f"{case.case_id}.jpg"
        assert (
            case.image_path.parent == tree.root / "files" / f"p{row.subject_id[:2]}" / f"p{row.subject_id}" / f"s{row.study_id}"
        )
        assert (case.findings, case.impression) == tree.sections(case.case_id)
    assert s.with_report == 5  # d1 d3 (both), d5 (impression), d8 (findings), d10 (neither)
    assert s.image_sizes[did(3)] == (72, 96)
    assert s.label_policy == {"1.0": 1, "0.0": 0, "-1.0": 0, "blank": 0, "missing_study": 0}


@pytest.mark.parametrize(
    "split, views",
    [
        ("test", ("AP",)),
        ("test", ("pa",)),
        ("test", ("LATERAL", "LL")),
        ("test", ("AP", "PA", "UNKNOWN")),
        ("train", ("AP", "PA")),
        ("validate", ("AP", "PA", "LATERAL")),
    ],
)
def test_split_and_view_filters(tree, split, views):
    s = scan(tree, split=split, views=views)
    assert [c.case_id for c in s.cases] == tree.kept_ids(split, views)
    assert s.missing == tree.missing_ids(split, views)
    assert s.corrupt == tree.corrupt_ids(split, views)
    assert summarize(s) == {**tree.summary(split, views), "label_policy": s.label_policy}


def test_blank_view_is_kept_only_with_unknown(tree):
    without = {c.case_id for c in scan(tree).cases}
    with_unknown = {c.case_id: c for c in scan(tree, views=("AP", "PA", "UNKNOWN")).cases}
    # d6: blank ViewPosition; d17: absent from the metadata CSV
    assert did(6) not in without and did(17) not in without
    assert with_unknown[did(6)].view == with_unknown[did(17)].view == "UNKNOWN"


@pytest.mark.parametrize(
    "policy",
    [
        {"uncertain": 1, "blank": 0, "missing_study": 0},
        {"uncertain": "ignore", "blank": "ignore", "missing_study": "ignore"},
        {"uncertain": 0, "blank": 1, "missing_study": "ignore"},
    ],
)
def test_label_policy_variants(tree, policy):
    s = scan(tree, policy=LabelPolicy(**policy))
    for case in s.cases:
        assert case.labels == tree.case_labels(case.case_id, policy)
    assert s.positives == tree.summary(policy=policy)["positives"]
    assert s.label_policy["-1.0"] == policy["uncertain"]


def test_label_policy_values_by_hand(tree):
    ignore_all = scan(tree, policy=LabelPolicy(uncertain="ignore", blank="ignore", missing_study="ignore"))
    by_id = {c.case_id: c.labels for c in ignore_all.cases}
    edema, cardio, atel = LABELS.index("Edema"), LABELS.index("Cardiomegaly"), LABELS.index("Atelectasis")
    assert (by_id[did(1)][cardio], by_id[did(1)][edema], by_id[did(1)][atel]) == (1, -1, 0)  # 1.0, -1.0, 0.0
    assert by_id[did(1)][LABELS.index("Fracture")] == -1  # blank cell
    assert by_id[did(8)] == (-1,) * 14  # study absent from the label CSV
    uncertain_pos = {c.case_id: c for c in scan(tree, policy=LabelPolicy(uncertain=1)).cases}
    assert uncertain_pos[did(1)].positives == ("Cardiomegaly", "Edema")
    assert uncertain_pos[did(1)].labels[LABELS.index("Support Devices")] == 1
    # what the labeler wrote as 1.0, whatever the policy: the models' label prompts read this
    stated = uncertain_pos[did(1)].stated
    assert (stated[cardio], stated[edema], stated[atel]) == (1, 0, 0) and stated == by_id_stated(ignore_all)[did(1)]
    assert uncertain_pos[did(8)].stated == (0,) * 14  # study absent from the label CSV: nothing stated


def by_id_stated(scan_result) -> dict[str, tuple[int, ...]]:
    return {c.case_id: c.stated for c in scan_result.cases}


def test_labels_are_shared_by_the_images_of_a_study(tree):
    s = {c.case_id: c for c in scan(tree, views=("AP", "PA", "LATERAL")).cases}
    assert s[did(1)].labels == s[did(2)].labels == s[did(3)].labels
    assert s[did(1)].findings == s[did(3)].findings != ""


def test_negbio_labeler_reads_the_negbio_file(tree):
    cardio = LABELS.index("Cardiomegaly")
    chexpert = {c.case_id: c for c in scan(tree).cases}
    negbio = {c.case_id: c for c in scan(tree, labeler="negbio").cases}
    assert chexpert[did(1)].labels[cardio] == 1 and negbio[did(1)].labels[cardio] == 0
    assert scan(tree, labeler="negbio").positives == tree.summary(labeler="negbio")["positives"]


def test_summary_has_exactly_the_keys_and_the_independent_numbers(tree):
    s = scan(tree)
    out = summarize(s)
    assert tuple(out) == SUMMARY_KEYS == ("cases", "by_view", "positives", "missing", "corrupt", "label_policy")
    assert out == {**tree.summary(), "label_policy": LabelPolicy().describe()}
    table = format_summary(s)
    assert "kept images:   7" in table and "missing files: 1" in table and "corrupt files: 2" in table
    assert "Cardiomegaly                          2    28.6" in table


def test_fingerprint_tracks_files_and_settings(tmp_path):
    tree = write_mimic_tree(tmp_path)
    first = scan(tree).fingerprint
    assert scan(tree).fingerprint == first
    assert scan(tree, policy=LabelPolicy(uncertain=1)).fingerprint != first
    assert scan(tree, views=("AP",)).fingerprint != first
    path = next(c.image_path for c in scan(tree).cases)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert scan(tree).fingerprint == first  # content-derived: touching a file keeps the cache valid
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01  # one bit of the last entropy-coded bytes: still a decodable JPEG, other pixels
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns
    changed = scan(tree)
    assert changed.fingerprint != first and path in [c.image_path for c in changed.cases]  # still kept, other bytes


def test_stratified_subsample_is_deterministic_and_proportional(big_tree):
    full = scan(big_tree)
    assert len(full.cases) == 7 + 150
    strata: dict[str, list[str]] = {}
    for case in full.cases:
        first = next((n for n, v in zip(LABELS, case.labels) if v == 1 and n not in NOT_PATHOLOGY), "No Finding")
        strata.setdefault(first, []).append(case.case_id)
    n = 40
    a = scan(big_tree, num_cases=n, seed=7)
    b = scan(big_tree, num_cases=n, seed=7)
    c = scan(big_tree, num_cases=n, seed=8)
    ids = [x.case_id for x in a.cases]
    assert ids == [x.case_id for x in b.cases] and a.fingerprint == b.fingerprint
    assert ids != [x.case_id for x in c.cases]
    assert len(ids) == n == len(set(ids)) and ids == sorted(ids)
    assert a.available == len(full.cases)
    for name, members in strata.items():
        exact = n * len(members) / len(full.cases)
        got = len(set(ids) & set(members))
        assert math.floor(exact) <= got <= math.ceil(exact), (name, got, exact)
    full_labels = {x.case_id: x.labels for x in full.cases}
    assert all(x.labels == full_labels[x.case_id] for x in a.cases)
    assert sum(a.by_view.values()) == n
    assert a.positives == {name: sum(x.labels[i] == 1 for x in a.cases) for i, name in enumerate(LABELS)}
    assert len(scan(big_tree, num_cases=10_000).cases) == len(full.cases)


def test_root_without_csvs_names_root_and_files(tmp_path):
    with pytest.raises(DatasetError) as err:
        scan_mimic(tmp_path, progress=False)
    msg = str(err.value)
    assert str(tmp_path) in msg
    for name in ("mimic-cxr-2.0.0-split.csv", "mimic-cxr-2.0.0-chexpert.csv", "mimic-cxr-2.0.0-metadata.csv"):
        assert name in msg and f"{name}.gz" in msg
    with pytest.raises(DatasetError, match="root not found"):
        scan_mimic(tmp_path / "nope", progress=False)


def test_only_the_absent_csv_is_named(tmp_path):
    tree = write_mimic_tree(tmp_path, gz=True)
    (tree.root / "mimic-cxr-2.0.0-metadata.csv.gz").unlink()
    with pytest.raises(DatasetError) as err:
        scan_mimic(tree.root, progress=False)
    assert "missing mimic-cxr-2.0.0-metadata.csv" in str(err.value)
    assert "split.csv" not in str(err.value) and "chexpert.csv" not in str(err.value)
    with pytest.raises(DatasetError, match="negbio|metadata"):
        scan_mimic(tree.root, labeler="negbio", progress=False)


def test_malformed_csvs_give_clear_errors(tmp_path):
    tree = write_mimic_tree(tmp_path)
    with pytest.raises(DatasetError, match=r"no image has split 'val' \(values present: test, train, validate\)"):
        scan(tree, split="val")
    labels = tree.root / "mimic-cxr-2.0.0-chexpert.csv"
    text = labels.read_text().splitlines()
    bad = text[:1] + [text[1].replace("1.0", "2.0", 1)] + text[2:]
    labels.write_text("\n".join(bad) + "\n")
    with pytest.raises(DatasetError, match=r"not 1.0, 0.0, -1.0 or blank.*'2.0'"):
        scan(tree)
    labels.write_text("\n".join(text).replace(",Edema,", ",Oedema,", 1) + "\n")
    with pytest.raises(DatasetError, match=r"chexpert.csv: missing label column\(s\) Edema"):
        scan(tree)
    meta = tree.root / "mimic-cxr-2.0.0-metadata.csv"
    meta.write_text(meta.read_text().replace("ViewPosition", "View", 1))
    with pytest.raises(DatasetError, match=r"metadata.csv: missing column\(s\) ViewPosition"):
        scan(tree)


def test_check_image_detects_garbage_and_accepts_valid(tmp_path):
    garbage = tmp_path / "g.jpg"
    garbage.write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4)
    assert check_image(garbage).status == "corrupt"
    assert check_image(garbage).sha256 == hashlib.sha256(garbage.read_bytes()).hexdigest()
    good = tmp_path / "ok.jpg"
    Image.fromarray(np.full((30, 20), 128, np.uint8)).save(good)
    assert check_image(good) == ImageCheck("ok", good.stat().st_size, hashlib.sha256(good.read_bytes()).hexdigest(), "")
    assert check_image(tmp_path / "absent.jpg") == ImageCheck("missing", reason=f"file not found: {tmp_path / 'absent.jpg'}")
    assert check_image(tmp_path) == ImageCheck("corrupt", reason="cannot read (Is a directory)")


def test_reports_root_elsewhere(tmp_path):
    tree = write_mimic_tree(tmp_path / "jpg", reports=False)
    assert all((c.findings, c.impression) == ("", "") for c in scan(tree).cases)
    reports = tmp_path / "reports"
    target = reports / "files/p10/p10000032/s50000001.txt"
    target.parent.mkdir(parents=True)
    target.write_text("FINDINGS: Heart is big.\nIMPRESSION: Cardiomegaly.\n")
    s = {c.case_id: c for c in scan(tree, reports_root=reports).cases}
    assert (s[did(1)].findings, s[did(1)].impression) == ("Heart is big.", "Cardiomegaly.")
    assert s[did(5)].impression == ""
    with pytest.raises(DatasetError, match="reports tree not found"):
        scan(tree, reports_root=tmp_path / "nowhere")


@pytest.mark.parametrize("key", sorted(SECTIONS))
def test_parse_report_fixture_texts(key):
    got = parse_report(REPORT_TEXT[key])
    assert (got.findings, got.impression) == SECTIONS[key]
    assert got.report_text == machex_report(REPORT_TEXT[key]) == MACHEX[key]


def test_cases_carry_the_machex_text_of_their_report_file(tree):
    cases = scan(tree).cases
    assert [c.report_text for c in cases] == [tree.machex(c.case_id) for c in cases]
    by_id = {c.case_id: c for c in cases}
    assert by_id[did(1)].report_text == MACHEX["both"] == by_id[did(3)].report_text  # one report, two images
    assert by_id[did(8)].report_text == "Lungs are clear.No effusion."  # FINDINGS only, a line without a leading space
    assert by_id[did(10)].report_text == MACHEX["neither"]  # neither header: the whole text
    assert by_id[did(13)].report_text == "" and by_id[did(15)].report_text == ""  # no report file


def test_machex_rule_edge_cases():
    # the last FINDINGS: wins and every IMPRESSION: header inside is dropped, its text kept
    text = "FINDINGS: old.\nFINDINGS:\n a  b\n IMPRESSION:\n c\n IMPRESSION: d\n"
    assert machex_report(text) == "a b c d"
    # no FINDINGS: the text after the last IMPRESSION:
    assert machex_report("INDICATION: x\nIMPRESSION: one\nIMPRESSION: two  three\n") == "two three"
    # headers are case-sensitive; line breaks vanish without a space; tabs are not squeezed
    assert machex_report("findings: a\nb\t\tc") == "findings: ab\t\tc"
    # CRLF and CR read as the original's text mode reads them
    assert machex_report("FINDINGS:\r\n x\r\n y\r z") == "x y z"
    assert machex_report("") == "" and machex_report(" \n ") == ""


def test_study_date_is_read_from_the_metadata(tree, tmp_path):
    cases = scan(tree).cases
    assert [c.study_date for c in cases] == [tree.study_date(c.case_id) for c in cases]
    assert {c.study_date for c in cases} == {"21800506", "21830101", "21790915", ""}
    bad = write_mimic_tree(tmp_path / "bad")
    meta = bad.root / "mimic-cxr-2.0.0-metadata.csv"
    meta.write_text(meta.read_text().replace("21800506", "21800506.0"))  # a copy re-saved by pandas
    assert [c.study_date for c in scan(bad).cases] == [tree.study_date(c.case_id) for c in cases]
    meta.write_text(meta.read_text().replace("21830101", "2183-01-01", 1))
    with pytest.raises(DatasetError, match=r"metadata.csv, line \d+: StudyDate '2183-01-01' is not a date written YYYYMMDD"):
        scan(bad)
    lines = meta.read_text().splitlines()
    without = [",".join(c for i, c in enumerate(line.split(",")) if i != 7) for line in lines]
    assert lines[0].split(",")[7] == "StudyDate"
    meta.write_text("\n".join(without) + "\n")
    assert {c.study_date for c in scan(bad).cases} == {""}  # an optional column without demographics
    (tmp_path / "iv" / "hosp").mkdir(parents=True)
    with pytest.raises(DatasetError, match="missing column StudyDate .needed for the age at the study"):
        scan(bad, demographics=tmp_path / "iv")


def test_parse_report_edge_cases():
    text = "INDICATION: eval.\nFINDINGS:   a\n\n  b.  \nCOMPARISON: none\nIMPRESSION: c.\nRECOMMENDATION(S): follow up."
    assert parse_report(text).findings == "a b."
    assert parse_report(text).impression == "c."
    # lower-case "impression:" inside text is not a header; a repeated header's texts are joined
    text = "FINDINGS: The impression: stable.\nFINDINGS: More.\n"
    assert parse_report(text).findings == "The impression: stable. More."
    assert parse_report(text).impression == ""
    assert parse_report("IMPRESSIONS:\n   No change.").impression == "No change."
    assert parse_report("").findings == ""


def test_load_grayscale_reads_16_bit_png_exactly(tmp_path):
    pixels = np.array([[0, 1000, 65535], [32768, 255, 12345]], dtype=np.uint16)
    Image.fromarray(pixels).save(tmp_path / "x.png")
    got = load_grayscale(tmp_path / "x.png")
    np.testing.assert_allclose(got, pixels.astype(np.float64) / 65535.0, rtol=0, atol=1e-7)


def test_load_dataset_mimic_uses_config(tmp_path):
    tree = write_mimic_tree(tmp_path / "mimic", gz=True)
    cfg = config_from_dict(
        {
            "dataset": {"kind": "mimic", "root": str(tree.root), "views": ["AP"], "label_policy": {"uncertain": 1}},
            "run": {"num_cases": 0, "seed": 0},
        }
    )
    s = load_dataset(cfg, progress=False)
    assert [c.case_id for c in s.cases] == tree.kept_ids("test", ("AP",))
    assert s.positives == tree.summary("test", ("AP",), policy={**DEFAULT_POLICY, "uncertain": 1})["positives"]
    assert [c.case_id for c in load_dataset(cfg, split="train", progress=False).cases] == tree.kept_ids("train", ("AP",))


def test_load_dataset_synthetic_writes_then_scans_the_same_way(tmp_path, monkeypatch):
    calls = []

    def ensure_dataset(root, synthetic):
        calls.append((root, synthetic))
        write_mimic_tree(root)
        return root

    monkeypatch.setitem(sys.modules, "xreal_bench.demo.synthetic", types.SimpleNamespace(ensure_dataset=ensure_dataset))
    cfg = config_from_dict({"dataset": {"kind": "synthetic", "root": str(tmp_path / "demo")}, "run": {"num_cases": 3}})
    s = load_dataset(cfg, progress=False)
    assert calls == [(Path(tmp_path / "demo"), cfg.dataset.synthetic)]
    assert len(s.cases) == 3 and s.available == 7
