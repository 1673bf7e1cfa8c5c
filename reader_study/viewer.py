"""The frames the reading room embeds, as self-contained HTML pages (no network assets).

:func:`viewer_html`: the image viewer: fit / 1:1 pixels, zoom (wheel, buttons), pan (drag),
window/level (shift- or right-drag, sliders, presets), invert, reset (double-click), full
screen and optional box outlines. The image is inlined as a data URI.

:func:`keys_html`: an empty frame for pages without an image (an instruction page, the end).

Both install the page script (``page.js``: the rating-key queue, Enter from the comment box, the
connection-lost banner) into the Streamlit page and publish the page's rating keys
(``install.js``)."""

from __future__ import annotations

import base64
import json
from functools import lru_cache
from pathlib import Path

HERE = Path(__file__).parent


@lru_cache(maxsize=4)
def asset(name: str) -> str:
    return (HERE / name).read_text()


def install_script(forward: dict[str, str]) -> str:
    """The frame's script: install ``page.js`` in the page once and publish ``forward``."""
    return asset("install.js").replace("__FORWARD__", safe_json(forward)).replace("__PAGE_SCRIPT__", safe_json(asset("page.js")))


def viewer_html(image_png: bytes, boxes: list[dict] | tuple[dict, ...] = (), forward: dict[str, str] | None = None) -> str:
    """The viewer page for one PNG; ``forward`` maps rating keys to the widget keys of their buttons.

    Only box coordinates are embedded (no labels); the JSON is escaped so no value can close
    the script element.
    """
    coords = [{k: float(b[k]) for k in ("x0", "y0", "x1", "y1")} for b in boxes]
    uri = "data:image/png;base64," + base64.b64encode(image_png).decode("ascii")
    return (
        asset("viewer.html")
        .replace("__IMAGE__", uri)
        .replace("__BOXES__", safe_json(coords))
        .replace("__INSTALL__", install_script(forward or {}))
    )


def keys_html(forward: dict[str, str]) -> str:
    """A blank frame that only installs the page script and publishes ``forward``."""
    return f'<!doctype html><html><body style="margin:0;background:#000"><script>{install_script(forward)}</script></body></html>'


def safe_json(value) -> str:
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
