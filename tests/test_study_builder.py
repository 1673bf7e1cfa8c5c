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
from xreal_bench.imaging import dequantize, load_grayscale, quantize, to_square
from xreal_bench.names import InvalidNameError
from xreal_bench.reader_study import add_reader, create_study, design
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
        root, n_run_cases=14, n_cases=6, calibration_items=2, duplicate_fraction=0.2, turing_cases=6,
        readers=["ann", "bob", "cat"],
    )  # fmt: skip
    return root, created


def test_study_folder_and_summary(built):
    root, created = built
    study = created.study_dir
    assert study == root / "study"
    assert sorted(p.name for p in study.iterdir()) == ["images", "study.json", "study.sqlite"]
    assert not any(p.name.startswith(".study.creating") for p in root.iterdir())
    assert created.n_cases == 6 and created.n_sources == 3
    # 2 calibration + 18 ratings + round(0.2 * 18) = 4 duplicates + 6 held-out real-or-generated items
    assert created.items_per_reader == 2 + 18 + 4 + 6
    assert created.turing_items == 6 and created.min_case_gap == 3 and created.near_duplicates == []
    assert [r.name for r in created.readers] == ["ann", "bob", "cat"]
    assert created.serve_command == f"xreal-bench study serve {study}"
    for reader in created.readers:
        assert reader.link == f"http://localhost:8501/?token={reader.token}"
    info = json.loads((study / "study.json").read_text())
    assert info["items_per_reader"] == created.items_per_reader and info["duplicates"] == 4
    assert {k: info[k] for k in ("turing_items", "turing_real_fraction", "turing_show_label", "turing_show_prevalence")} == {
        "turing_items": 6, "turing_real_fraction": 0.5, "turing_show_label": False, "turing_show_prevalence": False
    }  # fmt: skip
    assert info["calibration_feedback"] is False and info["min_case_gap"] == 3 and info["near_duplicates"] == 0


def test_images_are_uniform_and_carry_nothing_of_their_source(built):
    _, created = built
    files = sorted((created.study_dir / "images").iterdir())
    assert len(files) == 6 * 3 + 2 + 6  # study cases x sources + calibration images + held-out block
    for f in files:
        assert len(f.stem) == 16 and int(f.stem, 16) >= 0 and f.suffix == ".png"
        with Image.open(f) as img:
            assert (img.mode, img.size) == ("L", (96, 96))
            assert img.info.keys() <= {"dpi"} and not img.text
        assert png_chunks(f) == ["IHDR", "IDAT", "IEND"]
    names = {f.stem for f in files}
    case_ids = {r[0] for r in key_rows(created.study_dir, "SELECT case_id FROM images")}
    assert not any(c in n for c in case_ids for n in names)


def test_real_and_generated_pass_through_the_same_chain(built):
    """Real images are 128 px, generated 64 px: both are brought to 64 px and 8 bits before 96 px."""
    _, created = built
    info = json.loads((created.study_dir / "study.json").read_text())
    assert info["intermediate_size"] == 64
    for source in ("real", "xreal"):
        image_id, origin = key_rows(created.study_dir, "SELECT image_id, origin FROM images WHERE source = ? LIMIT 1", (source,))[
            0
        ]
        at_64 = quantize(to_square(load_grayscale(origin), 64), 8)  # the identity for the 64-px generator file
        expected = quantize(to_square(dequantize(at_64), 96), 8)
        stored = np.asarray(Image.open(created.study_dir / "images" / f"{image_id}.png"))
        assert np.array_equal(stored, expected)


def reader_rows(study_dir: Path) -> dict[str, list[tuple]]:
    """name -> [(position, block, source, case, duplicate_of, item)] in order."""
    rows = key_rows(
        study_dir,
        """SELECT r.name, a.position, i.block, m.source, m.case_id, i.duplicate_of, i.item_id
           FROM assignments a JOIN readers r USING (reader_id) JOIN items i USING (item_id)
           JOIN images m USING (image_id) ORDER BY r.name, a.position""",
    )
    by_reader: dict[str, list[tuple]] = {}
    for name, *rest in rows:
        by_reader.setdefault(name, []).append(tuple(rest))
    return by_reader


