"""LaTeX for the paper tables: booktabs rendering (:func:`latex_table`) and a structural check
(:func:`check_latex`) that every table the suite writes passes.

Everything from data — row labels, headers that are names, the caption, footnotes — is plain
text escaped once with :func:`xreal_bench.tables.latex_text`; the suite's own markup (arrows,
``\\textbf``, ``\\underline``, ``\\multicolumn`` headings, the dagger) is added around it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from xreal_bench.reports.table_model import DAGGER, Cell, CIStyle, Note, PaperTable, Symbol, fmt, value_text
from xreal_bench.tables import latex_text


def note_latex(note: Note) -> str:
    return "".join(part.latex if isinstance(part, Symbol) else latex_text(part) for part in note)


MARKUP = {"best": "\\textbf", "second": "\\underline", "": ""}


def latex_cell(cell: Cell, *, decimals: int, ci: CIStyle) -> str:
    """The cell's value, bold or underlined by its mark; a bracketed CI goes on a second, smaller line
    (a one-column inner tabular, the kernel's way to stack lines in a cell) so wide tables keep their width."""
    markup = MARKUP[cell.mark]

    def marked(text: str) -> str:
        return f"{markup}{{{text}}}" if markup else text

    e = cell.estimate
    if ci == "brackets" and e is not None and e.finite and e.has_ci:
        interval = f"[{fmt(e.low, decimals)}, {fmt(e.high, decimals)}]"
        return f"\\begin{{tabular}}[c]{{@{{}}c@{{}}}}{marked(fmt(e.value, decimals))}\\\\ {{\\scriptsize {marked(interval)}}}\\end{{tabular}}"
    return marked(value_text(e, decimals=decimals, ci=ci, pm="$\\pm$", missing="--"))


def latex_table(table: PaperTable, *, decimals: int, ci: CIStyle, label: str) -> str:
    """A ``table*`` float with a booktabs tabular: group headings as ``\\multicolumn`` rows between ``\\midrule``s,
    best in bold, second underlined, footnotes under the rule."""
    width = len(table.columns) + 1
    lines = [
        "\\begin{table*}[t]",
        "\\centering",
        "\\footnotesize",
        f"\\caption{{{latex_text(table.caption)}}}",
        f"\\label{{{label}}}",
        "\\begin{tabular}{l" + "c" * len(table.columns) + "}",
        "\\toprule",
        " & ".join([latex_text(table.corner), *(c.latex for c in table.columns)]) + " \\\\",
    ]
    for group in table.groups:
        lines.append("\\midrule")
        if group:
            lines.append(f"\\multicolumn{{{width}}}{{l}}{{\\textit{{{latex_text(group)}}}}} \\\\")
        for row in (r for r in table.rows if r.group == group):
            name = latex_text(row.label) + (DAGGER.latex if row.dagger else "")
            lines.append(" & ".join([name, *(latex_cell(c, decimals=decimals, ci=ci) for c in row.cells)]) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    if table.notes:
        lines += ["", "\\smallskip", "\\begin{minipage}{\\linewidth}\\scriptsize"]
        lines += [note_latex(n) + "\\par" for n in table.notes]
        lines.append("\\end{minipage}")
    lines.append("\\end{table*}")
    return "\n".join(lines) + "\n"


# -- structural check -------------------------------------------------------------------------

#: Commands whose first argument is a name, not text (``\label{tab:a_b}`` is fine).
NAME_ARGUMENT_COMMANDS = frozenset({"label", "ref", "begin", "end", "cite", "usepackage", "documentclass", "input"})
RULES = frozenset({"toprule", "midrule", "bottomrule", "hline", "cmidrule", "addlinespace", "cline"})
TABULARS = frozenset({"tabular", "tabular*", "array"})
SPECIAL_EVERYWHERE = "%#"  # a comment or a macro parameter: never meant in a generated table
SPECIAL_OUTSIDE_MATH = "_^"


@dataclass(frozen=True)
class Token:
    kind: str  # "cmd" (``\\name`` or ``\\<symbol>``) or "char"
    value: str
    line: int
    end: int  # offset just past the token


def tokens(text: str) -> Iterator[Token]:
    i, line = 0, 1
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            j = i + 1
            while j < len(text) and text[j].isalpha():
                j += 1
            j = max(j, i + 2)  # a control symbol: one character
            yield Token("cmd", text[i + 1 : j], line, j)
            line += text[i + 1 : j].count("\n")
            i = j
            continue
        yield Token("char", ch, line, i + 1)
        line += ch == "\n"
        i += 1


def group_argument(text: str, start: int) -> tuple[str, int] | None:
    """The ``{...}`` argument starting at or after ``start`` (spaces skipped): its inner text and the offset after it."""
    i = start
    while i < len(text) and text[i] in " \t":
        i += 1
    if i >= len(text) or text[i] != "{":
        return None
    depth, j = 0, i
    while j < len(text):
        if text[j] == "\\":
            j += 2
            continue
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        j += 1
        if depth == 0:
            return text[i + 1 : j - 1], j
    return None


def column_count(spec: str) -> int | str:
    """Columns a tabular spec declares (``l``, ``c``, ``r``, ``p{..}``, ``*{n}{..}``; ``|``, ``@{..}`` add none), or the problem."""
    count, i = 0, 0
    while i < len(spec):
        ch = spec[i]
        if ch in "lcrX":
            count, i = count + 1, i + 1
        elif ch in "pmb@!<>":
            arg = group_argument(spec, i + 1)
            if arg is None:
                return f"column type {ch!r} without its argument"
            count, i = count + (ch in "pmb"), arg[1]
        elif ch == "*":
            times, body = group_argument(spec, i + 1), None
            if times is not None:
                body = group_argument(spec, times[1])
            if times is None or body is None or not times[0].strip().isdigit():
                return "malformed *{n}{...} column spec"
            inner = column_count(body[0])
            if isinstance(inner, str):
                return inner
            count, i = count + int(times[0]) * inner, body[1]
        elif ch in "| \t\n":
            i += 1
        else:
            return f"unknown column type {ch!r}"
    return count


class Checker:
    """One pass over the tokens, collecting problems (see :func:`check_latex`)."""

    def __init__(self, text: str):
        self.text = text
        self.problems: list[str] = []
        self.depth = 0
        self.environments: list[tuple[str, int]] = []
        self.math = False
        self.tabular: list[dict] = []  # open tabulars: declared columns, the current row's spans and whether it has content

    def problem(self, line: int, message: str) -> None:
        self.problems.append(f"line {line}: {message}")

    def run(self) -> list[str]:
        skip_until = 0
        for token in tokens(self.text):
            if token.end <= skip_until:
                continue
            if token.kind == "cmd":
                skip_until = self.command(token)
            else:
                self.char(token)
        end = max(len(self.text.splitlines()), 1)
        if self.depth > 0:
            self.problem(end, f"{self.depth} unclosed '{{'")
        if self.math:
            self.problem(end, "math mode ($) still open at the end")
        for name, line in self.environments:
            self.problem(line, f"\\begin{{{name}}} without \\end{{{name}}}")
        return self.problems

    def command(self, token: Token) -> int:
        """Handle a command; return the offset up to which the text was consumed (its name argument)."""
        name, line = token.value, token.line
        if name in NAME_ARGUMENT_COMMANDS:
            arg = group_argument(self.text, token.end)
            if arg is None:
                self.problem(line, f"\\{name} without its {{argument}}")
                return token.end
            if name == "begin":
                return self.begin(arg[0], line, arg[1])
            if name == "end":
                self.end(arg[0], line)
            return arg[1]
        if name in ("(", "["):
            self.math = True
        elif name in (")", "]"):
            self.math = False
        elif name == "\\" and self.tabular:
            self.row_end(line)
        elif self.tabular:
            self.cell_content(name, line, token.end)
        return token.end

    def begin(self, name: str, line: int, after: int) -> int:
        self.environments.append((name, line))
        if name not in TABULARS:
            return after
        if name == "tabular*":
            width = group_argument(self.text, after)
            after = width[1] if width else after
        position = re.match(r"\s*\[[^\]]*\]", self.text[after:])  # the optional vertical position: [t], [c], [b]
        after += position.end() if position else 0
        spec = group_argument(self.text, after)
        if spec is None:
            self.problem(line, f"\\begin{{{name}}} without a column spec")
            self.tabular.append({"columns": 0, "spans": [], "content": False})
            return after
        count = column_count(spec[0])
        if isinstance(count, str):
            self.problem(line, f"column spec {{{spec[0]}}}: {count}")
            count = 0
        self.tabular.append({"columns": count, "spans": [1], "content": False})
        return spec[1]

    def end(self, name: str, line: int) -> None:
        if not self.environments:
            self.problem(line, f"\\end{{{name}}} without \\begin")
            return
        opened, opened_line = self.environments.pop()
        if opened != name:
            self.problem(line, f"\\end{{{name}}} closes \\begin{{{opened}}} of line {opened_line}")
        if name in TABULARS and self.tabular:
            self.row_end(line)
            self.tabular.pop()

    def row_end(self, line: int) -> None:
        table = self.tabular[-1]
        if self.math:
            self.problem(line, "math mode ($) still open at the end of a table row")
            self.math = False
        if table["content"] and table["columns"] and sum(table["spans"]) != table["columns"]:
            self.problem(line, f"table row has {sum(table['spans'])} columns, the tabular declares {table['columns']}")
        table.update(spans=[1], content=False)

    def cell_content(self, name: str, line: int, end: int) -> None:
        table = self.tabular[-1]
        if name in RULES:
            return
        if name == "multicolumn":
            span = group_argument(self.text, end)
            if span is None or not span[0].strip().isdigit():
                self.problem(line, "\\multicolumn without a column count")
            else:
                table["spans"][-1] = int(span[0])
        table["content"] = True

    def char(self, token: Token) -> None:
        ch, line = token.value, token.line
        if ch == "{":
            self.depth += 1
        elif ch == "}":
            self.depth -= 1
            if self.depth < 0:
                self.problem(line, "'}' without its '{'")
                self.depth = 0
        elif ch == "$":
            self.math = not self.math
        elif ch in SPECIAL_EVERYWHERE:
            self.problem(line, f"unescaped {ch!r}")
        elif ch in SPECIAL_OUTSIDE_MATH and not self.math:
            self.problem(line, f"unescaped {ch!r} outside math")
        elif ch == "&":
            if not self.tabular:
                self.problem(line, "unescaped '&' outside a tabular")
            else:
                self.tabular[-1]["spans"].append(1)
        if self.tabular and not ch.isspace():
            self.tabular[-1]["content"] = True


def check_latex(text: str) -> list[str]:
    """Structural problems of ``text`` (empty: none): unbalanced braces (``\\{`` ``\\}`` ignored), ``\\begin``/``\\end``
    pairs, each tabular row's columns (``&`` plus ``\\multicolumn`` spans) against the column spec, and unescaped
    ``% # & _ ^ $`` (``_``/``^`` allowed in math; ``&`` inside a tabular; math that never closes)."""
    return Checker(text).run()
