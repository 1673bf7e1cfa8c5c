"""``xreal-bench config check | show``: load and validate a config without doing any work."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    from xreal_bench.commands.args import HelpFormatter, add_config_args, subparser

    config = subparser(
        sub,
        "config",
        "validate a config and show it resolved",
        "Read bench.toml (or --config) with every --set applied and validate it as a run would, "
        "before any data, model or GPU is touched. An error names the file or the --set, the key and what was expected.",
    )
    actions = config.add_subparsers(dest="action", metavar="ACTION", required=True)
    check = actions.add_parser(
        "check", help="validate; print the enabled generators and the config hash", formatter_class=HelpFormatter
    )
    add_config_args(check)
    check.set_defaults(handler=run_check)
    show = actions.add_parser(
        "show", help="validate; print the resolved config (defaults filled in) as JSON", formatter_class=HelpFormatter
    )
    add_config_args(show)
    show.set_defaults(handler=run_show)


def run_check(args: argparse.Namespace) -> int:
    from xreal_bench.commands.args import config_from_args

    cfg = config_from_args(args)
    enabled = ", ".join(f"{name} ({g.type})" for name, g in cfg.enabled_generators().items()) or "none"
    print(f"{cfg.source}: ok ({len(args.overrides)} --set override(s) applied)")
    print(f"  run.out: {cfg.run.out}")
    print(f"  generators: {enabled}")
    print(f"  config hash: {cfg.hash()}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    import json

    from xreal_bench.commands.args import config_from_args

    cfg = config_from_args(args)
    print(json.dumps({"source": cfg.source, **cfg.to_dict()}, indent=2, default=str))
    return 0
