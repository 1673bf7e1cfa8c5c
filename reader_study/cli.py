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
  xreal-bench study plan studies/demo --generator xreal             readers x cases for the next study
"""


def register(sub) -> None:
    from xreal_bench.commands.args import HelpFormatter, add_config_args, subparser
    from xreal_bench.config import StudyConfig
    from xreal_bench.names import name_argument

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
        "chosen generator's image into STUDY_DIR under opaque ids (re-encoded alike), assign balanced item "
        "orders to readers and print each reader's sign-in link once. Defaults come from [study] in the config.",
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
        help=f"add the real-or-generated block (study.turing_test; default {d.turing_test})",
    )
    create.add_argument("--seed", type=int, default=S, help=f"design seed (study.seed; default {d.seed})")
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
