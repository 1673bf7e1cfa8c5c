"""The ``xreal-bench`` command line. Each area registers its subcommands here; heavy imports
happen inside the handlers so ``--help`` stays fast.

Failures the user can act on print one line on stderr, never a traceback: ``config error: ...``
and ``error: ...`` (exit 2) for bad input, ``error: cannot <operation> <path>: <reason>``
(exit 1) for any ``OSError`` — disk full, read-only file system, permission denied, missing or
wrong-type path (:func:`xreal_bench.atomic.describe_os_error`).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from xreal_bench.atomic import describe_os_error
from xreal_bench.commands.args import HelpFormatter
from xreal_bench.errors import UserFacingError
from xreal_bench.validation import ConfigError

#: Modules exposing ``register(subparsers)``; order is the order in ``--help``.
COMMAND_MODULES = (
    "xreal_bench.demo.command",
    "xreal_bench.commands.config",
    "xreal_bench.commands.pipeline",
    "xreal_bench.commands.report",
    "xreal_bench.commands.leaderboard",
    "xreal_bench.commands.dashboard",
    "xreal_bench.commands.data",
    "xreal_bench.commands.generators",
    "xreal_bench.commands.weights",
    "xreal_bench.reader_study.cli",
)

EPILOG = """\
typical use:
  xreal-bench demo                          synthetic data, reference generators, every metric
  xreal-bench run --config bench.toml       generate + evaluate + leaderboard for a config
  xreal-bench report runs/demo              Table I, figures, sample grid -> runs/demo/report
  xreal-bench leaderboard runs/a runs/b     one leaderboard across runs (--out DIR: CSV, Markdown, HTML)
  xreal-bench dashboard runs/a runs/b       browse them in a local Streamlit page
  xreal-bench data summary --root /data/mimic-cxr-jpg/2.0.0
  xreal-bench weights list                  which model files are present / missing
  torchrun --nproc-per-node=4 -m xreal_bench run --config bench.toml
"""


def build_parser() -> argparse.ArgumentParser:
    from xreal_bench import __version__

    parser = argparse.ArgumentParser(
        prog="xreal-bench",
        description="Benchmark chest X-ray generative models on MIMIC-CXR: generate, evaluate "
        "(FID, MS-SSIM, Dice, F1, AUC), report, and run blinded reader studies.",
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"xreal-bench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.command_line = ["xreal-bench", *(sys.argv[1:] if argv is None else argv)]  # as typed, for provenance
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return int(handler(args) or 0)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    except UserFacingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {describe_os_error(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; finished images and manifest lines are kept (re-run to resume)", file=sys.stderr)
        return 130
    finally:
        if "xreal_bench.distributed" in sys.modules:  # only commands that used torch.distributed
            sys.modules["xreal_bench.distributed"].shutdown()


if __name__ == "__main__":
    raise SystemExit(main())
