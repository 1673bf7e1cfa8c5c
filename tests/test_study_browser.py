"""End to end in a real browser: `study serve` on localhost, Debian's chromium driven by Playwright.

One server and one browser serve the module (each test signs in its own reader); the
connection-lost test starts a server of its own and kills it. Skipped (with the reason) when
/usr/bin/chromium is absent; install it with ``apt-get install -y chromium``. With
``XREAL_BENCH_SCREENSHOTS=<dir>`` the viewport test saves ``reading-room-<W>x<H>.png`` there.
"""

import base64
import hashlib
import http.server
import os
import re
import sqlite3
import subprocess
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from browser import CHROMIUM, CHROMIUM_ARGS, IDLE, NEEDS_CHROMIUM, free_port, wait_healthy

from xreal_bench.demo.study import sample_study
from xreal_bench.reader_study.cli import serve_command

READERS = ["keys", "tabs", "room", "order1", "order2", "markdown"]
VIEWPORTS = [(1366, 768), (1920, 1080), (2560, 1440)]
STALE = "Not saved: that rating was made on an item that was already answered"
RATING = {"anatomy_realism", "pathology_realism", "image_quality"}

pytestmark = [pytest.mark.browser, NEEDS_CHROMIUM]


@contextmanager
def serving(study_dir: Path, log: Path):
    """``study serve`` in a subprocess; yields (url, process)."""
    port = free_port()
    command, env = serve_command(study_dir, port, "127.0.0.1")
    with open(log, "w") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, log)
        yield url, proc
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    created = sample_study(root, n_cases=3, readers=READERS, image_size=384)
    log = root / "streamlit.log"
    with serving(created.study_dir, log) as (url, _):
        yield created, url, log


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def token_of(created, name: str) -> str:
    return next(r.token for r in created.readers if r.name == name)


def reader_id_of(created, name: str) -> int:
    con = sqlite3.connect(created.study_dir / "study.sqlite")
    (reader_id,) = con.execute("SELECT reader_id FROM readers WHERE name = ?", (name,)).fetchone()
    con.close()
    return reader_id


def answers(created, name: str) -> list[tuple[int, str, int]]:
    """(position, criterion, score) of every stored answer of reader ``name``."""
    con = sqlite3.connect(created.study_dir / "study.sqlite")
    rows = con.execute(
        """SELECT a.position, p.criterion, p.score FROM responses p JOIN readers r USING (reader_id)
           JOIN assignments a ON a.reader_id = p.reader_id AND a.item_id = p.item_id
           WHERE r.name = ? ORDER BY 1, 2""",
        (name,),
    ).fetchall()
    con.close()
    return rows


def rated(position: int, anatomy: int, pathology: int, quality: int) -> list[tuple[int, str, int]]:
    return [
        (position, "anatomy_realism", anatomy),
        (position, "image_quality", quality),
        (position, "pathology_realism", pathology),
    ]


def item_shown(page, previous_keys: str | None = None) -> str:
    """Wait until an item's page is drawn and its rating keys are published; return those keys."""
    page.locator(IDLE).wait_for()
    page.frame_locator(".st-key-viewer iframe").locator("canvas#view[data-drawn]").wait_for()
    page.wait_for_function(
        "(old) => window.readerKeysIdle && window.readerKeysIdle() && document.documentElement.dataset.readerKeys !== old",
        arg=previous_keys,
    )
    return page.evaluate("document.documentElement.dataset.readerKeys")


def settle(page) -> None:
    """Wait until every queued key press was sent and its rerun has finished."""
    page.wait_for_function("window.readerKeysIdle()")
    page.locator(IDLE).wait_for()


def open_reader(context, url: str, token: str):
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(f"{url}/?token={token}")
    return page, item_shown(page)


def progress_line(page) -> str:
    return page.locator('[data-testid="stProgress"]').inner_text().strip()


def shown_image_sha256(page) -> str:
    srcdoc = page.locator(".st-key-viewer iframe").get_attribute("srcdoc")
    (data,) = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", srcdoc)
    return hashlib.sha256(base64.b64decode(data)).hexdigest()


def page_sources(page) -> str:
    """The page's HTML and every frame's (the viewer), image data left out."""
    html = "\n".join(frame.content() for frame in page.frames)
    return re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "<image>", html)


@contextmanager
def explained(page, log: Path):
    """Keep what the page showed and the server said: a browser timeout alone explains nothing."""
    try:
        yield
    except Exception as exc:
        text = page.inner_text("body", timeout=5000)[:2000] if page else ""
        raise AssertionError(f"{exc}\n--- page text ---\n{text}\n--- streamlit log ---\n{log.read_text()[-4000:]}") from exc


