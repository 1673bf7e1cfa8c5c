"""Building a study: case choice, balance, blinding of files and ids, accounts, errors, CLI."""

import json
import re
import sqlite3
import struct
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from xreal_bench.cli import main
from xreal_bench.config import StudyConfig
from xreal_bench.demo.study import sample_study, write_sample_run
from xreal_bench.errors import UserFacingError
from xreal_bench.imaging import load_grayscale
from xreal_bench.names import InvalidNameError
from xreal_bench.reader_study import add_reader, create_study
from xreal_bench.reader_study.builder import Design
from xreal_bench.reader_study.storage import Storage, hash_token
from xreal_bench.rundir import GeneratorDir, ManifestEntry, append_line

GENERATORS = ("xreal", "cheff")


def png_chunks(path: Path) -> list[str]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        chunks.append(data[pos + 4 : pos + 8].decode())
        pos += 12 + length
    return chunks


def key_rows(study_dir: Path, sql: str, args=()):
    con = sqlite3.connect(study_dir / "study.sqlite")
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("builder")
    created = sample_study(
        root, n_run_cases=14, n_cases=6, calibration_items=2, duplicate_fraction=0.2, readers=["ann", "bob", "cat"]
    )
    return root, created


def test_study_folder_and_summary(built):
    root, created = built
    study = created.study_dir
    assert study == root / "study"
    assert sorted(p.name for p in study.iterdir()) == ["images", "study.json", "study.sqlite"]
    assert not any(p.name.startswith(".study.creating") for p in root.iterdir())
    assert created.n_cases == 6 and created.n_sources == 3
    # 2 calibration + 18 ratings + round(0.2 * 18) = 4 duplicates + 12 Turing items
    assert created.items_per_reader == 2 + 18 + 4 + 12
    assert [r.name for r in created.readers] == ["ann", "bob", "cat"]
    assert created.serve_command == f"xreal-bench study serve {study}"
    for reader in created.readers:
        assert reader.link == f"http://localhost:8501/?token={reader.token}"
    info = json.loads((study / "study.json").read_text())
    assert info["items_per_reader"] == created.items_per_reader and info["duplicates"] == 4


def test_images_are_uniform_and_carry_nothing_of_their_source(built):
    _, created = built
    files = sorted((created.study_dir / "images").iterdir())
    assert len(files) == 6 * 3 + 2  # study cases x sources + calibration images
    for f in files:
        assert len(f.stem) == 16 and int(f.stem, 16) >= 0 and f.suffix == ".png"
        with Image.open(f) as img:
            assert (img.mode, img.size) == ("L", (96, 96))
            assert img.info.keys() <= {"dpi"} and not img.text
        assert png_chunks(f) == ["IHDR", "IDAT", "IEND"]
    names = {f.stem for f in files}
    case_ids = {r[0] for r in key_rows(created.study_dir, "SELECT case_id FROM images")}
    assert not any(c in n for c in case_ids for n in names)


def test_real_and_generated_pass_through_the_same_resolution(built):
    """Real images are 128 px, generated 64 px: both are brought to 64 px before 96 px."""
    _, created = built
    info = json.loads((created.study_dir / "study.json").read_text())
    assert info["intermediate_size"] == 64
    image_id, origin = key_rows(created.study_dir, "SELECT image_id, origin FROM images WHERE source = 'real' LIMIT 1")[0]
    from xreal_bench.imaging import quantize, to_square

    expected = quantize(to_square(to_square(load_grayscale(origin), 64), 96), 8)
    stored = np.asarray(Image.open(created.study_dir / "images" / f"{image_id}.png"))
    assert np.array_equal(stored, expected)


def test_every_reader_sees_every_source_equally_often(built):
    _, created = built
    rows = key_rows(
        created.study_dir,
        """SELECT r.name, a.position, i.block, m.source, m.case_id, i.duplicate_of, i.item_id
           FROM assignments a JOIN readers r USING (reader_id) JOIN items i USING (item_id)
           JOIN images m USING (image_id) ORDER BY r.name, a.position""",
    )
    by_reader = {}
    for name, position, block, source, case, dup, item in rows:
        by_reader.setdefault(name, []).append((position, block, source, case, dup, item))
    assert set(by_reader) == {"ann", "bob", "cat"}
    first_sources = []
    for seq in by_reader.values():
        assert [p for p, *_ in seq] == list(range(1, 37))
        blocks = [b for _, b, *_ in seq]
        assert blocks == ["calibration"] * 2 + ["rating"] * 22 + ["turing"] * 12  # calibration first, Turing last
        main_ratings = [(s, c) for _, b, s, c, d, _ in seq if b == "rating" and d is None]
        assert Counter(s for s, _ in main_ratings) == {"real": 6, "xreal": 6, "cheff": 6}
        assert len(set(main_ratings)) == 18
        position_of = {item: p for p, _, _, _, _, item in seq}
        for p, _, _, _, dup, _ in seq:
            if dup is not None:
                assert abs(p - position_of[dup]) >= 18 // 3  # spaced apart (a third of the rating block)
        turing = [s for _, b, s, *_ in seq if b == "turing"]
        assert Counter(s == "real" for s in turing) == {True: 6, False: 6}
        first_sources.append(tuple(s for _, b, s, c, d, _ in seq if b == "rating")[:6])
    assert len(set(first_sources)) > 1  # orders differ between readers
    # the Latin square rotates which source each case shows first across readers
    first_of_case = {}
    for name, seq in by_reader.items():
        seen = {}
        for _, b, s, c, d, _ in seq:
            if b == "rating" and d is None:
                seen.setdefault(c, s)
        first_of_case[name] = seen
    assert first_of_case["ann"] != first_of_case["bob"]


