"""``xreal-bench demo``: the whole pipeline offline on the synthetic data set, with the
reference generators, the shipped demo evaluators and a small reader study."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

DEMO_OUT = "runs/demo"


def demo_tables(out: str) -> dict:
    """The demo's configuration (the shipped ``bench.toml`` holds the same values, commented)."""
    from xreal_bench.demo.synthetic import MIMIC_IV_DIR
    from xreal_bench.metrics.table import selectable_names

    data = f"{out}/data"
    return {
        "dataset": {"kind": "synthetic", "root": data, "views": ["AP", "PA"], "demographics": f"{data}/{MIMIC_IV_DIR}"},
        "conditioning": {
            "anatomy": "folder",
            "anatomy_dir": f"{data}/anatomy",
            "boxes_csv": f"{data}/ms-cxr-boxes.csv",
            "boxes_format": "ms-cxr",
            "box_fallback": "anatomy",
        },
        "generators": {"real": {}, "phantom": {}, "shuffled": {}, "noise": {}, "memorizer": {}},
        "metrics": {
            "evaluators": "demo",
            "enabled": list(selectable_names()),  # every metric
            "thresholds": "youden",
            "threshold_split": "validate",
            "bootstrap": 200,
            "fid_bootstrap": 50,
            "min_subset_n": 8,
            "kid_subset_size": 50,
            "num_workers": 0,
        },
        "run": {"out": out, "samples_per_condition": 2, "batch_size": 16},
    }


def register(sub) -> None:
    from xreal_bench.commands.args import subparser

    demo = subparser(
        sub,
        "demo",
        "run the offline demo end to end (synthetic data, reference generators, every metric)",
        "Writes a synthetic chest X-ray data set in the MIMIC-CXR-JPG layout, runs the reference generators "
        "(real, phantom, shuffled, noise, memorizer), evaluates every metric with the demo's own evaluators, writes results, "
        "leaderboard, tables and figures, and builds a small reader study. Needs no weights and no network.",
    )
    demo.add_argument("--out", default=DEMO_OUT, help="output folder")
    demo.add_argument("--no-study", action="store_true", help="skip building the demo reader study")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.add_argument(
        "--overwrite",
        action="store_true",
        help="regenerate the generators' folders (e.g. a demo run made by an older version); only folders xreal-bench made",
    )
    demo.set_defaults(handler=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    from xreal_bench.config import config_from_dict
    from xreal_bench.evaluation import evaluate
    from xreal_bench.pipeline import generate, open_session
    from xreal_bench.preflight import STAGES

    started = time.perf_counter()
    progress = not args.quiet
    cfg = config_from_dict(demo_tables(args.out), source="xreal-bench demo")
    session = open_session(cfg, progress=progress, stages=STAGES, overwrite=args.overwrite)
    print(f"demo data: {len(session.scan.cases)} frontal test images in {cfg.dataset.root}")
    generate(session, progress=progress, overwrite=args.overwrite)
    evaluate(session, progress=progress)
    from xreal_bench.commands.pipeline import report_and_print

    report_and_print(cfg)
    if not args.no_study:
        demo_study(Path(cfg.run.out), cfg.study)
    from xreal_bench.reports import REPORT_DIR

    print(f"\nreport folder: {Path(cfg.run.out) / REPORT_DIR} (open its README.md; table_main.png, samples_grid.png, figures/)")
    print(f"demo finished in {time.perf_counter() - started:.0f}s", file=sys.stderr)
    return 0


def demo_study(out: Path, settings) -> None:
    """Rebuild the demo's reader study (fresh tokens) and print how to open it."""
    import dataclasses
    import shutil

    from xreal_bench.errors import UserFacingError
    from xreal_bench.reader_study import create_study
    from xreal_bench.reader_study.layout import STUDY_DB, STUDY_JSON

    folder = out / "study"
    if folder.is_symlink() or (folder.exists() and not all((folder / name).is_file() for name in (STUDY_JSON, STUDY_DB))):
        raise UserFacingError(f"{folder} exists and is not a reader study the demo made; move it away or use another --out")
    if folder.exists():
        shutil.rmtree(folder)
    created = create_study([out], folder, dataclasses.replace(settings, n_cases=6, generators=["phantom", "shuffled", "noise"]))
    print(f"\nreader study: {created.n_cases} cases x {created.n_sources} sources, {created.items_per_reader} items per reader")
    print(f"  serve it:  {created.serve_command}")
    for reader in created.readers[:2]:
        print(f"  {reader.name}: {reader.link}")
    print(f"  admin:     {created.admin.link}")
