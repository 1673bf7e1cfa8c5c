"""Damaged MIMIC-CXR-JPG inputs: every fault is one DatasetError naming the file and the line (or a
documented lenient reading with a note), never a traceback and never a silently wrong count."""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import zlib

import numpy as np
import pytest
from mimic_tree import did, write_mimic_tree
from PIL import Image

from xreal_bench.cli import main
from xreal_bench.data.mimic import DatasetError, scan_mimic
from xreal_bench.data.summary import format_summary, summarize
from xreal_bench.names import NAME_RULE

SPLIT = "mimic-cxr-2.0.0-split.csv"
META = "mimic-cxr-2.0.0-metadata.csv"
CHEXPERT = "mimic-cxr-2.0.0-chexpert.csv"


@pytest.fixture
def tree(tmp_path):
    return write_mimic_tree(tmp_path / "mimic")


@pytest.fixture
def gz_tree(tmp_path):
    return write_mimic_tree(tmp_path / "mimic", gz=True)


def scan(tree, **kw):
    return scan_mimic(tree.root, progress=False, **kw)


def error_of(tree, **kw) -> str:
    with pytest.raises(DatasetError) as err:
        scan(tree, **kw)
    return str(err.value)


def edit_lines(path, edit) -> list[str]:
    """Rewrite a plain CSV through ``edit(lines) -> lines`` (line 1 is ``lines[0]``)."""
    lines = edit(path.read_text().splitlines())
    path.write_text("\n".join(lines) + "\n")
    return lines


def line_of(path, needle: str) -> int:
    return next(i for i, text in enumerate(path.read_text().splitlines(), start=1) if needle in text)


