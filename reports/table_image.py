"""Table I as a picture (``table_main.png``): the same cells, marks and footnotes as the Markdown and
LaTeX tables, drawn with matplotlib for slides and the README. Best values are bold, second
underlined, group headings bold; the footnotes are wrapped under the table."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from xreal_bench.atomic import write_atomic  # noqa: E402
from xreal_bench.reports.options import ReportOptions  # noqa: E402
from xreal_bench.reports.table_model import DAGGER, PaperTable, note_text, value_text  # noqa: E402

FONT_PT = 8
ROW_IN = 0.26
NOTE_WIDTH = 150  # characters per footnote line


def table_figure(table: PaperTable, options: ReportOptions) -> Figure:
    """The table drawn on one figure: header, group headings, rows, wrapped footnotes."""
    header = [table.corner, *(c.text for c in table.columns)]
    lines: list[tuple[str, list[str], list[str]]] = []  # (kind, texts, marks)
    for group in table.groups:
        if group:
            lines.append(("group", [group], [""]))
        for row in (r for r in table.rows if r.group == group):
            label = row.label + (DAGGER.text if row.dagger else "")
            texts = [value_text(c.estimate, decimals=options.decimals, ci=options.ci) for c in row.cells]
            lines.append(("row", [label, *texts], ["", *(c.mark for c in row.cells)]))
    notes = [part for n in table.notes for part in textwrap.wrap(note_text(n), NOTE_WIDTH)]
    widths = [
        max(len(header[j]), *(len(t[j]) for kind, t, _ in lines if kind == "row" and j < len(t))) for j in range(len(header))
    ]
    total = sum(widths) + 2 * len(widths)
    fig_w = max(6.0, 0.075 * total)
    caption = textwrap.wrap(table.caption, NOTE_WIDTH)
    n_lines = 1.2 + 0.8 * len(caption) + len(lines) + len(notes) * 0.8
    fig = Figure(figsize=(fig_w, ROW_IN * n_lines + 0.3))
    ax = fig.add_axes((0.01, 0.01, 0.98, 0.98))
    ax.set_axis_off()
    ax.set_xlim(0, total)
    ax.set_ylim(n_lines, 0)
    starts = [sum(widths[:j]) + 2 * j for j in range(len(widths))]
    for k, text in enumerate(caption):
        ax.text(0, 0.5 + 0.8 * k, text, fontsize=FONT_PT, weight="bold", va="center")
    y = 0.7 + 0.8 * len(caption)
    for j, text in enumerate(header):
        ax.text(
            starts[j] + (0 if j == 0 else widths[j]),
            y,
            text,
            fontsize=FONT_PT,
            weight="bold",
            va="center",
            ha="left" if j == 0 else "right",
        )
    ax.plot([0, total], [y - 0.5, y - 0.5], color="black", lw=1.0)
    ax.plot([0, total], [y + 0.5, y + 0.5], color="black", lw=0.6)
    underlined = []
    for kind, texts, marks in lines:
        y += 1
        if kind == "group":
            ax.text(0, y, texts[0], fontsize=FONT_PT, weight="bold", style="italic", va="center")
            continue
        for j, (text, mark) in enumerate(zip(texts, marks)):
            x, ha = (starts[j], "left") if j == 0 else (starts[j] + widths[j], "right")
            drawn = ax.text(x, y, text, fontsize=FONT_PT, va="center", ha=ha, weight="bold" if mark == "best" else "normal")
            if mark == "second":
                underlined.append((drawn, y))
    ax.plot([0, total], [y + 0.5, y + 0.5], color="black", lw=1.0)
    renderer = FigureCanvasAgg(fig).get_renderer()
    to_data = ax.transData.inverted()
    for drawn, row_y in underlined:  # the rule under a second-best value spans exactly its text
        (x0, _), (x1, _) = to_data.transform(drawn.get_window_extent(renderer).get_points())
        ax.plot([x0, x1], [row_y + 0.38, row_y + 0.38], color="black", lw=0.7)
    for k, note in enumerate(notes):
        ax.text(0, y + 1.2 + 0.8 * k, note, fontsize=FONT_PT - 1, va="center")
    return fig


def write_table_image(table: PaperTable, path: Path, options: ReportOptions) -> Path:
    """``table`` as a PNG at ``path`` (200 dpi)."""
    figure = table_figure(table, options)
    write_atomic(path, lambda f: figure.savefig(f, format="png", dpi=200, metadata={"Software": None}))
    return path
