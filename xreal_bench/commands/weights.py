"""``xreal-bench weights``: list, verify, fetch and locate model files."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    from xreal_bench.commands.args import HelpFormatter, subparser

    weights = subparser(
        sub,
        "weights",
        "list, verify, fetch and locate model weights",
        "Every external model file the suite can use, with where it must be placed. The weights "
        "folder is [weights].dir in the config, else $XREAL_BENCH_WEIGHTS, else ~/.cache/xreal-bench/weights.",
    )
    weights.add_argument("--dir", default="", help="weights folder (overrides config and environment)")
    actions = weights.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("list", help="show every artifact: present or missing, and its path", formatter_class=HelpFormatter)
    verify = actions.add_parser("verify", help="check presence, size and sha256 offline", formatter_class=HelpFormatter)
    verify.add_argument("names", nargs="*", help="artifacts to verify (default: all present ones)")
    fetch = actions.add_parser("fetch", help="download an artifact (needs internet)", formatter_class=HelpFormatter)
    fetch.add_argument("names", nargs="+", help="artifact names (see `weights list`)")
    path = actions.add_parser("path", help="print where an artifact must be placed", formatter_class=HelpFormatter)
    path.add_argument("name", help="artifact name (see `weights list`)")
    weights.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from xreal_bench.errors import UserFacingError
    from xreal_bench.weights import WeightsManager, collect_artifacts

    manager = WeightsManager(args.dir or None)
    try:
        if args.action == "list":
            catalog = collect_artifacts()
            manager.catalog = catalog
            print(f"weights folder: {manager.root}")
            width = max(len(n) for n in catalog.artifacts)
            for name, art in sorted(catalog.artifacts.items()):
                st = manager.status(art)
                print(f"  {'ok     ' if st.present else 'missing'}  {name:<{width}}  {st.path}")
                print(f"  {'':7}  {'':<{width}}  {art.description}; licence: {art.license}")
                print(f"  {'':7}  {'':<{width}}  used by: {', '.join(catalog.users[name])}")
            for problem in catalog.problems:
                print(f"  cannot list the weights of {problem}")
            return 0
        if args.action == "verify":
            names = args.names or [n for n in manager.artifacts if manager.status(n).present]
            bad = 0
            for name in names:
                st = manager.verify(name)
                bad += not st.present
                print(f"{'ok  ' if st.present else 'FAIL'}  {name}: {st.detail}  ({st.path})")
            if not names:
                print(f"no artifacts present in {manager.root}")
            return 1 if bad else 0
        if args.action == "path":
            print(manager.path(args.name))
            return 0
        for name in args.names:
            print(f"fetching {name} -> {manager.path(name)}")
            manager.fetch(name)
        return 0
    except KeyError as exc:
        raise UserFacingError(exc.args[0]) from None
    except ConnectionError as exc:
        raise UserFacingError(str(exc)) from None
