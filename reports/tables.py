"""Paper tables from ``results.csv``: the main table (as XReal's Table I: FID, MS-SSIM, Dice,
F1, AUC) and a per-pathology table, each in Markdown, LaTeX (booktabs, best value in bold)
and CSV.

Every table carries the sources' counts: Markdown and CSV as ``n``, ``failed``, ``missing`` and
``coverage`` columns, LaTeX in a footnote naming each source with failed or missing images. A
source below ``metrics.min_coverage`` is marked († in Markdown, a dagger in LaTeX, a
``coverage_note`` column in CSV) and named in a footnote. A selection without any main-table
metric writes no main table (and no per-pathology table without per-pathology rows)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from xreal_bench.atomic import write_text_atomic
from xreal_bench.coverage import Coverage
from xreal_bench.metrics import table as metric_table
from xreal_bench.reports.coverage import (
    COUNTS_NOTE,
    LATEX_MARK,
    count_text,
    counts,
    coverage_text,
    is_marked,
    label,
    loss_footnote,
    mark_footnote,
    mark_text,
)
from xreal_bench.reports.leaderboard import NO_COVERAGE, REFERENCE, fmt, generator_order

LATEX_ARROWS = {"lower": "$\\downarrow$", "higher": "$\\uparrow$"}


def main_table(frame: pd.DataFrame, coverage: Mapping[str, Coverage] = NO_COVERAGE) -> pd.DataFrame:
    """Generators × main metrics (values, with CI columns), reference row first; empty without a main metric."""
    overall = frame[frame.subset == "all"]
    metrics = [m.name for m in metric_table.main_table() if m.name in set(overall.metric)]
    if not metrics:
        return pd.DataFrame()
    table = overall[overall.metric.isin(metrics)].pivot(
        index="generator", columns="metric", values=["value", "ci_low", "ci_high"]
    )
    table = table.reindex(generator_order(overall, coverage))
    return table.reindex(columns=metrics, level="metric")


def counts_columns(frame: pd.DataFrame, generators, coverage: Mapping[str, Coverage]) -> pd.DataFrame:
    """``n``, ``failed``, ``missing``, ``coverage`` and ``coverage_note`` of each generator (for CSV tables)."""
    records = {}
    for g in generators:
        c = counts(frame, g, coverage)
        records[g] = {"n": c.n, "failed": c.failed, "missing": c.missing, "coverage": c.coverage, "coverage_note": c.note}
    return pd.DataFrame.from_dict(records, orient="index")


def counts_cells(frame: pd.DataFrame, g: str, coverage: Mapping[str, Coverage]) -> list[str]:
    c = counts(frame, g, coverage)
    return [str(c.n), count_text(c.failed), count_text(c.missing), coverage_text(c.coverage)]


def markdown_notes(coverage: Mapping[str, Coverage]) -> str:
    return "\n" + "\n".join(filter(None, [COUNTS_NOTE, mark_footnote(coverage)])) + "\n"


def latex_notes(coverage: Mapping[str, Coverage]) -> list[str]:
    """Footnote lines under a LaTeX table: marked sources and every source's failed/missing images."""
    marked, losses = mark_text(coverage), loss_footnote(coverage)
    parts = ([f"{LATEX_MARK} {latex_escape(marked)}"] if marked else []) + ([latex_escape(losses)] if losses else [])
    return ["\\par\\smallskip\\footnotesize " + " ".join(parts)] if parts else []


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


def to_markdown(table: pd.DataFrame, decimals: int, frame: pd.DataFrame, coverage: Mapping[str, Coverage] = NO_COVERAGE) -> str:
    metrics = list(table["value"].columns)
    best = best_per_column(table["value"])
    arrows = [metric_table.row_metric(m).arrow for m in metrics]
    head = ["generator", "n", "failed", "missing", "coverage", *(f"{m} {a}" for m, a in zip(metrics, arrows))]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for g in table.index:
        cells = [f"**{with_ci(table, g, m, decimals)}**" if best.get(m) == g else with_ci(table, g, m, decimals) for m in metrics]
        lines.append(f"| {label(g, coverage)} | " + " | ".join(counts_cells(frame, g, coverage) + cells) + " |")
    return "\n".join(lines) + "\n" + markdown_notes(coverage)


def latex_escape(text: str) -> str:
    return text.replace("\\", "\\textbackslash{}").replace("_", "\\_").replace("%", "\\%").replace("&", "\\&").replace("#", "\\#")


