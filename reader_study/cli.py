"""``xreal-bench study``: create, serve and analyse blinded reader studies."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from xreal_bench.reader_study.address import BaseUrl

EPILOG = """\
workflow:
  xreal-bench study create --runs runs/demo --out studies/demo      prints one link per reader (once)
  xreal-bench study serve studies/demo                              open the links in a browser
  xreal-bench study status studies/demo                             progress per reader
  xreal-bench study add-reader studies/demo dr_lee                  another reader, later
  xreal-bench study analyze studies/demo                            tables, figures, tidy CSV
  xreal-bench study plan studies/demo --generator xreal             readers x cases for the next study

links and access:
  xreal-bench study create ... --base-url http://10.0.0.5:8611      links for the network; prints the matching
                                                                    `study serve ... --port 8611 --host 0.0.0.0`
  xreal-bench study links studies/demo                              accounts, active or revoked
  xreal-bench study links studies/demo dr_lee                       a new link for dr_lee (the old one stops working)
  xreal-bench study links studies/demo admin                        a new link for the organiser's admin page
  xreal-bench study revoke studies/demo dr_lee                      dr_lee signs in no more; ratings are kept
"""


def register(sub) -> None:
    from xreal_bench.commands.args import HelpFormatter, add_config_args, subparser
    from xreal_bench.config import StudyConfig
    from xreal_bench.names import name_argument
    from xreal_bench.reader_study.address import DEFAULT_BASE_URL as DEFAULT_URL
    from xreal_bench.reader_study.address import base_url_argument
    from xreal_bench.reader_study.storage import SIGN_IN_LIMIT, SIGN_IN_WINDOW_S

    study = subparser(
        sub,
        "study",
        "blinded radiologist reader study: create, serve, analyze, plan",
        "Build a blinded reader study from run directories, serve it to radiologists in the browser "
        "(Streamlit, SQLite), analyse the ratings (agreement, mixed models, MRMC ROC analysis of the "
        "real-or-generated block) and plan the readers x cases of the next study.",
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

    base_url_help = (
        "address readers open, http://HOST[:PORT][/PATH] (served directly) or https://... (behind a TLS proxy "
        "forwarding to localhost:8501); default: the study's last one, else " + DEFAULT_URL
    )
    add = actions.add_parser(
        "add-reader",
        help="add a reader to an existing study (prints the link once)",
        description="Add a reader with their own item order and print their sign-in link once (stored hashed), "
        "with the `study serve` command under which the link works.",
        formatter_class=HelpFormatter,
    )
    add.add_argument("study_dir", type=Path, metavar="STUDY_DIR")
    add.add_argument("name", metavar="NAME", type=name_argument("reader name"), help="reader name (unique in the study)")
    add.add_argument("--base-url", type=base_url_argument, default=None, help=base_url_help)
    add.set_defaults(handler=run_add_reader)

    links = actions.add_parser(
        "links",
        help="re-issue a reader's (or the organiser's) link; list accounts",
        description="With NAME: give that account a new token and print its link once; the previous link stops "
        "signing in at once (open tabs too), and a revoked account is re-activated. Ratings are kept. "
        "NAME `admin` is the organiser's admin page. Without NAME: list the accounts, active or revoked.",
        formatter_class=HelpFormatter,
    )
    links.add_argument("study_dir", type=Path, metavar="STUDY_DIR")
    links.add_argument(
        "name", nargs="?", metavar="NAME", type=name_argument("account name"), help="reader name, or admin (omit to list)"
    )
    links.add_argument("--base-url", type=base_url_argument, default=None, help=base_url_help)
    links.set_defaults(handler=run_links)

    revoke = actions.add_parser(
        "revoke",
        help="stop a reader's link from signing in (ratings are kept)",
        description="NAME's token signs in no more, from the next page action on (open tabs too); the ratings "
        "stay in the study and its analysis. `xreal-bench study links STUDY_DIR NAME` re-activates the "
        "account with a new link.",
        formatter_class=HelpFormatter,
    )
    revoke.add_argument("study_dir", type=Path, metavar="STUDY_DIR")
    revoke.add_argument("name", metavar="NAME", type=name_argument("account name"), help="reader name, or admin")
    revoke.set_defaults(handler=run_revoke)

    serve = actions.add_parser(
        "serve",
        help="run the rating app (Streamlit) for a study",
        description="Serve the study's rating app. Port and address follow the base URL the links were made "
        "for (--base-url, else the study's): http://HOST:PORT is served on PORT, on every interface unless HOST "
        "is localhost; https://... is served on localhost:8501 for a TLS proxy in front. Links carry the "
        "token once: the server moves it into a browser cookie and out of the address bar. Failed sign-ins "
        f"are limited per client address ({SIGN_IN_LIMIT} in {SIGN_IN_WINDOW_S / 60:.0f} minutes). Streamlit's "
        "metrics endpoint (/_stcore/metrics) answers only with the admin token (Authorization: Bearer TOKEN).",
        formatter_class=HelpFormatter,
    )
    serve.add_argument("study_dir", type=Path, metavar="STUDY_DIR")
    serve.add_argument("--port", type=int, default=None, help="port to listen on (default: from the base URL)")
    serve.add_argument(
        "--host",
        default=None,
        help="address to bind (default: from the base URL; 0.0.0.0 for every interface; put TLS in front for remote readers)",
    )
    serve.add_argument("--base-url", type=base_url_argument, default=None, help=base_url_help)
    serve.set_defaults(handler=run_serve)

    status = actions.add_parser(
        "status",
        help="progress per reader",
        description="Items done per reader; revoked readers are marked.",
        formatter_class=HelpFormatter,
    )
    status.add_argument("study_dir", type=Path, metavar="STUDY_DIR")
    status.set_defaults(handler=run_status)

    analyze = actions.add_parser(
        "analyze",
        help="statistics, tables and figures from the ratings",
        description="Writes STUDY_DIR/analysis (or --out): responses.csv (tidy, one row per rating), tables "
        "(CSV, Markdown, LaTeX; cells neutralised for spreadsheets and escaped) for scores per source, paired "
        "comparisons, a mixed model per criterion, inter- and intra-reader agreement, the visual Turing test "
        "(calls, and per generator an Obuchowski-Rockette MRMC ROC analysis of call x confidence) and timing, "
        "report.md, and figures. `study plan` turns the MRMC variance components into readers x cases.",
        formatter_class=HelpFormatter,
    )
    analyze.add_argument("study_dir", type=Path, metavar="STUDY_DIR")
    analyze.add_argument("--out", type=Path, default=None, help="output folder (default: STUDY_DIR/analysis)")
    analyze.add_argument("--bootstrap", type=int, default=None, help="bootstrap resamples (default: the study's setting)")
    analyze.add_argument("--confidence", type=float, default=0.95, help="confidence level of intervals")
    analyze.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    analyze.set_defaults(handler=run_analyze)

    add_plan_parser(actions)


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
    from xreal_bench.reader_study.address import parse_base_url, remember_base_url, serve_hint
    from xreal_bench.reader_study.builder import create_study
    from xreal_bench.reader_study.layout import STUDY_DB
    from xreal_bench.reader_study.storage import Storage

    base = parse_base_url(args.base_url)
    created = create_study(args.runs, args.out, study_settings(args), base_url=base.url)
    with Storage(created.study_dir / STUDY_DB) as storage:
        remember_base_url(storage, base)
    print(
        f"created {created.study_dir}: {created.n_cases} cases x {created.n_sources} sources, "
        f"{created.items_per_reader} items per reader"
    )
    print(f"reader links (shown once, stored hashed; `xreal-bench study links {created.study_dir} NAME` issues a new one):")
    for reader in created.readers:
        print(f"  {printable(reader.name)}: {reader.link}")
    print(f"  admin: {created.admin.link}")
    print(f"serve with: {serve_hint(created.study_dir, base)}")
    return 0


def study_base_url(study_dir: Path, given: BaseUrl | None) -> BaseUrl:
    """``given`` (remembered in the study), else the study's remembered base URL, else the default."""
    from xreal_bench.reader_study.address import DEFAULT_BASE_URL, parse_base_url, remember_base_url, stored_base_url
    from xreal_bench.reader_study.layout import STUDY_DB
    from xreal_bench.reader_study.storage import Storage

    with Storage(study_dir / STUDY_DB) as storage:
        if given is not None:
            remember_base_url(storage, given)
            return given
        return stored_base_url(storage) or parse_base_url(DEFAULT_BASE_URL)


