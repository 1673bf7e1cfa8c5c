"""The dashboard in a real browser: `xreal-bench dashboard RUN_DIR --port P` started as a user starts it, Debian's
chromium driven by Playwright, then Ctrl+C. Skipped (with the reason) when /usr/bin/chromium is absent
(``apt-get install -y chromium``)."""

import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from browser import CHROMIUM, CHROMIUM_ARGS, IDLE, NEEDS_CHROMIUM, free_port, wait_healthy
from report_runs import write_run

pytestmark = [pytest.mark.browser, NEEDS_CHROMIUM]


def page_text(url: str, log: Path) -> tuple[str, str, list[str]]:
    """The page's text, the leaderboard's cells and any page errors, once the leaderboard is drawn."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(30_000)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        try:
            page.goto(url)
            table = page.locator('.st-key-leaderboard [data-testid="stDataFrame"]')
            page.locator(IDLE).wait_for()
            # the grid draws its cells on a canvas; its accessible table (filled once drawn) holds the same text
            expect(table).to_contain_text("roentgen", timeout=30_000)
            return page.inner_text("body"), table.text_content() or "", errors
        except Exception as exc:
            body = page.inner_text("body", timeout=5000)[:2000]
            raise AssertionError(f"{exc}\n--- page ---\n{body}\n--- dashboard log ---\n{log.read_text()[-4000:]}") from exc
        finally:
            browser.close()


def test_the_dashboard_command_serves_the_leaderboard_and_stops_on_ctrl_c(tmp_path):
    run = write_run(
        tmp_path / "run",
        sources={"real": {"fid": 0.0}, "xreal": {"fid": 12.5}, "roentgen": {"fid": 31.0}},
        per_case={"xreal": {"ms_ssim": [0.6] * 8}, "roentgen": {"ms_ssim": [0.4] * 8}},
    )
    port = free_port()
    log = tmp_path / "dashboard.log"
    command = [sys.executable, "-m", "xreal_bench", "dashboard", str(run), "--port", str(port)]
    with open(log, "w") as out:  # a process group of its own stands for the terminal's foreground group
        cli = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, cli, log, what="the dashboard")
        text, cells, errors = page_text(url, log)
        os.killpg(cli.pid, signal.SIGINT)  # Ctrl+C: SIGINT to every process of the foreground group
        assert cli.wait(timeout=30) == 0, log.read_text()
    finally:
        if cli.poll() is None:
            os.killpg(cli.pid, signal.SIGKILL)
            cli.wait()
    assert "xreal-bench results" in text and "all cases; sorted by FID ↓" in text
    assert cells.startswith("generatorrungroupMS-SSIM ↑n (MS-SSIM ↑)FID ↓n (FID ↓)real"), cells
    assert cells.index("real") < cells.index("xreal") < cells.index("roentgen")  # FID 0 < 12.5 < 31
    assert "12.500 [" in cells and "16 images" in cells and "0.600 [0.600, 0.600]8 cases" in cells
    for failure in ("Traceback", "Error", "Exception"):
        assert failure not in text, text[:2000]
    assert not errors, errors
    assert f"at {url}/ (Ctrl+C stops)" in log.read_text()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{url}/_stcore/health", timeout=2)  # the server went with it