def test_every_reader_sees_every_source_equally_often_and_cases_spaced(built):
    _, created = built
    by_reader = reader_rows(created.study_dir)
    assert set(by_reader) == {"ann", "bob", "cat"}
    for seq in by_reader.values():
        assert [p for p, *_ in seq] == list(range(1, 31))
        blocks = [b for _, b, *_ in seq]
        assert blocks == ["calibration"] * 2 + ["rating"] * 22 + ["turing"] * 6  # calibration first, held-out block last
        main_ratings = [(s, c) for _, b, s, c, d, _ in seq if b == "rating" and d is None]
        assert Counter(s for s, _ in main_ratings) == {"real": 6, "xreal": 6, "cheff": 6}
        assert len(set(main_ratings)) == 18
        # rounds of 6: every case once per round, every source twice per round
        for r in range(3):
            block = main_ratings[6 * r : 6 * r + 6]
            assert len({c for _, c in block}) == 6 and set(Counter(s for s, _ in block).values()) == {2}
        # a case's images, planted repeats included, stand >= min_case_gap (auto: 6 // 2 = 3) apart
        rating_cases = [c for _, b, _, c, _, _ in seq if b == "rating"]
        assert design.smallest_gap(rating_cases) >= 3
    orders = {tuple(item for *_, item in seq) for seq in by_reader.values()}
    assert len(orders) == 3  # every reader has an order of their own
    turing_sets = {frozenset(item for _, b, *_, item in seq if b == "turing") for seq in by_reader.values()}
    assert len(turing_sets) == 1  # the same held-out images for every reader (fully crossed)


def test_held_out_block_has_its_own_cases(built):
    _, created = built
    roles = dict(key_rows(created.study_dir, "SELECT case_id, role FROM cases"))
    assert Counter(roles.values()) == {"study": 6, "calibration": 2, "turing": 6}
    for seq in reader_rows(created.study_dir).values():
        rated_cases = {c for _, b, _, c, _, _ in seq if b != "turing"}
        turing = [(s, c) for _, b, s, c, _, _ in seq if b == "turing"]
        assert not rated_cases & {c for _, c in turing}  # no held-out case was rated (or calibrated) before
        assert all(roles[c] == "turing" for _, c in turing) and len({c for _, c in turing}) == 6  # one image per case
        assert Counter(s == "real" for s, _ in turing) == {True: 3, False: 3}
        assert Counter(s for s, _ in turing if s != "real") in ({"xreal": 2, "cheff": 1}, {"xreal": 1, "cheff": 2})


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
    ((seed, record),) = key_rows(
        created.study_dir, "SELECT seed, design FROM reader_design JOIN readers USING (reader_id) WHERE name = 'dan'"
    )
    assert int(seed) > 0 and json.loads(record)["min_case_gap"] == 3
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


def test_every_readers_order_is_re_derived_from_the_database(built):
    _, created = built
    with Storage(created.study_dir / "study.sqlite") as storage:
        plan = Design.from_json(storage.required_meta("design"))
        designs = storage.conn.execute("SELECT reader_id, seed, design FROM reader_design ORDER BY reader_id").fetchall()
    assert len(designs) == len(key_rows(created.study_dir, "SELECT 1 FROM readers WHERE role = 'reader'")) >= 3
    assert len({seed for _, seed, _ in designs}) == len(designs)
    for reader_id, seed, record in designs:
        stored = [
            i
            for (i,) in key_rows(
                created.study_dir, "SELECT item_id FROM assignments WHERE reader_id = ? ORDER BY position", (reader_id,)
            )
        ]
        order = plan.reader(int(seed))
        assert order.items == stored and order.record == json.loads(record)
        assert plan.reader(int(seed) + 1).items != stored  # the seed, not the reader's index, fixes the order
    assert plan.items_per_reader == len(stored)


def test_design_of_a_study_made_before_the_held_out_block_still_reads():
    old = {"seed": 0, "n_sources": 2, "rating": [["a0", "a1"], ["b0", "b1"]], "duplicates": [["a0", "d"]],
           "calibration": [], "turing": [["t0", 0], ["t1", 0]]}  # fmt: skip
    plan = Design.from_json(json.dumps(old))
    assert plan.turing == ["t0", "t1"] and plan.duplicates == [("a0", "d")] and plan.min_case_gap == 0
    order = plan.reader(12345)
    assert sorted(order.items) == ["a0", "a1", "b0", "b1", "d", "t0", "t1"] and order.items[-2:] in (["t0", "t1"], ["t1", "t0"])
    assert order == plan.reader(12345)


