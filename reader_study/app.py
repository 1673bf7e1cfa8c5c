"""The reader-study web app (Streamlit). Start it with ``xreal-bench study serve STUDY_DIR``.

The study folder comes from the environment variable :data:`STUDY_DIR_ENV`. Readers sign in
with the token from their link (``?token=...``) or a form. The database is the source of
truth: every run of this script asks it where the reader is, so a reload, a second tab or
another device resumes at the first unanswered item. Nothing that identifies an image's
source or case ever reaches the browser: the page gets the re-encoded image, the pathology
label, the criteria and the progress (and, for a calibration item whose rating is stored and
only when ``calibration_feedback`` is on, whether it was real).

Integrity: every button, control and key press is bound to the item it was made on (widget
keys carry a per-session tag of the item; callbacks get the item's form as an argument). A
press, click or submit whose item is no longer the reader's current one (another tab answered
it) stores nothing and shows the current item with a notice; :meth:`Storage.submit` applies
the same rule on its own.

The reading room (``room.css``, ``viewer.html``, ``page.js``): a dark page, the image viewer as
tall as the viewport with the rating panel beside it, one row of anchored buttons per criterion.
Keyboard: digits score the highlighted criterion (the first one not yet rated), Backspace undoes
the last score, Enter submits from anywhere (in the comment box too; Shift+Enter is a newline
there and digits stay text). Keys typed faster than the page reruns are queued in the browser.
Reader names and comments are shown as plain text only.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import streamlit as st

from xreal_bench.reader_study.access import current_account, run_storage, sign_in
from xreal_bench.reader_study.criteria import Criterion
from xreal_bench.reader_study.form import ItemForm, Navigation, done_text, progress_text
from xreal_bench.reader_study.layout import STUDY_DB, STUDY_DIR_ENV, STUDY_JSON
from xreal_bench.reader_study.storage import Account, Block, BlockProgress, ItemView, Storage, StorageError
from xreal_bench.reader_study.viewer import keys_html, viewer_html
from xreal_bench.tables import to_csv


def main() -> None:
    st.set_page_config(page_title="Reader study", layout="wide")
    study_dir = Path(os.environ.get(STUDY_DIR_ENV, ""))
    if not os.environ.get(STUDY_DIR_ENV) or not (study_dir / STUDY_DB).is_file():
        st.error("This server has no study to show. Start it with `xreal-bench study serve STUDY_DIR`.")
        st.stop()
        return
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
ROOM_CSS = Path(__file__).with_name("room.css")
VIEWER_HEIGHT = 700  # a floor only: room.css sizes the viewer from the viewport
COLUMNS = (11, 9)  # image : rating panel; a square image fills the image column from 1366x768 to 2560x1440
STALE = "Not saved: that rating was made on an item that was already answered (another tab?). This is your current item."
NOT_CURRENT = "Not saved: that rating was made on an item that is not your current one. This is your current item."


@dataclass(frozen=True)
class Reading:
    """What a reader page's callbacks need (passed as arguments: see form.py)."""

    storage: Storage
    account: Account
    nav: Navigation
    settings: dict
    session: str

    @property
    def reader(self) -> int:
        return self.account.reader_id

    def current_position(self) -> int | None:
        """The position this session must show: a revisited one, else the first unanswered (None: done)."""
        frontier = self.storage.next_position(self.reader)
        if self.nav.revisit is not None and self.settings["allow_back"]:
            if frontier is None or self.nav.revisit < frontier:
                return self.nav.revisit
        self.nav.revisit = None
        return frontier

    def holds(self, form: ItemForm) -> bool:
        """Whether ``form`` is the current item's; if not, the press is dropped with a notice."""
        if self.current_position() == form.view.position:
            return True
        self.nav.notice = STALE
        return False


def reader_page(storage: Storage, account: Account, settings: dict) -> None:
    st.html(ROOM_CSS)
    nav: Navigation = st.session_state.setdefault("navigation", Navigation())
    ctx = Reading(storage, account, nav, settings, st.session_state.session_id)
    blocks = storage.block_progress(ctx.reader)
    if nav.feedback is not None and feedback_page(ctx, blocks, *nav.feedback):
        return
    position = ctx.current_position()
    if position is None:
        end_page(ctx, blocks)
        return
    view = storage.item_view(ctx.reader, position)
    turing = next((b for b in blocks if b.block == "turing"), None)
    if view.block == "turing" and turing and position == turing.first_position and not view.recorded:
        if not storage.instructions_seen(ctx.reader, "turing"):
            turing_instructions(ctx, blocks, turing)
            return
    if st.session_state.get("shown") != (view.item_id, position):
        storage.record_view(ctx.reader, view.item_id, ctx.session)
        st.session_state.shown = (view.item_id, position)
    form = item_form(view, ctx.session)
    image_col, panel = st.columns(COLUMNS, gap="small")
    with image_col, st.container(key="viewer"):
        boxes = view.boxes if settings["show_box"] else ()
        st.iframe(viewer_html(view.image_path.read_bytes(), boxes, forward_keys(form)), height=VIEWER_HEIGHT)
    with panel:
        header(ctx, blocks, position)
        rating_panel(ctx, form)


