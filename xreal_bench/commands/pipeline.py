"""``xreal-bench run | generate | evaluate | import``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

#: Exit status of ``--strict`` when a planned image failed, is missing or could not be decoded.
STRICT_EXIT = 3
STRICT_HELP = (
    f"exit with status {STRICT_EXIT} (after writing every result) if any planned image failed, is missing or "
    "could not be decoded, with one line per generator saying why; without it such generators are named in a "
    "warning, their numbers rest on the cases they cover, and the exit status is 0"
)


def register(sub) -> None:
    from xreal_bench.commands.args import add_config_args, subparser
    from xreal_bench.names import name_argument

    for name, help_text, handler in (
        ("run", "generate, evaluate and report for a config (torchrun-aware)", run_all),
        ("generate", "generate (or resume) every enabled generator's images", run_generate),
        ("evaluate", "evaluate the run directory's images; write results.csv/json and the leaderboard", run_evaluate),
    ):
        p = subparser(sub, name, help_text)
        add_config_args(p)
        p.add_argument("--out", default=None, help="run directory (overrides run.out)")
        p.add_argument(
            "--generators",
            nargs="+",
            default=None,
            metavar="NAME",
            type=name_argument("generator name"),
            help="only these generators (default: all enabled)",
        )
        p.add_argument("--quiet", action="store_true", help="no progress bars")
        if name in ("run", "generate"):
            p.add_argument(
                "--overwrite",
                action="store_true",
                help="delete the generators' folders first (only folders xreal-bench made, directly inside the run directory)",
            )
        p.add_argument("--strict", action="store_true", help=STRICT_HELP)
        p.set_defaults(handler=handler)

    imp = subparser(
        sub,
        "import",
        "adopt images generated elsewhere as a generator of the run",
        "Copies images named <case_id>.png (sample 0) or <case_id>_<k>.png into RUN/<name>/images through the "
        "same normalisation as generated images, with manifest lines, so `evaluate` can score them.",
    )
    add_config_args(imp)
    imp.add_argument(
        "--generator",
        required=True,
        metavar="NAME",
        type=name_argument("--generator", generator=True),
        help="name for the imported images (a new generator folder; not 'real')",
    )
    imp.add_argument("--from", dest="source", required=True, metavar="DIR", help="folder with the images (searched recursively)")
    imp.add_argument("--out", default=None, help="run directory (overrides run.out)")
    imp.add_argument(
        "--overwrite", action="store_true", help="replace the generator folder's earlier images (only a folder xreal-bench made)"
    )
    imp.set_defaults(handler=run_import)


def load(args: argparse.Namespace):
    from xreal_bench.commands.args import config_from_args

    extra = [f"run.out={quote(args.out)}"] if getattr(args, "out", None) else []
    return config_from_args(args, extra)


def quote(text: str) -> str:
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"') + '"'


def run_generate(args: argparse.Namespace) -> int:
    from xreal_bench.pipeline import generate, open_session
    from xreal_bench.preflight import Stage

    stages: tuple[Stage, ...] = ("generate",)
    session = open_session(
        load(args), progress=not args.quiet, stages=stages, generators=args.generators, overwrite=args.overwrite
    )
    summaries = generate(session, args.generators, overwrite=args.overwrite, progress=not args.quiet)
    status = 0 if all(s.generated + s.skipped > 0 for s in summaries) else 1
    if args.strict and session.info.is_main:
        return strict_status(generated_coverage(session, [s.generator for s in summaries])) or status
    return status


def generated_coverage(session, names: list[str]) -> dict:
    """Each generator's coverage from its manifest and files (what ``generate`` left on disk)."""
    from xreal_bench.coverage import Plan, manifest_coverage
    from xreal_bench.rundir import GeneratorDir

    cfg = session.cfg
    plan = Plan.of((c.case_id for c in session.scan.cases), cfg.run.samples_per_condition)
    return {name: manifest_coverage(GeneratorDir(cfg.run.out, name), plan, cfg.metrics.min_coverage) for name in names}


def evaluated_coverage(out: Path, names: list[str] | None) -> dict:
    """The coverage records ``evaluate`` wrote to ``results.json`` (the named generators and ``real``; all without names)."""
    from xreal_bench.results import read_coverage

    coverage = read_coverage(out)
    return {k: v for k, v in coverage.items() if not names or k in names or k == "real"}


def strict_status(coverage: dict) -> int:
    """``--strict``: print one line per source with a lost image; :data:`STRICT_EXIT` if any, else 0."""
    from xreal_bench.coverage import strict_problems

    problems = strict_problems(coverage)
    for line in problems:
        print(line, file=sys.stderr)
    return STRICT_EXIT if problems else 0


def run_evaluate(args: argparse.Namespace) -> int:
    from xreal_bench.evaluation import evaluate
    from xreal_bench.pipeline import open_session
    from xreal_bench.preflight import Stage

    cfg = load(args)
    stages: tuple[Stage, ...] = ("evaluate",)
    session = open_session(cfg, progress=not args.quiet, stages=stages, generators=args.generators)
    evaluate(session, args.generators, progress=not args.quiet)
    if not session.info.is_main:
        return 0
    report_and_print(cfg)
    return strict_status(evaluated_coverage(Path(cfg.run.out), args.generators)) if args.strict else 0


def run_all(args: argparse.Namespace) -> int:
    from xreal_bench.evaluation import evaluate
    from xreal_bench.pipeline import generate, open_session
    from xreal_bench.preflight import STAGES

    cfg = load(args)
    session = open_session(cfg, progress=not args.quiet, stages=STAGES, generators=args.generators, overwrite=args.overwrite)
    generate(session, args.generators, overwrite=args.overwrite, progress=not args.quiet)
    evaluate(session, args.generators, progress=not args.quiet)
    if not session.info.is_main:
        return 0
    report_and_print(cfg)
    return strict_status(evaluated_coverage(Path(cfg.run.out), args.generators)) if args.strict else 0


def report_and_print(cfg) -> None:
    from xreal_bench.reports import REPORT_DIR, write_reports

    out = Path(cfg.run.out)
    write_reports(out, cfg.report.formats, cfg.report.figures, cfg.report.decimals)
    print((out / "leaderboard.md").read_text())
    print(f"results: {out / 'results.csv'} (+ results.json provenance), leaderboard: {out / 'leaderboard.md'}")
    print(f"report: {out / REPORT_DIR} (Table I, tables, figures, sample grid; its README.md says what each file is)")


def run_import(args: argparse.Namespace) -> int:
    from xreal_bench.data.dataset import load_dataset
    from xreal_bench.errors import UserFacingError
    from xreal_bench.importer import import_folder

    cfg = load(args)
    scan = load_dataset(cfg)
    try:
        report = import_folder(
            Path(args.source),
            out=Path(cfg.run.out),
            name=args.generator,
            cases=scan.cases,
            resolution=cfg.run.resolution,
            bits=cfg.run.bit_depth,
            geometry=cfg.dataset.geometry,
            overwrite=args.overwrite,
        )
    except FileNotFoundError as exc:
        raise UserFacingError(str(exc)) from None
    print(report.describe(args.generator))
    return 0 if report.imported else 1