# --- gzip damage ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [SPLIT, META, CHEXPERT])
def test_truncated_gzip_names_the_file_and_the_last_line(gz_tree, name):
    path = gz_tree.root / f"{name}.gz"
    full = gzip.decompress(path.read_bytes())
    packed = path.read_bytes()
    path.write_bytes(packed[: len(packed) * 2 // 3])
    readable = zlib.decompressobj(31).decompress(path.read_bytes())
    assert 0 < len(readable) < len(full)
    message = error_of(gz_tree)
    lines = readable.count(b"\n")
    assert message.startswith(f"{path}: truncated gzip file: the data ends after line {lines} ")
    assert f"({len(readable):,} bytes decompressed)" in message


def test_gzip_with_a_damaged_byte_or_checksum_is_named(gz_tree):
    path = gz_tree.root / f"{SPLIT}.gz"
    packed = bytearray(path.read_bytes())
    packed[-6] ^= 0xFF  # inside the CRC32 trailer
    path.write_bytes(bytes(packed))
    assert error_of(gz_tree).startswith(f"{path}: damaged gzip file: its checksum does not match")
    path.write_bytes(b"dicom_id,study_id\n")  # a plain CSV under a .gz name
    assert error_of(gz_tree).startswith(f"{path}: not a gzip file")


def test_truncated_gzip_through_the_cli_is_one_line(gz_tree, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = gz_tree.root / f"{META}.gz"
    path.write_bytes(path.read_bytes()[:-20])
    assert main(["data", "summary", "--root", str(gz_tree.root)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: truncated gzip file") and err.count("\n") == 1 and "Traceback" not in err


# --- malformed rows --------------------------------------------------------------------------------


def test_row_with_too_many_fields_names_the_line(tree):
    path = tree.root / SPLIT
    edit_lines(path, lambda lines: [*lines[:4], lines[4] + ",extra", *lines[5:]])
    assert error_of(tree) == f"{path}, line 5: 5 fields where the header has 4"


def test_unclosed_quote_names_the_line(tree):
    path = tree.root / META
    edit_lines(path, lambda lines: [*lines[:6], lines[6].replace("CHEST", '"CHEST', 1), *lines[7:]])
    assert error_of(tree) == f"{path}, line 7: a quote opened here is never closed"


def test_non_utf8_byte_names_the_line(tree):
    path = tree.root / CHEXPERT
    data = path.read_bytes().splitlines(keepends=True)
    data[2] = data[2].replace(b",", b",\xff", 1)
    path.write_bytes(b"".join(data))
    assert error_of(tree) == f"{path}, line 3: not UTF-8 text (byte 0xff)"


def test_empty_file_and_blank_lines(tree):
    path = tree.root / SPLIT
    original = path.read_text()
    path.write_text("")
    assert error_of(tree) == f"{path}: the file is empty (no header line)"
    path.write_text(original.replace("\n", "\n\n", 3) + "\n\n")  # blank lines are skipped, nothing else changes
    assert [c.case_id for c in scan(tree).cases] == tree.kept_ids()


@pytest.mark.parametrize(
    ("column_index", "value", "message"),
    [
        (0, "", "blank dicom_id"),
        (0, "../../etc/passwd", f"dicom_id '../../etc/passwd' is not a safe file name ({NAME_RULE})"),
        (2, "", "blank subject_id"),
        (1, "5.0000001E7", "study_id '5.0000001E7' is not an integer id"),
        (2, "p10000032", "subject_id 'p10000032' is not an integer id"),
    ],
)
def test_bad_key_cells_name_the_line(tree, column_index, value, message):
    path = tree.root / SPLIT

    def edit(lines):
        cells = lines[3].split(",")
        cells[column_index] = value
        return [*lines[:3], ",".join(cells), *lines[4:]]

    edit_lines(path, edit)
    assert error_of(tree) == f"{path}, line 4: {message} (1 row(s); lines 4)"


def test_non_numeric_rows_in_metadata_names_the_line(tree):
    path = tree.root / META
    edit_lines(path, lambda lines: [*lines[:2], lines[2].replace(",80,64,", ",eighty,64,"), *lines[3:]])
    assert error_of(tree) == f"{path}, line 3: Rows 'eighty' is not a number (1 row(s); lines 3)"


def test_label_value_error_names_the_line(tree):
    path = tree.root / CHEXPERT
    line = line_of(path, "50000003")
    edit_lines(
        path, lambda lines: [re.sub(r",1\.0(,|$)", r",yes\1", t, count=1) if i == line - 1 else t for i, t in enumerate(lines)]
    )
    assert error_of(tree) == (
        f"{path}, line {line}: 1 label value(s) are not 1.0, 0.0, -1.0 or blank; "
        "first: column 'Pleural Effusion', study 50000003, value 'yes'"
    )


# --- duplicates ---------------------------------------------------------------------------------------


def test_identical_duplicate_split_rows_are_counted_once_with_a_note(tree):
    path = tree.root / SPLIT
    repeated = line_of(path, did(1))
    lines = edit_lines(path, lambda lines: [*lines, lines[repeated - 1], lines[repeated - 1]])
    s = scan(tree)
    assert [c.case_id for c in s.cases] == tree.kept_ids() and len(s.cases) == 7
    assert summarize(s) == {**tree.summary(), "label_policy": s.label_policy}
    assert s.notes == [f"{SPLIT}: 2 identical repeated row(s) counted once (dicom_id: {did(1)})"]
    assert f"notes:\n  {SPLIT}: 2 identical repeated row(s)" in format_summary(s)
    assert len(lines) == 1 + 17 + 2


def test_conflicting_duplicate_split_rows_are_refused_with_ids_and_lines(tree):
    path = tree.root / SPLIT
    first, second = line_of(path, did(1)), line_of(path, did(5))
    edit_lines(
        path,
        lambda lines: [
            *lines,
            lines[first - 1].replace(",test", ",train"),
            lines[second - 1].replace(",50000003,", ",50000004,"),
        ],
    )
    assert error_of(tree) == (
        f"{path}: 2 dicom_id(s) listed more than once with different values: "
        f"{did(1)} on lines {first}, 19; {did(5)} on lines {second}, 20"
    )


def test_metadata_duplicates_follow_the_same_rule(tree):
    path = tree.root / META
    row = line_of(path, did(3))
    edit_lines(path, lambda lines: [*lines, lines[row - 1]])
    assert scan(tree).notes == [f"{META}: 1 identical repeated row(s) counted once (dicom_id: {did(3)})"]
    edit_lines(path, lambda lines: [*lines[:-1], lines[row - 1].replace(",PA,", ",LATERAL,")])
    assert error_of(tree).endswith(f"{did(3)} on lines {row}, {len(path.read_text().splitlines())}")


def test_repeated_study_in_label_csv_names_both_lines(tree):
    path = tree.root / CHEXPERT
    row = line_of(path, "50000003")
    total = len(edit_lines(path, lambda lines: [*lines, lines[row - 1]]))
    assert error_of(tree) == f"{path}: study 50000003 appears more than once (lines {row}, {total}; 1 repeated row(s) in all)"


# --- ids written as floats, missing files ---------------------------------------------------------------


def floats(lines: list[str], columns: tuple[int, ...]) -> list[str]:
    out = [lines[0]]
    for text in lines[1:]:
        cells = text.split(",")
        for i in columns:
            cells[i] += ".0"
        out.append(",".join(cells))
    return out


def test_integral_float_ids_are_read_as_integers_with_a_note(tree):
    before = scan(tree)
    edit_lines(tree.root / SPLIT, lambda lines: floats(lines, (1, 2)))  # study_id, subject_id
    edit_lines(tree.root / CHEXPERT, lambda lines: floats(lines, (0,)))  # subject_id
    after = scan(tree)
    assert [c.case_id for c in after.cases] == [c.case_id for c in before.cases]
    assert [c.labels for c in after.cases] == [c.labels for c in before.cases]
    assert [c.image_path for c in after.cases] == [c.image_path for c in before.cases]
    assert after.fingerprint == before.fingerprint and after.missing == before.missing
    assert after.notes == [
        f"{SPLIT}: 17 subject_id value(s) written as integral floats were read as integers "
        "(first: '10000032.0' on line 2 read as '10000032')",
        f"{SPLIT}: 17 study_id value(s) written as integral floats were read as integers "
        "(first: '50000001.0' on line 2 read as '50000001')",
        f"{CHEXPERT}: 7 subject_id value(s) written as integral floats were read as integers "
        "(first: '10000032.0' on line 2 read as '10000032')",
    ]


def test_every_file_missing_shows_the_looked_for_paths(tree):
    (tree.root / "files").rename(tree.root / "elsewhere")
    message = error_of(tree)
    first = tree.root / "files/p10/p10000032/s50000001" / f"{did(1)}.jpg"
    assert len(tree.selected()) == 10
    assert message.startswith(
        f"none of the 10 image(s) of split 'test' (views AP, PA) exists under {tree.root}; looked for:\n  {first}\n"
    )
    assert message.count(str(tree.root / "files")) == 3 and "\n  ...\n" in message


def test_summary_lists_missing_files_with_the_looked_for_path(tree, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    gone = tree.root / "files/p10/p10000045/s50000003" / f"{did(5)}.jpg"
    gone.unlink()
    assert main(["data", "summary", "--root", str(tree.root)]) == 0
    out = capsys.readouterr().out
    assert "missing images (first 2 of 2):" in out
    assert f"  {did(5)}: file not found: {gone}" in out
    assert f"  {did(9)}: file not found: {tree.root / 'files/p11/p11000011/s50000005' / (did(9) + '.jpg')}" in out


# --- content-derived fingerprint -----------------------------------------------------------------------


def same_size_jpegs() -> tuple[bytes, bytes]:
    """Two different JPEGs of the same byte length (flat images of neighbouring grey levels)."""
    by_size: dict[int, bytes] = {}
    for level in range(40, 220):
        buf = io.BytesIO()
        Image.fromarray(np.full((80, 64), level, np.uint8)).save(buf, format="JPEG", quality=90)
        data = buf.getvalue()
        if len(data) in by_size:
            return by_size[len(data)], data
        by_size[len(data)] = data
    raise AssertionError("no two grey levels gave JPEGs of one size")


def test_swapped_image_with_same_size_and_mtime_changes_the_fingerprint(tree):
    one, other = same_size_jpegs()
    path = tree.root / "files/p10/p10000032/s50000001" / f"{did(1)}.jpg"
    path.write_bytes(one)
    before = scan(tree)
    stat = path.stat()
    path.write_bytes(other)  # what `cp -p` / `rsync -t` of another image leaves behind
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (stat.st_size, stat.st_mtime_ns)
    after = scan(tree)
    assert [c.case_id for c in after.cases] == [c.case_id for c in before.cases]
    assert after.fingerprint != before.fingerprint
    path.write_bytes(one)
    assert scan(tree).fingerprint == before.fingerprint  # same bytes, same key (mtime is not part of it)


def test_json_summary_counts_a_repeated_row_once_and_notes_it_on_stderr(tree, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tree.root / SPLIT
    row = line_of(path, did(8))
    edit_lines(path, lambda lines: [*lines, lines[row - 1]])
    assert main(["data", "summary", "--root", str(tree.root), "--json"]) == 0
    captured = capsys.readouterr()
    got = json.loads(captured.out)
    assert {k: got[k] for k in ("cases", "by_view", "positives", "missing", "corrupt")} == tree.summary()
    assert f"note: {SPLIT}: 1 identical repeated row(s) counted once (dicom_id: {did(8)})" in captured.err