def header(ctx: Reading, blocks: list[BlockProgress], position: int | None) -> None:
    total = sum(b.total for b in blocks)
    done = sum(b.done for b in blocks)
    st.progress(done / total if total else 1.0, text=progress_text(blocks, position))
    st.text(f"Signed in as {ctx.account.name}")  # plain text: a name is never Markdown
    if ctx.nav.notice:
        st.warning(ctx.nav.notice, icon="⚠️")
        ctx.nav.notice = None


def item_form(view: ItemView, session: str) -> ItemForm:
    """This item's form: one per item id, so no score is ever carried to another item."""
    forms: dict[str, ItemForm] = st.session_state.setdefault("forms", {})
    form = forms.get(view.item_id)
    if form is None or form.view != view:  # new, or answered / revised since (here or in another tab)
        form = forms[view.item_id] = ItemForm.start(view, salt=session)
    return form


def forward_keys(form: ItemForm) -> dict[str, str]:
    """Rating keys → the widget keys of this item's buttons that the page's key queue clicks."""
    keys = {d: form.key(f"digit_{d}") for d in digits(form.view)}
    return {**keys, "Enter": form.key("submit"), "Backspace": form.key("undo")}


def digits(view: ItemView) -> list[str]:
    return sorted({o.key for c in view.criteria for o in c.options})


def rating_panel(ctx: Reading, form: ItemForm) -> None:
    view = form.view
    if view.block == "calibration":
        st.info("Calibration item: rate it as usual; it is not part of the analysis.")
    if view.block != "turing" or ctx.settings.get("turing_show_label", False):
        st.markdown(f"**Pathology:** {escape_markdown(view.pathology)}")
    revisiting = bool(view.recorded)
    form.take_control_values(st.session_state)
    active = form.active()
    for i, c in enumerate(view.criteria):
        # one control row per criterion; the highlighted (▶) one is what digits rate
        with st.container(key=form.key(f"criterion{i}" + ("_active" if c is active else ""))):
            st.segmented_control(
                f"{'▶ ' if c is active else ''}{c.question}",
                options=list(c.values),
                format_func=lambda v, c=c: option_text(c, v),
                default=form.scores[c.name],
                key=form.control_key(c.name),
                on_change=ctx.holds,  # a click on an item another tab answered: a notice
                args=(form,),
                width="stretch",
                wrap=False,
            )
    with st.container(key="keybuttons"):  # clicked by the page's key queue only (hidden by room.css)
        for d in digits(view):
            st.button(d, key=form.key(f"digit_{d}"), on_click=press_digit, args=(ctx, form, d))
        st.button("Undo", key=form.key("undo"), on_click=undo, args=(ctx, form))
    st.text_area(
        "Comment (optional)",
        value=view.comment if revisiting and form.comment_version == 0 else "",
        key=form.comment_key,
        height=68,
        placeholder="Enter submits · Shift+Enter starts a new line",
    )
    buttons = st.columns(3)
    if ctx.settings["allow_back"] and view.position > 1:
        buttons[0].button("◀ Previous", key=form.key("previous"), on_click=step_back, args=(ctx, view.position), width="stretch")
    buttons[1].button("Clear", key=form.key("clear"), on_click=clear, args=(ctx, form), width="stretch", help="Reset this item")
    buttons[2].button(  # never disabled: an Enter pressed before the last score's rerun ends must count
        "Save changes" if revisiting else "Submit",
        key=form.key("submit"),
        type="primary" if form.complete else "secondary",
        on_click=submit,
        args=(ctx, form),
        width="stretch",
    )
    st.caption(
        "Keys: " + "/".join(digits(view)) + " rate the ▶ question · Backspace undoes the last rating · "
        "Enter submits (also from the comment box; Shift+Enter = new line) · Clear resets the item"
    )


def option_text(criterion: Criterion, value: int) -> str:
    option = next(o for o in criterion.options if o.value == value)
    return f"{option.key} · {escape_markdown(option.label)}"


def escape_markdown(text: str) -> str:
    """``text`` shown literally by Streamlit's Markdown (no links, images, emphasis or HTML)."""
    return "".join("\\" + ch if ch in MARKDOWN_SPECIAL else ch for ch in text)


MARKDOWN_SPECIAL = frozenset("\\`*_{}[]()<>#+-.!|~:$")


# -- callbacks: they edit plain objects first and call Streamlit last (see form.py) -------------
def press_digit(ctx: Reading, form: ItemForm, digit: str) -> None:
    if not ctx.holds(form):
        return
    message = form.press(digit)
    if message:
        st.toast(message)


def undo(ctx: Reading, form: ItemForm) -> None:
    if ctx.holds(form):
        form.clear_last()


def clear(ctx: Reading, form: ItemForm) -> None:
    if ctx.holds(form):
        form.clear_all()


def step_back(ctx: Reading, position: int) -> None:
    ctx.nav.revisit = position - 1


