"""The Streamlit app, headless (streamlit.testing.v1.AppTest: no JavaScript, real script runs)."""

import dataclasses
import io
import json
import re
import shutil
import sqlite3

import pandas as pd
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest
from study_apptest import app_starter, button, progress

from xreal_bench.demo.study import sample_study
from xreal_bench.reader_study import add_reader
from xreal_bench.reader_study.layout import APP_SCRIPT, STUDY_DIR_ENV
from xreal_bench.reader_study.storage import Storage

GENERATORS = ("xreal", "cheff")
CRITERIA = ("anatomy_realism", "pathology_realism", "image_quality")


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return sample_study(tmp_path_factory.mktemp("app"), n_cases=4, readers=["r1"], duplicate_fraction=0.0, calibration_items=1)


@pytest.fixture
def app(study, monkeypatch):
    return app_starter(study.study_dir, monkeypatch)


def rendered(at: AppTest) -> str:
    """Everything the app sent to the browser, image data left out."""
    parts = []

    def walk(node):
        if getattr(node, "proto", None) is not None:
            parts.append(str(node.proto))
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    return re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "<image>", "\n".join(parts))


def secrets_of(study) -> set[str]:
    con = sqlite3.connect(study.study_dir / "study.sqlite")
    rows = con.execute("SELECT case_id, origin, image_id FROM images").fetchall()
    items = [r[0] for r in con.execute("SELECT item_id FROM items")]
    con.close()
    return {*GENERATORS, *(r[0] for r in rows), *(r[1] for r in rows), *items, str(study.study_dir)}


def comment_box(at: AppTest):
    (found,) = [t for t in at.text_area if re.fullmatch(r"i[0-9a-f]{12}_comment_v\d+", t.key)]
    return found


def blocks_of(study, reader: str) -> dict[str, tuple[int, int]]:
    """Block -> (first position, items) of ``reader``'s list."""
    with Storage(study.study_dir / "study.sqlite") as s:
        (reader_id,) = s.conn.execute("SELECT reader_id FROM readers WHERE name = ?", (reader,)).fetchone()
        return {b.block: (b.first_position, b.total) for b in s.block_progress(reader_id)}


def press(at: AppTest, keys: str) -> AppTest:
    for key in keys:
        button(at, f"digit_{key}").click().run()
    return at


def submitted(study, reader: str) -> list[tuple]:
    con = sqlite3.connect(study.study_dir / "study.sqlite")
    rows = con.execute(
        """SELECT a.position, p.criterion, p.score FROM responses p JOIN readers r USING (reader_id)
           JOIN assignments a ON a.reader_id = p.reader_id AND a.item_id = p.item_id
           WHERE r.name = ? ORDER BY a.position, p.criterion""",
        (reader,),
    ).fetchall()
    con.close()
    return rows


def test_no_token_shows_only_the_sign_in_form(app, study):
    at = app()
    assert [t.value for t in at.title] == ["Sign in"]
    assert len(at.text_input) == 1 and at.text_input[0].label == "Access token"
    assert "Chest X-ray" not in rendered(at) and "Pathology" not in rendered(at)


def test_wrong_token_shows_nothing_of_the_study(app, study):
    at = app("not-a-valid-token")
    assert [t.value for t in at.title] == ["Sign in"]
    assert "not valid" in at.error[0].value
    page = rendered(at)
    assert "iframe" not in page and "Pathology" not in page and "Chest X-ray" not in page and " / " not in page
    at.text_input[0].input(study.readers[0].token + "x")
    at.button[0].click().run()  # the form's submit button
    assert [t.value for t in at.title] == ["Sign in"] and at.error[-1].value == "That token is not valid."


def first_progress(study) -> str:
    """The progress line on a new reader's first item."""
    blocks = blocks_of(study, "r1")
    calibration, rating, turing = blocks["calibration"][1], blocks["rating"][1], blocks["turing"][1]
    return f"Calibration 1 / {calibration} · then {rating} realism ratings · then {turing} real-or-generated"


