"""``xreal-bench leaderboard --out DIR``'s files: ``leaderboard.{csv,md,html}`` and the rank plot(s)."""

from __future__ import annotations

from pathlib import Path

from xreal_bench.atomic import write_text_atomic
from xreal_bench.metrics import table as metric_table
from xreal_bench.reports.board import csv_frame, markdown
from xreal_bench.reports.html_page import page
from xreal_bench.reports.merge import Merged
from xreal_bench.reports.ranks import rank_plot
from xreal_bench.tables import to_csv


def write_leaderboard_files(merged: Merged, out: Path, *, decimals: int = 3, grid_png: Path | None = None) -> list[Path]:
    """``leaderboard.{csv,md,html}`` and ``rank_plot[_<k>].{png,pdf}`` (one per section with ranked entries) in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    ranking = metric_table.metric(merged.rank_metric)
    plots: list[Path | None] = []
    written: list[Path] = []
    for k, section in enumerate(merged.sections, 1):
        stem = "rank_plot" if k == 1 else f"rank_plot_{k}"
        title = f"Rank by {ranking.display} {ranking.arrow}" + (f" ({section.title})" if len(merged.sections) > 1 else "")
        files = rank_plot(section.board, out / f"{stem}.png", title=title)
        written += files
        plots.append(files[0] if files else None)
    targets = {"leaderboard.csv": to_csv(csv_frame(merged)), "leaderboard.md": markdown(merged, decimals)}
    targets["leaderboard.html"] = page(merged, decimals=decimals, plots=plots, grid_png=grid_png)
    for name, text in targets.items():
        write_text_atomic(out / name, text)
        written.append(out / name)
    return written
