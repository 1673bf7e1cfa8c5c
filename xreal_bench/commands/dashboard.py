"""``xreal-bench dashboard RUN_DIR...``: a Streamlit page over the merged results."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub) -> None:
    from xreal_bench.commands.args import subparser

    dash = subparser(
        sub,
        "dashboard",
        "browse runs in a local Streamlit page (leaderboard, sample grid, per-pathology views)",
        "Serves a Streamlit page over the runs' merged results: filter by generator, metric and subset; the leaderboard "
        "with CIs; the sample grid with a case picker; per-pathology views.",
    )
    dash.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR", help="run directories holding results.csv")
    dash.set_defaults(handler=run_dashboard)


def run_dashboard(args: argparse.Namespace) -> int:
    raise NotImplementedError  # the dashboard helper writes this
