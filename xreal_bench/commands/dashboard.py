"""``xreal-bench dashboard RUN_DIR...``: a Streamlit page over the merged results."""

from __future__ import annotations

import argparse
import shlex
import signal
import subprocess
from pathlib import Path

DEFAULT_PORT = 8502  # the reader study serves on Streamlit's 8501
DEFAULT_ADDRESS = "127.0.0.1"


def port_number(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is outside 1..65535")
    return port


def register(sub) -> None:
    from xreal_bench.commands.args import subparser

    dash = subparser(
        sub,
        "dashboard",
        "browse runs in a local Streamlit page (leaderboard, sample grid, per-pathology views)",
        "Serves a Streamlit page over the runs' merged results: filter by generator, metric and subset; the leaderboard "
        "with CIs; the sample grid with a case picker; per-pathology views. Ctrl+C stops the server.",
    )
    dash.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR", help="run directories holding results.csv")
    dash.add_argument("--port", type=port_number, default=DEFAULT_PORT, help="port the page is served on")
    dash.add_argument(
        "--address",
        default=DEFAULT_ADDRESS,
        help="address the server listens on (0.0.0.0 makes it reachable from other machines)",
    )
    dash.add_argument("--print-command", action="store_true", help="print the `streamlit run` command instead of running it")
    dash.set_defaults(handler=run_dashboard)


def run_dashboard(args: argparse.Namespace) -> int:
    from xreal_bench.reports.dashboard import dashboard_command
    from xreal_bench.reports.runs import load_runs

    load_runs(args.run_dirs)  # a run directory without results is refused here, before any server starts
    command = dashboard_command(args.run_dirs, port=args.port, address=args.address)
    if args.print_command:
        print(shlex.join(command))
        return 0
    print(f"dashboard of {len(args.run_dirs)} run(s) at http://{args.address}:{args.port}/ (Ctrl+C stops)", flush=True)
    server = subprocess.Popen(command)  # same terminal: Ctrl+C reaches Streamlit too
    try:
        code = server.wait()
    except KeyboardInterrupt:
        code = stopped(server)
    return 128 - code if code < 0 else code


def stopped(server: subprocess.Popen) -> int:
    """Wait for Streamlit to shut down after the Ctrl+C it also received; kill it if it does not within 10 s
    (or on a second Ctrl+C). A shutdown by that Ctrl+C counts as success."""
    try:
        code = server.wait(timeout=10)
    except (KeyboardInterrupt, subprocess.TimeoutExpired):
        server.kill()
        code = server.wait()
    return 0 if code == -signal.SIGINT else code
