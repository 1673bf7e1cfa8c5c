"""The reader page's state: the answers to one item, kept outside Streamlit's widgets, where the
session is (:class:`Navigation`) and the progress line.

Key presses can arrive while the page is still rerunning for the previous one. The browser
queues them (``page.js``), but the server side must hold up on its own: a press that interrupts
a rerun sends the browser's stale widget values along, which would overwrite scores held in
widgets, and every ``st.session_state`` access inside a callback is a point where a pending
press aborts that callback half-way. So the app's callbacks edit these plain objects, passed to
them as arguments, and call Streamlit only once the edit is done: a press is applied whole or
not at all, and never undone by a stale widget.

Every form belongs to one item (its id, never sent to the browser) and its widgets' keys carry a
tag of that item, so a press or a click made on one item's page can only ever reach that item's
form: scores never carry over to another item.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from xreal_bench.reader_study.criteria import Criterion
from xreal_bench.reader_study.storage import BlockProgress, ItemView

#: How the progress line names each block: while in it, and when it is still to come.
BLOCK_NOW = {"calibration": "Calibration", "rating": "Realism ratings", "turing": "Real or generated"}
BLOCK_LATER = {"calibration": "calibration items", "rating": "realism ratings", "turing": "real-or-generated"}
#: What the end page says was done in each block (singular, plural).
BLOCK_DONE = {
    "calibration": ("calibration item", "calibration items"),
    "rating": ("realism rating", "realism ratings"),
    "turing": ("real-or-generated call", "real-or-generated calls"),
}


def item_tag(item_id: str, salt: str) -> str:
    """A short per-session alias of an item id for widget keys (the id itself stays on the server)."""
    return hashlib.sha256(f"{salt}:{item_id}".encode()).hexdigest()[:12]


@dataclass
class Navigation:
    """Where this browser session is, beyond what the database says."""

    revisit: int | None = None  # the answered position the reader went back to (None: the first unanswered one)
    notice: str | None = None  # shown once at the top of the next page (a refused press or submit)
    feedback: tuple[str, int] | None = None  # (item id, position) of a just-answered calibration item to show again


@dataclass
class ItemForm:
    view: ItemView
    tag: str  # item_tag(view.item_id, session): every widget key of this item starts with it
    scores: dict[str, int | None]
    version: int = 0  # bumped by key presses, so the app redraws its controls from ``scores``
    comment_version: int = 0  # bumped by Clear, so the comment box starts empty

    @classmethod
    def start(cls, view: ItemView, *, salt: str) -> ItemForm:
        """A fresh form; a revisited item starts from what was recorded."""
        return cls(view, item_tag(view.item_id, salt), {c.name: view.recorded.get(c.name) for c in view.criteria})

    def key(self, name: str) -> str:
        """The widget key of one of this item's buttons (``submit``, ``digit_3``, ...)."""
        return f"i{self.tag}_{name}"

    def control_key(self, criterion: str) -> str:
        return self.key(f"{criterion}_v{self.version}")

    @property
    def comment_key(self) -> str:
        return self.key(f"comment_v{self.comment_version}")

    def take_control_values(self, widget_state: Mapping) -> None:
        """Adopt what the reader clicked in this version's controls (those that exist yet)."""
        for name in self.scores:
            if self.control_key(name) in widget_state:
                self.scores[name] = widget_state[self.control_key(name)]

    def active(self) -> Criterion | None:
        """The first criterion without a score: the one digits rate."""
        return next((c for c in self.view.criteria if self.scores[c.name] is None), None)

    @property
    def complete(self) -> bool:
        return self.active() is None

    def press(self, digit: str) -> str | None:
        """Score the active criterion with the option bound to ``digit``; a message if nothing changed."""
        active = self.active()
        if active is None:
            return "Every criterion is rated: Enter submits, Backspace clears the last rating."
        option = active.option_for_key(digit)
        if option is None:
            return f"{digit} is not an option for this question."
        self._set(active.name, option.value)
        return None

    def clear_last(self) -> None:
        rated = [name for name, value in self.scores.items() if value is not None]
        if rated:
            self._set(rated[-1], None)

    def clear_all(self) -> None:
        """Reset the whole item: every score and the comment."""
        self.scores = dict.fromkeys(self.scores)
        self.version += 1
        self.comment_version += 1

    def _set(self, criterion: str, value: int | None) -> None:
        self.scores[criterion] = value
        self.version += 1


def progress_text(blocks: list[BlockProgress], position: int | None) -> str:
    """``Realism ratings 37 / 60 · then 24 real-or-generated`` (blocks are contiguous)."""
    if position is None:
        return " · ".join(f"{BLOCK_NOW[b.block]} {b.done} / {b.total}" for b in blocks)
    current = next(b for b in reversed(blocks) if b.first_position <= position)
    parts = [f"{BLOCK_NOW[current.block]} {position - current.first_position + 1} / {current.total}"]
    parts += [f"then {b.total} {BLOCK_LATER[b.block]}" for b in blocks if b.first_position > position]
    return " · ".join(parts)


def done_text(blocks: list[BlockProgress]) -> str:
    """``3 calibration items, 60 realism ratings, 24 real-or-generated calls``."""
    return ", ".join(f"{b.done} {BLOCK_DONE[b.block][b.done != 1]}" for b in blocks)