def test_sign_in_with_the_form_keeps_the_token_out_of_the_link(app, study):
    at = app()
    at.text_input[0].input(f"  {study.readers[0].token} ")
    at.button[0].click().run()
    assert "token" not in at.query_params and not at.error
    assert progress(at) == first_progress(study)


def test_rate_with_digits_clear_and_submit_then_resume_elsewhere(app, study):
    reader = add_reader(study.study_dir, "keyboard")
    blocks = blocks_of(study, "keyboard")
    at = app(reader.token)
    assert "Calibration item" in at.info[0].value  # calibration comes first
    assert button(at, "submit").proto.type == "secondary"  # primary once every criterion is rated
    assert at.button_group[0].label.startswith("▶ ")  # the first criterion is active
    press(at, "42")
    assert [g.value for g in at.button_group] == [4, 2, None]
    assert at.button_group[2].label.startswith("▶ ")
    assert [g.options[3] for g in at.button_group] == [  # the buttons show their anchor words
        "4 · Realistic with subtle doubts",
        "4 · Realistic with subtle doubts",
        "4 · Good",
    ]
    button(at, "submit").click().run()  # never disabled (an early Enter must count), but refuses
    assert "Rate every criterion" in at.toast[0].value and submitted(study, "keyboard") == []
    assert progress(at).startswith(f"Calibration 1 / {blocks['calibration'][1]} · ")
    button(at, "undo").click().run()  # Backspace: the last rating only
    assert [g.value for g in at.button_group] == [4, None, None]
    comment_box(at).input("to be cleared").run()
    button(at, "clear").click().run()  # Clear: the whole item, comment included
    assert [g.value for g in at.button_group] == [None, None, None] and comment_box(at).value == ""
    press(at, "435")
    assert button(at, "submit").proto.type == "primary"
    comment_box(at).input("calibration ok\nsecond line")
    button(at, "submit").click().run()
    assert progress(at) == f"Realism ratings 1 / {blocks['rating'][1]} · then {blocks['turing'][1]} real-or-generated"
    assert [g.value for g in at.button_group] == [None, None, None]  # a fresh form for item 2
    assert comment_box(at).value == ""
    assert submitted(study, "keyboard") == [(1, "anatomy_realism", 4), (1, "image_quality", 5), (1, "pathology_realism", 3)]
    # mouse: the segmented controls work too
    for group, value in zip(at.button_group, (1, 2, 3)):
        group.set_value(value)
    at.run()
    button(at, "submit").click().run()
    assert progress(at).startswith("Realism ratings 2 / ")
    # another device / a reload is a new session: it resumes at item 3
    other = app(reader.token)
    assert progress(other).startswith("Realism ratings 2 / ")
    with Storage(study.study_dir / "study.sqlite") as s:
        rows = s.conn.execute(
            "SELECT n_views, seconds FROM submissions JOIN readers USING (reader_id) WHERE name = 'keyboard'"
        ).fetchall()
        comment = s.conn.execute("SELECT text FROM comments JOIN readers USING (reader_id) WHERE name = 'keyboard'").fetchone()
    assert [r[0] for r in rows] == [1, 1] and all(r[1] is not None and r[1] >= 0 for r in rows)
    assert comment[0] == "calibration ok\nsecond line"


