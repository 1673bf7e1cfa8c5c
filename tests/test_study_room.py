"""Storage for the reading room: a submit counts only on the reader's current item; block progress,
the instruction-page record and the calibration reference answer."""

import dataclasses
import shutil

import pytest

from xreal_bench.demo.study import sample_study
from xreal_bench.reader_study.storage import BlockProgress, Storage

RATING = {"anatomy_realism": 4, "pathology_realism": 3, "image_quality": 5}
TURING = {"turing_call": 1, "turing_confidence": 2}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    return sample_study(
        tmp_path_factory.mktemp("room"), n_cases=2, readers=["r1", "r2"], duplicate_fraction=0.0, calibration_items=1
    )


@pytest.fixture
def study(pristine, tmp_path):
    shutil.copytree(pristine.study_dir, tmp_path / "study")
    return dataclasses.replace(pristine, study_dir=tmp_path / "study")


def order(s: Storage, reader_id: int) -> list[tuple[str, str]]:
    """(item id, block) in the reader's order."""
    return [
        (r[0], r[1])
        for r in s.conn.execute(
            "SELECT a.item_id, i.block FROM assignments a JOIN items i USING (item_id) WHERE reader_id = ? ORDER BY position",
            (reader_id,),
        )
    ]


def stored(s: Storage) -> int:
    return s.conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0]


def answer(s: Storage, reader_id: int, item: str, block: str):
    return s.submit(reader_id, item, TURING if block == "turing" else RATING, session="t")


def test_a_first_submit_is_stored_only_for_the_current_item(study):
    with Storage(study.study_dir / "study.sqlite") as s:
        items = order(s, 1)
        (first, _), (second, _), (third, _) = items[:3]
        refused = s.submit(1, third, RATING, comment="meant for another image", session="tab-2")
        assert (refused.status, refused.stored) == ("not_current", False) and stored(s) == 0
        assert s.conn.execute("SELECT COUNT(*) FROM comments").fetchone()[0] == 0
        audit = s.conn.execute("SELECT action, item_id, session FROM audit WHERE action = 'refused'").fetchall()
        assert [tuple(r) for r in audit] == [("refused", third, "tab-2")]  # the refusal is on record
        assert s.submit(1, second, RATING, revise=True).status == "not_current"  # revise= cannot skip ahead either
        first_result = s.submit(1, first, RATING)
        assert (first_result.status, first_result.stored) == ("recorded", True)
        again = s.submit(1, first, {**RATING, "image_quality": 1})  # the second tab, still on item 1
        assert (again.status, again.stored) == ("duplicate", False)
        assert s.submit(1, second, RATING).status == "recorded" and s.next_position(1) == 3
        assert s.submit(1, first, {**RATING, "image_quality": 2}, revise=True).status == "revised"  # went back to it
        scores = dict(s.conn.execute("SELECT criterion, score FROM responses WHERE item_id = ?", (first,)).fetchall())
        assert scores == {**RATING, "image_quality": 2} and stored(s) == 6
        assert s.next_position(2) == 1 and s.submit(2, order(s, 2)[1][0], RATING).status == "not_current"  # per reader


def test_block_progress_counts_each_block_in_order(study):
    with Storage(study.study_dir / "study.sqlite") as s:
        items = order(s, 1)
        sizes = {block: sum(b == block for _, b in items) for block in ("calibration", "rating", "turing")}
        expected = [
            BlockProgress("calibration", 1, sizes["calibration"], 0),
            BlockProgress("rating", 1 + sizes["calibration"], sizes["rating"], 0),
            BlockProgress("turing", 1 + sizes["calibration"] + sizes["rating"], sizes["turing"], 0),
        ]
        assert s.block_progress(1) == expected and sizes["calibration"] == 1 and sizes["turing"] > 0
        for item, block in items[:3]:
            assert answer(s, 1, item, block).stored
        assert [b.done for b in s.block_progress(1)] == [1, 2, 0]
        assert [b.done for b in s.block_progress(2)] == [0, 0, 0]


def test_the_instruction_page_is_recorded_once_per_reader_and_block(study):
    with Storage(study.study_dir / "study.sqlite") as s:
        assert not s.instructions_seen(1, "turing")
        s.record_instructions(1, "turing", "sess")
        assert s.instructions_seen(1, "turing") and not s.instructions_seen(2, "turing")
        assert not s.instructions_seen(1, "rating")
        row = s.conn.execute("SELECT reader_id, action, session, detail FROM audit WHERE action = 'instructions'").fetchone()
        assert tuple(row) == (1, "instructions", "sess", '{"block": "turing"}')


def test_the_calibration_answer_is_given_only_for_a_stored_calibration_item(study):
    with Storage(study.study_dir / "study.sqlite") as s:
        items = order(s, 1)
        (calibration, block), (rating, _) = items[0], items[1]
        assert block == "calibration"
        (source,) = s.conn.execute(
            "SELECT m.source FROM items i JOIN images m USING (image_id) WHERE i.item_id = ?", (calibration,)
        ).fetchone()
        assert s.calibration_truth(1, calibration) is None  # not before the rating is stored
        assert answer(s, 1, calibration, "calibration").stored
        assert s.calibration_truth(1, calibration) == ("real" if source == "real" else "generated")
        assert s.calibration_truth(2, calibration) is None  # another reader's answer does not count
        assert answer(s, 1, rating, "rating").stored
        assert s.calibration_truth(1, rating) is None  # a study item never tells its source
