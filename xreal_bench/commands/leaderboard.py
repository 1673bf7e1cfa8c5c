"""``xreal-bench leaderboard RUN_DIR... [--out DIR]``: one table across runs."""

from __future__ import annotations

import argparse
from pathlib import Path

DESCRIPTION = (
    "Merges runs (different days, seeds, a new model) into one leaderboard. Runs whose numbers are not comparable "
    "(dataset fingerprint or case set, evaluator weights, preprocessing, resolution, label or threshold policy) are "
    "refused with each difference named, or put in separate sections with --allow-mixed. A generator appears once "
    "per run (run id and date), or once with the mean and spread over seeds when its runs differ only in the seed. "
    "Ranks come with bootstrap intervals; ties where they overlap."
)


def register(sub) -> None:
    from xreal_bench.commands.args import subparser

    board = subparser(sub, "leaderboard", "merge runs into one leaderboard (CSV, Markdown, one-file HTML)", DESCRIPTION)
    board.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR", help="run directories holding results.csv")
    board.add_argument("--out", type=Path, default=None, help="write leaderboard.{csv,md,html} and the rank plot here")
    board.add_argument("--allow-mixed", action="store_true", help="put runs that are not comparable in separate sections")
    board.add_argument("--decimals", type=int, default=3, help="decimals in tables")
    board.set_defaults(handler=run_leaderboard)


def run_leaderboard(args: argparse.Namespace) -> int:
    raise NotImplementedError  # the leaderboard helper writes this
