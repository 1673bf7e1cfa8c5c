"""The reader's per-item form: key presses, clearing, revisits and the controls' versions."""

from pathlib import Path

from xreal_bench.reader_study.criteria import CALL_GENERATED, likert, turing_criteria
from xreal_bench.reader_study.form import ItemForm
from xreal_bench.reader_study.storage import ItemView

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
    form = ItemForm.start(rating_view())
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
    form = ItemForm.start(view(turing_criteria()))  # real (1) or generated (2), then confidence 1-5
    version = form.version
    assert "5 is not an option" in form.press("5")
    assert all(v is None for v in form.scores.values()) and form.version == version
    form.press("2")
    form.press("5")
    assert list(form.scores.values()) == [CALL_GENERATED, 5]  # key 2 = generated


def test_each_change_by_key_gives_the_controls_new_keys_so_stale_browser_values_are_ignored():
    form = ItemForm.start(rating_view())
    old = form.control_key("anatomy")
    form.press("4")
    assert form.control_key("anatomy") != old and form.control_key("anatomy").startswith("p4_anatomy_")
    # the browser still reports the old control as unset: that must not undo the press
    form.take_control_values({old: None})
    assert form.scores["anatomy"] == 4
    # a click in a current control is adopted
    form.take_control_values({form.control_key("pathology"): 1})
    assert form.scores == {"anatomy": 4, "pathology": 1, "quality": None}
    form.clear_last()
    assert form.scores["pathology"] is None


def test_a_revisited_item_starts_from_what_was_recorded():
    form = ItemForm.start(rating_view(recorded={"anatomy": 2, "pathology": 3, "quality": 1}))
    assert form.complete and form.scores == {"anatomy": 2, "pathology": 3, "quality": 1}
    form.clear_last()
    assert form.active().name == "quality"
