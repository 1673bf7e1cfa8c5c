"""Paper tables from ``results.csv``: the main table (as XReal's Table I: FID, MS-SSIM, Dice,
F1, AUC) and a per-pathology table, each in Markdown, LaTeX (booktabs, best value in bold)
and CSV."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from xreal_bench.atomic import write_text_atomic
from xreal_bench.metrics import table as metric_table
from xreal_bench.reports.leaderboard import REFERENCE, fmt, generator_order

LATEX_ARROWS = {"lower": "$\\downarrow$", "higher": "$\\uparrow$"}


def main_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Generators × main metrics (values, with CI columns), reference row first."""
    overall = frame[frame.subset == "all"]
    metrics = [m.name for m in metric_table.main_table() if m.name in set(overall.metric)]
    table = overall[overall.metric.isin(metrics)].pivot(
        index="generator", columns="metric", values=["value", "ci_low", "ci_high"]
    )
    table = table.reindex(generator_order(overall))
    return table.reindex(columns=metrics, level="metric")


def best_per_column(values: pd.DataFrame) -> dict[str, str]:
    """Best generator per metric (reference row excluded), following the metric's direction."""
    best = {}
    for m in values.columns:
        col = values[m].drop(REFERENCE, errors="ignore").dropna()
        if len(col):
            best[m] = col.idxmin() if metric_table.row_metric(m).lower_is_better else col.idxmax()
    return best


def with_ci(table: pd.DataFrame, g: str, m: str, decimals: int, sep: str = "–") -> str:
    v, lo, hi = table.loc[g, ("value", m)], table.loc[g, ("ci_low", m)], table.loc[g, ("ci_high", m)]
    text = fmt(v, decimals)
    if not (math.isnan(lo) or math.isnan(hi)):
        text += f" ({fmt(lo, decimals)}{sep}{fmt(hi, decimals)})"
    return text


def to_markdown(table: pd.DataFrame, decimals: int) -> str:
    metrics = list(table["value"].columns)
    best = best_per_column(table["value"])
    arrows = [metric_table.row_metric(m).arrow for m in metrics]
    lines = ["| generator | " + " | ".join(f"{m} {a}" for m, a in zip(metrics, arrows)) + " |", "|---|" + "---:|" * len(metrics)]
    for g in table.index:
        cells = [f"**{with_ci(table, g, m, decimals)}**" if best.get(m) == g else with_ci(table, g, m, decimals) for m in metrics]
        lines.append(f"| {g} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def latex_escape(text: str) -> str:
    return text.replace("\\", "\\textbackslash{}").replace("_", "\\_").replace("%", "\\%").replace("&", "\\&").replace("#", "\\#")


def to_latex(table: pd.DataFrame, decimals: int, caption: str, label: str) -> str:
    metrics = list(table["value"].columns)
    best = best_per_column(table["value"])
    entries = [metric_table.row_metric(m) for m in metrics]
    head = " & ".join(f"{m.latex} {LATEX_ARROWS[m.direction]}" for m in entries)
    lines = [
        "\\begin{table}[t]",
        "\\centering",
        f"\\caption{{{latex_escape(caption)}}}",
        f"\\label{{{label}}}",
        "\\begin{tabular}{l" + "c" * len(metrics) + "}",
        "\\toprule",
        f"Model & {head} \\\\",
        "\\midrule",
    ]
    for g in table.index:
        cells = []
        for m in metrics:
            v = fmt(table.loc[g, ("value", m)], decimals)
            cells.append(f"\\textbf{{{v}}}" if best.get(m) == g else v)
        name = "Real images" if g == REFERENCE else latex_escape(g)
        lines.append(f"{name} & " + " & ".join(cells) + " \\\\")
        if g == REFERENCE:
            lines.append("\\midrule")
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
    return "\n".join(lines) + "\n"


def per_pathology(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Generators × pathologies for one metric (value and n)."""
    sub = frame[(frame.metric == metric) & (frame.subset != "all")]
    if sub.empty:
        return pd.DataFrame()
    table = sub.pivot(index="generator", columns="subset", values="value")
    return table.reindex([g for g in generator_order(frame) if g in table.index])


def write_tables(out: Path, frame: pd.DataFrame, formats, decimals: int, demo: bool) -> list[Path]:
    """Write ``tables/main.*`` and ``tables/per_pathology_<metric>.*`` in the requested formats."""
    folder = out / "tables"
    written = []
    table = main_table(frame)
    caption = "Comparison on the evaluation split (point estimate with 95\\% bootstrap CI in the Markdown/CSV tables)."
    if demo:
        caption += " DEMO evaluators on synthetic data: not comparable with published numbers."
    outputs = {
        "md": lambda: to_markdown(table, decimals),
        "tex": lambda: to_latex(table, decimals, caption, "tab:xreal-bench-main"),
        "csv": lambda: table.to_csv(),
    }
    for ext in formats:
        path = folder / f"main.{ext}"
        text = outputs[ext]()
        write_text_atomic(path, text)
        written.append(path)
    for metric in [m.name for m in metric_table.pathology_tables()]:
        pt = per_pathology(frame, metric)
        if pt.empty:
            continue
        for ext in formats:
            path = folder / f"per_pathology_{metric}.{ext}"
            if ext == "csv":
                text = pt.to_csv()
            elif ext == "md":
                text = simple_markdown(pt, decimals)
            else:
                text = simple_latex(pt, decimals, f"{metric} per pathology (generated from cases positive for it).")
            write_text_atomic(path, text)
            written.append(path)
    return written


def simple_markdown(table: pd.DataFrame, decimals: int) -> str:
    lines = ["| generator | " + " | ".join(table.columns) + " |", "|---|" + "---:|" * len(table.columns)]
    for g, row in table.iterrows():
        lines.append(f"| {g} | " + " | ".join(fmt(v, decimals) for v in row) + " |")
    return "\n".join(lines) + "\n"


def simple_latex(table: pd.DataFrame, decimals: int, caption: str) -> str:
    lines = [
        "\\begin{table}[t]",
        "\\centering",
        f"\\caption{{{latex_escape(caption)}}}",
        "\\begin{tabular}{l" + "c" * len(table.columns) + "}",
        "\\toprule",
        "Model & " + " & ".join(latex_escape(str(c)) for c in table.columns) + " \\\\",
        "\\midrule",
        *(f"{latex_escape(str(g))} & " + " & ".join(fmt(v, decimals) for v in row) + " \\\\" for g, row in table.iterrows()),
        "\\bottomrule",
        "\\end{tabular}",
        "\\end{table}",
    ]
    return "\n".join(lines) + "\n"
