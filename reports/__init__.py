"""Reports from ``results.csv`` (counts and coverage from ``results.json``): leaderboard, paper tables, figures."""

from __future__ import annotations

from pathlib import Path

from xreal_bench.reports.figures import write_run_figures
from xreal_bench.reports.leaderboard import write_leaderboard
from xreal_bench.reports.tables import write_tables


def write_reports(out: Path, formats=("md", "csv", "tex"), figures: bool = True, decimals: int = 3) -> list[Path]:
    """Leaderboard, tables and (optionally) figures for the run directory ``out``."""
    from xreal_bench.results import read_coverage, read_demographics_fallbacks, read_results, read_unverified_weights

    frame = read_results(out)
    coverage = read_coverage(out)  # each source's counts and coverage; {} for results written elsewhere
    demo = frame["evaluator"].str.startswith("demo:").any()
    written = list(
        write_leaderboard(
            out, frame, decimals, coverage, unverified=read_unverified_weights(out), demographics=read_demographics_fallbacks(out)
        )
    )
    written += write_tables(out, frame, formats, decimals, demo, coverage)
    if figures:
        written += write_run_figures(out, frame, coverage)
    return written