def to_latex(table: pd.DataFrame, decimals: int, caption: str, tag: str, coverage: Mapping[str, Coverage] = NO_COVERAGE) -> str:
    metrics = list(table["value"].columns)
    best = best_per_column(table["value"])
    entries = [metric_table.row_metric(m) for m in metrics]
    head = " & ".join(f"{m.latex} {LATEX_ARROWS[m.direction]}" for m in entries)
    lines = [
        "\\begin{table}[t]",
        "\\centering",
        f"\\caption{{{latex_escape(caption)}}}",
        f"\\label{{{tag}}}",
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
        name = latex_name(g, coverage)
        lines.append(f"{name} & " + " & ".join(cells) + " \\\\")
        if g == REFERENCE:
            lines.append("\\midrule")
    lines += ["\\bottomrule", "\\end{tabular}", *latex_notes(coverage), "\\end{table}"]
    return "\n".join(lines) + "\n"


def latex_name(g: str, coverage: Mapping[str, Coverage]) -> str:
    name = "Real images" if g == REFERENCE else latex_escape(g)
    return name + LATEX_MARK if is_marked(g, coverage) else name


def per_pathology(frame: pd.DataFrame, metric: str, coverage: Mapping[str, Coverage] = NO_COVERAGE) -> pd.DataFrame:
    """Generators × pathologies for one metric (values)."""
    sub = frame[(frame.metric == metric) & (frame.subset != "all")]
    if sub.empty:
        return pd.DataFrame()
    table = sub.pivot(index="generator", columns="subset", values="value")
    return table.reindex([g for g in generator_order(frame, coverage) if g in table.index])


def with_counts_csv(table: pd.DataFrame, frame: pd.DataFrame, coverage: Mapping[str, Coverage]) -> str:
    """A table's CSV with each generator's counts and coverage note as extra columns."""
    extra = counts_columns(frame, table.index, coverage)
    if isinstance(table.columns, pd.MultiIndex):
        extra.columns = pd.MultiIndex.from_tuples([(c, "") for c in extra.columns])
    return pd.concat([table, extra], axis=1).to_csv()


def write_tables(
    out: Path, frame: pd.DataFrame, formats, decimals: int, demo: bool, coverage: Mapping[str, Coverage] = NO_COVERAGE
) -> list[Path]:
    """Write ``tables/main.*`` and ``tables/per_pathology_<metric>.*`` in the requested formats."""
    folder = out / "tables"
    written = []
    table = main_table(frame, coverage)
    caption = "Comparison on the evaluation split (point estimate with 95\\% bootstrap CI in the Markdown/CSV tables)."
    if demo:
        caption += " DEMO evaluators on synthetic data: not comparable with published numbers."
    outputs = {
        "md": lambda: to_markdown(table, decimals, frame, coverage),
        "tex": lambda: to_latex(table, decimals, caption, "tab:xreal-bench-main", coverage),
        "csv": lambda: with_counts_csv(table, frame, coverage),
    }
    for ext in formats if not table.empty else ():
        path = folder / f"main.{ext}"
        write_text_atomic(path, outputs[ext]())
        written.append(path)
    for metric in [m.name for m in metric_table.pathology_tables()]:
        pt = per_pathology(frame, metric, coverage)
        if pt.empty:
            continue
        for ext in formats:
            path = folder / f"per_pathology_{metric}.{ext}"
            if ext == "csv":
                text = with_counts_csv(pt, frame, coverage)
            elif ext == "md":
                text = simple_markdown(pt, decimals, frame, coverage)
            else:
                caption = f"{metric} per pathology (generated from cases positive for it)."
                text = simple_latex(pt, decimals, caption, coverage)
            write_text_atomic(path, text)
            written.append(path)
    return written


def simple_markdown(
    table: pd.DataFrame, decimals: int, frame: pd.DataFrame, coverage: Mapping[str, Coverage] = NO_COVERAGE
) -> str:
    head = ["generator", "n", "failed", "missing", "coverage", *map(str, table.columns)]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for g, row in table.iterrows():
        cells = counts_cells(frame, str(g), coverage) + [fmt(v, decimals) for v in row]
        lines.append(f"| {label(str(g), coverage)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n" + markdown_notes(coverage)


def simple_latex(table: pd.DataFrame, decimals: int, caption: str, coverage: Mapping[str, Coverage] = NO_COVERAGE) -> str:
    lines = [
        "\\begin{table}[t]",
        "\\centering",
        f"\\caption{{{latex_escape(caption)}}}",
        "\\begin{tabular}{l" + "c" * len(table.columns) + "}",
        "\\toprule",
        "Model & " + " & ".join(latex_escape(str(c)) for c in table.columns) + " \\\\",
        "\\midrule",
        *(
            f"{latex_name(str(g), coverage)} & " + " & ".join(fmt(v, decimals) for v in row) + " \\\\"
            for g, row in table.iterrows()
        ),
        "\\bottomrule",
        "\\end{tabular}",
        *latex_notes(coverage),
        "\\end{table}",
    ]
    return "\n".join(lines) + "\n"
