"""Reports from ``results.csv`` (counts and coverage from ``results.json``): leaderboard, paper tables, figures."""

from __future__ import annotations

from pathlib import Path

from xreal_bench.reports.figures import write_figures
from xreal_bench.reports.leaderboard import write_leaderboard
from xreal_bench.reports.tables import write_tables


def write_reports(out: Path, formats=("md", "csv", "tex"), figures: bool = True, decimals: int = 3) -> list[Path]:
    """Leaderboard, tables (``tables/``) and (optionally) figures for the run directory ``out``."""
    from xreal_bench.reports.options import ReportOptions
    from xreal_bench.reports.runs import load_run
    from xreal_bench.results import read_demographics_fallbacks, read_unverified_weights

    run = load_run(out)
    written = list(
        write_leaderboard(
            out,
            run.frame,
            decimals,
            run.coverage,
            unverified=read_unverified_weights(out),
            demographics=read_demographics_fallbacks(out),
        )
    )
    written += write_tables([run], out / "tables", ReportOptions(decimals=decimals, formats=tuple(formats), figures=figures))
    if figures:
        written += write_figures(out, run.frame, run.coverage)
    return written
