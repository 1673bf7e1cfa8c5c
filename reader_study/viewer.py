"""The image viewer shown in the app: a self-contained HTML page (no network assets) with
zoom (wheel, buttons), pan (drag), window/level (shift- or right-drag, sliders), invert,
reset (double-click) and optional box outlines. The image is inlined as a data URI.

It also gives the Streamlit page its rating-key queue: a press clicks its button only once
the rerun of the press before it has finished (Streamlit drops presses that reach it mid-rerun).
The queue watches the ``data-test-script-state`` attribute Streamlit sets on its app element;
without it, presses are sent at once."""

from __future__ import annotations

import base64
import json
from functools import lru_cache
from pathlib import Path

TEMPLATE = Path(__file__).with_name("viewer.html")


@lru_cache(maxsize=1)
def template() -> str:
    return TEMPLATE.read_text()


def viewer_html(image_png: bytes, boxes: list[dict] | tuple[dict, ...] = (), forward: dict[str, str] | None = None) -> str:
    """The viewer page for one PNG; ``forward`` maps rating keys to the widget keys of their buttons.

    Only box coordinates are embedded (no labels); the JSON is escaped so no value can close
    the script element.
    """
    coords = [{k: float(b[k]) for k in ("x0", "y0", "x1", "y1")} for b in boxes]
    uri = "data:image/png;base64," + base64.b64encode(image_png).decode("ascii")
    return (
        template()
        .replace("__IMAGE__", uri)
        .replace("__BOXES__", safe_json(coords))
        .replace("__FORWARD__", safe_json(forward or {}))
    )


def safe_json(value) -> str:
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
