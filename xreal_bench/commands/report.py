"""``xreal-bench report RUN_DIR... --out DIR``: the paper-ready report folder."""

from __future__ import annotations

import argparse
from pathlib import Path

DESCRIPTION = (
    "Writes a self-contained folder: Table I (table_main.{tex,md,csv}: rows grouped by model type, best in bold, "
    "second underlined, ties where 95 % CIs overlap; reader-study columns when a study of these runs has been "
    "analysed), per-pathology, per-organ and per-subgroup tables, figures (PNG and PDF: metric bars with CIs, "
    "per-pathology heatmaps, FID vs clinical metrics with rank correlations), samples_grid.{png,pdf}, one "
    "machine-readable JSON per run and a README.md naming the command, config hash, dataset fingerprint and weight "
    "hashes behind every file. Several runs must be comparable (same data, evaluators and policies; see "
    "`xreal-bench leaderboard`)."
)


def register(sub) -> None:
    from xreal_bench.commands.args import subparser

    report = subparser(sub, "report", "write the paper-ready report folder for one or more runs", DESCRIPTION)
    report.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR", help="run directories holding results.csv")
    report.add_argument("--out", type=Path, default=None, help="report folder (default for one run: RUN_DIR/report)")
    report.add_argument("--ci", choices=["brackets", "pm"], default="brackets", help="CI as [low, high] or as ± half-width")
    report.add_argument("--decimals", type=int, default=3, help="decimals in tables")
    report.add_argument("--formats", nargs="+", default=["md", "csv", "tex"], choices=["md", "csv", "tex"], help="table formats")
    report.add_argument("--no-figures", action="store_true", help="tables only (no figures, no sample grid)")
    report.add_argument("--grid-cases", type=int, default=4, metavar="K", help="cases (rows) in the sample grid")
    report.add_argument("--cases", nargs="+", default=[], metavar="CASE_ID", help="these cases in the sample grid")
    report.add_argument("--seed", type=int, default=0, help="seed of the sample grid's case choice")
    report.add_argument(
        "--study",
        type=Path,
        default=None,
        metavar="STUDY_DIR",
        help="analysed reader study of these runs (default: RUN_DIR/study)",
    )
    report.add_argument("--allow-mixed", action="store_true", help="runs that are not comparable go in separate sections")
    report.set_defaults(handler=run_report)


def run_report(args: argparse.Namespace) -> int:
    from xreal_bench.errors import UserFacingError
    from xreal_bench.reports.folder import write_report_folder
    from xreal_bench.reports.options import ReportOptions
    from xreal_bench.reports.runs import load_runs

    if args.out is None and len(args.run_dirs) > 1:
        raise UserFacingError("several runs need --out DIR (the report folder)")
    if args.grid_cases < 1 or args.decimals < 0:
        raise UserFacingError("--grid-cases must be >= 1 and --decimals >= 0")
    runs = load_runs(args.run_dirs)
    options = ReportOptions(
        decimals=args.decimals,
        ci=args.ci,
        formats=tuple(args.formats),
        figures=not args.no_figures,
        grid_cases=args.grid_cases,
        grid_seed=args.seed,
        cases=tuple(args.cases),
        study=args.study,
    )
    out = args.out or runs[0].path / "report"
    written = write_report_folder(runs, out, options, command=args.command_line, allow_mixed=args.allow_mixed)
    print(f"report: {out} ({len(written)} files; {out / 'README.md'} says what each is)")
    return 0
