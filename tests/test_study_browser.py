"""End to end in a real browser: `study serve` on localhost, Debian's chromium driven by Playwright.

Skipped (with the reason) when /usr/bin/chromium is absent; install it with
``apt-get install -y chromium``.
"""

import re
import socket
import sqlite3
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from xreal_bench.demo.study import sample_study
from xreal_bench.reader_study.cli import serve_command

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (apt-get install -y chromium)"
    ),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"streamlit exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).read() == b"ok":
                return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"no health answer from {url} in {timeout} s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    created = sample_study(root, n_cases=3, readers=["r1"], image_size=256)
    port = free_port()
    command, env = serve_command(created.study_dir, port, "127.0.0.1")
    log = root / "streamlit.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, log)
        yield created, url, log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def page_sources(page) -> str:
    """The page's HTML and every frame's (the viewer), image data left out."""
    html = "\n".join(frame.content() for frame in page.frames)
    return re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "<image>", html)


def test_sign_in_rate_three_items_with_the_keyboard_and_resume_after_reload(served):
    from playwright.sync_api import sync_playwright

    created, url, log = served
    total = created.items_per_reader
    keys = ["3", "4", "5"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = None
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(30_000)
            errors = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{url}/?token={created.readers[0].token}")  # the reader's link
            idle = page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]')
            for position in (1, 2, 3):
                page.get_by_text(f"{position} / {total}", exact=True).wait_for()
                idle.wait_for()  # the whole page (viewer included) shows this item
                page.frame_locator("iframe").locator("canvas#view").wait_for()
                page.wait_for_function("document.getElementById('reader-keys')")  # the page's key queue
                if position == 2:  # zoom, pan and window/level in the viewer move the focus into its frame
                    canvas = page.frame_locator("iframe").locator("canvas#view")
                    canvas.hover()
                    page.mouse.wheel(0, -300)
                    canvas.drag_to(canvas, source_position={"x": 200, "y": 200}, target_position={"x": 260, "y": 240})
                    canvas.click(modifiers=["Shift"])
                if position == 3:  # digits typed into the comment are text, not ratings
                    page.get_by_label("Comment (optional)").press_sequentially("12")
                    page.get_by_text("Signed in as").click()  # leave the field
                    idle.wait_for()
                # A fast reader: every key before the first rerun ends. Streamlit would drop the
                # presses that reach it mid-rerun; the page's key queue sends them one rerun apart.
                for key in [*keys, "Enter"]:
                    page.keyboard.press(key)
            page.get_by_text(f"4 / {total}", exact=True).wait_for()
            assert "token" not in page.url  # the server moved it into a cookie, which keeps the sign-in on a reload
            page.reload()
            page.get_by_text(f"4 / {total}", exact=True).wait_for()
            idle.wait_for()
            page.frame_locator("iframe").locator("canvas#view").wait_for()
            source = page_sources(page)
            assert not errors, errors
        except Exception as exc:  # keep what the server said: a browser timeout alone explains nothing
            raise AssertionError(
                f"{exc}\n--- page text ---\n{page.inner_text('body', timeout=5000)[:2000] if page else ''}\n--- streamlit log ---\n{log.read_text()[-4000:]}"
            ) from exc
        finally:
            browser.close()
    con = sqlite3.connect(created.study_dir / "study.sqlite")
    rows = con.execute(
        """SELECT a.position, p.criterion, p.score FROM responses p
           JOIN assignments a ON a.reader_id = p.reader_id AND a.item_id = p.item_id ORDER BY 1, 2"""
    ).fetchall()
    comments = con.execute("SELECT a.position, c.text FROM comments c JOIN assignments a USING (reader_id, item_id)").fetchall()
    cases = {r[0] for r in con.execute("SELECT case_id FROM images")}
    con.close()
    expected = {"anatomy_realism": 3, "pathology_realism": 4, "image_quality": 5}
    assert rows == [(pos, c, expected[c]) for pos in (1, 2, 3) for c in sorted(expected)]
    assert comments == [(3, "12")]
    assert "Pathology" in source and "4 / " in source  # the page really was captured
    leaks = [s for s in ("xreal", "cheff", *cases, str(created.study_dir)) if s in source]
    assert not leaks
