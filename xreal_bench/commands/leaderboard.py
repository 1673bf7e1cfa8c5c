"""``xreal-bench leaderboard RUN_DIR... [--out DIR]``: one table across runs."""

from __future__ import annotations

import argparse
from pathlib import Path

DESCRIPTION = (
    "Merges runs (different days, seeds, a new model) into one leaderboard. Runs whose numbers are not comparable "
    "(dataset fingerprint or case set, evaluator weights, preprocessing, resolution, label or threshold policy, "
    "statistics settings such as samples per condition, bootstrap or CI level) are "
    "refused with each difference named, or put in separate sections with --allow-mixed. A generator appears once "
    "per run (run id and date), or once with the mean and spread over seeds when its runs differ only in the seed. "
    "Ranks come with bootstrap intervals; ties where they overlap; entries below metrics.min_coverage are marked † "
    "and not ranked. With --out the sample grid of the first section's runs is written and shown in the HTML page "
    "(--grid PNG shows another image, --no-grid none). Without --out the Markdown is printed."
)


def register(sub) -> None:
    from xreal_bench.commands.args import subparser
    from xreal_bench.metrics import table as metric_table

    board = subparser(sub, "leaderboard", "merge runs into one leaderboard (CSV, Markdown, one-file HTML)", DESCRIPTION)
    board.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR", help="run directories holding results.csv")
    board.add_argument("--out", type=Path, default=None, help="write leaderboard.{csv,md,html} and the rank plot here")
    board.add_argument("--allow-mixed", action="store_true", help="put runs that are not comparable in separate sections")
    board.add_argument("--decimals", type=int, default=3, help="decimals in tables")
    board.add_argument(
        "--rank-by",
        choices=[m.name for m in metric_table.headline()],
        default=metric_table.ranking().name,
        help="the metric ranks and rank intervals are computed on (default: %(default)s)",
    )
    grid = board.add_mutually_exclusive_group()
    grid.add_argument(
        "--grid", type=Path, default=None, metavar="PNG", help="show this image in the HTML page instead of writing the grid"
    )
    grid.add_argument("--no-grid", action="store_true", help="write no sample grid and show none")
    board.set_defaults(handler=run_leaderboard)


def run_leaderboard(args: argparse.Namespace) -> int:
    from xreal_bench.errors import UserFacingError
    from xreal_bench.reports.board import markdown
    from xreal_bench.reports.grid import write_samples_grid
    from xreal_bench.reports.leaderboard_files import write_leaderboard_files
    from xreal_bench.reports.merge import merge_runs
    from xreal_bench.reports.options import ReportOptions
    from xreal_bench.reports.runs import load_runs

    if args.decimals < 0:
        raise UserFacingError("--decimals must be >= 0")
    if args.grid is not None and not args.grid.is_file():
        raise UserFacingError(f"--grid {args.grid}: no such file")
    merged = merge_runs(load_runs(args.run_dirs), allow_mixed=args.allow_mixed, rank_metric=args.rank_by)
    if args.out is None:
        print(markdown(merged, args.decimals), end="")
        return 0
    written: list[Path] = []
    grid_png = args.grid
    if grid_png is None and not args.no_grid:  # the grid of the first section's runs; none when they have no cases.jsonl
        args.out.mkdir(parents=True, exist_ok=True)
        written = write_samples_grid(list(merged.sections[0].runs), args.out, ReportOptions())
        grid_png = next((p for p in written if p.suffix == ".png"), None)
    written += write_leaderboard_files(merged, args.out, decimals=args.decimals, grid_png=grid_png)
    for path in written:
        print(path)
    return 0
