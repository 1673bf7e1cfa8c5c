"""The reader's answers to one item, kept outside Streamlit's widgets.

Key presses can arrive while the page is still rerunning for the previous one. The browser
queues them (``viewer.html`` installs the page's key queue), but the server side must hold up
on its own: a press that interrupts a rerun sends the browser's stale widget values along,
which would overwrite scores held in widgets, and every ``st.session_state`` access inside a
callback is a point where a pending press aborts that callback half-way. So the app's callbacks
edit these plain objects, passed to them as arguments, and call Streamlit only once the edit is
done: a press is applied whole or not at all, and never undone by a stale widget.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from xreal_bench.reader_study.criteria import Criterion
from xreal_bench.reader_study.storage import ItemView


def widget_key(view: ItemView, name: str) -> str:
    """The session-state key of one of this item's widgets (criteria, comment)."""
    return f"p{view.position}_{name}"


@dataclass
class Navigation:
    back: int = 0  # how many items before the first unanswered one the reader is looking at


@dataclass
class ItemForm:
    view: ItemView
    scores: dict[str, int | None]
    version: int = 0  # bumped by key presses, so the app redraws its controls from ``scores``

    @classmethod
    def start(cls, view: ItemView) -> ItemForm:
        """A fresh form; a revisited item starts from what was recorded."""
        return cls(view, {c.name: view.recorded.get(c.name) for c in view.criteria})

    def control_key(self, criterion: str) -> str:
        return f"{widget_key(self.view, criterion)}_v{self.version}"

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

    def _set(self, criterion: str, value: int | None) -> None:
        self.scores[criterion] = value
        self.version += 1