def run_add_reader(args: argparse.Namespace) -> int:
    from xreal_bench.reader_study.address import serve_hint
    from xreal_bench.reader_study.builder import add_reader

    check_study_dir(args.study_dir)
    base = study_base_url(args.study_dir, args.base_url)
    reader = add_reader(args.study_dir, args.name, base.url)
    print(f"{printable(reader.name)}: {reader.link}")
    print(f"(shown once; the token is stored hashed; `xreal-bench study links {args.study_dir} {reader.name}` issues a new one)")
    print(f"serve with: {serve_hint(args.study_dir, base)}")
    return 0


def run_links(args: argparse.Namespace) -> int:
    from xreal_bench.errors import UserFacingError
    from xreal_bench.reader_study.layout import STUDY_DB
    from xreal_bench.reader_study.storage import Storage, StorageError

    check_study_dir(args.study_dir)
    base = study_base_url(args.study_dir, args.base_url)
    with Storage(args.study_dir / STUDY_DB) as storage:
        if args.name is None:
            done = {p.name: p for p in storage.progress()}
            print(f"accounts of {args.study_dir} (`xreal-bench study links {args.study_dir} NAME` issues a new link):")
            for a in storage.accounts():
                state = "active" if a.revoked_at is None else f"revoked {utc(a.revoked_at)}"
                work = f", {done[a.name].done} / {done[a.name].total} done" if a.role == "reader" and a.name in done else ""
                print(f"  {printable(a.name)} ({a.role}): {state}{work}")
            return 0
        try:
            rotated = storage.rotate_token(args.name)
        except StorageError as exc:
            raise UserFacingError(f"{args.study_dir}: {exc}") from None
    print(f"{printable(rotated.name)}: {base.link(rotated.token)}")
    again = "" if rotated.reactivated_from is None else f"; re-activated (revoked {utc(rotated.reactivated_from)})"
    print(f"(shown once, stored hashed; the previous link no longer signs in{again})")
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    from xreal_bench.errors import UserFacingError
    from xreal_bench.reader_study.layout import STUDY_DB
    from xreal_bench.reader_study.storage import Storage, StorageError

    check_study_dir(args.study_dir)
    with Storage(args.study_dir / STUDY_DB) as storage:
        try:
            before = storage.revoke(args.name)
        except StorageError as exc:
            raise UserFacingError(f"{args.study_dir}: {exc}") from None
    name = printable(args.name)
    if before is not None:
        print(f"{name} was already revoked ({utc(before)}); nothing changed")
    else:
        print(f"revoked {name}: their link signs in no more; their ratings are kept")
    print(f"`xreal-bench study links {args.study_dir} {args.name}` re-activates {name} with a new link")
    return 0


