"""Reports: the run directory's leaderboard (``leaderboard.{md,csv}``) and the report folder
(:mod:`xreal_bench.reports.folder`: Table I and the other paper tables, figures, sample grid,
leaderboard page, machine-readable results), from ``results.csv`` and the files beside it."""

from __future__ import annotations

from pathlib import Path

REPORT_DIR = "report"


def write_reports(out: Path, formats=("md", "csv", "tex"), figures: bool = True, decimals: int = 3) -> list[Path]:
    """``leaderboard.{md,csv}`` in the run directory ``out`` and its report folder ``out/report``."""
    from xreal_bench.reports.folder import write_report_folder
    from xreal_bench.reports.leaderboard import write_leaderboard
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
    options = ReportOptions(decimals=decimals, formats=tuple(formats), figures=figures)
    command = ["xreal-bench", "report", str(out), "--decimals", str(decimals), "--formats", *formats]
    command += [] if figures else ["--no-figures"]
    return written + write_report_folder([run], out / REPORT_DIR, options, command=command)