def test_public_seed_fixes_the_item_sets_not_the_orders(tmp_path):
    a = sample_study(tmp_path / "a", seed=5, readers=["r1"])
    b = sample_study(tmp_path / "b", seed=5, readers=["r1"])
    sets = "SELECT i.block, m.source, m.case_id, i.duplicate_of IS NULL FROM items i JOIN images m USING (image_id) ORDER BY 1, 2, 3, 4"
    assert key_rows(a.study_dir, sets) == key_rows(b.study_dir, sets)
    order = "SELECT m.source, m.case_id FROM assignments a JOIN items i USING (item_id) JOIN images m USING (image_id) WHERE a.reader_id = 1 ORDER BY a.position"
    assert key_rows(a.study_dir, order) != key_rows(b.study_dir, order)  # each reader's order has its own seed
    ids = "SELECT image_id FROM images ORDER BY image_id"
    assert key_rows(a.study_dir, ids) != key_rows(b.study_dir, ids)  # ids are random, not seeded


def test_errors_name_the_problem(tmp_path):
    run = write_sample_run(tmp_path / "run", n_cases=4)
    settings = StudyConfig(n_cases=3, turing_cases=1, image_size=64)
    with pytest.raises(UserFacingError, match=r"generator\(s\) \['dalle'\] not found; available: cheff, xreal"):
        create_study([run], tmp_path / "s1", StudyConfig(n_cases=3, generators=["dalle"]))
    with pytest.raises(UserFacingError, match="only 4 cases have an image from every source"):
        create_study([run], tmp_path / "s2", StudyConfig(n_cases=3, calibration_items=2, turing_test=False))
    with pytest.raises(
        UserFacingError,
        match=re.escape(
            "the study needs 2 cases + 0 calibration cases + 3 real-or-generated cases (held out: none of them is rated). "
            "Lower --n-cases/--calibration/--turing-cases or choose fewer generators"
        ),
    ):
        create_study([run], tmp_path / "s2", StudyConfig(n_cases=2, turing_cases=3))
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
        create_study([run], tmp_path / "study", StudyConfig(n_cases=4, turing_test=False, image_size=64, match_resolution=False))
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


def test_cli_flags_of_the_held_out_block_spacing_and_feedback(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = write_sample_run(tmp_path / "run", n_cases=9)
    code = main([
        "study", "create", "--runs", str(run), "--out", str(tmp_path / "study"), "--n-cases", "4", "--duplicates", "0",
        "--turing-cases", "5", "--turing-real-fraction", "0.4", "--turing-show-label", "--turing-show-prevalence",
        "--min-case-gap", "9", "--calibration-feedback", "--set", "study.image_size=64",
    ])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert (
        "note: min_case_gap 9 is more than 4 cases allow (a case's images are one round of 4 items apart at most); using 4" in out
    )
    info = json.loads((tmp_path / "study" / "study.json").read_text())
    assert {k: info[k] for k in ("turing_items", "turing_real_fraction", "turing_show_label", "turing_show_prevalence")} == {
        "turing_items": 5, "turing_real_fraction": 0.4, "turing_show_label": True, "turing_show_prevalence": True
    }  # fmt: skip
    assert info["min_case_gap"] == 4 and info["calibration_feedback"] is True and info["items_per_reader"] == 4 * 3 + 5
    assert main([
        "study", "create", "--runs", str(run), "--out", str(tmp_path / "s2"), "--n-cases", "4", "--turing-cases", "6",
    ]) == 2  # fmt: skip
    assert "the study needs 4 cases + 0 calibration cases + 6 real-or-generated cases" in capsys.readouterr().err
    assert main(["study", "create", "--runs", str(run), "--out", str(tmp_path / "s3"), "--turing-real-fraction", "1"]) == 2
    assert "study.turing_real_fraction: expected 0 < x < 1, got 1.0" in capsys.readouterr().err
    assert main(["study", "create", "--runs", str(run), "--out", str(tmp_path / "s3"), "--min-case-gap", "-1"]) == 2
    assert "study.min_case_gap: expected >= 0 (0 = automatic), got -1" in capsys.readouterr().err


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