def test_tokens_are_stored_hashed_only(built):
    _, created = built
    blob = (created.study_dir / "study.sqlite").read_bytes()
    for reader in [*created.readers, created.admin]:
        assert reader.token.encode() not in blob
        assert hash_token(reader.token).encode() in blob
    with Storage(created.study_dir / "study.sqlite") as storage:
        assert storage.authenticate(created.readers[1].token).name == "bob"
        assert storage.authenticate(created.admin.token).role == "admin"
        assert storage.authenticate(created.readers[1].token + "x") is None
        assert storage.authenticate("") is None


def test_study_json_names_no_generator(built):
    _, created = built
    text = (created.study_dir / "study.json").read_text()
    for name in (*GENERATORS, "case0"):
        assert name not in text


def test_add_reader_gets_a_full_balanced_assignment(built):
    _, created = built
    link = add_reader(created.study_dir, "dan", base_url="http://example.org:9000/")
    assert link.link == f"http://example.org:9000/?token={link.token}"
    rows = key_rows(
        created.study_dir,
        """SELECT m.source FROM assignments a JOIN readers r USING (reader_id) JOIN items i USING (item_id)
           JOIN images m USING (image_id) WHERE r.name = 'dan' AND i.block = 'rating' AND i.duplicate_of IS NULL""",
    )
    assert Counter(s for (s,) in rows) == {"real": 6, "xreal": 6, "cheff": 6}
    with pytest.raises(UserFacingError, match="already exists"):
        add_reader(created.study_dir, "dan")
    with pytest.raises(UserFacingError, match="not found"):
        add_reader(created.study_dir / "nope", "eve")


@pytest.mark.parametrize("name", ["", "..", "../x", "a/b", ".hidden", "dr lee", "x" * 65])
def test_add_reader_refuses_names_outside_the_rule(built, name):
    _, created = built
    before = key_rows(created.study_dir, "SELECT COUNT(*) FROM readers")
    with pytest.raises(InvalidNameError, match=f"reader name {re.escape(repr(name))} is not a valid name: expected 1-64"):
        add_reader(created.study_dir, name)
    assert key_rows(created.study_dir, "SELECT COUNT(*) FROM readers") == before


def test_design_is_reproducible_from_the_database(built):
    _, created = built
    with Storage(created.study_dir / "study.sqlite") as storage:
        plan = Design.from_json(storage.meta("design"))
    stored = [i for (i,) in key_rows(created.study_dir, "SELECT item_id FROM assignments WHERE reader_id = 2 ORDER BY position")]
    assert plan.sequence(1) == stored  # reader index 1 = bob (reader ids start at 1)


def test_seed_fixes_the_design(tmp_path):
    a = sample_study(tmp_path / "a", seed=5)
    b = sample_study(tmp_path / "b", seed=5)
    order = "SELECT m.source, m.case_id FROM assignments a JOIN items i USING (item_id) JOIN images m USING (image_id) WHERE a.reader_id = 1 ORDER BY a.position"
    assert key_rows(a.study_dir, order) == key_rows(b.study_dir, order)
    ids = "SELECT image_id FROM images ORDER BY image_id"
    assert key_rows(a.study_dir, ids) != key_rows(b.study_dir, ids)  # ids are random, not seeded


