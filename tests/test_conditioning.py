"""Conditioning: anatomy maps (folder, cached segmenter), boxes (CSV, anatomy rule, random),
masks, prompts, and prepare_case_facts() errors — with hand-computed expectations."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from xreal_bench.conditioning import ConditioningError, PreparedCases, available_inputs, prepare_case_facts
from xreal_bench.conditioning.anatomy import AnatomyError
from xreal_bench.conditioning.boxes import BoxError, read_box_csv
from xreal_bench.config import config_from_dict
from xreal_bench.data.mimic import DatasetScan
from xreal_bench.errors import UserFacingError
from xreal_bench.imaging import load_grayscale, to_square
from xreal_bench.labels import CHEXPERT_LABELS
from xreal_bench.types import Box, Case

R = 128  # conditioning resolution of the rule map below
# Hand-made anatomy map at 128 px. Image left = patient's right lung (2), image right =
# patient's left lung (1); the heart (3) is painted over both lungs; the aorta (4) sits above it.
LEFT_LUNG = (72, 20, 112, 100)  # x0, y0, x1, y1 (exclusive ends)
RIGHT_LUNG = (16, 20, 56, 100)
HEART = (50, 60, 80, 100)
AORTA = (60, 30, 70, 40)


def rule_map() -> np.ndarray:
    m = np.zeros((R, R), np.uint8)
    for value, (x0, y0, x1, y1) in ((1, LEFT_LUNG), (2, RIGHT_LUNG), (3, HEART), (4, AORTA)):
        m[y0:y1, x0:x1] = value
    return m


def frac(x0, y0, x1, y1, size=R):
    return pytest.approx((x0 / size, y0 / size, x1 / size, y1 / size), abs=1e-9)


def coords(box: Box):
    return (box.x0, box.y0, box.x1, box.y1)


def labels_of(*positives: str) -> tuple[int, ...]:
    return tuple(int(name in positives) for name in CHEXPERT_LABELS)


def write_image(path: Path, height: int, width: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (height, width), dtype=np.uint8)).save(path)
    return path


def make_case(root: Path, case_id: str, positives=(), *, height=R, width=R, findings="", impression="", seed=0) -> Case:
    path = write_image(root / "img" / f"{case_id}.png", height, width, seed)
    return Case(case_id, path, "10000001", "50000001", "PA", labels_of(*positives), findings, impression)


def make_scan(root: Path, cases, image_sizes=None) -> DatasetScan:
    return DatasetScan(root, list(cases), [], [], {}, {}, {}, "fp", image_sizes=image_sizes or {})


def make_cfg(tmp_path, run=None, dataset=None, metrics=None, **conditioning) -> object:
    conditioning.setdefault("resolution", R)
    return config_from_dict(
        {
            "dataset": {"kind": "mimic", "root": str(tmp_path), **(dataset or {})},
            "conditioning": conditioning,
            "run": {"out": str(tmp_path / "out"), **(run or {})},
            "metrics": metrics or {},
        }
    )


def builder(cfg, cases, tmp_path, needs, **kw) -> PreparedCases:
    scan = make_scan(tmp_path, cases, kw.pop("image_sizes", None))
    return prepare_case_facts(cfg, scan, reads=set(needs), progress=False, **kw)


def save_map(folder: Path, case_id: str, pixels: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(folder / f"{case_id}.png")


# ----------------------------------------------------------------- folder anatomy maps


@pytest.mark.parametrize(
    "stored",
    [
        pytest.param(lambda m: m, id="values-0-4"),
        pytest.param(lambda m: np.array([0, 64, 128, 192, 255], np.uint8)[m], id="xreal-x64"),
        pytest.param(lambda m: np.kron(m, np.ones((2, 2), np.uint8)), id="256px-resized"),
        pytest.param(
            lambda m: np.vstack([np.full((11, R), 3, np.uint8), m, np.full((11, R), 4, np.uint8)]), id="150x128-cropped"
        ),
    ],
)
def test_folder_maps_decode_to_labels(tmp_path, stored):
    case = make_case(tmp_path, "c1")
    save_map(tmp_path / "maps", "c1", stored(rule_map()))
    cfg = make_cfg(tmp_path, anatomy="folder", anatomy_dir=str(tmp_path / "maps"))
    cond = builder(cfg, [case], tmp_path, {"anatomy"}).build(case, 0, seed=1)
    assert cond.anatomy.dtype == np.uint8 and cond.anatomy.shape == (R, R)
    np.testing.assert_array_equal(cond.anatomy, rule_map())
    assert cond.pathology_mask is None and cond.mask_source == "none"


def test_folder_map_errors(tmp_path):
    cases = [make_case(tmp_path, f"c{i}") for i in range(3)]
    maps = tmp_path / "maps"
    save_map(maps, "c0", rule_map())
    cfg = make_cfg(tmp_path, anatomy="folder", anatomy_dir=str(maps))
    with pytest.raises(RuntimeError, match="prepare"):  # nothing prepared for pathology
        builder(cfg, cases[:1], tmp_path, {"anatomy"}).build(cases[0], 0, 0, reads={"pathology"})
    with pytest.raises(AnatomyError) as err:
        builder(cfg, cases, tmp_path, {"anatomy"})
    assert "2 of 3 cases have no anatomy map" in str(err.value) and str(maps) in str(err.value)
    assert "c1" in str(err.value) and "c2" in str(err.value)

    bad = rule_map()
    bad[0, 0] = 7
    for case in cases:
        save_map(maps, case.case_id, bad)
    with pytest.raises(AnatomyError, match=r"c0\.png: unexpected label values \[7\]"):
        builder(cfg, cases, tmp_path, {"anatomy"})

    missing_dir = make_cfg(tmp_path, anatomy="folder", anatomy_dir=str(tmp_path / "none"))
    with pytest.raises(AnatomyError, match="anatomy folder not found"):
        builder(missing_dir, cases, tmp_path, {"anatomy"})


def test_folder_maps_are_read_once_per_case(tmp_path, monkeypatch):
    from xreal_bench.conditioning import anatomy

    reads = []
    original = anatomy.read_label_map
    monkeypatch.setattr(anatomy, "read_label_map", lambda *a, **k: reads.append(a[0]) or original(*a, **k))
    cases = [make_case(tmp_path, f"c{i}") for i in range(3)]
    for case in cases:
        save_map(tmp_path / "maps", case.case_id, rule_map())
    b = builder(make_cfg(tmp_path, anatomy="folder", anatomy_dir=str(tmp_path / "maps")), cases, tmp_path, {"anatomy"})
    assert len(reads) == 3  # validated in prepare
    first = b.build(cases[1], 0, seed=1)
    first.anatomy[:] = 0  # a generator scribbling on its copy must not change the next sample
    again = b.build(cases[1], 1, seed=2)
    np.testing.assert_array_equal(again.anatomy, rule_map())
    # a second generator: nothing is read again
    assert b.build(cases[2], 0, seed=3, reads={"anatomy", "labels"}).anatomy is not None
    assert len(reads) == 3


# ----------------------------------------------------------------- segmenter + cache


class CountingSegmenter:
    """Left lung = bright pixels in the image's right half; right lung = left half; heart and
    aorta overlap them (checks the painting priority)."""

    name = "counting-fake"

    def __init__(self, weights_hash: str = "a" * 64):
        self.weights_hash = weights_hash
        self.calls = 0
        self.inputs: list[torch.Tensor] = []

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.inputs.append(images.clone())
        return fake_masks(images)


def fake_masks(images: torch.Tensor) -> torch.Tensor:
    b, _, h, w = images.shape
    masks = torch.zeros(b, 4, h, w, dtype=torch.bool)
    bright = images[:, 0] > 0.5
    masks[:, 0, :, w // 2 :] = bright[:, :, w // 2 :]
    masks[:, 1, :, : w // 2] = True
    masks[:, 2, h // 2 :, w // 4 : 3 * w // 4] = True
    masks[:, 3, h // 2 : h // 2 + 8, w // 2 - 4 : w // 2 + 4] = True
    return masks


def expected_map(image: np.ndarray) -> np.ndarray:
    """Hand statement of the priority: aorta > heart > right lung > left lung."""
    h, w = image.shape
    out = np.zeros((h, w), np.uint8)
    out[:, w // 2 :][image[:, w // 2 :] > 0.5] = 1
    out[:, : w // 2] = 2
    out[h // 2 :, w // 4 : 3 * w // 4] = 3
    out[h // 2 : h // 2 + 8, w // 2 - 4 : w // 2 + 4] = 4
    return out


def test_segmenter_maps_are_cached_by_image_and_weights(tmp_path):
    res = 64
    cases = [make_case(tmp_path, f"c{i}", height=90, width=70, seed=i) for i in range(3)]
    cfg = make_cfg(tmp_path, anatomy="pspnet", resolution=res, cache_dir=str(tmp_path / "cache"), metrics={"batch_size": 2})

    def prepared(seg):
        return builder(cfg, cases, tmp_path, {"anatomy"}, segmenter_factory=lambda: seg)

    seg = CountingSegmenter()
    b = prepared(seg)
    assert seg.calls == 2 and sum(x.shape[0] for x in seg.inputs) == 3  # batches of 2 + 1
    fed = torch.cat(seg.inputs)[:, 0].numpy()
    for i, case in enumerate(cases):
        squared = to_square(load_grayscale(case.image_path), res, "crop")
        np.testing.assert_array_equal(fed[i], squared)
        cond = b.build(case, 0, seed=123)
        np.testing.assert_array_equal(cond.anatomy, expected_map(squared))
        sha = hashlib.sha256(case.image_path.read_bytes()).hexdigest()
        assert (tmp_path / "cache/anatomy" / ("a" * 16) / f"crop-{res}" / f"{sha}.png").is_file()
    first_maps = [b.build(c, 0, 0).anatomy for c in cases]
    assert {3, 4} <= set(np.unique(first_maps[0]).tolist())

    second = CountingSegmenter()
    b2 = prepared(second)
    assert second.calls == 0  # every map read from the cache
    for case, before in zip(cases, first_maps):
        np.testing.assert_array_equal(b2.build(case, 0, 0).anatomy, before)

    write_image(cases[1].image_path, 90, 70, seed=99)  # changed content -> new key
    third = CountingSegmenter()
    prepared(third)
    assert third.calls == 1 and third.inputs[0].shape[0] == 1

    other_weights = CountingSegmenter(weights_hash="b" * 64)
    prepared(other_weights)
    assert sum(x.shape[0] for x in other_weights.inputs) == 3


def test_segmenter_with_wrong_output_is_refused(tmp_path):
    class Bad(CountingSegmenter):
        def __call__(self, images):
            return torch.zeros(images.shape[0], 3, 8, 8, dtype=torch.bool)

    case = make_case(tmp_path, "c0")
    cfg = make_cfg(tmp_path, anatomy="pspnet", cache_dir=str(tmp_path / "cache"))
    with pytest.raises(TypeError, match=r"expected a bool tensor of shape \[1,4,H,W\]"):
        builder(cfg, [case], tmp_path, {"anatomy"}, segmenter_factory=Bad)


def test_default_segmenter_never_falls_back_without_weights(tmp_path):
    case = make_case(tmp_path, "c0")
    cfg = make_cfg(tmp_path, anatomy="pspnet", cache_dir=str(tmp_path / "cache"))
    assert "anatomy" in available_inputs(cfg, make_scan(tmp_path, [case]))
    with pytest.raises(UserFacingError):
        builder(cfg, [case], tmp_path, {"anatomy"})
    assert not (tmp_path / "cache" / "anatomy").exists()


# ----------------------------------------------------------------- boxes from CSVs


def write_csv(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


MSCXR_HEADER = "dicom_id,category_name,label_text,path,x,y,w,h,image_width,image_height"


@pytest.mark.parametrize(
    "square, expected_a, expected_b",
    [
        # A: 200 wide x 100 high, box x 60..80, y 10..40. crop keeps x 50..150 (side 100); pad adds 50 rows on top (side 200).
        # B: 100 wide x 200 high, boxes given for 200x400 (halved first): x 20..50, y 70..90.
        ("crop", (0.1, 0.1, 0.3, 0.4), (0.2, 0.2, 0.5, 0.4)),
        ("pad", (0.3, 0.3, 0.4, 0.45), (0.35, 0.35, 0.5, 0.45)),
        # stretch: x / width, y / height (A: x 60..80 of 200, y 10..40 of 100; B: x 20..50 of 100, y 70..90 of 200)
        ("stretch", (0.3, 0.1, 0.4, 0.4), (0.2, 0.35, 0.5, 0.45)),
    ],
)
def test_ms_cxr_boxes_follow_the_square_geometry(tmp_path, square, expected_a, expected_b):
    a = make_case(tmp_path, "A", ("Pleural Effusion",), height=100, width=200)
    b = make_case(tmp_path, "B", ("Cardiomegaly",), height=200, width=100)
    csv = write_csv(
        tmp_path / "mscxr.csv",
        MSCXR_HEADER,
        [
            "A,pleural_EFFUSION,Left effusion,x.jpg,60,10,20,30,200,100",
            "B,Cardiomegaly,Big heart,x.jpg,40,140,60,40,200,400",
            "A,Nodule/Mass,A nodule,x.jpg,60,10,20,30,200,100",
        ],
    )
    cfg = make_cfg(tmp_path, anatomy="none", boxes_csv=str(csv), box_fallback="none", resolution=64, dataset={"square": square})
    bld = builder(cfg, [a, b], tmp_path, {"pathology"})
    ca, cb = bld.build(a, 0, 1), bld.build(b, 0, 1)
    assert ca.mask_source == cb.mask_source == "boxes_csv"
    assert [x.label for x in ca.boxes] == ["Pleural Effusion"] and cb.boxes[0].label == "Cardiomegaly"
    assert coords(ca.boxes[0]) == pytest.approx(expected_a)
    assert coords(cb.boxes[0]) == pytest.approx(expected_b)
    assert any("'Nodule/Mass' is not a CheXpert label" in n for n in ca.notes)
    if square == "crop":  # box (0.1, 0.1, 0.3, 0.4) at 64 px: x 6.4..19.2 -> 6..20, y 6.4..25.6 -> 6..26
        want = np.zeros((64, 64), bool)
        want[6:26, 6:20] = True
        np.testing.assert_array_equal(ca.pathology_mask, want)


def test_boxes_outside_the_crop_are_clipped_or_dropped_with_notes(tmp_path):
    a = make_case(tmp_path, "A", ("Atelectasis",), height=100, width=200)
    csv = write_csv(
        tmp_path / "b.csv",
        MSCXR_HEADER,
        ["A,Atelectasis,p,x,30,10,40,20,200,100", "A,Atelectasis,p,x,0,0,40,10,200,100"],
    )
    cfg = make_cfg(tmp_path, anatomy="none", boxes_csv=str(csv), box_fallback="none", resolution=64)
    cond = builder(cfg, [a], tmp_path, {"pathology"}).build(a, 0, 0)
    # x 30..70 in the crop x 50..150 -> (-0.2, 0.2) -> clipped to (0, 0.2); x 0..40 -> outside
    assert [coords(x) for x in cond.boxes] == [pytest.approx((0.0, 0.1, 0.2, 0.3))]
    assert any("clipped" in n and "-0.200" in n for n in cond.notes)
    assert any("outside the image; dropped" in n for n in cond.notes)
    want = np.zeros((64, 64), bool)
    want[6:20, 0:13] = True  # y 6.4..19.2, x 0..12.8
    np.testing.assert_array_equal(cond.pathology_mask, want)


def test_vindr_boxes_use_metadata_size_else_the_image_header(tmp_path):
    a = make_case(tmp_path, "A", ("Pleural Effusion",), height=100, width=200)
    b = make_case(tmp_path, "B", ("Pleural Effusion",), height=100, width=200)
    csv = write_csv(
        tmp_path / "vindr.csv",
        "image_id,class_name,x_min,y_min,x_max,y_max,rad_id",
        ["A,Pleural effusion,120,20,160,80,R1", "B,Pleural effusion,60,10,80,40,R2"],
    )
    cfg = make_cfg(tmp_path, anatomy="none", boxes_csv=str(csv), boxes_format="vindr", box_fallback="none")
    # metadata says A's original is 400 x 200 (Columns x Rows): its box is halved; B has no metadata
    bld = builder(cfg, [a, b], tmp_path, {"pathology"}, image_sizes={"A": (200, 400)})
    assert coords(bld.build(a, 0, 0).boxes[0]) == pytest.approx((0.1, 0.1, 0.3, 0.4))
    assert coords(bld.build(b, 0, 0).boxes[0]) == pytest.approx((0.1, 0.1, 0.3, 0.4))


def test_box_csv_column_mapping_and_errors(tmp_path):
    csv = write_csv(tmp_path / "odd.csv", "DICOM,finding,bx,by,bw,bh", ["A,Edema,1,2,3,4"])
    with pytest.raises(BoxError) as err:
        read_box_csv(csv, "ms-cxr")
    assert "case_id (dicom_id or image_id)" in str(err.value) and "DICOM" in str(err.value)
    table = read_box_csv(
        csv, "ms-cxr", columns={"case_id": "DICOM", "category": "finding", "x": "bx", "y": "by", "w": "bw", "h": "bh"}
    )
    raw = table.boxes["A"][0]
    assert (raw.category, raw.x0, raw.y0, raw.x1, raw.y1, raw.ref_width) == ("Edema", 1.0, 2.0, 4.0, 6.0, None)
    with pytest.raises(BoxError, match="box CSV not found"):
        read_box_csv(tmp_path / "nope.csv")
    bad = write_csv(tmp_path / "bad.csv", MSCXR_HEADER, ["A,Edema,p,x,1,two,3,4,10,10"])
    with pytest.raises(BoxError, match="non-numeric coordinate"):
        read_box_csv(bad)


# ----------------------------------------------------------------- fallback rules


def rule_builder(tmp_path, cases, fallback="anatomy", run=None):
    for case in cases:
        save_map(tmp_path / "maps", case.case_id, rule_map())
    cfg = make_cfg(tmp_path, anatomy="folder", anatomy_dir=str(tmp_path / "maps"), box_fallback=fallback, run=run)
    return builder(cfg, cases, tmp_path, {"pathology"})


THIRD = 80 / 3  # lung height 80 px


@pytest.mark.parametrize(
    "positives, report, expected",
    [
        (("Cardiomegaly",), "", [HEART]),
        (("Enlarged Cardiomediastinum",), "", [(50, 30, 80, 100)]),  # heart and aorta
        (("Pleural Effusion",), "Small left pleural effusion.", [(72, 100 - THIRD, 112, 100)]),
        (("Pleural Effusion",), "Bilateral effusions.", [(72, 100 - THIRD, 112, 100), (16, 100 - THIRD, 56, 100)]),
        (("Pneumothorax",), "Right apical pneumothorax.", [(16, 20, 56, 20 + THIRD)]),
        (("Edema",), "Mild edema in the right lung.", [LEFT_LUNG, RIGHT_LUNG]),  # edema: always both
        (("Atelectasis",), "", [LEFT_LUNG, RIGHT_LUNG]),  # no side named: both lungs
        (
            ("Atelectasis", "Pleural Effusion"),
            "Left pleural effusion. Right lower lobe atelectasis.",
            [RIGHT_LUNG, (72, 100 - THIRD, 112, 100)],
        ),
    ],
)
def test_anatomy_rule_per_pathology(tmp_path, positives, report, expected):
    case = make_case(tmp_path, "c0", positives, impression=report)
    cond = rule_builder(tmp_path, [case]).build(case, 0, seed=3)
    assert cond.mask_source == "anatomy_rule"
    assert [coords(b) for b in cond.boxes] == [frac(*e) for e in expected]
    want = np.zeros((R, R), bool)
    for b in cond.boxes:
        x0, y0, x1, y1 = b.pixels(R)
        want[y0:y1, x0:x1] = True
    np.testing.assert_array_equal(cond.pathology_mask, want)


def test_no_pathology_means_no_box(tmp_path):
    case = make_case(tmp_path, "c0", ("Support Devices",))
    cond = rule_builder(tmp_path, [case]).build(case, 0, 0)
    assert cond.boxes == () and cond.mask_source == "none" and not cond.pathology_mask.any()
    assert cond.prompt == ""


def test_random_boxes_are_inside_the_lungs_and_independent_of_the_generation_seed(tmp_path):
    case = make_case(tmp_path, "c0", ("Atelectasis", "Pneumonia"))
    b = rule_builder(tmp_path, [case], fallback="random", run={"seed": 5, "samples_per_condition": 2})
    one = b.build(case, 0, seed=1)
    assert one.mask_source == "random" and len(one.boxes) == 2
    lx0, ly0, lx1, ly1 = 16 / R, 20 / R, 112 / R, 100 / R  # bounding box of both lungs
    for box in one.boxes:
        assert lx0 - 1e-9 <= box.x0 < box.x1 <= lx1 + 1e-9 and ly0 - 1e-9 <= box.y0 < box.y1 <= ly1 + 1e-9
        assert 0.25 * 96 / R - 1e-9 <= box.x1 - box.x0 <= 0.5 * 96 / R + 1e-9
        assert 0.25 * 80 / R - 1e-9 <= box.y1 - box.y0 <= 0.5 * 80 / R + 1e-9
    assert b.build(case, 0, seed=999).boxes == one.boxes
    again = rule_builder(
        tmp_path / "again", [make_case(tmp_path / "again", "c0", ("Atelectasis", "Pneumonia"))], "random", {"seed": 5}
    )
    assert again.build(case, 0, seed=42).boxes == one.boxes
    assert b.build(case, 1, seed=1).boxes != one.boxes
    other_run = rule_builder(tmp_path / "r6", [make_case(tmp_path / "r6", "c0", ("Atelectasis",))], "random", {"seed": 6})
    assert other_run.build(case, 0, seed=1).boxes[0] != one.boxes[0]


# ----------------------------------------------------------------- text, availability, errors


def test_prompt_and_report_section(tmp_path):
    case = make_case(tmp_path, "c0", ("Edema", "Cardiomegaly", "Support Devices"), findings="F.", impression="I.")
    only_findings = make_case(tmp_path, "c1", ("Edema",), findings="F only.")
    cfg = make_cfg(tmp_path, anatomy="none", prompt_separator=" | ")
    b = builder(cfg, [case, only_findings], tmp_path, {"labels", "text"})
    cond = b.build(case, 2, seed=77)
    assert (cond.prompt, cond.report, cond.seed, cond.sample_index) == ("Cardiomegaly | Edema", "I.", 77, 2)
    assert cond.labels == case.labels and cond.image_path == case.image_path and cond.view == "PA"
    assert cond.anatomy is None and cond.pathology_mask is None
    assert b.build(only_findings, 0, 0).report == "F only."
    findings_first = builder(make_cfg(tmp_path, anatomy="none", report_section="findings"), [case], tmp_path, {"text"})
    assert findings_first.build(case, 0, 0).report == "F."


def test_available_inputs_and_prepare_errors(tmp_path):
    with_text = make_case(tmp_path, "c0", ("Edema",), impression="Edema.")
    no_text = make_case(tmp_path, "c1", ("Edema",))
    cfg = make_cfg(tmp_path, anatomy="none")
    assert available_inputs(cfg, make_scan(tmp_path, [with_text, no_text])) == {"labels", "text", "image", "training"}
    with pytest.raises(ConditioningError) as err:
        builder(cfg, [with_text, no_text], tmp_path, {"labels", "anatomy", "pathology"})
    assert "anatomy: [conditioning].anatomy = 'none'" in str(err.value)
    assert "pathology: no [conditioning].boxes_csv" in str(err.value)
    with pytest.raises(ValueError, match="unknown input kind"):
        builder(cfg, [with_text, no_text], tmp_path, {"pixels"})
    b = builder(cfg, [with_text, no_text], tmp_path, {"text"})
    assert b.build(no_text, 0, 0).notes == ("no FINDINGS/IMPRESSION text for this case; report is empty",)

    silent = make_cfg(tmp_path, anatomy="folder")
    assert available_inputs(silent, make_scan(tmp_path, [no_text])) == {"labels", "image", "training"}
    with pytest.raises(ConditioningError) as err:
        builder(silent, [no_text], tmp_path, {"text", "anatomy"})
    assert "reports_root" in str(err.value) and "anatomy_dir is empty" in str(err.value)


def test_box_csv_gaps_need_a_fallback_source(tmp_path):
    a, b = make_case(tmp_path, "A", ("Edema",)), make_case(tmp_path, "B", ("Edema",))
    csv = write_csv(tmp_path / "m.csv", MSCXR_HEADER, [f"A,Edema,p,x,10,10,50,50,{R},{R}"])
    cfg = make_cfg(tmp_path, anatomy="none", boxes_csv=str(csv), box_fallback="anatomy")
    assert "pathology" in available_inputs(cfg, make_scan(tmp_path, [a, b]))
    with pytest.raises(ConditioningError, match=r"1 of 2 cases have no box in .*m\.csv"):
        builder(cfg, [a, b], tmp_path, {"pathology"})
    ok = builder(make_cfg(tmp_path, anatomy="none", boxes_csv=str(csv), box_fallback="none"), [a, b], tmp_path, {"pathology"})
    assert ok.build(b, 0, 0).mask_source == "none" and ok.build(b, 0, 0).boxes == ()
    assert coords(ok.build(a, 0, 0).boxes[0]) == frac(10, 10, 60, 60)


# ----------------------------------------------------------------- the synthetic demo set end to end


def test_synthetic_demo_conditions_use_its_ground_truth(tmp_path):
    import csv

    from xreal_bench.data.dataset import load_dataset

    root = tmp_path / "demo"
    cfg = config_from_dict(
        {
            "dataset": {"kind": "synthetic", "root": str(root), "synthetic": {"n_subjects": 8, "image_size": 64}},
            "conditioning": {"resolution": 64},
            "run": {"out": str(tmp_path / "out")},
        }
    )
    scan = load_dataset(cfg, progress=False)
    assert available_inputs(cfg, scan) == {"labels", "text", "anatomy", "pathology", "image", "training"}
    b = prepare_case_facts(cfg, scan, reads={"labels", "text", "anatomy", "pathology"}, progress=False)
    rows: dict[str, list[dict]] = {}
    with open(root / "ms-cxr-boxes.csv", newline="") as f:
        for row in csv.DictReader(f):
            rows.setdefault(row["dicom_id"], []).append(row)
    assert scan.cases and any(c.positives for c in scan.cases)
    for case in scan.cases:
        cond = b.build(case, 0, seed=5)
        stored = np.asarray(Image.open(root / "anatomy" / f"{case.case_id}.png"))
        np.testing.assert_array_equal(cond.anatomy, stored)
        assert {1, 2, 3} <= set(np.unique(cond.anatomy).tolist())
        assert cond.report in (case.impression, case.findings) and cond.report
        if not case.positives:
            assert cond.boxes == () and not cond.pathology_mask.any()
            continue
        assert cond.mask_source == "boxes_csv" and {x.label for x in cond.boxes} == set(case.positives)
        want = [
            (float(r["x"]) / float(r["image_width"]), float(r["y"]) / float(r["image_height"]),
             (float(r["x"]) + float(r["w"])) / float(r["image_width"]), (float(r["y"]) + float(r["h"])) / float(r["image_height"]))
            for r in rows[case.case_id]
        ]  # fmt: skip
        assert [coords(x) for x in cond.boxes] == [pytest.approx(w) for w in want]


def test_prepare_a_shard_segments_only_its_cases(tmp_path):
    cases = [make_case(tmp_path, f"c{i}", seed=i) for i in range(3)]
    cfg = make_cfg(tmp_path, anatomy="pspnet", resolution=64, cache_dir=str(tmp_path / "cache"))
    seg = CountingSegmenter()
    scan = make_scan(tmp_path, cases)
    b = prepare_case_facts(cfg, scan, reads={"anatomy"}, cases=cases[1:2], segmenter_factory=lambda: seg, progress=False)
    assert sum(x.shape[0] for x in seg.inputs) == 1
    assert b.build(cases[1], 0, 0).anatomy.shape == (64, 64)
    with pytest.raises(RuntimeError, match="no anatomy map prepared for case 'c0'"):
        b.build(cases[0], 0, 0)


# ----------------------------------------------------------------- purity


def same_condition(a, b) -> bool:
    """Field-by-field equality of two Conditions (arrays compared by value)."""
    for name in a.__dataclass_fields__:
        x, y = getattr(a, name), getattr(b, name)
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            if not (isinstance(x, np.ndarray) and isinstance(y, np.ndarray) and x.dtype == y.dtype and np.array_equal(x, y)):
                return False
        elif x != y:
            return False
    return True


def test_build_condition_is_a_pure_function_of_its_inputs(tmp_path):
    from xreal_bench.conditioning import ConditionSettings, build_condition

    cases = [
        make_case(tmp_path, "c0", ("Atelectasis", "Pleural Effusion"), impression="Left effusion."),
        make_case(tmp_path, "c1", ("Cardiomegaly",)),
        make_case(tmp_path, "c2"),
    ]
    reads_a = frozenset({"labels", "anatomy", "pathology", "text"})  # e.g. XReal
    reads_b = frozenset()  # e.g. noise
    prepared = rule_builder(tmp_path, cases, fallback="random", run={"seed": 3, "samples_per_condition": 2})
    order = [(c, k) for c in cases for k in range(2)]

    def build_all(items, reads):
        return {(c.case_id, k): prepared.build(c, k, seed=17, reads=reads) for c, k in items}

    first = build_all(order, reads_a)
    build_all(order, reads_b)  # another generator in between
    backwards = build_all(order[::-1], reads_a)
    assert all(same_condition(first[key], backwards[key]) for key in first)
    assert first[("c0", 0)].boxes != first[("c0", 1)].boxes  # random boxes differ per sample ...
    assert first[("c0", 0)].mask_source == "random" and first[("c0", 0)].anatomy is not None
    plain = prepared.build(cases[0], 0, seed=17, reads=reads_b)  # ... and a generator reading nothing gets none of it
    assert plain.anatomy is None and plain.pathology_mask is None and plain.boxes == () and plain.notes == ()
    assert plain.prompt == first[("c0", 0)].prompt and plain.labels == cases[0].labels

    # the pure function itself: same arguments -> equal Conditions, whatever ran before
    settings = ConditionSettings(resolution=R, prompt_separator=" + ")
    facts, label_map = prepared.facts["c0"], rule_map()

    def direct(reads):
        return build_condition(facts, sample_index=1, seed=5, reads=reads, anatomy=label_map, settings=settings)

    one = direct(reads_a)
    assert direct(reads_b).anatomy is None  # a call in between
    one.anatomy[:] = 0  # the caller scribbling on its copy changes nothing
    again = direct(reads_a)
    np.testing.assert_array_equal(again.anatomy, rule_map())
    assert again.prompt == "Atelectasis + Pleural Effusion" and again.boxes == first[("c0", 1)].boxes
    assert same_condition(again, direct(reads_a))
    with pytest.raises(RuntimeError, match="no anatomy map prepared"):
        build_condition(facts, sample_index=0, seed=5, reads={"anatomy"}, anatomy=None, settings=settings)
