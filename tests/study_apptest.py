"""Shared helpers for driving the reader-study app headless (Streamlit's AppTest: real script runs, no browser)."""

import re

from streamlit.testing.v1 import AppTest

from xreal_bench.reader_study.layout import APP_SCRIPT, STUDY_DIR_ENV


def app_starter(study_dir, monkeypatch):
    """A function that starts one browser session of the app on ``study_dir`` (optionally with a link token)."""
    monkeypatch.setenv(STUDY_DIR_ENV, str(study_dir))

    def start(token: str | None = None) -> AppTest:
        at = AppTest.from_file(str(APP_SCRIPT), default_timeout=30)
        if token:
            at.query_params["token"] = token
        return at.run()

    return start


def progress(at: AppTest) -> str:
    return at.get("progress")[0].proto.text


def button(at: AppTest, name: str):
    """The shown item's button ``name`` (``submit``, ``digit_3``, ...): its key carries a per-session tag of the item."""
    found = [b for b in at.button if b.key and re.fullmatch(rf"i[0-9a-f]{{12}}_{name}", b.key)]
    assert len(found) == 1, [b.key for b in at.button]
    return found[0]
