"""Tables written for people and their tools: cells that cannot act as formulas or break the table.

- CSV: a text cell starting with ``= + - @``, a tab or a carriage return is what spreadsheets
  (Excel, LibreOffice, Google Sheets) run as a formula or split on; it is prefixed with ``'``
  (OWASP's CSV-injection advice). Numbers stay numbers, so ``-0.5`` is untouched.
- Markdown: ``|`` is escaped, and newlines become spaces, so a cell can never add a column or
  a row; ``\\`` and the inline-markup characters are escaped so a name renders as typed.
- LaTeX: the ten special characters are escaped (pandas' ``escape=True`` for values, headers,
  caption), so a name cannot run a command.
"""

from __future__ import annotations

import re

import pandas as pd

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#+!|~])")


def csv_cell(value: object) -> object:
    """``value`` made inert for spreadsheets: a leading formula character gets a ``'`` before it."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` whose text cells and column names pass :func:`csv_cell`."""
    safe = frame.copy()
    for column in safe.columns:
        if safe[column].dtype == object or isinstance(safe[column].dtype, pd.StringDtype):
            safe[column] = safe[column].map(csv_cell)
    safe.columns = [csv_cell(str(c)) for c in safe.columns]
    return safe


def to_csv(frame: pd.DataFrame) -> str:
    """``frame`` as RFC 4180 CSV text (no index, CRLF rows) with every text cell neutralised.

    CRLF row ends make the writer quote any cell holding a ``\r`` or ``\n``, so no cell can
    start a row of its own."""
    return csv_safe(frame).to_csv(index=False, lineterminator="\r\n")


def markdown_cell(value: object) -> str:
    """One Markdown table cell that renders as the literal text of ``value``."""
    text = " ".join(str(value).splitlines())
    return MARKDOWN_SPECIAL.sub(r"\\\1", text)


def to_markdown(frame: pd.DataFrame, *, floatfmt: str = ".3f", empty: str = "_no data_") -> str:
    """A pipe table of ``frame`` whose text cells and headers are escaped (numbers formatted)."""
    if frame.empty:
        return empty
    safe = frame.copy()
    text_columns = []
    for k, column in enumerate(safe.columns):
        if safe[column].dtype == object or isinstance(safe[column].dtype, pd.StringDtype):
            safe[column] = safe[column].map(lambda v: v if v is None or isinstance(v, float) else markdown_cell(v))
            text_columns.append(k)
    safe.columns = [markdown_cell(c) for c in safe.columns]
    # text stays text: tabulate would otherwise print reader "007" as 7.000
    return safe.to_markdown(index=False, floatfmt=floatfmt, disable_numparse=text_columns or False)


def to_latex(frame: pd.DataFrame, *, caption: str, label: str, float_format: str = "%.3f") -> str:
    """A booktabs table of ``frame`` with every cell, header and the caption escaped."""
    return frame.to_latex(
        index=False, float_format=float_format, na_rep="--", escape=True, caption=latex_text(caption), label=label
    )


LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def latex_text(text: str) -> str:
    """``text`` with LaTeX's special characters escaped."""
    return "".join(LATEX_SPECIAL.get(ch, ch) for ch in text)
