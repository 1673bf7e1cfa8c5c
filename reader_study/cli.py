"""``xreal-bench study``: create, serve and analyse blinded reader studies."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import NoReturn

DEFAULT_URL = "http://localhost:8501"

EPILOG = """\
workflow:
  xreal-bench study create --runs runs/demo --out studies/demo      prints one link per reader (once)
  xreal-bench study serve studies/demo                              open the links in a browser
  xreal-bench study status studies/demo                             progress per reader
  xreal-bench study add-reader studies/demo dr_lee                  another reader, later
  xreal-bench study analyze studies/demo                            tables, figures, tidy CSV
"""


def register(sub) -> None:
    from xreal_bench.commands.args import HelpFormatter, add_config_args, subparser
    from xreal_bench.config import StudyConfig
    from xreal_bench.names import name_argument

    study = subparser(
        sub,
        "study",
        "blinded radiologist reader study: create, serve, analyze",
        "Build a blinded reader study from run directories, serve it to radiologists in the browser "
        "(Streamlit, SQLite), and analyse the ratings with agreement statistics.",
    )
    study.epilog = EPILOG
    actions = study.add_subparsers(dest="action", metavar="ACTION", required=True)

    create = actions.add_parser(
        "create",
        help="build a study folder from one or more run directories",
        description="Choose cases (seeded, stratified by pathology), copy each case's real image and every "
        "chosen generator's image into STUDY_DIR under opaque ids (every image through one re-encoding chain; "
        "near-identical images across sources are reported), give every reader a random, balanced order of "
        "their own and print each reader's sign-in link once. Defaults come from [study] in the config.",
        formatter_class=HelpFormatter,
    )
    S = argparse.SUPPRESS  # absent flags fall back to the config, whose defaults the help shows
    d = StudyConfig()
    create.add_argument(
        "--runs",
        nargs="+",
        required=True,
        type=Path,
        default=S,
        metavar="DIR",
        help="run directories (<out> of `xreal-bench run`)",
    )
    create.add_argument(
        "--out",
        required=True,
        type=Path,
        default=S,
        metavar="STUDY_DIR",
        help="study folder to create (must not exist or be empty)",
    )
    create.add_argument(
        "--n-cases", type=int, default=S, metavar="N", help=f"cases in the study (study.n_cases; default {d.n_cases})"
    )
    create.add_argument(
        "--generators",
        nargs="+",
        type=name_argument("generator name", generator=True),
        default=S,
        metavar="NAME",
        help="generators to include (study.generators; default: every generator in the runs)",
    )
    create.add_argument(
        "--readers",
        nargs="+",
        type=name_argument("reader name"),
        default=S,
        metavar="NAME",
        help=f"reader names (study.readers; default {' '.join(d.readers)})",
    )
    create.add_argument(
        "--criteria",
        nargs="+",
        default=S,
        metavar="NAME",
        help=f"rating criteria, scored 1..5 (study.criteria; default {' '.join(d.criteria)})",
    )
    create.add_argument(
        "--calibration",
        type=int,
        default=S,
        metavar="N",
        help=f"calibration items shown first, excluded from analysis (study.calibration_items; default {d.calibration_items})",
    )
    create.add_argument(
        "--duplicates",
        type=float,
        default=S,
        metavar="FRACTION",
        help=f"fraction of rating items repeated later for intra-reader agreement (study.duplicate_fraction; default {d.duplicate_fraction})",
    )
    create.add_argument(
        "--turing",
        action=argparse.BooleanOptionalAction,
        default=S,
        help=f"end with the real-or-generated block (study.turing_test; default {d.turing_test})",
    )
    create.add_argument(
        "--turing-cases",
        type=int,
        default=S,
        metavar="N",
        help="cases of the real-or-generated block, held out: none of them is rated before, so the block never "
        "shows an image the reader has already judged; one image per case, the same images for every reader "
        f"(readers x cases fully crossed, as MRMC analysis needs) (study.turing_cases; default {d.turing_cases})",
    )
    create.add_argument(
        "--turing-real-fraction",
        type=float,
        default=S,
        metavar="SHARE",
        help="share of the block's images that are real, the rest split evenly over the generators; 0.5 makes "
        f"'real' and 'generated' equally likely (study.turing_real_fraction; default {d.turing_real_fraction})",
    )
    create.add_argument(
        "--turing-show-label",
        action=argparse.BooleanOptionalAction,
        default=S,
        help="show the pathology label during the real-or-generated block; off, the reader judges the image alone "
        f"(study.turing_show_label; default {d.turing_show_label})",
    )
    create.add_argument(
        "--turing-show-prevalence",
        action=argparse.BooleanOptionalAction,
        default=S,
        help="state the block's real share on its instruction page (readers then need not guess the base rate) "
        f"(study.turing_show_prevalence; default {d.turing_show_prevalence})",
    )
    create.add_argument(
        "--min-case-gap",
        type=int,
        default=S,
        metavar="N",
        help="least number of items between two images of one case (planted repeats included), so images of a "
        "case are never compared side by side; 0 = automatic, half the study's cases and at least 2, capped at the "
        f"number of cases (study.min_case_gap; default {d.min_case_gap})",
    )
    create.add_argument(
        "--calibration-feedback",
        action=argparse.BooleanOptionalAction,
        default=S,
        help="after each calibration item, show whether it was real or generated (training; calibration is never "
        f"analysed) (study.calibration_feedback; default {d.calibration_feedback})",
    )
    create.add_argument(
        "--seed",
        type=int,
        default=S,
        help="seed of the study's cases, held-out block and planted repeats; each reader's order comes from the "
        f"reader's own random seed (kept in the database), not from this (study.seed; default {d.seed})",
    )
    create.add_argument("--base-url", default=DEFAULT_URL, help="address readers will open (for the printed links)")
    add_config_args(create)
    create.set_defaults(handler=run_create)

    add = actions.add_parser(
        "add-reader", help="add a reader to an existing study (prints the link once)", formatter_class=HelpFormatter
    )
    add.add_argument("study_dir", type=Path, metavar="STUDY_DIR")
    add.add_argument("name", type=name_argument("reader name"), help="reader name (unique in the study)")
    add.add_argument("--base-url", default=DEFAULT_URL, help="address readers will open")
    add.set_defaults(handler=run_add_reader)

    serve = actions.add_parser("serve", help="run the rating app (Streamlit) for a study", formatter_class=HelpFormatter)
    serve.add_argument("study_dir", type=Path, metavar="STUDY_DIR")
    serve.add_argument("--port", type=int, default=8501, help="port to listen on")
    serve.add_argument(
        "--host", default="localhost", help="address to bind (0.0.0.0 for every interface; put TLS in front for remote readers)"
    )
    serve.set_defaults(handler=run_serve)

    status = actions.add_parser("status", help="progress per reader", formatter_class=HelpFormatter)
    status.add_argument("study_dir", type=Path, metavar="STUDY_DIR")
    status.set_defaults(handler=run_status)

    analyze = actions.add_parser(
        "analyze",
        help="statistics, tables and figures from the ratings",
        description="Writes STUDY_DIR/analysis (or --out): responses.csv (tidy, one row per rating), tables "
        "(CSV, Markdown, LaTeX) for scores per source, paired comparisons, inter- and intra-reader agreement, "
        "the visual Turing test and timing, report.md, and figures.",
        formatter_class=HelpFormatter,
    )
    analyze.add_argument("study_dir", type=Path, metavar="STUDY_DIR")
    analyze.add_argument("--out", type=Path, default=None, help="output folder (default: STUDY_DIR/analysis)")
    analyze.add_argument("--bootstrap", type=int, default=None, help="bootstrap resamples (default: the study's setting)")
    analyze.add_argument("--confidence", type=float, default=0.95, help="confidence level of intervals")
    analyze.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    analyze.set_defaults(handler=run_analyze)


def study_settings(args: argparse.Namespace):
    """``[study]`` from the config with the command-line flags applied (validated together)."""
    from xreal_bench.commands.args import config_from_args
    from xreal_bench.config import Override

    flags = {
        "n_cases": "n_cases",
        "generators": "generators",
        "readers": "readers",
        "criteria": "criteria",
        "calibration_items": "calibration",
        "duplicate_fraction": "duplicates",
        "turing_test": "turing",
        "turing_cases": "turing_cases",
        "turing_real_fraction": "turing_real_fraction",
        "turing_show_label": "turing_show_label",
        "turing_show_prevalence": "turing_show_prevalence",
        "min_case_gap": "min_case_gap",
        "calibration_feedback": "calibration_feedback",
        "seed": "seed",
    }
    overrides = [
        Override(f"study.{key}={toml_value(getattr(args, flag))}", origin=f"--{flag.replace('_', '-')}")
        for key, flag in flags.items()
        if hasattr(args, flag)
    ]
    return config_from_args(args, overrides).study


def toml_value(value) -> str:
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)  # ints, floats, strings and lists of strings are valid TOML this way


def run_create(args: argparse.Namespace) -> int:
    from xreal_bench.reader_study.builder import create_study

    created = create_study(args.runs, args.out, study_settings(args), base_url=args.base_url)
    print(
        f"created {created.study_dir}: {created.n_cases} cases x {created.n_sources} sources, "
        f"{created.items_per_reader} items per reader"
    )
    print("reader links (shown once; tokens are stored hashed):")
    for reader in created.readers:
        print(f"  {reader.name}: {reader.link}")
    print(f"  admin: {created.admin.link}")
    print(f"serve with: {created.serve_command}")
    return 0


def run_add_reader(args: argparse.Namespace) -> int:
    from xreal_bench.reader_study.builder import add_reader

    reader = add_reader(args.study_dir, args.name, args.base_url)
    print(f"{reader.name}: {reader.link}")
    print("(shown once; the token is stored hashed)")
    return 0


def serve_command(study_dir: Path, port: int, host: str) -> tuple[list[str], dict[str, str]]:
    """The ``streamlit run`` command line and environment that serve ``study_dir``."""
    from xreal_bench.reader_study.layout import APP_SCRIPT, APP_SERVER_OPTIONS, STUDY_DIR_ENV

    command = [
        sys.executable, "-m", "streamlit", "run", str(APP_SCRIPT),
        "--server.port", str(port),
        "--server.address", host,
        "--server.headless", "true",
        "--browser.gatherUsageStats", "false",
        "--client.toolbarMode", "minimal",
        "--server.fileWatcherType", "none",
        "--global.developmentMode", "false",
        *APP_SERVER_OPTIONS,
    ]  # fmt: skip
    env = {**os.environ, STUDY_DIR_ENV: str(Path(study_dir).resolve())}
    return command, env


def check_study_dir(study_dir: Path) -> None:
    from xreal_bench.errors import UserFacingError
    from xreal_bench.reader_study.layout import STUDY_DB, STUDY_JSON

    for name in (STUDY_DB, STUDY_JSON):
        if not (study_dir / name).is_file():
            raise UserFacingError(f"{study_dir / name} not found; create a study with `xreal-bench study create`")


def run_serve(args: argparse.Namespace) -> NoReturn:
    check_study_dir(args.study_dir)
    command, env = serve_command(args.study_dir, args.port, args.host)
    shown = "localhost" if args.host in ("0.0.0.0", "::") else args.host
    print(
        f"serving {args.study_dir} at http://{shown}:{args.port} (Ctrl+C stops; answers are saved as they are submitted)",
        flush=True,
    )
    os.execve(command[0], command, env)  # Streamlit replaces this process: signals reach it directly


def run_status(args: argparse.Namespace) -> int:
    from xreal_bench.reader_study.layout import STUDY_DB
    from xreal_bench.reader_study.storage import Storage

    check_study_dir(args.study_dir)
    with Storage(args.study_dir / STUDY_DB) as storage:
        for p in storage.progress():
            if p.role == "reader":
                median = "" if p.median_seconds is None else f", median {p.median_seconds:.1f} s/item"
                print(f"{p.name}: {p.done} / {p.total}{median}")
    return 0


def run_analyze(args: argparse.Namespace) -> int:
    from xreal_bench.reader_study.analysis import analyze_study

    check_study_dir(args.study_dir)
    result = analyze_study(args.study_dir, args.out, bootstrap=args.bootstrap, confidence=args.confidence, seed=args.seed)
    print(f"{result.n_ratings} ratings from {result.n_readers} readers -> {result.out}")
    for path in result.files:
        print(f"  {path}")
    return 0
