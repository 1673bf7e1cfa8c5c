"""The reader's per-item form: key presses, clearing, revisits, the controls' versions and item tags; the progress line."""

import dataclasses
from pathlib import Path

from xreal_bench.reader_study.criteria import CALL_GENERATED, likert, turing_criteria
from xreal_bench.reader_study.form import ItemForm, done_text, item_tag, progress_text
from xreal_bench.reader_study.storage import BlockProgress, ItemView

ANCHORS = ("a", "b", "c", "d", "e")


def view(criteria, recorded=None) -> ItemView:
    return ItemView(
        item_id="it-1", position=4, total=9, block="rating", image_path=Path("x.png"), pathology="Edema",
        boxes=(), criteria=tuple(criteria), recorded=recorded or {},
    )  # fmt: skip


def rating_view(recorded=None) -> ItemView:
    return view(
        [likert("anatomy", "A?", ANCHORS), likert("pathology", "P?", ANCHORS), likert("quality", "Q?", ANCHORS)], recorded
    )


def test_digits_rate_the_first_unrated_criterion_in_order_and_clear_undoes_the_last():
    form = ItemForm.start(rating_view(), salt="s")
    assert form.active().name == "anatomy" and not form.complete
    assert form.press("3") is None and form.press("4") is None
    assert form.scores == {"anatomy": 3, "pathology": 4, "quality": None}
    form.clear_last()
    assert form.scores == {"anatomy": 3, "pathology": None, "quality": None}
    for d in "25":
        form.press(d)
    assert form.scores == {"anatomy": 3, "pathology": 2, "quality": 5} and form.complete
    assert "Every criterion is rated" in form.press("1")  # nothing changes once complete
    assert form.scores == {"anatomy": 3, "pathology": 2, "quality": 5}


def test_a_key_that_is_no_option_changes_nothing():
    form = ItemForm.start(view(turing_criteria()), salt="s")  # real (1) or generated (2), then confidence 1-5
    version = form.version
    assert "5 is not an option" in form.press("5")
    assert all(v is None for v in form.scores.values()) and form.version == version
    form.press("2")
    form.press("5")
    assert list(form.scores.values()) == [CALL_GENERATED, 5]  # key 2 = generated


def test_each_change_by_key_gives_the_controls_new_keys_so_stale_browser_values_are_ignored():
    form = ItemForm.start(rating_view(), salt="s")
    old = form.control_key("anatomy")
    form.press("4")
    assert form.control_key("anatomy") != old and form.control_key("anatomy").startswith(f"i{form.tag}_anatomy_")
    # the browser still reports the old control as unset: that must not undo the press
    form.take_control_values({old: None})
    assert form.scores["anatomy"] == 4
    # a click in a current control is adopted
    form.take_control_values({form.control_key("pathology"): 1})
    assert form.scores == {"anatomy": 4, "pathology": 1, "quality": None}
    form.clear_last()
    assert form.scores["pathology"] is None


def test_a_revisited_item_starts_from_what_was_recorded():
    form = ItemForm.start(rating_view(recorded={"anatomy": 2, "pathology": 3, "quality": 1}), salt="s")
    assert form.complete and form.scores == {"anatomy": 2, "pathology": 3, "quality": 1}
    form.clear_last()
    assert form.active().name == "quality"


def test_clear_resets_the_whole_item_and_gives_the_comment_box_a_new_key():
    form = ItemForm.start(rating_view(recorded={"anatomy": 2, "pathology": 3, "quality": 1}), salt="s")
    comment, control = form.comment_key, form.control_key("quality")
    form.clear_all()
    assert form.scores == {"anatomy": None, "pathology": None, "quality": None} and form.active().name == "anatomy"
    assert form.comment_key != comment and form.control_key("quality") != control
    form.take_control_values({control: 1, comment: "old"})  # the browser's stale values change nothing
    assert form.scores["quality"] is None


def test_widget_keys_carry_a_per_session_tag_of_the_item_not_its_id():
    one = ItemForm.start(rating_view(), salt="session-1")
    other_session = ItemForm.start(rating_view(), salt="session-2")
    other_item = ItemForm.start(dataclasses.replace(rating_view(), item_id="it-2", position=5), salt="session-1")
    assert one.tag == item_tag("it-1", "session-1") and len(one.tag) == 12
    assert len({one.tag, other_session.tag, other_item.tag}) == 3
    assert one.key("submit") == f"i{one.tag}_submit" and "it-1" not in one.key("submit")
    assert one.comment_key.startswith(f"i{one.tag}_comment_v")


def blocks(*spec) -> list[BlockProgress]:
    return [BlockProgress(block, first, total, done) for block, first, total, done in spec]


def test_progress_names_the_block_and_what_comes_next():
    plan = blocks(("calibration", 1, 3, 0), ("rating", 4, 60, 0), ("turing", 64, 24, 0))
    assert progress_text(plan, 2) == "Calibration 2 / 3 · then 60 realism ratings · then 24 real-or-generated"
    assert progress_text(plan, 40) == "Realism ratings 37 / 60 · then 24 real-or-generated"
    assert progress_text(plan, 64) == "Real or generated 1 / 24"
    done = blocks(("rating", 1, 60, 60), ("turing", 61, 24, 24))
    assert progress_text(done, None) == "Realism ratings 60 / 60 · Real or generated 24 / 24"
    assert done_text(done) == "60 realism ratings, 24 real-or-generated calls"
    assert done_text(blocks(("calibration", 1, 1, 1), ("rating", 2, 1, 1))) == "1 calibration item, 1 realism rating"
