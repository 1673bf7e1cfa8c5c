"""Reports from ``results.csv``: leaderboard, paper tables, figures."""

from __future__ import annotations

from pathlib import Path

from xreal_bench.reports.figures import write_figures
from xreal_bench.reports.leaderboard import write_leaderboard
from xreal_bench.reports.tables import write_tables


def write_reports(out: Path, formats=("md", "csv", "tex"), figures: bool = True, decimals: int = 3) -> list[Path]:
    """Leaderboard, tables and (optionally) figures for the run directory ``out``."""
    from xreal_bench.results import read_results

    frame = read_results(out)
    demo = frame["evaluator"].str.startswith("demo:").any()
    written = list(write_leaderboard(out, frame, decimals))
    written += write_tables(out, frame, formats, decimals, demo)
    if figures:
        written += write_figures(out, frame)
    return written
