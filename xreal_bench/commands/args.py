"""What every subcommand shares: the help formatter, ``--config``/``--set``, loading the config."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from xreal_bench.config import BenchConfig, Override


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows meaningful defaults (not None/empty/False) and keeps the epilog's line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, [], False, "", argparse.SUPPRESS) or "default" in (action.help or ""):
            return action.help or ""
        return super()._get_help_string(action) or ""


def add_config_args(parser: argparse.ArgumentParser) -> None:
    """``--config`` and ``--set`` shared by every command that reads ``bench.toml``."""
    parser.add_argument(
        "--config",
        default=None,
        metavar="PATH",
        help="bench.toml to read (default: ./bench.toml if it exists, else built-in defaults)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config key, value in TOML syntax (repeatable), e.g. --set run.batch_size=8; "
        "`xreal-bench config check` validates without running anything",
    )


def config_from_args(args: argparse.Namespace, extra: Sequence[str | Override] = ()) -> BenchConfig:
    """Load the config named by ``--config`` (or ./bench.toml) with ``extra`` then ``--set`` overrides applied.

    ``extra`` holds the overrides a command derives from its own flags; give them as
    :class:`~xreal_bench.config.Override` with the flag as ``origin`` so errors name the flag.
    """
    from xreal_bench.config import load_config

    path = args.config
    if path is None and Path("bench.toml").exists():  # a folder of that name is reported, not skipped
        path = "bench.toml"
    return load_config(path, [*extra, *args.overrides])


def subparser(sub, name: str, help: str, description: str | None = None) -> argparse.ArgumentParser:
    """A subcommand parser with the shared formatter."""
    return sub.add_parser(name, help=help, description=description or help, formatter_class=HelpFormatter)
