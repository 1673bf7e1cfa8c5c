"""``xreal-bench weights``: list, verify, fetch and locate model files."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    from xreal_bench.commands.args import HelpFormatter, add_config_args, subparser

    weights = subparser(
        sub,
        "weights",
        "list, verify, fetch and locate model weights",
        "Every external model file the suite can use, with where it must be placed. The weights "
        "folder is --dir, else [weights].dir in the config (--config, or ./bench.toml), else "
        "$XREAL_BENCH_WEIGHTS, else ~/.cache/xreal-bench/weights. A file is 'verified' only when "
        "its published sha256 confirms it; a file without a published hash is 'unverified'.",
    )
    weights.add_argument("--dir", default="", help="weights folder (overrides config and environment)")
    actions = weights.add_subparsers(dest="action", metavar="ACTION", required=True)
    lst = actions.add_parser(
        "list", help="show every artifact: verified, unverified or missing, and its path", formatter_class=HelpFormatter
    )
    verify = actions.add_parser("verify", help="check presence, size and sha256 offline", formatter_class=HelpFormatter)
    verify.add_argument("names", nargs="*", help="artifacts to verify (default: all present ones)")
    fetch = actions.add_parser("fetch", help="download an artifact (needs internet)", formatter_class=HelpFormatter)
    fetch.add_argument("names", nargs="+", help="artifact names (see `weights list`)")
    path = actions.add_parser("path", help="print where an artifact must be placed", formatter_class=HelpFormatter)
    path.add_argument("name", help="artifact name (see `weights list`)")
    for action in (lst, verify, fetch, path):
        add_config_args(action)
    weights.set_defaults(handler=run)


def manager_from_args(args: argparse.Namespace, explicit_dir: str):
    """The weights manager of a command: ``explicit_dir`` (a command-line option) wins over the config's ``[weights].dir``."""
    from xreal_bench.commands.args import config_from_args
    from xreal_bench.weights import WeightsManager

    return WeightsManager(explicit_dir or config_from_args(args).weights.dir or None)


def list_state(manager, art) -> tuple[str, str]:
    """``(state, detail)``: missing, unverified (no published hash; not hashed here), verified or MISMATCH."""
    from xreal_bench.weights import has_reference

    if not manager.status(art).present:
        return "missing", ""
    if not has_reference(art):
        return "unverified", "no published hash"
    st = manager.verify(art)
    return ("verified", "") if st.present else ("MISMATCH", st.detail)


def list_artifacts(manager) -> None:
    from xreal_bench.weights import collect_artifacts

    catalog = collect_artifacts()
    manager.catalog = catalog
    print(f"weights folder: {manager.root}")
    width = max(len(n) for n in catalog.artifacts)
    for name, art in sorted(catalog.artifacts.items()):
        state, detail = list_state(manager, art)
        print(f"  {state:<10}  {name:<{width}}  {manager.path(art)}" + (f"  ({detail})" if detail else ""))
        print(f"  {'':10}  {'':<{width}}  {art.description}; licence: {art.license}")
        print(f"  {'':10}  {'':<{width}}  used by: {', '.join(catalog.users[name])}")
    for problem in catalog.problems:
        print(f"  cannot list the weights of {problem}")


def verify_artifacts(manager, names: list[str]) -> int:
    names = names or [n for n in manager.artifacts if manager.status(n).present]
    bad = 0
    for name in names:
        st = manager.verify(name)
        bad += not st.present
        state = ("verified" if st.verified else "unverified") if st.present else "FAIL"
        print(f"{state:<10}  {name}: {st.detail}  ({st.path})")
    if not names:
        print(f"no artifacts present in {manager.root}")
    return 1 if bad else 0


def run(args: argparse.Namespace) -> int:
    from xreal_bench.errors import UserFacingError

    manager = manager_from_args(args, args.dir)
    try:
        if args.action == "list":
            list_artifacts(manager)
            return 0
        if args.action == "verify":
            return verify_artifacts(manager, args.names)
        if args.action == "path":
            print(manager.path(args.name))
            return 0
        for name in args.names:
            only = manager.artifact(name).fetch_files
            print(f"fetching {name} -> {manager.path(name)}" + (f"  (only {', '.join(only)})" if only else ""))
            manager.fetch(name)
        return 0
    except KeyError as exc:
        raise UserFacingError(exc.args[0]) from None
    except ConnectionError as exc:
        raise UserFacingError(str(exc)) from None