def test_errors_name_the_problem(tmp_path):
    run = write_sample_run(tmp_path / "run", n_cases=4)
    settings = StudyConfig(n_cases=3, image_size=64)
    with pytest.raises(UserFacingError, match=r"generator\(s\) \['dalle'\] not found; available: cheff, xreal"):
        create_study([run], tmp_path / "s1", StudyConfig(n_cases=3, generators=["dalle"]))
    with pytest.raises(UserFacingError, match="only 4 cases have an image from every source"):
        create_study([run], tmp_path / "s2", StudyConfig(n_cases=3, calibration_items=2))
    with pytest.raises(UserFacingError, match="'admin' is the study organiser's account"):
        create_study([run], tmp_path / "s0", StudyConfig(n_cases=3, readers=["ann", "admin"]))
    with pytest.raises(UserFacingError, match="run directory .*missing not found"):
        create_study([tmp_path / "missing"], tmp_path / "s3", settings)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserFacingError, match="empty: no generator folders with a manifest.jsonl"):
        create_study([tmp_path / "empty"], tmp_path / "s3", settings)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("")
    with pytest.raises(UserFacingError, match="already exists and is not empty"):
        create_study([run], tmp_path / "busy", settings)
    no_real = tmp_path / "noreal"
    entry = ManifestEntry(generator="xreal", case_id="c", sample_index=0, seed=1, status="ok", file="images/c_0.png")
    append_line(GeneratorDir(no_real, "xreal").manifest, entry)
    with pytest.raises(UserFacingError, match="no 'real' folder"):
        create_study([no_real], tmp_path / "s4", settings)
    with pytest.raises(UserFacingError, match="generator 'xreal' is in two run directories"):
        create_study([run, no_real], tmp_path / "s5", settings)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy", "empty", "noreal", "run"]  # nothing half-built
    created = create_study([run, run], tmp_path / "s6", settings)  # the same run twice counts once
    assert created.n_sources == 3


def test_missing_image_file_is_reported_and_nothing_is_left(tmp_path):
    run = write_sample_run(tmp_path / "run", n_cases=4)
    (run / "cheff" / "images" / "case0001_0.png").write_bytes(b"")
    with pytest.raises(UserFacingError, match=r"case0001_0.png: file is empty"):
        create_study([run], tmp_path / "study", StudyConfig(n_cases=4, image_size=64, match_resolution=False))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_cli_create_prints_links_once_and_add_reader(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./bench.toml: built-in defaults + flags
    run = write_sample_run(tmp_path / "run", n_cases=5)
    code = main([
        "study", "create", "--runs", str(run), "--out", str(tmp_path / "study"), "--n-cases", "4",
        "--generators", "xreal", "--readers", "r1", "r2", "--no-turing", "--duplicates", "0",
        "--set", "study.image_size=64",
    ])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "4 cases x 2 sources, 8 items per reader" in out
    links = [line.split(": ", 1)[1] for line in out.splitlines() if line.strip().startswith(("r1:", "r2:", "admin:"))]
    assert len(links) == 3 and all(link.startswith("http://localhost:8501/?token=") for link in links)
    assert f"serve with: xreal-bench study serve {tmp_path / 'study'}" in out
    with Storage(tmp_path / "study" / "study.sqlite") as storage:
        assert storage.authenticate(links[0].split("=", 1)[1]).name == "r1"
    assert main(["study", "add-reader", str(tmp_path / "study"), "r3"]) == 0
    assert "r3: http://localhost:8501/?token=" in capsys.readouterr().out
    assert main(["study", "status", str(tmp_path / "study")]) == 0
    assert capsys.readouterr().out.splitlines() == ["r1: 0 / 8", "r2: 0 / 8", "r3: 0 / 8"]


def test_cli_rejects_bad_flags_with_config_errors(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = write_sample_run(tmp_path / "run", n_cases=3)
    assert main(["study", "create", "--runs", str(run), "--out", str(tmp_path / "s"), "--duplicates", "0.9"]) == 2
    assert "study.duplicate_fraction: expected 0..0.5, got 0.9" in capsys.readouterr().err
    assert main(["study", "create", "--runs", str(run), "--out", str(tmp_path / "s"), "--criteria", "Bad Name"]) == 2
    assert "expected a lower-case identifier" in capsys.readouterr().err
    assert main(["study", "serve", str(tmp_path / "nothing")]) == 2
    assert "study.sqlite not found" in capsys.readouterr().err


def test_custom_criteria_with_configured_questions_and_anchors(tmp_path):
    anchors = ["blurred", "soft", "fair", "crisp", "razor sharp"]
    created = sample_study(
        tmp_path, n_cases=2, criteria=["sharpness", "contrast"], turing_test=False,
        criterion_questions={"sharpness": "How sharp are the edges?"}, criterion_anchors={"sharpness": anchors},
    )  # fmt: skip
    with Storage(created.study_dir / "study.sqlite") as s:
        sharp, contrast = s.item_view(1, 1).criteria
    assert sharp.name == "sharpness" and sharp.question == "How sharp are the edges?"
    assert [o.label for o in sharp.options] == anchors and sharp.values == (1, 2, 3, 4, 5)
    assert [o.key for o in sharp.options] == ["1", "2", "3", "4", "5"]
    assert contrast.question == "Rate the contrast." and contrast.options[0].label == "Very poor"
    assert created.items_per_reader == 2 * 3 + 1  # no Turing block; one planted duplicate
