"""``xreal-bench generators list / show / protocol-table``: generator types, the exact protocol one
would run, and the README's table of every default with its source."""

from __future__ import annotations

import argparse

SHOW_EPILOG = """\
examples:
  xreal-bench generators show noise                      the configured noise generator (or the type's defaults)
  xreal-bench generators show phantom --config bench.toml --case 04e14bdb-94eb3cea-5b3340f6-c7ec0ca7-150b6d1e
                                                         a case of the demo data set (its dicom_id)
  xreal-bench generators show roentgen --set generators.roentgen.steps=50 --json

Nothing is generated and no weights are loaded: missing weights files are listed with where they
were looked for and how to get them. With --case the dataset is scanned as a run scans it (a
synthetic data set not written yet is written first, as every command that reads it does).
"""


def register(sub) -> None:
    from xreal_bench.commands.args import HelpFormatter, add_config_args, subparser
    from xreal_bench.names import name_argument

    gens = subparser(
        sub,
        "generators",
        "list generator types; show the exact protocol one would run",
        "Generator types: built-ins and plugins registered under the `xreal_bench.generators` entry point.",
    )
    actions = gens.add_subparsers(dest="action", metavar="ACTION", required=True)
    lst = actions.add_parser("list", help="show each type's declared inputs and weight files", formatter_class=HelpFormatter)
    lst.add_argument(
        "--weights-dir",
        default="",
        help="weights folder used to report present/missing files (default: [weights].dir of the config)",
    )
    add_config_args(lst)
    lst.set_defaults(handler=run_list)

    show = actions.add_parser(
        "show",
        help="print the exact protocol a generator would run (no weights needed)",
        description="Print the exact protocol a generator would run, to check it against its paper before spending "
        "GPU hours: every option with the source of its default, the adapter's own steps (prompt built for the case, "
        "text encoder, scheduler, precision, preprocessing), its inputs, the run settings that apply, the "
        "conditioning sources of the config and, with --case, that case's Condition built as a run builds it "
        "(anatomy maps and fallback boxes are not computed; their source is named).",
        epilog=SHOW_EPILOG,
        formatter_class=HelpFormatter,
    )
    show.add_argument(
        "name",
        metavar="NAME",
        type=name_argument("generator name"),
        help="a [generators.<name>] table of the config, or a generator type (`generators list`) with its default options",
    )
    show.add_argument("--case", default="", metavar="ID", help="a case id (dicom_id) of the configured split")
    show.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    show.add_argument("--weights-dir", default="", help="weights folder to look in (default: [weights].dir of the config)")
    add_config_args(show)
    show.set_defaults(handler=run_show)

    table = actions.add_parser(
        "protocol-table",
        help="print the README's protocol table: every built-in option's default with its source",
        description="Print one Markdown table per built-in generator type (option | default | source) between the "
        "README's protocol-table markers; tests/test_protocol_table.py compares it with README.md.",
        formatter_class=HelpFormatter,
    )
    table.set_defaults(handler=run_protocol_table)


def run_list(args: argparse.Namespace) -> int:
    from xreal_bench.commands.args import config_from_args
    from xreal_bench.generators.registry import available_generators, generator_class
    from xreal_bench.weights import WeightsManager

    cfg = config_from_args(args)
    manager = WeightsManager(args.weights_dir or cfg.weights.dir or None)
    print(f"generator types (weights folder {manager.root}):")
    for name in available_generators():
        try:
            cls = generator_class(name)
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not hide the others
            print(f"{name}\n    cannot load: {exc}")
            continue
        print(f"{name}: {cls.description}")
        print(f"    inputs:  {', '.join(sorted(cls.inputs)) or 'none'}")
        print(f"    weights: {weights_state(manager, cls.artifacts)}")
    print(f"\nconfigured generators ({cfg.source}; `generators show NAME` prints a protocol):")
    for name, gcfg in cfg.generators.items():
        cls = generator_class(gcfg.type)
        skipped = "" if gcfg.enabled else " (enabled = false: a run skips it)"
        print(f"{name}: type {gcfg.type}{skipped}")
        print(f"    inputs:  {', '.join(sorted(cls.inputs)) or 'none'}")
        print(f"    weights: {weights_state(manager, cls.required_artifacts(gcfg.options))}")
    return 0


def weights_state(manager, artifacts) -> str:
    """``name (present|missing), ...`` for the listed artifacts, or ``none``."""
    return ", ".join(f"{a.name} ({'present' if manager.status(a).present else 'missing'})" for a in artifacts) or "none"


def run_show(args: argparse.Namespace) -> int:
    import json

    from xreal_bench.commands.args import config_from_args
    from xreal_bench.commands.generator_show import show_generator
    from xreal_bench.weights import WeightsManager

    cfg = config_from_args(args)
    weights = WeightsManager(args.weights_dir or cfg.weights.dir or None)
    shown = show_generator(cfg, args.name, case_id=args.case, weights=weights)
    print(json.dumps(shown.record(), indent=2) if args.json else shown.text(), end="\n" if args.json else "")
    return 0


def run_protocol_table(args: argparse.Namespace) -> int:
    from xreal_bench.generators.protocol_table import main

    return main()
