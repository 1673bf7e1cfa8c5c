"""Exported tables: spreadsheet formulas neutralised, Markdown and LaTeX cells escaped."""

import csv
import io

import pandas as pd

from xreal_bench.tables import csv_cell, to_csv, to_latex, to_markdown

HOSTILE = ['=HYPERLINK("http://x")', "+1+2", "-2+3", "@SUM(A1)", "\tx", "\rx", "a|b", "![x](http://e/p.png)", "x_y\\z&#%$"]


def test_csv_cells_that_spreadsheets_would_run_start_with_a_quote():
    for value in HOSTILE[:6]:
        assert csv_cell(value) == "'" + value
    assert csv_cell("ok") == "ok" and csv_cell(-0.5) == -0.5 and csv_cell("a-b") == "a-b"
    text = to_csv(pd.DataFrame({"name": HOSTILE, "score": range(len(HOSTILE))}))
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[0] == ["name", "score"]
    assert [r[0][0] for r in rows[1:7]] == ["'"] * 6
    assert rows[7][0] == "a|b" and rows[3][1] == "2"


def test_markdown_cells_cannot_add_columns_or_markup():
    text = to_markdown(pd.DataFrame({"reader": HOSTILE, "x": [1.0] * len(HOSTILE)}))
    lines = text.splitlines()
    assert len(lines) == 2 + len(HOSTILE)  # a \r in a cell does not start a row
    for line in lines:
        assert line.replace("\\|", "").count("|") == 3  # every row has exactly two cells
    assert "\\!\\[x\\]\\(http://e/p.png\\)" in text


def test_latex_cells_and_caption_are_escaped():
    text = to_latex(pd.DataFrame({"reader": ["x_y\\z&#%$"], "v": [0.5]}), caption="a_b & c", label="tab:t")
    assert r"x\_y\textbackslash z\&\#\%\$" in text
    assert r"\caption{a\_b \& c}" in text


def test_markdown_keeps_text_that_looks_like_a_number():
    text = to_markdown(pd.DataFrame({"reader": ["007", "10", "1e3"], "score": [1.0, 2.5, 3.0]}))
    rows = [line.split("|")[1:3] for line in text.splitlines()[2:]]
    assert [(r.strip(), s.strip()) for r, s in rows] == [("007", "1.000"), ("10", "2.500"), ("1e3", "3.000")]