def test_sign_in_keyboard_flow_enter_from_the_comment_box_and_resume_after_reload(served, browser):
    created, url, log = served
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    with explained(page, log):
        page.goto(f"{url}/?token={token_of(created, 'keys')}")  # the reader's link
        keys = item_shown(page)
        assert "token" not in page.url  # the server moved it into a cookie, which keeps the sign-in on a reload
        # A fast reader: every key before the first rerun ends. Streamlit would drop the presses
        # that reach it mid-rerun; the page's key queue sends them one rerun apart.
        for key in ["3", "4", "5", "Enter"]:
            page.keyboard.press(key)
        keys = item_shown(page, keys)
        assert answers(created, "keys") == rated(1, 3, 4, 5)
        # zoom, pan, window/level and the presets move the focus into the viewer's frame
        viewer = page.frame_locator(".st-key-viewer iframe")
        canvas = viewer.locator("canvas#view")
        canvas.hover()
        page.mouse.wheel(0, -300)
        canvas.drag_to(canvas, source_position={"x": 200, "y": 200}, target_position={"x": 260, "y": 240})
        viewer.get_by_role("button", name="Lung").click()
        assert viewer.get_by_role("button", name="Lung").get_attribute("aria-pressed") == "true"
        assert viewer.locator("#win").input_value() == "150" and viewer.locator("#lev").input_value() == "85"
        viewer.get_by_role("button", name="Reset").click()
        assert viewer.locator("#win").input_value() == "255" and viewer.locator("#lev").input_value() == "128"
        for key in ["2", "2", "Backspace", "1", "4", "Enter"]:  # Backspace undoes the last rating
            page.keyboard.press(key)
        keys = item_shown(page, keys)
        assert answers(created, "keys")[3:] == rated(2, 2, 1, 4)
        # Enter from the comment box: digits there are text, Shift+Enter a newline, Enter submits
        for key in "534":
            page.keyboard.press(key)
        settle(page)
        comment = page.get_by_label("Comment (optional)")
        comment.click()
        comment.press_sequentially("12")
        comment.press("Shift+Enter")
        comment.press_sequentially("ok")
        comment.press("Enter")
        keys = item_shown(page, keys)
        assert answers(created, "keys")[6:] == rated(3, 5, 3, 4)
        assert progress_line(page).startswith("Realism ratings 4 / ")
        page.reload()
        item_shown(page)
        assert progress_line(page).startswith("Realism ratings 4 / ")
        source = page_sources(page)
        assert not errors, errors
    context.close()
    con = sqlite3.connect(created.study_dir / "study.sqlite")
    comments = con.execute("SELECT text FROM comments WHERE reader_id = ?", (reader_id_of(created, "keys"),)).fetchall()
    cases = {r[0] for r in con.execute("SELECT case_id FROM images")}
    con.close()
    assert comments == [("12\nok",)]
    assert "Pathology" in source and "Realism ratings 4 / " in source  # the page really was captured
    leaks = [s for s in ("xreal", "cheff", *cases, str(created.study_dir)) if s in source]
    assert not leaks


def test_two_tabs_of_one_reader_never_store_a_rating_on_another_image(served, browser):
    created, url, log = served
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    token = token_of(created, "tabs")
    tab1, _ = open_reader(context, url, token)
    tab2, keys2 = open_reader(context, url, token)
    with explained(tab2, log):
        for key in ["3", "3", "3", "Enter"]:
            tab1.keyboard.press(key)
        item_shown(tab1)
        assert answers(created, "tabs") == rated(1, 3, 3, 3)
        # tab 2 still shows item 1: these presses are for item 1, which is answered
        for key in ["5", "5", "5", "Enter"]:
            tab2.keyboard.press(key)
        keys2 = item_shown(tab2, keys2)
        settle(tab2)
        assert tab2.get_by_text(STALE).is_visible()
        assert answers(created, "tabs") == rated(1, 3, 3, 3)  # nothing stored from tab 2
        assert tab2.locator('[role="radio"][aria-checked="true"]').count() == 0  # no score carried to item 2
        for key in ["1", "1", "2", "Enter"]:
            tab2.keyboard.press(key)
        item_shown(tab2, keys2)
        assert answers(created, "tabs") == rated(1, 3, 3, 3) + rated(2, 1, 1, 2)
    context.close()


