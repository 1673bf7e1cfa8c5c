"""The Streamlit app, headless (streamlit.testing.v1.AppTest: no JavaScript, real script runs)."""

import io
import re
import sqlite3

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

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
    monkeypatch.setenv(STUDY_DIR_ENV, str(study.study_dir))

    def start(token: str | None = None) -> AppTest:
        at = AppTest.from_file(str(APP_SCRIPT), default_timeout=30)
        if token:
            at.query_params["token"] = token
        return at.run()

    return start


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


def progress(at: AppTest) -> str:
    return at.get("progress")[0].proto.text


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


def test_sign_in_with_the_form_keeps_the_token_out_of_the_link(app, study):
    at = app()
    at.text_input[0].input(f"  {study.readers[0].token} ")
    at.button[0].click().run()
    assert "token" not in at.query_params
    assert at.title[0].value == "Chest X-ray reader study"
    assert progress(at) == f"1 / {study.items_per_reader}"


def test_rate_with_digits_clear_and_submit_then_resume_elsewhere(app, study):
    reader = add_reader(study.study_dir, "keyboard")
    at = app(reader.token)
    assert "Calibration item" in at.info[0].value  # calibration comes first
    assert at.button(key="submit").proto.type == "secondary"  # primary once every criterion is rated
    assert at.button_group[0].label.startswith("▶ ")  # the first criterion is active
    at.button(key="digit_4").click().run()
    at.button(key="digit_2").click().run()
    assert [g.value for g in at.button_group] == [4, 2, None]
    assert at.button_group[2].label.startswith("▶ ")
    at.button(key="submit").click().run()  # never disabled (an early Enter must count), but refuses
    assert "Rate every criterion" in at.toast[0].value and submitted(study, "keyboard") == []
    assert progress(at) == f"1 / {study.items_per_reader}"
    at.button(key="clear").click().run()  # Backspace clears the last rating
    assert [g.value for g in at.button_group] == [4, None, None]
    for d in ("3", "5"):
        at.button(key=f"digit_{d}").click().run()
    assert at.button(key="submit").proto.type == "primary"
    at.text_input(key="p1_comment").input("calibration ok")
    at.button(key="submit").click().run()
    assert progress(at) == f"2 / {study.items_per_reader}"
    assert [g.value for g in at.button_group] == [None, None, None]  # a fresh form for item 2
    assert submitted(study, "keyboard") == [(1, "anatomy_realism", 4), (1, "image_quality", 5), (1, "pathology_realism", 3)]
    # mouse: the segmented controls work too
    for group, value in zip(at.button_group, (1, 2, 3)):
        group.set_value(value)
    at.run()
    at.button(key="submit").click().run()
    assert progress(at) == f"3 / {study.items_per_reader}"
    # another device / a reload is a new session: it resumes at item 3
    other = app(reader.token)
    assert progress(other) == f"3 / {study.items_per_reader}"
    with Storage(study.study_dir / "study.sqlite") as s:
        rows = s.conn.execute(
            "SELECT n_views, seconds FROM submissions JOIN readers USING (reader_id) WHERE name = 'keyboard'"
        ).fetchall()
        comment = s.conn.execute("SELECT text FROM comments").fetchone()[0]
    assert [r[0] for r in rows] == [1, 1] and all(r[1] is not None and r[1] >= 0 for r in rows)
    assert comment == "calibration ok"


def test_submit_in_a_stale_tab_records_nothing_twice(app, study):
    reader = add_reader(study.study_dir, "twotabs")
    tab_a, tab_b = app(reader.token), app(reader.token)
    for tab in (tab_a, tab_b):
        for d in "111":
            tab.button(key=f"digit_{d}").click().run()
    tab_a.button(key="submit").click().run()
    tab_b.button(key="submit").click().run()  # same item, already submitted in tab A
    assert "already submitted" in tab_b.toast[0].value
    assert len(submitted(study, "twotabs")) == 3
    assert progress(tab_b) == f"2 / {study.items_per_reader}"


def test_nothing_identifying_the_source_reaches_the_browser(app, study):
    reader = add_reader(study.study_dir, "blind")
    at = app(reader.token)
    pages = []
    for _ in range(study.items_per_reader):
        pages.append(rendered(at))
        digits = "12" if at.button_group[0].label.endswith("real or generated?") else "345"
        for d in digits:
            at.button(key=f"digit_{d}").click().run()
        at.button(key="submit").click().run()
    pages.append(rendered(at))
    assert f"All {study.items_per_reader} items are done" in at.success[0].value
    leaks = {secret for secret in secrets_of(study) for page in pages if secret in page}
    assert not leaks
    assert any("Is this radiograph real or generated?" in p for p in pages)  # the Turing block was shown


def test_turing_items_accept_only_their_keys(app, study):
    reader = add_reader(study.study_dir, "turing")
    with Storage(study.study_dir / "study.sqlite") as s:  # answer everything but the Turing block
        account = s.authenticate(reader.token)
        while (pos := s.next_position(account.reader_id)) is not None and s.item_view(account.reader_id, pos).block != "turing":
            s.submit(account.reader_id, s.item_view(account.reader_id, pos).item_id, dict(zip(CRITERIA, (3, 3, 3))))
    at = app(reader.token)
    assert at.subheader[0].value == "Real or generated?"
    at.button(key="digit_3").click().run()
    assert "3 is not an option" in at.toast[0].value and at.button_group[0].value is None
    at.button(key="digit_2").click().run()  # 2 = generated
    at.button(key="digit_5").click().run()  # confidence 5
    at.button(key="submit").click().run()
    with Storage(study.study_dir / "study.sqlite") as s:
        rows = dict(s.conn.execute(
            "SELECT criterion, score FROM responses WHERE reader_id = ? AND criterion LIKE 'turing%'", (account.reader_id,)
        ).fetchall())  # fmt: skip
    assert rows == {"turing_call": 1, "turing_confidence": 5}


def test_admin_page_progress_and_blinded_csv(app, study):
    at = app(study.admin.token)
    assert at.title[0].value.endswith("· admin")
    table = at.dataframe[0].value
    assert "r1" in set(table["reader"]) and set(table.columns) >= {"reader", "done", "assigned", "progress"}
    button = at.get("download_button")[0]
    assert button.proto.label == "Download responses (CSV)"
    with Storage(study.study_dir / "study.sqlite") as s:
        csv = pd.DataFrame(s.blinded_rows()).to_csv(index=False)
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
    for d in "234":
        at.button(key=f"digit_{d}").click().run()
    at.button(key="submit").click().run()
    assert progress(at) == "2 / 6"
    at.button(key="previous").click().run()
    assert progress(at) == "1 / 6"
    assert [g.value for g in at.button_group] == [2, 3, 4]  # what was recorded
    assert at.button(key="submit").label == "Save changes"
    at.button_group[2].set_value(1).run()
    at.button(key="submit").click().run()
    assert progress(at) == "2 / 6"
    assert submitted(created, "r1") == [(1, "anatomy_realism", 2), (1, "image_quality", 1), (1, "pathology_realism", 3)]


def test_without_back_navigation_there_is_no_previous_button(app, study):
    reader = add_reader(study.study_dir, "noback")
    at = app(reader.token)
    for d in "333":
        at.button(key=f"digit_{d}").click().run()
    at.button(key="submit").click().run()
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
