"""``xreal-bench generators list``: every generator type with its inputs and weights."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    from xreal_bench.commands.args import HelpFormatter, add_config_args, subparser

    gens = subparser(
        sub,
        "generators",
        "list generator types (built-in and plugins)",
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
    gens.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from xreal_bench.commands.weights import manager_from_args
    from xreal_bench.generators.registry import available_generators, generator_class

    manager = manager_from_args(args, args.weights_dir)
    for name in available_generators():
        try:
            cls = generator_class(name)
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not hide the others
            print(f"{name}\n    cannot load: {exc}")
            continue
        inputs = ", ".join(sorted(cls.inputs)) or "none"
        print(f"{name}: {cls.description}")
        print(f"    inputs:  {inputs}")
        state = [f"{a.name} ({'present' if manager.status(a).present else 'missing'})" for a in cls.artifacts]
        print(f"    weights: {', '.join(state) or 'none'}")
    return 0