def test_the_reading_room_fills_the_viewport_with_the_image_and_keeps_submit_visible(served, browser):
    created, url, log = served
    shots = os.environ.get("XREAL_BENCH_SCREENSHOTS")
    for width, height in VIEWPORTS:
        context = browser.new_context(viewport={"width": width, "height": height})
        page, _ = open_reader(context, url, token_of(created, "room"))
        with explained(page, log):
            frame = page.locator(".st-key-viewer iframe").bounding_box()
            x, y, w, h = map(
                float, page.frame_locator(".st-key-viewer iframe").locator("canvas#view").get_attribute("data-drawn").split(",")
            )
            image = {"x": frame["x"] + x, "y": frame["y"] + y, "width": w, "height": h}
            submit = page.get_by_role("button", name="Submit").bounding_box()
            for box in (frame, image, submit):
                assert box["x"] >= 0 and box["y"] >= 0, (width, height, box)
                assert box["x"] + box["width"] <= width + 0.5 and box["y"] + box["height"] <= height + 0.5, (width, height, box)
            # the image takes the viewport's height less the viewer's toolbar; the panel sits beside it
            assert h >= height - 60 and w * h >= 0.45 * width * height, (width, height, image)
            assert submit["x"] >= image["x"] + image["width"]
            background = page.evaluate("getComputedStyle(document.querySelector('[data-testid=stApp]')).backgroundColor")
            assert background in ("rgb(10, 10, 10)", "rgba(10, 10, 10, 1)"), background  # the dark room
            if shots:
                Path(shots).mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(Path(shots) / f"reading-room-{width}x{height}.png"))
            if (width, height) == (1920, 1080):  # 1:1 pixels, fit and full screen
                viewer = page.frame_locator(".st-key-viewer iframe")
                viewer.get_by_role("button", name="1:1").click()
                drawn = viewer.locator("canvas#view").get_attribute("data-drawn").split(",")
                assert float(drawn[2]) == 384.0  # one image pixel per screen pixel (device pixel ratio 1)
                viewer.get_by_role("button", name="Fit").click()
                assert viewer.locator("canvas#view").get_attribute("data-drawn").split(",")[2] == f"{w:.1f}"
                viewer.get_by_role("button", name="Full screen").click()
                page.wait_for_function("document.fullscreenElement === document.documentElement")
                viewer.get_by_role("button", name="Full screen").click()
                page.wait_for_function("document.fullscreenElement === null")
        context.close()


def test_connection_lost_banner_when_the_server_stops(tmp_path, browser):
    created = sample_study(tmp_path, n_cases=2, readers=["r1"], image_size=64, turing_test=False)
    log = tmp_path / "streamlit.log"
    context = browser.new_context(viewport={"width": 1366, "height": 768})
    with serving(created.study_dir, log) as (url, proc):
        page, _ = open_reader(context, url, created.readers[0].token)
        banner = page.get_by_text("Connection lost — your last acknowledged rating is saved")
        assert banner.count() == 0 or not banner.is_visible()
        proc.kill()
        proc.wait()
        banner.wait_for(state="visible", timeout=15_000)
    context.close()


def test_each_reader_sees_their_own_randomised_order(served, browser):
    created, url, log = served
    con = sqlite3.connect(created.study_dir / "study.sqlite")
    expected = {
        name: [
            r[0]
            for r in con.execute(
                """SELECT m.sha256 FROM assignments a JOIN items i USING (item_id) JOIN images m USING (image_id)
                   WHERE a.reader_id = ? ORDER BY a.position LIMIT 3""",
                (reader_id_of(created, name),),
            )
        ]
        for name in ("order1", "order2")
    }
    con.close()
    seen = {}
    for name in expected:
        context = browser.new_context(viewport={"width": 1366, "height": 768})
        page, keys = open_reader(context, url, token_of(created, name))
        with explained(page, log):
            seen[name] = []
            for _ in range(3):
                seen[name].append(shown_image_sha256(page))
                for key in ["2", "2", "2", "Enter"]:
                    page.keyboard.press(key)
                keys = item_shown(page, keys)
        context.close()
    assert seen == expected  # the bytes shown are the assigned images, in the assigned order ...
    assert seen["order1"] != seen["order2"]  # ... which differs between readers


class Listener(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        Listener.hits.append(self.path)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_a_markdown_reader_name_is_plain_text_and_fetches_nothing(served, browser):
    created, url, log = served
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Listener)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    trap = f"http://127.0.0.1:{server.server_address[1]}/x"
    name = f"![x]({trap}) [link]({trap}) <img src='{trap}'>"
    con = sqlite3.connect(created.study_dir / "study.sqlite")
    con.execute("UPDATE readers SET name = ? WHERE name = 'markdown'", (name,))
    con.commit()
    con.close()
    context = browser.new_context(viewport={"width": 1366, "height": 768})
    requested = []
    context.on("request", lambda request: requested.append(request.url))
    try:
        page, _ = open_reader(context, url, token_of(created, "markdown"))
        with explained(page, log):
            assert page.get_by_text(f"Signed in as {name}", exact=True).is_visible()
            admin = context.new_page()
            admin.goto(f"{url}/?token={created.admin.token}")
            admin.get_by_text("Progress per reader").wait_for()
            admin.locator(IDLE).wait_for()
            time.sleep(0.5)
    finally:
        context.close()
        server.shutdown()
    assert Listener.hits == [] and not [u for u in requested if trap in u]
