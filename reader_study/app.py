"""The reader-study web app (Streamlit). Start it with ``xreal-bench study serve STUDY_DIR``.

The study folder comes from the environment variable :data:`STUDY_DIR_ENV`. Readers sign in
with the token from their link (``?token=...``) or a form. The database is the source of
truth: every run of this script asks it where the reader is, so a reload, a second tab or
another device resumes at the first unanswered item. Nothing that identifies an image's
source or case ever reaches the browser: the page gets the re-encoded image, the pathology
label, the criteria and the progress.

Keyboard: digits score the highlighted criterion (the first one not yet rated), Backspace
clears the last score, Enter submits once every criterion is rated. Keys typed faster than
the page reruns are queued in the browser and applied in order (``viewer.html``,
:mod:`xreal_bench.reader_study.form`).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pandas as pd
import streamlit as st

from xreal_bench.reader_study.access import run_storage, sign_in
from xreal_bench.reader_study.form import ItemForm, Navigation, widget_key
from xreal_bench.reader_study.layout import STUDY_DB, STUDY_DIR_ENV, STUDY_JSON
from xreal_bench.reader_study.storage import Account, ItemView, Storage, StorageError
from xreal_bench.reader_study.viewer import viewer_html

VIEWER_HEIGHT = 700


def main() -> None:
    st.set_page_config(page_title="Reader study", layout="wide")
    study_dir = Path(os.environ.get(STUDY_DIR_ENV, ""))
    if not os.environ.get(STUDY_DIR_ENV) or not (study_dir / STUDY_DB).is_file():
        st.error("This server has no study to show. Start it with `xreal-bench study serve STUDY_DIR`.")
        st.stop()
    with run_storage(study_dir / STUDY_DB) as storage:  # the connection is closed when this run ends
        account = sign_in(storage)
        if account is None:
            return
        settings = json.loads((study_dir / STUDY_JSON).read_text())
        if account.role == "admin":
            admin_page(storage, settings)
        else:
            reader_page(storage, account, settings)


# -- reader ------------------------------------------------------------------------------------
def reader_page(storage: Storage, account: Account, settings: dict) -> None:
    reader = account.reader_id
    total = storage.total(reader)
    frontier = storage.next_position(reader) or total + 1
    nav: Navigation = st.session_state.setdefault("navigation", Navigation())
    position = frontier - (nav.back if settings["allow_back"] else 0)
    st.title(settings["title"])
    st.caption(f"Signed in as {account.name}")
    if position > total:
        st.progress(1.0, text=f"{total} / {total}")
        st.success(f"All {total} items are done. Thank you!")
        if settings["allow_back"] and total:
            st.button("◀ Previous", key="previous", on_click=step_back, args=(nav,))
        return
    view = storage.item_view(reader, position)
    if st.session_state.get("shown") != (view.item_id, position):
        storage.record_view(reader, view.item_id, st.session_state.session_id)
        st.session_state.shown = (view.item_id, position)
    st.progress((view.position - 1) / view.total, text=f"{view.position} / {view.total}")
    image_col, rating_col = st.columns([3, 2], gap="large")
    with image_col:
        boxes = view.boxes if settings["show_box"] else ()
        st.iframe(viewer_html(view.image_path.read_bytes(), boxes, forward_keys(view)), height=VIEWER_HEIGHT)
    with rating_col:
        rating_form(storage, account, view, nav, settings)


def forward_keys(view: ItemView) -> dict[str, str]:
    """Rating keys → the widget keys of the buttons the page's key queue clicks for them."""
    keys = {d: f"digit_{d}" for d in digits(view)}
    return {**keys, "Enter": "submit", "Backspace": "clear"}


def digits(view: ItemView) -> list[str]:
    return sorted({o.key for c in view.criteria for o in c.options})


def item_form(view: ItemView) -> ItemForm:
    forms = st.session_state.setdefault("forms", {})
    return forms.setdefault((view.position, view.item_id), ItemForm.start(view))


