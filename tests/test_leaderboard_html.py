"""The leaderboard files: one self-contained HTML page (no request to anything, sortable columns, CIs,
escaped text), Markdown and CSV from the same cells, and the CLI that writes them.

The browser test drives Debian's chromium through Playwright with every request but the page's own
refused and recorded; skipped (with the reason) when /usr/bin/chromium is absent."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import numpy as np
import pytest
from browser import CHROMIUM, CHROMIUM_ARGS, NEEDS_CHROMIUM
from PIL import Image
from report_runs import write_run

from xreal_bench.cli import main
from xreal_bench.reports.html_page import CSP
from xreal_bench.reports.leaderboard_files import write_leaderboard_files
from xreal_bench.reports.merge import merge_runs
from xreal_bench.reports.runs import load_runs

HOSTILE = 'odd<b>bold<img src=x>&"quote'  # a folder name (no "/": that would be a subfolder)


@pytest.fixture()
def board_dir(tmp_path: Path) -> tuple[Path, list[Path]]:
    """Two comparable runs (one in a folder whose name holds markup), written with a sample grid."""
    first = write_run(
        tmp_path / "first",
        sources={"real": {"fid": 0.5}, "alpha": {"fid": 10.0}, "beta": {"fid": 20.0}},
        per_case={"alpha": {"ms_ssim": [0.3] * 8}, "beta": {"ms_ssim": [0.6] * 8}},
        spread=0.5,
    )
    odd = write_run(tmp_path / HOSTILE, sources={"real": {"fid": 0.5}, "gamma": {"fid": 15.0}}, run_id="=1+2", spread=0.5)
    grid = tmp_path / "grid.png"
    Image.fromarray(np.full((20, 30, 3), 200, np.uint8)).save(grid)
    out = tmp_path / "board"
    write_leaderboard_files(merge_runs(load_runs([first, odd])), out, decimals=2, grid_png=grid)
    return out, [first, odd]


def test_files_and_the_page_is_self_contained(board_dir):
    out, _ = board_dir
    assert sorted(p.name for p in out.iterdir()) == [
        "leaderboard.csv",
        "leaderboard.html",
        "leaderboard.md",
        "rank_plot.pdf",
        "rank_plot.png",
    ]
    page = (out / "leaderboard.html").read_text()
    assert f'<meta http-equiv="Content-Security-Policy" content="{CSP.replace(chr(39), "&#x27;")}">' in page
    assert CSP == "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"
    assert re.findall(r'\b(?:src|href)="(?!data:image/png;base64,)', page) == []
    assert not re.search(r"<link|@import|url\(|https?://|//cdn", page, re.IGNORECASE)
    assert page.count("data:image/png;base64,") == 2  # the rank plot and the sample grid
    assert "10.00 [" in page and "15.00 [" in page  # values with their CIs
    assert '<td class="num" data-sort="16.0">16</td>' in page  # n sorts as a number


def test_text_from_the_runs_is_escaped_everywhere(board_dir):
    out, _ = board_dir
    page = (out / "leaderboard.html").read_text()
    assert "<b>" not in page and "<img src=x" not in page and "odd&lt;b&gt;bold&lt;img src=x&gt;&amp;&quot;quote" in page
    markdown = (out / "leaderboard.md").read_text()
    assert "<b>" not in markdown and r'odd\<b\>bold\<img src=x\>&"quote' in markdown
    csv = (out / "leaderboard.csv").read_text()
    assert ",'=1+2," in csv and ",=1+2," not in csv  # a run id read as a formula is neutralised


def entries(page) -> list[str]:
    column = page.eval_on_selector_all("#board-1 thead th", "ths => ths.map(t => t.textContent.trim()).indexOf('Entry')")
    return page.eval_on_selector_all("#board-1 tbody tr", f"rows => rows.map(r => r.cells[{column}].textContent)")


def sort_state(page) -> dict[str, str]:
    return dict(
        page.eval_on_selector_all("#board-1 thead th", "ths => ths.map(t => [t.textContent.trim(), t.getAttribute('aria-sort')])")
    )


@pytest.mark.browser
@NEEDS_CHROMIUM
def test_page_loads_without_network_and_sorts(board_dir):
    from playwright.sync_api import sync_playwright

    out, _ = board_dir
    url = (out / "leaderboard.html").resolve().as_uri()
    gamma, alpha, beta = (
        f"{g} · {d}"
        for g, d in [("gamma", f"{HOSTILE} (2026-11-20)"), ("alpha", "first (2026-11-20)"), ("beta", "first (2026-11-20)")]
    )
    requested, refused, errors = [], [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context()

            def route(r):
                if r.request.url == url:
                    r.continue_()
                else:
                    refused.append(r.request.url)
                    r.abort()

            context.route("**/*", route)
            page = context.new_page()
            page.on("request", lambda request: requested.append(request.url))
            page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(url)
            assert entries(page) == ["real", alpha, gamma, beta]  # by rank: FID ascending
            assert page.eval_on_selector_all("img", "imgs => imgs.map(i => i.complete && i.naturalWidth > 0)") == [True, True]

            page.get_by_role("button", name="FID ↓").click()
            assert entries(page) == ["real", alpha, gamma, beta] and sort_state(page)["FID ↓"] == "ascending"
            page.get_by_role("button", name="FID ↓").click()
            assert entries(page) == [beta, gamma, alpha, "real"] and sort_state(page)["FID ↓"] == "descending"

            # rows without a value stay last either way, in the order they had (the sort is stable)
            page.get_by_role("button", name="MS-SSIM ↑").click()
            state = sort_state(page)
            assert (
                entries(page) == [alpha, beta, gamma, "real"] and state["MS-SSIM ↑"] == "ascending" and state["FID ↓"] == "none"
            )
            page.get_by_role("button", name="MS-SSIM ↑").click()
            assert entries(page) == [beta, alpha, gamma, "real"] and sort_state(page)["MS-SSIM ↑"] == "descending"

            page.get_by_role("button", name="Entry").click()
            assert entries(page) == [alpha, beta, gamma, "real"]
            page.get_by_role("button", name="Entry").click()
            assert entries(page) == ["real", gamma, beta, alpha]
        finally:
            browser.close()
    assert [u for u in requested if not u.startswith("data:")] == [url]
    assert refused == [] and errors == []


def test_cli_prints_markdown_or_writes_files(board_dir, tmp_path, capsys):
    _, runs = board_dir
    assert main(["leaderboard", *map(str, runs)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("# Leaderboard\n") and "| Rank | Tie | Entry |" in printed
    out = tmp_path / "cli"
    assert main(["leaderboard", *map(str, runs), "--out", str(out), "--rank-by", "ms_ssim"]) == 0
    written = capsys.readouterr().out.splitlines()
    files = ("rank_plot.png", "rank_plot.pdf", "leaderboard.csv", "leaderboard.md", "leaderboard.html")
    assert written == [str(out / n) for n in ("samples_grid.png", "samples_grid.pdf", *files)]
    assert "Rank: by MS-SSIM ↑" in (out / "leaderboard.md").read_text()
    grid = (out / "samples_grid.png").read_bytes()  # the grid the command drew is the one the page shows
    assert (out / "leaderboard.html").read_text().count(f"data:image/png;base64,{base64.b64encode(grid).decode()}") == 1
    assert main(["leaderboard", str(runs[0]), "--grid", str(tmp_path / "absent.png")]) == 2
    assert f"error: --grid {tmp_path / 'absent.png'}: no such file" in capsys.readouterr().err


def test_cli_grid_options(board_dir, tmp_path, capsys):
    _, runs = board_dir
    given = tmp_path / "given.png"
    Image.fromarray(np.full((10, 12, 3), 90, np.uint8)).save(given)
    assert main(["leaderboard", *map(str, runs), "--out", str(tmp_path / "given"), "--grid", str(given)]) == 0
    page = (tmp_path / "given" / "leaderboard.html").read_text()
    assert f"data:image/png;base64,{base64.b64encode(given.read_bytes()).decode()}" in page
    assert not (tmp_path / "given" / "samples_grid.png").exists()
    assert main(["leaderboard", *map(str, runs), "--out", str(tmp_path / "none"), "--no-grid"]) == 0
    assert not (tmp_path / "none" / "samples_grid.png").exists()
    assert (tmp_path / "none" / "leaderboard.html").read_text().count("data:image/png;base64,") == 1  # the rank plot only
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["leaderboard", str(runs[0]), "--out", str(tmp_path / "x"), "--grid", str(given), "--no-grid"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_cli_without_case_facts_writes_no_grid(tmp_path, capsys):
    run = write_run(tmp_path / "run", sources={"real": {"fid": 0.5}, "alpha": {"fid": 10.0}})
    (run / "cases.jsonl").unlink()
    assert main(["leaderboard", str(run), "--out", str(tmp_path / "out")]) == 0
    assert [Path(line).name for line in capsys.readouterr().out.splitlines()][:1] == ["rank_plot.png"]
    assert not (tmp_path / "out" / "samples_grid.png").exists()