def test_a_press_or_submit_made_on_an_item_another_tab_answered_is_dropped_with_a_notice(app, study):
    reader = add_reader(study.study_dir, "twotabs")
    tab_a, tab_b = app(reader.token), app(reader.token)
    press(tab_b, "11")  # tab B starts rating item 1 ...
    press(tab_a, "222")
    button(tab_a, "submit").click().run()  # ... which tab A answers
    button(tab_b, "digit_5").click().run()  # tab B still shows item 1: the press is for item 1
    assert tab_b.warning[0].value.startswith("Not saved: that rating was made on an item that was already answered")
    assert progress(tab_b).startswith("Realism ratings 1 / ")  # tab B now shows the current item ...
    assert [g.value for g in tab_b.button_group] == [None, None, None]  # ... with nothing carried over
    press(tab_b, "3")
    assert [g.value for g in tab_b.button_group] == [3, None, None] and not tab_b.warning
    # both tabs on item 2: tab B completes it, tab A answers it first, then tab B submits
    press(tab_b, "45")
    press(tab_a.run(), "111")
    button(tab_a, "submit").click().run()
    button(tab_b, "submit").click().run()
    assert tab_b.warning[0].value.startswith("Not saved: that rating was made on an item that was already answered")
    assert [g.value for g in tab_b.button_group] == [None, None, None]
    assert progress(tab_b).startswith("Realism ratings 2 / ")
    assert submitted(study, "twotabs") == [(1, c, 2) for c in sorted(CRITERIA)] + [(2, c, 1) for c in sorted(CRITERIA)]


def test_nothing_identifying_the_source_reaches_the_browser(app, study):
    reader = add_reader(study.study_dir, "blind")
    at = app(reader.token)
    pages = []
    for _ in range(study.items_per_reader):
        pages.append(rendered(at))
        if "start_turing" in [b.key for b in at.button]:
            at.button(key="start_turing").click().run()
            pages.append(rendered(at))
        digits = "12" if at.button_group[0].label.endswith("real or generated?") else "345"
        press(at, digits)
        button(at, "submit").click().run()
    pages.append(rendered(at))
    assert f"All {study.items_per_reader} items are done" in at.success[0].value
    leaks = {secret for secret in secrets_of(study) for page in pages if secret in page}
    assert not leaks
    assert any("Is this radiograph real or generated?" in p for p in pages)  # the Turing block was shown


def answer_until_turing(study, token: str) -> int:
    """Answer every item before the real-or-generated block directly in the database; the reader id."""
    with Storage(study.study_dir / "study.sqlite") as s:
        account = s.authenticate(token)
        while (pos := s.next_position(account.reader_id)) is not None and s.item_view(account.reader_id, pos).block != "turing":
            assert s.submit(account.reader_id, s.item_view(account.reader_id, pos).item_id, dict.fromkeys(CRITERIA, 3)).stored
    return account.reader_id


def instructions_audited(study, reader_id: int) -> int:
    with Storage(study.study_dir / "study.sqlite") as s:
        return s.conn.execute(
            "SELECT COUNT(*) FROM audit WHERE reader_id = ? AND action = 'instructions'", (reader_id,)
        ).fetchone()[0]


def test_the_real_or_generated_block_opens_with_instructions_and_hides_the_label(app, study):
    reader = add_reader(study.study_dir, "turing")
    reader_id = answer_until_turing(study, reader.token)
    n_turing = blocks_of(study, "turing")["turing"][1]
    at = app(reader.token)
    assert at.subheader[0].value == "Next: real or generated?"
    text = " ".join(m.value for m in at.markdown)
    assert f"You will now see {n_turing} radiographs" in text
    assert "The pathology label is **not** shown" in text and "How many of them are real is not disclosed." in text
    assert not at.button_group and instructions_audited(study, reader_id) == 0  # no rating before the start
    at.button(key="start_turing").click().run()
    assert instructions_audited(study, reader_id) == 1
    assert progress(at) == f"Real or generated 1 / {n_turing}"
    assert "Pathology" not in rendered(at)  # turing_show_label is false by default
    assert app(reader.token).button_group, "the instruction page comes once per reader, not once per tab"
    button(at, "digit_3").click().run()
    assert "3 is not an option" in at.toast[0].value and at.button_group[0].value is None
    press(at, "25")  # 2 = generated, then confidence 5
    button(at, "submit").click().run()
    with Storage(study.study_dir / "study.sqlite") as s:
        rows = dict(s.conn.execute(
            "SELECT criterion, score FROM responses WHERE reader_id = ? AND criterion LIKE 'turing%'", (reader_id,)
        ).fetchall())  # fmt: skip
    assert rows == {"turing_call": 1, "turing_confidence": 5}


