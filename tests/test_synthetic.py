"""The synthetic demo tree: determinism, MIMIC-CXR-JPG layout, label/box/report consistency,
anatomy alignment, the stamp logic of ensure_dataset, and loading through scan_mimic."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import re
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from xreal_bench.config import SyntheticConfig
from xreal_bench.data.mimic import scan_mimic
from xreal_bench.data.reports import parse_report
from xreal_bench.demo import phantoms, synthetic
from xreal_bench.errors import UserFacingError
from xreal_bench.labels import CHEXPERT_LABELS
from xreal_bench.validation import ConfigError

SIZE = 128
N_SUBJECTS = 10

# Column lists as documented for MIMIC-CXR-JPG 2.0.0 and MS-CXR (REFERENCE.md section 1),
# written out independently of the module under test.
EXPECTED_HEADERS = {
    "mimic-cxr-2.0.0-split.csv.gz": ["dicom_id", "study_id", "subject_id", "split"],
    "mimic-cxr-2.0.0-chexpert.csv.gz": [
        "subject_id", "study_id", "Atelectasis", "Cardiomegaly", "Consolidation", "Edema",
        "Enlarged Cardiomediastinum", "Fracture", "Lung Lesion", "Lung Opacity", "No Finding",
        "Pleural Effusion", "Pleural Other", "Pneumonia", "Pneumothorax", "Support Devices",
    ],
    "mimic-cxr-2.0.0-metadata.csv.gz": [
        "dicom_id", "subject_id", "study_id", "PerformedProcedureStepDescription", "ViewPosition",
        "Rows", "Columns", "StudyDate", "StudyTime", "ProcedureCodeSequence_CodeMeaning",
        "ViewCodeSequence_CodeMeaning", "PatientOrientationCodeSequence_CodeMeaning",
    ],
}  # fmt: skip
EXPECTED_HEADERS["mimic-cxr-2.0.0-negbio.csv.gz"] = EXPECTED_HEADERS["mimic-cxr-2.0.0-chexpert.csv.gz"]
BOX_HEADER = ["dicom_id", "category_name", "label_text", "x", "y", "w", "h", "image_width", "image_height"]
#: Words a report must use for each drawn finding.
REPORT_WORDS = {
    "Atelectasis": "atelectasis",
    "Cardiomegaly": "cardiomegaly",
    "Consolidation": "consolidation",
    "Edema": "edema",
    "Lung Opacity": "opacity",
    "Pleural Effusion": "pleural effusion",
    "Pneumonia": "pneumonia",
    "Pneumothorax": "pneumothorax",
}


def read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    raw = path.read_bytes()
    text = gzip.decompress(raw).decode() if path.suffix == ".gz" else raw.decode()
    reader = csv.reader(io.StringIO(text))
    header = next(reader)
    return header, [dict(zip(header, row, strict=True)) for row in reader]


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> tuple[Path, synthetic.SyntheticInfo]:
    root = tmp_path_factory.mktemp("synthetic") / "demo"
    return root, synthetic.write_dataset(root, n_subjects=N_SUBJECTS, seed=3, image_size=SIZE)


@pytest.fixture(scope="module")
def tables(tree):
    root, _ = tree
    out = {name: read_rows(root / name)[1] for name in EXPECTED_HEADERS}
    out["boxes"] = read_rows(root / synthetic.BOXES_CSV)[1]
    return out


# --------------------------------------------------------------------------- determinism


def test_same_seed_gives_byte_identical_tree_and_other_seed_differs(tree, tmp_path):
    root, _ = tree
    again = tmp_path / "again" / "elsewhere"  # other folder names must not leak into any file
    synthetic.write_dataset(again, n_subjects=N_SUBJECTS, seed=3, image_size=SIZE)
    first, second = tree_digest(root), tree_digest(again)
    assert len(first) > 40
    assert first == second

    other = tmp_path / "other"
    synthetic.write_dataset(other, n_subjects=N_SUBJECTS, seed=4, image_size=SIZE)
    third = tree_digest(other)
    assert set(third) != set(first)  # other subject / study / dicom ids
    assert sorted(third.values()) != sorted(first.values())


def test_gzip_headers_carry_no_time_or_name(tree):
    root, _ = tree
    for name in EXPECTED_HEADERS:
        head = (root / name).read_bytes()[:10]
        assert head[:2] == b"\x1f\x8b"
        assert head[3] & 0x08 == 0, f"{name}: gzip FNAME flag set"
        assert int.from_bytes(head[4:8], "little") == 0, f"{name}: gzip mtime is not 0"


# --------------------------------------------------------------------------- layout


def test_csv_names_columns_and_order(tree):
    root, _ = tree
    for name, header in EXPECTED_HEADERS.items():
        assert read_rows(root / name)[0] == header
    assert read_rows(root / synthetic.BOXES_CSV)[0] == BOX_HEADER
    assert synthetic.LABEL_HEADER[2:] == CHEXPERT_LABELS


def test_path_layout_and_ids(tree, tables):
    root, info = tree
    split = tables["mimic-cxr-2.0.0-split.csv.gz"]
    for row in split:
        sub, study = row["subject_id"], row["study_id"]
        assert re.fullmatch(r"1\d{7}", sub) and re.fullmatch(r"5\d{7}", study)
        assert re.fullmatch(r"([0-9a-f]{8}-){4}[0-9a-f]{8}", row["dicom_id"])
        path = root / "files" / f"p{sub[:2]}" / f"p{sub}" / f"s{study}" / f"{row['dicom_id']}.jpg"
        assert path.is_file(), path
        assert (root / "files" / f"p{sub[:2]}" / f"p{sub}" / f"s{study}.txt").is_file()
    jpgs = {p.stem for p in (root / "files").rglob("*.jpg")}
    assert jpgs == {r["dicom_id"] for r in split}
    assert len(split) == info.n_images
    assert len({r["dicom_id"] for r in split}) == len(split)


def test_images_are_grayscale_jpegs_at_fixed_quality(tree, tables):
    root, _ = tree
    meta = {r["dicom_id"]: r for r in tables["mimic-cxr-2.0.0-metadata.csv.gz"]}
    reference = io.BytesIO()
    Image.new("L", (SIZE, SIZE), 128).save(reference, format="JPEG", quality=95)
    reference.seek(0)
    expected_tables = Image.open(reference).quantization
    for path in sorted((root / "files").rglob("*.jpg"))[:12]:
        with Image.open(path) as img:
            assert (img.format, img.mode, img.size) == ("JPEG", "L", (SIZE, SIZE))
            assert img.quantization == expected_tables
        assert meta[path.stem]["Rows"] == meta[path.stem]["Columns"] == str(SIZE)


def test_splits_are_by_subject(tables):
    split = tables["mimic-cxr-2.0.0-split.csv.gz"]
    by_subject = defaultdict(set)
    for row in split:
        by_subject[row["subject_id"]].add(row["split"])
    assert all(len(s) == 1 for s in by_subject.values())
    assert {next(iter(s)) for s in by_subject.values()} == {"train", "validate", "test"}


def test_default_size_plan_counts():
    """The default (120 subjects) plan: 250-350 images, >= 60 AP/PA test images, 60/15/25 split."""
    for seed in (0, 1):
        subjects = synthetic.plan_dataset(120, seed)
        per_split = Counter(s.split for s in subjects)
        assert per_split == {"train": 72, "validate": 18, "test": 30}
        images = [(st.split, im.view) for s in subjects for st in s.studies for im in st.images]
        assert 250 <= len(images) <= 350
        views = Counter(v for _, v in images)
        assert views["LATERAL"] > 0 and views[""] > 0 and views["AP"] > 0 and views["PA"] > 0
        assert sum(1 for sp, v in images if sp == "test" and v in ("AP", "PA")) >= 60
        assert max(len(s.studies) for s in subjects) > 1
        assert any(len(st.images) > 1 for s in subjects for st in s.studies)
        for split in ("train", "validate", "test"):
            studies = [st for s in subjects if s.split == split for st in s.studies]
            for name in phantoms.DRAWN_FINDINGS:
                positive = sum(name in st.findings for st in studies)
                assert 0 < positive < len(studies), (split, name)
            assert any(not st.findings for st in studies)  # "No Finding" studies in every split


def test_plan_rejects_too_few_subjects():
    with pytest.raises(ValueError, match="at least 4"):
        synthetic.plan_dataset(3, 0)


def test_metadata_values(tables):
    rows = tables["mimic-cxr-2.0.0-metadata.csv.gz"]
    views = Counter(r["ViewPosition"] for r in rows)
    assert set(views) <= {"AP", "PA", "LATERAL", ""}
    meaning = {"AP": "antero-posterior", "PA": "postero-anterior", "LATERAL": "lateral", "": ""}
    for r in rows:
        assert r["ViewCodeSequence_CodeMeaning"] == meaning[r["ViewPosition"]]
        assert re.fullmatch(r"21\d{6}", r["StudyDate"]) and re.fullmatch(r"\d{6}\.\d{3}", r["StudyTime"])
        assert r["PerformedProcedureStepDescription"].startswith("CHEST (")


# --------------------------------------------------------------------------- labels, boxes, reports


def test_labels_boxes_and_reports_agree(tree, tables):
    root, _ = tree
    chexpert = {r["study_id"]: r for r in tables["mimic-cxr-2.0.0-chexpert.csv.gz"]}
    negbio = {r["study_id"]: r for r in tables["mimic-cxr-2.0.0-negbio.csv.gz"]}
    meta = {r["dicom_id"]: r for r in tables["mimic-cxr-2.0.0-metadata.csv.gz"]}
    boxes = defaultdict(list)
    for b in tables["boxes"]:
        boxes[b["dicom_id"]].append(b)
    studies = defaultdict(list)
    for row in tables["mimic-cxr-2.0.0-split.csv.gz"]:
        studies[(row["subject_id"], row["study_id"])].append(row["dicom_id"])
    assert set(chexpert) == {s for _, s in studies} == set(negbio)

    for (sub, study), dicoms in studies.items():
        labels = chexpert[study]
        assert {labels[c] for c in CHEXPERT_LABELS} <= {"1.0", "0.0", "-1.0", ""}
        drawn = {c for c in CHEXPERT_LABELS if labels[c] == "1.0"} - {"No Finding"}
        assert drawn <= set(phantoms.DRAWN_FINDINGS)
        assert (labels["No Finding"] == "1.0") == (not drawn)
        assert {c for c in CHEXPERT_LABELS if negbio[study][c] == "1.0"} == {c for c in CHEXPERT_LABELS if labels[c] == "1.0"}
        for dicom in dicoms:
            categories = {b["category_name"] for b in boxes[dicom]}
            if meta[dicom]["ViewPosition"] == "LATERAL":
                assert not categories and not (root / "anatomy" / f"{dicom}.png").exists()
            else:
                assert categories == drawn, (study, dicom)
                assert (root / "anatomy" / f"{dicom}.png").is_file()
        report = (root / "files" / f"p{sub[:2]}" / f"p{sub}" / f"s{study}.txt").read_text()
        sections = parse_report(report)
        assert sections.findings or sections.impression
        for text in (sections.findings, sections.impression):
            for name in drawn if text else ():
                assert REPORT_WORDS[name] in text.lower(), (study, name, text)
        for b in (b for d in dicoms for b in boxes[d]):
            assert b["label_text"].lower() in report.replace("\n ", " ").lower()


def test_uncertain_only_for_undrawn_findings():
    """-1.0 marks hedged, NOT drawn findings (so policy uncertain->0 matches the pixels);
    0.0 marks findings the report negates, never one the image contradicts."""
    subjects = synthetic.plan_dataset(120, 0)
    seen = 0
    for s in subjects:
        for st in s.studies:
            text = synthetic.describe_study(st, None, ())
            for name, value in text.chexpert.items():
                if value == "-1.0":
                    seen += 1
                    assert name not in st.findings
                    assert synthetic.HEDGES[name] in text.report.replace("\n ", " ")
                if value == "0.0":
                    assert synthetic.NEGATIONS[name] in text.report.replace("\n ", " ")
                    assert not synthetic.CONTRADICTS.get(name, set()) & set(st.findings)
    assert seen >= 5


def test_boxes_lie_on_the_named_side_inside_the_image(tree, tables):
    root, _ = tree
    for b in tables["boxes"]:
        x, y, w, h = (int(b[k]) for k in "xywh")
        assert int(b["image_width"]) == int(b["image_height"]) == SIZE
        assert 0 <= x and 0 <= y and w > 0 and h > 0 and x + w <= SIZE and y + h <= SIZE
        centre = x + w / 2
        text = b["label_text"].lower()
        # the patient's left is on the image's right in a frontal radiograph
        if re.search(r"\bleft\b", text):
            assert centre > SIZE / 2, b
        if re.search(r"\bright\b", text):
            assert centre < SIZE / 2, b
        anatomy = np.asarray(Image.open(root / "anatomy" / f"{b['dicom_id']}.png"))
        inside = anatomy[y : y + h, x : x + w]
        if b["category_name"] == "Cardiomegaly":
            assert (inside == 3).mean() > 0.5
        else:
            assert np.isin(inside, (1, 2)).mean() > 0.2  # lung findings sit on a lung


def test_anatomy_maps_align_with_images(tree, tables):
    root, _ = tree
    meta = {r["dicom_id"]: r for r in tables["mimic-cxr-2.0.0-metadata.csv.gz"]}
    split = {r["dicom_id"]: r for r in tables["mimic-cxr-2.0.0-split.csv.gz"]}
    maps = sorted((root / "anatomy").glob("*.png"))
    assert {p.stem for p in maps} == {d for d, r in meta.items() if r["ViewPosition"] != "LATERAL"}
    for path in maps:
        anatomy = np.asarray(Image.open(path))
        assert anatomy.dtype == np.uint8 and anatomy.shape == (SIZE, SIZE)
        assert set(np.unique(anatomy)) == {0, 1, 2, 3, 4}
        cols = np.broadcast_to(np.arange(SIZE)[None, :], anatomy.shape)
        assert cols[anatomy == 1].mean() > SIZE / 2 > cols[anatomy == 2].mean()  # patient's left = image right
        row = split[path.stem]
        jpg = root / "files" / f"p{row['subject_id'][:2]}" / f"p{row['subject_id']}" / f"s{row['study_id']}" / f"{path.stem}.jpg"
        image = np.asarray(Image.open(jpg), dtype=np.float32) / 255
        lungs = image[np.isin(anatomy, (1, 2))].mean()
        assert image[anatomy == 3].mean() > lungs + 0.15
        spine = np.zeros_like(anatomy, bool)
        mid = int(round(np.flatnonzero(np.isin(anatomy, (1, 2)).any(axis=0))[[0, -1]].mean()))
        spine[: SIZE // 3, mid - 2 : mid + 3] = True
        assert image[spine & (anatomy == 0)].mean() > lungs + 0.15


def test_cardiomegaly_means_ctr_above_half(tree, tables):
    root, _ = tree
    chexpert = {r["study_id"]: r for r in tables["mimic-cxr-2.0.0-chexpert.csv.gz"]}
    study_of = {r["dicom_id"]: r["study_id"] for r in tables["mimic-cxr-2.0.0-split.csv.gz"]}
    ratios = {True: [], False: []}
    for path in (root / "anatomy").glob("*.png"):
        anatomy = np.asarray(Image.open(path))
        heart = np.flatnonzero((anatomy == 3).any(axis=0))
        lungs = np.flatnonzero(np.isin(anatomy, (1, 2)).any(axis=0))
        ctr = (heart[-1] - heart[0] + 1) / (lungs[-1] - lungs[0] + 1)
        ratios[chexpert[study_of[path.stem]]["Cardiomegaly"] == "1.0"].append(ctr)
    assert ratios[True] and ratios[False]
    assert min(ratios[True]) > 0.5 > max(ratios[False])


# --------------------------------------------------------------------------- the loader


def test_tree_loads_through_scan_mimic(tree, tables):
    root, info = tree
    meta = {r["dicom_id"]: r for r in tables["mimic-cxr-2.0.0-metadata.csv.gz"]}
    chexpert = {r["study_id"]: r for r in tables["mimic-cxr-2.0.0-chexpert.csv.gz"]}
    for split in ("train", "validate", "test"):
        scan = scan_mimic(root, split=split, progress=False)
        assert scan.missing == [] and scan.corrupt == []
        expected = {
            r["dicom_id"]
            for r in tables["mimic-cxr-2.0.0-split.csv.gz"]
            if r["split"] == split and meta[r["dicom_id"]]["ViewPosition"] in ("AP", "PA")
        }
        assert {c.case_id for c in scan.cases} == expected
        assert len(scan.cases) == info.frontal[split]
        assert scan.with_report == len(scan.cases)
        for case in scan.cases:
            row = chexpert[case.study_id]
            assert case.labels == tuple(1 if row[c] == "1.0" else 0 for c in CHEXPERT_LABELS)
    every = scan_mimic(root, split="test", views=("AP", "PA", "LATERAL", "UNKNOWN"), progress=False)
    assert len(every.cases) == info.images["test"]


# --------------------------------------------------------------------------- ensure / atomicity


def test_ensure_dataset_rewrites_only_when_the_stamp_changes(tmp_path, monkeypatch):
    root = tmp_path / "data"
    cfg = SyntheticConfig(n_subjects=4, seed=0, image_size=64)
    assert synthetic.ensure_dataset(root, cfg) == root
    stamp = json.loads((root / synthetic.STAMP_NAME).read_text())
    assert stamp["seed"] == 0 and stamp["generator_version"] == synthetic.GENERATOR_VERSION
    marker = root / "marker"
    marker.write_text("kept while the stamp matches")

    synthetic.ensure_dataset(root, cfg)
    assert marker.exists()

    synthetic.ensure_dataset(root, SyntheticConfig(n_subjects=4, seed=1, image_size=64))
    assert not marker.exists()
    assert json.loads((root / synthetic.STAMP_NAME).read_text())["seed"] == 1

    marker.write_text("x")
    monkeypatch.setattr(synthetic, "GENERATOR_VERSION", "test-bump")
    synthetic.ensure_dataset(root, SyntheticConfig(n_subjects=4, seed=1, image_size=64))
    assert not marker.exists()
    assert json.loads((root / synthetic.STAMP_NAME).read_text())["generator_version"] == "test-bump"
    assert [p.name for p in tmp_path.iterdir()] == ["data"]  # no temp folders left behind


def test_interrupted_write_leaves_nothing_acceptable(tmp_path, monkeypatch):
    root = tmp_path / "data"
    cfg = SyntheticConfig(n_subjects=4, seed=0, image_size=64)

    def crash(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(synthetic, "write_gzip", crash)
    with pytest.raises(KeyboardInterrupt):
        synthetic.ensure_dataset(root, cfg)
    assert not root.exists()
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()

    stale = tmp_path / ".data.partial-999999999"  # left by a killed process (no such pid)
    (stale / "files").mkdir(parents=True)
    synthetic.ensure_dataset(root, cfg)
    assert (root / synthetic.STAMP_NAME).is_file()
    assert not stale.exists()


def test_refuses_to_overwrite_a_foreign_folder(tmp_path):
    root = tmp_path / "mimic"
    root.mkdir()
    (root / "mimic-cxr-2.0.0-split.csv.gz").write_bytes(b"real data")
    with pytest.raises(UserFacingError, match="not a synthetic demo tree"):
        synthetic.ensure_dataset(root, SyntheticConfig(n_subjects=4))
    assert (root / "mimic-cxr-2.0.0-split.csv.gz").read_bytes() == b"real data"


def test_bad_parameters_are_rejected(tmp_path):
    with pytest.raises(ConfigError, match="n_subjects"):
        synthetic.write_dataset(tmp_path / "x", n_subjects=2)
    with pytest.raises(ConfigError, match="image_size"):
        synthetic.write_dataset(tmp_path / "x", n_subjects=4, image_size=16)
    assert not (tmp_path / "x").exists()


# --------------------------------------------------------------------------- lung shapes


def test_missing_torchxrayvision_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(phantoms.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserFacingError, match="pip install torchxrayvision"):
        phantoms.lung_zip_path()


def test_lung_templates_from_real_masks():
    _, names = phantoms.lung_archive()
    assert len(names) > 400
    usable = [phantoms.lung_template(i) for i in range(40)]
    assert sum(t is not None for t in usable) >= 25
    for t in filter(None, usable):
        assert t.image_left.shape == t.image_right.shape == (phantoms.TEMPLATE_SIDE,) * 2
        cols = np.arange(phantoms.TEMPLATE_SIDE)
        left_x = (t.image_left.sum(axis=0) * cols).sum() / t.image_left.sum()
        right_x = (t.image_right.sum(axis=0) * cols).sum() / t.image_right.sum()
        assert left_x < right_x


@pytest.mark.parametrize("fmt, mode", [("PNG", "L"), ("PNG", "RGB"), ("JPEG", "L"), ("JPEG", "RGB")])
def test_mask_decoding_and_splitting(fmt, mode):
    mask = np.zeros((200, 240), np.uint8)
    mask[30:170, 30:105] = 255  # image-left lung
    mask[30:180, 135:215] = 255  # image-right lung, larger
    mask[60:70, 60:70] = 0  # a hole: filled
    buf = io.BytesIO()
    Image.fromarray(mask).convert(mode).save(buf, format=fmt)
    decoded = phantoms.decode_mask(buf.getvalue())
    assert decoded.shape == (160 * 200 // 240, 160)
    t = phantoms.template_from_mask("synthetic", decoded)
    assert t is not None
    assert t.aspect == pytest.approx(150 / 185, abs=0.03)
    assert t.image_left[26:33, 22:27].min() == 1.0  # hole filled
    assert t.image_left.mean() < t.image_right.mean()

    touching = mask.copy()
    touching[80:100, 105:135] = 255  # a bridge: one component, split at the narrowest column
    t2 = phantoms.template_from_mask("bridge", touching > 127)
    assert t2 is not None and t2.image_left.mean() > 0.3 and t2.image_right.mean() > 0.3
    assert phantoms.template_from_mask("empty", np.zeros((100, 100), bool)) is None
    single = np.zeros((100, 100), bool)
    single[20:80, 10:40] = True
    assert phantoms.template_from_mask("one lung", single) is None
