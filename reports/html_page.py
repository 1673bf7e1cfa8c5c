"""``leaderboard.html``: one self-contained file (inline CSS and script, images as data: URIs, no
request to anything), locked down by a Content-Security-Policy that allows nothing else.

Every text from the runs is ``html.escape``d. Each table sorts by the column whose header
button is clicked (numbers by value, text by text, cells without a value last either way);
a second click reverses it, and the header's ``aria-sort`` says the order.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from pathlib import Path

from xreal_bench.reports.board import DEMO_WARNING, Cell, display_table, notes, section_intro
from xreal_bench.reports.merge import Merged

NUMERIC_CLASS = ' class="num"'
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; margin: 1.5rem; color: #111; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; }
th, td { padding: 0.25rem 0.6rem; border-bottom: 1px solid #ccc; text-align: left; vertical-align: top; white-space: nowrap; }
.scroll { overflow-x: auto; }
caption { text-align: left; caption-side: top; font-size: 12px; color: #333; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
th button { font: inherit; font-weight: 600; background: none; border: 0; padding: 0; cursor: pointer; color: inherit; }
th button:focus-visible { outline: 2px solid #0072B2; }
th[aria-sort="ascending"] button::after { content: " \\25B2"; }
th[aria-sort="descending"] button::after { content: " \\25BC"; }
.demo { border: 2px solid #D55E00; background: #fff3e8; padding: 0.5rem 0.8rem; font-weight: 600; }
.notes { font-size: 12px; color: #333; }
img { max-width: 100%; height: auto; }
"""

SCRIPT = """
(function () {
  function key(row, column, numeric) {
    var cell = row.cells[column];
    var raw = cell ? cell.getAttribute("data-sort") : "";
    if (!numeric) { return raw; }
    var value = raw === "" ? NaN : Number(raw);
    return value;
  }
  function compare(a, b, numeric, ascending) {
    var missingA = numeric ? isNaN(a) : a === "";
    var missingB = numeric ? isNaN(b) : b === "";
    if (missingA || missingB) { return missingA === missingB ? 0 : (missingA ? 1 : -1); }
    var order = numeric ? a - b : a.localeCompare(b);
    return ascending ? order : -order;
  }
  var tables = document.querySelectorAll("table.sortable");
  Array.prototype.forEach.call(tables, function (table) {
    var headers = table.querySelectorAll("thead th");
    Array.prototype.forEach.call(headers, function (th, column) {
      th.querySelector("button").addEventListener("click", function () {
        var ascending = th.getAttribute("aria-sort") !== "ascending";
        var numeric = th.getAttribute("data-type") === "number";
        Array.prototype.forEach.call(headers, function (other) { other.setAttribute("aria-sort", "none"); });
        th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) { return compare(key(a, column, numeric), key(b, column, numeric), numeric, ascending); });
        rows.forEach(function (row) { body.appendChild(row); });
      });
    });
  });
})();
"""


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def sort_attribute(cell: Cell) -> str:
    if isinstance(cell.sort, float):
        return "" if math.isnan(cell.sort) else repr(cell.sort)
    return cell.sort


def data_uri(png: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")


def table_html(merged: Merged, index: int, decimals: int) -> str:
    headers, rows = display_table(merged.sections[index], merged.metrics, decimals)
    head = "".join(
        f'<th scope="col" aria-sort="none" data-type="{"number" if h.numeric else "text"}">'
        f'<button type="button">{esc(h.text)}</button></th>'
        for h in headers
    )
    body = []
    for row in rows:
        cells = "".join(
            f'<td{NUMERIC_CLASS if h.numeric else ""} data-sort="{esc(sort_attribute(c))}">{esc(c.text)}</td>'
            for h, c in zip(headers, row)
        )
        body.append(f"<tr>{cells}</tr>")
    caption = "Leaderboard (click a column header to sort)"
    return (
        f'<div class="scroll"><table class="sortable" id="board-{index + 1}"><caption>{esc(caption)}</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )


def figure(png: Path, alt: str, caption: str) -> str:
    return f'<figure><img src="{data_uri(png)}" alt="{esc(alt)}"><figcaption>{esc(caption)}</figcaption></figure>'


def page(merged: Merged, *, decimals: int = 3, plots: Sequence[Path | None] = (), grid_png: Path | None = None) -> str:
    """The whole page: demo warning, per section its runs, differences, table and rank plot, the sample grid, notes."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{esc(CSP)}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>xreal-bench leaderboard</title><style>{STYLE}</style></head><body>",
        "<h1>xreal-bench leaderboard</h1>",
    ]
    if merged.demo:
        parts.append(f'<p class="demo" role="alert">{esc(DEMO_WARNING)}</p>')
    for k, section in enumerate(merged.sections):
        parts.append(f"<section><h2>{esc(section.title)}</h2>")
        parts += [f"<p>{esc(line)}</p>" for line in section_intro(section)]
        parts.append(table_html(merged, k, decimals))
        plot = plots[k] if k < len(plots) else None
        if plot is not None:
            parts.append(figure(plot, f"rank plot, {section.title}", "Ranks with bootstrap intervals; shaded: tied entries."))
        parts.append("</section>")
    if grid_png is not None:
        parts.append("<section><h2>Samples</h2>")
        parts.append(figure(grid_png, "sample grid", "The same cases across sources (real image, anatomy map, box, generators)."))
        parts.append("</section>")
    parts.append('<footer class="notes">' + "".join(f"<p>{esc(line)}</p>" for line in notes(merged)) + "</footer>")
    parts.append(f"<script>{SCRIPT}</script></body></html>")
    return "\n".join(parts) + "\n"