def with_settings(study, tmp_path, **settings):
    """A copy of ``study`` whose study.json has ``settings`` added."""
    copy = tmp_path / "study"
    shutil.copytree(study.study_dir, copy)
    info = json.loads((copy / "study.json").read_text())
    (copy / "study.json").write_text(json.dumps({**info, **settings}))
    return dataclasses.replace(study, study_dir=copy)


def test_instructions_state_the_label_and_the_real_share_when_configured(study, tmp_path, monkeypatch):
    copy = with_settings(study, tmp_path, turing_show_label=True, turing_show_prevalence=True, turing_real_fraction=0.25)
    monkeypatch.setenv(STUDY_DIR_ENV, str(copy.study_dir))
    reader = add_reader(copy.study_dir, "told")
    answer_until_turing(copy, reader.token)
    at = AppTest.from_file(str(APP_SCRIPT), default_timeout=30)
    at.query_params["token"] = reader.token
    at.run()
    text = " ".join(m.value for m in at.markdown)
    assert "The pathology label is shown with each image." in text
    assert "About 25 % of the images in this block are real; the rest are generated." in text
    at.button(key="start_turing").click().run()
    assert at.markdown[0].value.startswith("**Pathology:** ")


def test_calibration_feedback_shows_the_reference_answer_only_after_the_submit(study, tmp_path, monkeypatch):
    copy = with_settings(study, tmp_path, calibration_feedback=True)
    monkeypatch.setenv(STUDY_DIR_ENV, str(copy.study_dir))
    reader = add_reader(copy.study_dir, "calibrated")
    at = AppTest.from_file(str(APP_SCRIPT), default_timeout=30)
    at.query_params["token"] = reader.token
    at.run()
    with Storage(copy.study_dir / "study.sqlite") as s:
        account = s.authenticate(reader.token)
        item = s.item_view(account.reader_id, 1).item_id
        (source,) = s.conn.execute(
            "SELECT m.source FROM items i JOIN images m USING (image_id) WHERE i.item_id = ?", (item,)
        ).fetchone()
    truth = "real" if source == "real" else "generated"
    assert "This image is" not in rendered(at)  # nothing before the rating is stored
    press(at, "333")
    assert "This image is" not in rendered(at)
    button(at, "submit").click().run()
    assert at.success[0].value == f"This image is **{truth}**."
    assert len(submitted(copy, "calibrated")) == 3 and not at.button_group
    at.button(key="continue").click().run()
    assert progress(at).startswith("Realism ratings 1 / ") and not at.success


def test_reader_names_are_plain_text(app, study):
    with Storage(study.study_dir / "study.sqlite") as s:
        s.conn.execute("UPDATE readers SET name = ? WHERE name = 'r1'", ("![x](http://127.0.0.1:9/x) **bold**",))
    try:
        at = app(study.readers[0].token)
        assert [t.value for t in at.text] == ["Signed in as ![x](http://127.0.0.1:9/x) **bold**"]
        assert not [m for m in at.markdown if "127.0.0.1" in m.value]
    finally:
        with Storage(study.study_dir / "study.sqlite") as s:
            s.conn.execute("UPDATE readers SET name = 'r1' WHERE name LIKE '![x]%'")