def submit(ctx: Reading, form: ItemForm) -> None:
    if not ctx.holds(form):
        return
    account = current_account(ctx.storage)  # callbacks run before the page's sign-in check
    if account is None or account.reader_id != ctx.reader:
        return  # the link was revoked or replaced since the page was drawn: nothing is stored, the page says why
    form.take_control_values(st.session_state)  # a click in a control may not have been rendered yet
    comment = st.session_state.get(form.comment_key) or ""
    scores = {k: v for k, v in form.scores.items() if v is not None}  # no Streamlit call from here until stored
    if len(scores) < len(form.scores):
        st.toast("Rate every criterion before submitting.")
        return
    view = form.view
    try:
        result = ctx.storage.submit(
            ctx.reader, view.item_id, scores, comment=comment, session=ctx.session, revise=bool(view.recorded)
        )
    except StorageError as exc:
        st.toast(f"Not saved: {exc}")
        return
    if not result.stored:
        ctx.nav.notice = STALE if result.status == "duplicate" else NOT_CURRENT
        return
    if ctx.nav.revisit is not None:
        ctx.nav.revisit += 1  # current_position() returns to the first unanswered one at the end
    if view.block == "calibration" and result.status == "recorded" and ctx.settings.get("calibration_feedback", False):
        ctx.nav.feedback = (view.item_id, view.position)


def start_block(ctx: Reading, block: Block) -> None:
    ctx.storage.record_instructions(ctx.reader, block, ctx.session)


def leave_feedback(ctx: Reading) -> None:
    ctx.nav.feedback = None


# -- pages without a rating form -----------------------------------------------------------------
def keys_frame(forward: dict[str, str]) -> None:
    """The page script and this page's keys, for pages that have no viewer (hidden by room.css)."""
    with st.container(key="keys"):
        st.iframe(keys_html(forward), height=1)


def turing_instructions(ctx: Reading, blocks: list[BlockProgress], turing: BlockProgress) -> None:
    """The real-or-generated block's instruction page; starting it is recorded in the audit trail."""
    with st.container(key="page_text"):
        st.subheader("Next: real or generated?")
        header(ctx, blocks, turing.first_position)
        show_label = ctx.settings.get("turing_show_label", False)
        lines = [
            f"You will now see {turing.total} radiographs, one at a time. For each, decide whether it is a **real** "
            "radiograph or one **generated** by a model (key 1 = real, 2 = generated), then say how confident you are "
            "(1 = pure guess … 5 = certain). Enter submits.",
            "The pathology label is shown with each image."
            if show_label
            else "The pathology label is **not** shown in this block: judge each image on its own.",
        ]
        if ctx.settings.get("turing_show_prevalence", False):
            share = round(100 * float(ctx.settings.get("turing_real_fraction", 0.5)))
            lines.append(f"About {share} % of the images in this block are real; the rest are generated.")
        else:
            lines.append("How many of them are real is not disclosed.")
        for line in lines:
            st.markdown(line)
        st.button("Start (Enter)", key="start_turing", type="primary", on_click=start_block, args=(ctx, "turing"))
    keys_frame({"Enter": "start_turing"})


def feedback_page(ctx: Reading, blocks: list[BlockProgress], item_id: str, position: int) -> bool:
    """A just-answered calibration item again, with its reference answer (real or generated)."""
    truth = ctx.storage.calibration_truth(ctx.reader, item_id)  # None unless that submit is stored
    view = ctx.storage.item_view(ctx.reader, position)
    if truth is None or view.item_id != item_id:
        ctx.nav.feedback = None
        return False
    image_col, panel = st.columns(COLUMNS, gap="small")
    with image_col, st.container(key="viewer"):
        boxes = view.boxes if ctx.settings["show_box"] else ()
        st.iframe(viewer_html(view.image_path.read_bytes(), boxes, {"Enter": "continue"}), height=VIEWER_HEIGHT)
    with panel:
        header(ctx, blocks, ctx.current_position())
        st.subheader("Calibration: reference answer")
        st.success(f"This image is **{truth}**.")
        st.caption("Your ratings were saved. Calibration items are not part of the analysis.")
        st.button("Continue (Enter)", key="continue", type="primary", on_click=leave_feedback, args=(ctx,))
    return True


def end_page(ctx: Reading, blocks: list[BlockProgress]) -> None:
    with st.container(key="page_text"):
        st.subheader("All done — thank you!")
        header(ctx, blocks, None)
        total = sum(b.total for b in blocks)
        st.success(f"All {total} items are done: {done_text(blocks)}. Every answer is saved on the study server.")
        st.markdown("There is nothing else to do: you can close this tab or the browser window now.")
        if ctx.settings["allow_back"] and total:
            st.button("◀ Previous", key="previous", on_click=step_back, args=(ctx, total + 1))
    keys_frame({})


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
                "reader": p.name,  # a dataframe cell is plain text
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
        data=to_csv(responses).encode(),
        file_name="responses_blinded.csv",
        mime="text/csv",
        on_click="ignore",
    )


if __name__ == "__main__":  # Streamlit runs the script as __main__; a spawned worker importing it must not
    main()