def utc(seconds: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def printable(text: str) -> str:
    """``text`` for a terminal: control, format (bidi) and unassigned characters and backslashes escaped."""
    import unicodedata

    def shown(c: str) -> str:
        if c == "\\":
            return "\\\\"
        if not unicodedata.category(c).startswith("C"):
            return c
        code = ord(c)
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"

    return "".join(shown(c) for c in text)


LAUNCHER = Path(__file__).with_name("server.py")  # the app behind the study gate (reader_study/server.py)


def serve_command(study_dir: Path, port: int, host: str, *, base_path: str = "") -> tuple[list[str], dict[str, str]]:
    """The ``streamlit run`` command line and environment that serve ``study_dir``."""
    from xreal_bench.reader_study.layout import APP_SERVER_OPTIONS, STUDY_DIR_ENV

    command = [
        sys.executable, "-m", "streamlit", "run", str(LAUNCHER),
        "--server.port", str(port),
        "--server.address", host,
        "--server.baseUrlPath", base_path.strip("/"),
        "--server.headless", "true",
        "--server.enableAgentApi", "false",
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
    base = study_base_url(args.study_dir, args.base_url)
    port = base.serve_port if args.port is None else args.port
    host = base.serve_host if args.host is None else args.host
    if not base.proxied and port != base.serve_port:
        print(f"warning: the links point at {base.url} but this server listens on port {port}", file=sys.stderr)
    print(
        f"serving {args.study_dir} on {host}:{port}; readers open their links at {base.url}/ "
        f"(Ctrl+C stops; answers are saved as they are submitted; admin link: xreal-bench study links {args.study_dir} admin)",
        flush=True,
    )
    command, env = serve_command(args.study_dir, port, host, base_path=base.path)
    os.execve(command[0], command, env)  # Streamlit replaces this process: signals reach it directly


def run_status(args: argparse.Namespace) -> int:
    from xreal_bench.reader_study.layout import STUDY_DB
    from xreal_bench.reader_study.storage import Storage

    check_study_dir(args.study_dir)
    with Storage(args.study_dir / STUDY_DB) as storage:
        revoked = {a.name for a in storage.accounts() if a.revoked_at is not None}
        for p in storage.progress():
            if p.role == "reader":
                median = "" if p.median_seconds is None else f", median {p.median_seconds:.1f} s/item"
                mark = " (revoked)" if p.name in revoked else ""
                print(f"{printable(p.name)}: {p.done} / {p.total}{median}{mark}")
    return 0


def run_analyze(args: argparse.Namespace) -> int:
    from xreal_bench.reader_study.analysis import analyze_study

    check_study_dir(args.study_dir)
    result = analyze_study(args.study_dir, args.out, bootstrap=args.bootstrap, confidence=args.confidence, seed=args.seed)
    print(f"{result.n_ratings} ratings from {result.n_readers} readers -> {result.out}")
    for path in result.files:
        print(f"  {path}")
    return 0


# -- study plan ----------------------------------------------------------------------------------
PLAN_DESCRIPTION = """\
Power of the Obuchowski-Rockette test (readers and cases random, Hillis df, non-central F;
Hillis, Obuchowski & Berbaum 2011) for a table of readers x cases, and the cases each reader
count needs for --power. The components come from a pilot: a study folder (its real-or-generated
block: --generator G plans a test of G's AUC against --null-auc, --compare A B a test of the
difference of two generators' AUCs) or stated OR components estimated on --pilot-cases cases
(--var-tr given: difference of two AUCs, needing --cov1 --cov2 --cov3 --var-error; otherwise one
AUC against a value, needing --var-r --cov2 --var-error; --corr1/2/3 may replace --cov1/2/3 as
multiples of --var-error). `study analyze` writes a study's components to turing_auc_components."""

PLAN_EXAMPLES = """\
examples:
  xreal-bench study plan studies/pilot --generator xreal --effect 0.1
  xreal-bench study plan --pilot-cases 114 --effect 0.05 --var-tr 0.0002 --var-error 0.0008 \\
      --cov1 0.00035 --cov2 0.00034 --cov3 0.00024 --readers 5 10 --cases 100 200
"""


def add_plan_parser(actions) -> None:
    from xreal_bench.commands.args import HelpFormatter
    from xreal_bench.names import name_argument

    plan = actions.add_parser(
        "plan",
        help="readers x cases needed to detect an AUC difference (MRMC sample size)",
        description=PLAN_DESCRIPTION,
        epilog=PLAN_EXAMPLES,
        formatter_class=HelpFormatter,
    )
    plan.add_argument("study_dir", type=Path, nargs="?", metavar="STUDY_DIR", help="pilot study (or give the components)")
    which = plan.add_mutually_exclusive_group()
    which.add_argument("--generator", type=name_argument("generator name"), help="plan a test of this generator's AUC")
    which.add_argument(
        "--compare", nargs=2, type=name_argument("generator name"), metavar=("A", "B"), help="plan a test of AUC(A) - AUC(B)"
    )
    plan.add_argument("--effect", type=float, help="AUC difference to detect (or AUC - null AUC); default: the pilot's")
    plan.add_argument("--null-auc", type=float, default=0.5, help="AUC under the null for a single generator")
    plan.add_argument("--power", type=float, default=0.8, help="target power")
    plan.add_argument("--alpha", type=float, default=0.05, help="significance level (two-sided)")
    plan.add_argument("--readers", type=int, nargs="+", default=[3, 4, 5, 6, 8, 10], metavar="J", help="reader counts")
    plan.add_argument(
        "--cases", type=int, nargs="+", default=[50, 100, 200, 400], metavar="K", help="case counts (images, real included)"
    )
    stated = plan.add_argument_group("stated OR components (instead of STUDY_DIR)")
    stated.add_argument("--pilot-cases", type=int, metavar="K*", help="cases the components were estimated on")
    for name, text in (
        ("var-r", "reader variance Var(R)"),
        ("var-tr", "treatment x reader variance Var(TR)"),
        ("var-error", "error variance Var(e)"),
        ("cov1", "Cov1: same reader, different treatments"),
        ("cov2", "Cov2: same treatment, different readers"),
        ("cov3", "Cov3: different treatments and readers"),
        ("corr1", "Cov1 / Var(e)"),
        ("corr2", "Cov2 / Var(e)"),
        ("corr3", "Cov3 / Var(e)"),
    ):
        stated.add_argument(f"--{name}", type=float, metavar="X", help=text)
    plan.set_defaults(handler=run_plan)


STATED = ("pilot_cases", "var_r", "var_tr", "var_error", "cov1", "cov2", "cov3", "corr1", "corr2", "corr3")


def stated_components(args: argparse.Namespace):
    from xreal_bench.errors import UserFacingError
    from xreal_bench.reader_study.planning import PilotComponents

    if args.pilot_cases is None or args.var_error is None:
        raise UserFacingError("give a pilot STUDY_DIR or stated components with --pilot-cases and --var-error")
    if args.pilot_cases < 2:
        raise UserFacingError(f"--pilot-cases must be >= 2, got {args.pilot_cases}")
    covs = {}
    for k in (1, 2, 3):
        cov, corr = getattr(args, f"cov{k}"), getattr(args, f"corr{k}")
        if cov is not None and corr is not None:
            raise UserFacingError(f"give --cov{k} or --corr{k}, not both")
        covs[k] = cov if cov is not None else (corr * args.var_error if corr is not None else float("nan"))
    nan = float("nan")
    return PilotComponents(
        args.pilot_cases, args.var_error, covs[2], covs[1], covs[3],
        nan if args.var_tr is None else args.var_tr, nan if args.var_r is None else args.var_r,
    )  # fmt: skip


def run_plan(args: argparse.Namespace) -> int:
    import math

    from xreal_bench.errors import UserFacingError
    from xreal_bench.reader_study import planning
    from xreal_bench.tables import to_markdown

    given = [name for name in STATED if getattr(args, name) is not None]
    if args.study_dir is not None:
        if given:
            raise UserFacingError(f"give a pilot STUDY_DIR or stated components, not both (--{given[0].replace('_', '-')})")
        check_study_dir(args.study_dir)
        pilot = planning.pilot_from_study(args.study_dir, generator=args.generator, compare=args.compare, null_auc=args.null_auc)
    else:
        if args.generator or args.compare:
            raise UserFacingError("--generator and --compare choose from a pilot STUDY_DIR")
        pilot = planning.pilot_from_components(stated_components(args))
    effect = args.effect if args.effect is not None else pilot.observed
    if math.isnan(effect) or effect == 0:
        raise UserFacingError("give --effect, the AUC difference to detect (non-zero)")
    for flag, value in (("--power", args.power), ("--alpha", args.alpha)):
        if not 0 < value < 1:
            raise UserFacingError(f"{flag} must be in (0, 1), got {value}")
    if min(args.readers) < 2 or min(args.cases) < 2:
        raise UserFacingError("--readers and --cases must be >= 2 (random readers need two)")
    table = planning.power_table(
        pilot.components, test=pilot.test, readers=sorted(set(args.readers)), cases=sorted(set(args.cases)),
        effect=effect, target=args.power, alpha=args.alpha,
    )  # fmt: skip
    c = pilot.components
    print(f"pilot: {pilot.description}")
    print(
        f"components: Var(R)={c.var_r:.6g} Var(TR)={c.var_tr:.6g} Var(e)={c.var_error:.6g} "
        f"Cov1={c.cov1:.6g} Cov2={c.cov2:.6g} Cov3={c.cov3:.6g} (pilot cases {c.n_cases})"
    )
    kind = "AUC difference" if pilot.test == "difference" else f"AUC - {args.null_auc:g}"
    print(f"power to detect {kind} = {effect:.4g} at alpha {args.alpha:g} (two-sided), readers and cases random:")
    counts = [c for c in table.columns if not str(c).endswith(" cases")]
    print(to_markdown(table.astype(dict.fromkeys(counts, str)), floatfmt=".3f"))
    return 0