def rating_form(storage: Storage, account: Account, view: ItemView, nav: Navigation, settings: dict) -> None:
    if view.block == "calibration":
        st.info("Calibration item: rate it as usual; it is not part of the analysis.")
    if view.block == "turing":
        st.subheader("Real or generated?")
    st.markdown(f"**Pathology:** {view.pathology}")
    revisiting = bool(view.recorded)
    if revisiting:
        st.session_state.setdefault(widget_key(view, "comment"), view.comment)
    form = item_form(view)
    form.take_control_values(st.session_state)
    active = form.active()
    for c in view.criteria:
        marker = "▶ " if c is active else ""
        value = form.scores[c.name]
        st.segmented_control(
            f"{marker}{c.question}",
            options=list(c.values),
            format_func=lambda v, c=c: next(o.key for o in c.options if o.value == v),
            default=value,
            key=form.control_key(c.name),
            width="stretch",
        )
        chosen = f" → **{c.label(value)}**" if value is not None else ""
        st.caption(" · ".join(f"{o.key} {o.label}" for o in c.options) + chosen)
    st.caption("Keys: digits rate the ▶ question · Backspace clears the last rating · Enter submits")
    for col, d in zip(st.columns(len(digits(view))), digits(view)):
        col.button(d, key=f"digit_{d}", on_click=press_digit, args=(form, d), width="stretch")
    st.text_input("Comment (optional)", key=widget_key(view, "comment"))
    buttons = st.columns(3)
    if settings["allow_back"] and view.position > 1:
        buttons[0].button("◀ Previous", key="previous", on_click=step_back, args=(nav,), width="stretch")
    buttons[1].button("Clear", key="clear", on_click=form.clear_last, width="stretch")
    buttons[2].button(  # never disabled: an Enter pressed before the last score's rerun ends must count
        "Save changes" if revisiting else "Submit",
        key="submit",
        type="primary" if form.complete else "secondary",
        on_click=submit,
        args=(storage, account, form, nav, revisiting),
        width="stretch",
    )


def press_digit(form: ItemForm, digit: str) -> None:
    message = form.press(digit)  # the press is applied before any Streamlit call (see form.py)
    if message:
        st.toast(message)


def step_back(nav: Navigation) -> None:
    nav.back += 1


def submit(storage: Storage, account: Account, form: ItemForm, nav: Navigation, revisiting: bool) -> None:
    form.take_control_values(st.session_state)  # a click in a control may not have been rendered yet
    comment = st.session_state.get(widget_key(form.view, "comment")) or ""
    session_id = st.session_state.session_id
    scores = {k: v for k, v in form.scores.items() if v is not None}  # no Streamlit call from here until stored
    if len(scores) < len(form.scores):
        st.toast("Rate every criterion before submitting.")
        return
    try:
        result = storage.submit(
            account.reader_id, form.view.item_id, scores, comment=comment, session=session_id, revise=revisiting
        )
    except StorageError as exc:
        st.toast(f"Not saved: {exc}")
        return
    nav.back = max(nav.back - 1, 0)
    if result.status == "duplicate":
        st.toast("This item was already submitted (another tab?); moving on.")


# -- admin -------------------------------------------------------------------------------------
def admin_page(storage: Storage, settings: dict) -> None:
    st.title(f"{settings['title']} · admin")
    rows = []
    for p in storage.progress():
        if p.role != "reader":
            continue
        last = dt.datetime.fromtimestamp(p.last_activity, dt.UTC).strftime("%Y-%m-%d %H:%M UTC") if p.last_activity else ""
        rows.append(
            {
                "reader": p.name,
                "done": p.done,
                "assigned": p.total,
                "progress": f"{100 * p.done / p.total:.0f}%" if p.total else "",
                "last submit": last,
                "median s/item": None if p.median_seconds is None else round(p.median_seconds, 1),
            }
        )
    st.subheader("Progress per reader")
    st.dataframe(pd.DataFrame(rows), hide_index=True)
    responses = pd.DataFrame(storage.blinded_rows())
    st.subheader(f"Responses ({len(responses)} rows)")
    st.caption("Blinded export: item ids only. `xreal-bench study analyze` joins the key on the server.")
    st.download_button(
        "Download responses (CSV)",
        data=responses.to_csv(index=False).encode(),
        file_name="responses_blinded.csv",
        mime="text/csv",
        on_click="ignore",
    )


main()
