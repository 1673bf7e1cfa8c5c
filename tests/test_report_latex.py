"""The LaTeX of the paper tables: the structural checker finds each kind of error (and passes good
tables), and every table the suite writes compiles with pdflatex where it is installed."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from report_runs import write_run

from xreal_bench.reader_study.layout import RUNS_META
from xreal_bench.reader_study.storage import Storage
from xreal_bench.reports.latex import check_latex, column_count
from xreal_bench.reports.options import ReportOptions
from xreal_bench.reports.runs import load_run
from xreal_bench.reports.tables import write_tables

GOOD = r"""\begin{table}[t]
\caption{A 95 \% table with a\_b and \{braces\}}
\label{tab:a_b}
\begin{tabular}{l*{2}{c}@{}r}
\toprule
Model & FID $\downarrow$ & F1\textsubscript{x} & $x_1^2$ \\
\midrule
\multicolumn{4}{l}{\textit{Group}} \\
a & \textbf{1.0} & \underline{2.0} & \begin{tabular}[c]{@{}c@{}}3\\ {\scriptsize [2, 4]}\end{tabular} \\
\multicolumn{2}{l}{both} & 1 & 2 \\
\bottomrule
\end{tabular}
\end{table}
"""


def test_a_good_table_passes():
    assert check_latex(GOOD) == []


@pytest.mark.parametrize(
    "bad, problem",
    [
        (GOOD.replace(r"\textbf{1.0}", r"\textbf{1.0"), "line 13: 1 unclosed '{'"),
        (GOOD.replace(r"\textbf{1.0}", r"\textbf1.0}"), "line 9: '}' without its '{'"),
        (GOOD.replace("a & ", "a & 0 & "), "line 9: table row has 5 columns, the tabular declares 4"),
        (GOOD.replace("& 1 & 2 \\\\", "& 1 \\\\"), "line 10: table row has 3 columns, the tabular declares 4"),
        (GOOD.replace(r"\multicolumn{4}", r"\multicolumn{3}"), "line 8: table row has 3 columns, the tabular declares 4"),
        (GOOD.replace(r"95 \%", "95 %"), "line 2: unescaped '%'"),
        (GOOD.replace(r"a\_b", "a_b"), "line 2: unescaped '_' outside math"),
        (GOOD.replace(r"\caption{A", r"\caption{A & B"), "line 2: unescaped '&' outside a tabular"),
        (GOOD.replace(r"\{braces\}", "#1"), "line 2: unescaped '#'"),
        (GOOD.replace(r"$x_1^2$", r"$x_1^2"), "line 6: math mode ($) still open at the end of a table row"),
        (GOOD.replace(r"\end{tabular}", r"\end{tabularx}"), "line 12: \\end{tabularx} closes \\begin{tabular} of line 4"),
        (GOOD.replace("\\end{table}\n", ""), "line 1: \\begin{table} without \\end{table}"),
        (GOOD.replace(r"{l*{2}{c}@{}r}", "{lq}"), "line 4: column spec {lq}: unknown column type 'q'"),
    ],
)
def test_each_kind_of_error_is_found(bad, problem):
    assert problem in check_latex(bad)


def test_column_specs():
    assert column_count("l*{3}{c}") == 4 and column_count("|l|p{3cm}|r@{}c|") == 4 and column_count("lccccccc") == 8
    assert (
        column_count("*{x}{c}") == "malformed *{n}{...} column spec"
        and column_count("lp") == "column type 'p' without its argument"
    )


def preamble_missing() -> str:
    if shutil.which("pdflatex") is None:
        return "pdflatex is not installed (Debian: texlive-latex-base, texlive-latex-recommended)"
    for package in ("booktabs.sty", "amssymb.sty"):
        found = subprocess.run(["kpsewhich", package], capture_output=True, text=True, check=False).stdout.strip()
        if not found:
            return f"kpsewhich finds no {package} (Debian: texlive-latex-recommended)"
    return ""


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> list[Path]:
    """Every table the suite writes, from two runs with hostile folder and evaluator names and a reader study."""
    root = tmp_path_factory.mktemp("latex")
    evil = "ev|l_&%$#{}~^\\x"
    sources = {"real": {"fid": 0.0, "fid_xrv": 0.0, "auc_macro": 0.9, "auc/Edema": 0.8, "f1_macro": 0.7, "f1/Edema": 0.6},
               "a": {"fid": 10.0, "fid_xrv": 2.0, "auc_macro": 0.7, "auc/Edema": 0.6, "f1_macro": 0.5, "f1/Edema": 0.4},
               "b": {"fid": 12.0, "fid_xrv": 1.0, "auc_macro": 0.8, "f1_macro": 0.45}}  # fmt: skip
    per_case = {g: {"ms_ssim": [0.5 + 0.01 * k] * 8, "dice_lungs": [0.8] * 8, "dice_heart": [0.6 + k / 10] * 8, "dice": [0.7] * 8}
                for k, g in enumerate(["a", "b"])}  # fmt: skip
    runs = []
    for name in ("r&d_50%", "run#2 {x}"):
        path = write_run(
            root / name, sources=sources, per_case=per_case, evaluator=evil, inputs={"a": ["labels"], "b": ["anatomy"]}
        )
        results = pd.read_csv(path / "results.csv")
        subset = results[results.metric == "ms_ssim"].assign(subset="Pleural Effusion", n=2)
        pd.concat([results, subset]).to_csv(path / "results.csv", index=False)  # per-pathology rows of a subset metric
        runs.append(load_run(path))
    study = root / "study"
    study.mkdir()
    storage = Storage.create(study / "study.sqlite")
    with storage.write() as conn:
        conn.execute("INSERT INTO meta VALUES (?, ?)", (RUNS_META, json.dumps([{"run_id": runs[0].run_id}])))
    storage.close()
    (study / "analysis").mkdir()
    summary = [{"source": g, "criterion": c, "n": 9, "n_readers": 3, "n_cases": 3, "mean": m, "ci_low": m - 0.3, "ci_high": m + 0.3}
               for g, m in (("real", 4.4), ("a", 3.1), ("b", 2.2)) for c in ("anatomy_realism", "pathology_realism")]  # fmt: skip
    pd.DataFrame(summary).to_csv(study / "analysis" / "summary.csv", index=False)
    paths = write_tables(runs, root / "out", ReportOptions(formats=("tex",), study=study))
    paths += write_tables(runs[:1], root / "pm", ReportOptions(formats=("tex",), ci="pm"))
    return paths


def test_every_written_table_passes_the_structural_check(written):
    names = {p.name for p in written}
    assert {"table_main.tex", "table_pathology_auc_macro.tex", "table_pathology_f1_macro.tex", "table_pathology_ms_ssim.tex",
            "table_dice_organs.tex", "table_subgroups.tex"} <= names  # fmt: skip
    for path in written:
        text = path.read_text()
        assert check_latex(text) == [], f"{path}: {check_latex(text)}"
    main = (written[0].parent / "table_main.tex").read_text()
    assert "Anatomy $\\uparrow$ & Pathology $\\uparrow$" in main and "ev|l\\_\\&\\%\\$\\#\\{\\}" in main


def test_every_written_table_compiles_with_pdflatex(written, tmp_path):
    if reason := preamble_missing():
        pytest.skip(reason)
    for path in written:
        document = tmp_path / f"{path.parent.name}_{path.stem}.tex"
        body = path.read_text()
        document.write_text(
            "\\documentclass{article}\n\\usepackage{booktabs}\n\\usepackage{amssymb}\n\\begin{document}\n"
            + body
            + "\\end{document}\n"
        )
        done = subprocess.run(
            ["pdflatex", "-halt-on-error", "-interaction=nonstopmode", "-no-shell-escape", document.name],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, f"{path} does not compile:\n{done.stdout[-3000:]}"
        assert document.with_suffix(".pdf").stat().st_size > 1000
