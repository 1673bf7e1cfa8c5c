"""``xreal-bench data``: summarise a MIMIC-CXR-JPG root (or the configured dataset) and write
the synthetic demo set."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from xreal_bench.config import SyntheticConfig


def register(sub) -> None:
    from xreal_bench.commands.args import add_config_args, subparser

    data = subparser(
        sub,
        "data",
        "inspect the evaluation data or write the synthetic demo set",
        "Dataset tools. `summary` scans MIMIC-CXR-JPG (split, views, label policy, file check) and "
        "reports what is kept; `synth` writes the synthetic demo set in the MIMIC-CXR-JPG layout.",
    )
    actions = data.add_subparsers(dest="action", metavar="ACTION", required=True)

    summary = subparser(
        actions,
        "summary",
        "count kept images per view and positives per label; list missing/corrupt files",
        "Scan the dataset exactly as a run would (split, views, label policy, num_cases "
        "subsample, file check) and print what is kept. With --root, that folder is read as "
        "MIMIC-CXR-JPG; otherwise the configured [dataset] is used (the synthetic demo set is "
        "written first if needed).",
    )
    summary.add_argument(
        "--root",
        default=argparse.SUPPRESS,
        metavar="PATH",
        help="MIMIC-CXR-JPG root holding mimic-cxr-2.0.0-*.csv(.gz) and files/ (default: the configured [dataset].root and kind)",
    )
    summary.add_argument(
        "--split",
        choices=("train", "validate", "test"),
        default=argparse.SUPPRESS,
        help="official split to scan (default: [dataset].split, 'test' unless configured)",
    )
    summary.add_argument(
        "--views",
        default=argparse.SUPPRESS,
        metavar="V1,V2",
        help="comma-separated ViewPosition values to keep; UNKNOWN keeps blank views "
        "(default: [dataset].views, 'AP,PA' unless configured)",
    )
    summary.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    add_config_args(summary)
    summary.set_defaults(handler=run_summary)

    defaults = SyntheticConfig()
    synth = subparser(
        actions,
        "synth",
        "write the synthetic demo set (MIMIC-CXR-JPG layout)",
        "Write a small synthetic dataset in the MIMIC-CXR-JPG layout: CSVs, JPEG images and "
        "report texts. Use it to try the suite without credentialed data.",
    )
    synth.add_argument("--root", required=True, default=argparse.SUPPRESS, metavar="PATH", help="folder to write (required)")
    synth.add_argument("--n-subjects", type=int, default=defaults.n_subjects, metavar="N", help="number of synthetic patients")
    synth.add_argument("--seed", type=int, default=defaults.seed, metavar="S", help="random seed of the synthetic set")
    synth.add_argument("--image-size", type=int, default=defaults.image_size, metavar="PX", help="image side length in pixels")
    synth.set_defaults(handler=run_synth)


def run_summary(args: argparse.Namespace) -> int:
    from xreal_bench.commands.args import config_from_args
    from xreal_bench.data.dataset import load_dataset
    from xreal_bench.data.summary import format_summary, summarize

    extra = []
    if hasattr(args, "root"):
        extra += ["dataset.kind='mimic'", f"dataset.root={json.dumps(args.root)}"]
    if hasattr(args, "split"):
        extra.append(f"dataset.split={json.dumps(args.split)}")
    if hasattr(args, "views"):
        views = [v.strip() for v in args.views.split(",") if v.strip()]
        extra.append(f"dataset.views={json.dumps(views)}")
    cfg = config_from_args(args, extra)
    scan = load_dataset(cfg, announce=args.json)  # the table lists the notes itself
    print(json.dumps(summarize(scan), indent=2) if args.json else format_summary(scan))
    return 0


def run_synth(args: argparse.Namespace) -> int:
    from xreal_bench.demo.synthetic import write_dataset

    info = write_dataset(Path(args.root), n_subjects=args.n_subjects, seed=args.seed, image_size=args.image_size)
    frontal = ", ".join(f"{split} {n}" for split, n in info.frontal.items())
    print(f"wrote the synthetic MIMIC-CXR-JPG tree to {info.root} in {info.seconds:.1f} s")
    print(f"  {info.n_subjects} subjects, {info.n_studies} studies, {info.n_images} images; AP/PA images: {frontal}")
    print(f"  inspect it: xreal-bench data summary --root {info.root}")
    return 0