def test_admin_page_progress_and_blinded_csv(app, study, monkeypatch):
    offered = {}
    real_download = st.download_button

    def spy(label, data, **kwargs):
        offered[label] = data
        return real_download(label, data, **kwargs)

    monkeypatch.setattr(st, "download_button", spy)
    reader = add_reader(study.study_dir, "formula")
    with Storage(study.study_dir / "study.sqlite") as s:
        account = s.authenticate(reader.token)
        item = s.item_view(account.reader_id, 1).item_id
        s.submit(account.reader_id, item, dict.fromkeys(CRITERIA, 2), comment='=HYPERLINK("http://x","y")')
    at = app(study.admin.token)
    assert at.title[0].value.endswith("· admin")
    table = at.dataframe[0].value
    assert "r1" in set(table["reader"]) and set(table.columns) >= {"reader", "done", "assigned", "progress"}
    button = at.get("download_button")[0]
    assert button.proto.label == "Download responses (CSV)"
    csv = offered["Download responses (CSV)"].decode()
    assert "\r\n" in csv and "'=HYPERLINK" in csv and "\n=" not in csv and ",=" not in csv
    frame = pd.read_csv(io.StringIO(csv))
    assert set(frame.columns) == {
        "reader",
        "position",
        "item",
        "block",
        "criterion",
        "score",
        "submitted_at",
        "seconds",
        "revisions",
        "comment",
    }
    assert not any(g in csv for g in GENERATORS) and "case0" not in csv


def test_back_navigation_when_allowed_revises_the_answer(tmp_path, monkeypatch):
    created = sample_study(tmp_path, n_cases=2, readers=["r1"], duplicate_fraction=0.0, turing_test=False, allow_back=True)
    monkeypatch.setenv(STUDY_DIR_ENV, str(created.study_dir))
    at = AppTest.from_file(str(APP_SCRIPT), default_timeout=30)
    at.query_params["token"] = created.readers[0].token
    at.run()
    assert not [b for b in at.button if b.label == "◀ Previous"]  # nothing before the first item
    press(at, "234")
    button(at, "submit").click().run()
    assert progress(at) == "Realism ratings 2 / 6"
    button(at, "previous").click().run()
    assert progress(at) == "Realism ratings 1 / 6"
    assert [g.value for g in at.button_group] == [2, 3, 4]  # what was recorded
    assert button(at, "submit").label == "Save changes"
    at.button_group[2].set_value(1).run()
    button(at, "submit").click().run()
    assert progress(at) == "Realism ratings 2 / 6"
    assert submitted(created, "r1") == [(1, "anatomy_realism", 2), (1, "image_quality", 1), (1, "pathology_realism", 3)]


def test_without_back_navigation_there_is_no_previous_button(app, study):
    reader = add_reader(study.study_dir, "noback")
    at = app(reader.token)
    press(at, "333")
    button(at, "submit").click().run()
    assert not [b for b in at.button if b.label == "◀ Previous"]


def test_server_without_a_study_says_how_to_start(monkeypatch, tmp_path):
    monkeypatch.setenv(STUDY_DIR_ENV, str(tmp_path))
    at = AppTest.from_file(str(APP_SCRIPT), default_timeout=30).run()
    assert "xreal-bench study serve STUDY_DIR" in at.error[0].value


@pytest.mark.parametrize("show_box", [False, True])
def test_box_region_only_when_configured(tmp_path, monkeypatch, show_box):
    # seed 1 rates two cases that both have a box (each reader's order of them is random)
    created = sample_study(tmp_path, n_cases=2, readers=["r1"], duplicate_fraction=0.0, show_box=show_box, seed=1)
    monkeypatch.setenv(STUDY_DIR_ENV, str(created.study_dir))
    at = AppTest.from_file(str(APP_SCRIPT), default_timeout=30)
    at.query_params["token"] = created.readers[0].token
    at.run()
    page = rendered(at)
    with Storage(created.study_dir / "study.sqlite") as s:
        boxes = s.item_view(1, 1).boxes
    assert boxes  # the sample's first study case has a pathology box
    expected = 'const BOXES = [{\\"x0\\": 0.2, \\"y0\\": 0.3, \\"x1\\": 0.5, \\"y1\\": 0.6}]' if show_box else "const BOXES = [];"
    assert expected in page
    assert '\\"label\\"' not in page  # the viewer gets coordinates only
