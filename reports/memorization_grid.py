"""The memorization audit's closest pairs: ``memorization_pairs.{png,pdf}``.

One row per pair from each run's ``memorization_pairs.csv`` (the :data:`PAIRS_SHOWN` most similar
per generator): the generated image | its nearest training image | similarity, aligned SSIM and
whether it counts as memorized. A file that cannot be read is a grey cell labelled "not found".
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from xreal_bench.imaging import Geometry, ImageDecodeError, load_grayscale, standardize
from xreal_bench.memorization_audit import PAIRS_FILE
from xreal_bench.names import inside
from xreal_bench.reports.figures import MIN_FONT_PT, save
from xreal_bench.reports.grid import gray_pixels, note, show
from xreal_bench.reports.options import ReportOptions
from xreal_bench.reports.runs import Run

STEM = "memorization_pairs"
#: Pairs drawn per generator (the CSV keeps more).
PAIRS_SHOWN = 3
MISSING_GREY = 128
CELL_INCHES = 1.6


def read_pairs(run: Run) -> pd.DataFrame | None:
    """The run's closest pairs, None when it has no (readable) pairs file."""
    try:
        return pd.read_csv(run.path / PAIRS_FILE, dtype={"generator": str, "case_id": str, "train_case_id": str})
    except (OSError, ValueError):
        return None


def training_pixels(run: Run, path: str) -> np.ndarray | None:
    """A training image (``path`` relative to the run's recorded dataset root) squared and resized by the run's
    geometry; None when it cannot be read or resolves outside that root (a pairs file never makes the report open
    another file)."""
    config = run.provenance.get("config", {})
    dataset = config.get("dataset", {})
    root = Path(str(run.provenance.get("dataset", {}).get("root", "")))
    file = root / path
    if not str(root) or not inside(root, file):
        return None
    try:
        geometry = Geometry(dataset.get("square", "crop"), dataset.get("intensity", "none"))
        return standardize(load_grayscale(file), int(config.get("run", {}).get("resolution", 256)), 8, geometry)
    except (ImageDecodeError, OSError, ValueError):
        return None


def draw_image(ax: Axes, pixels: np.ndarray | None) -> None:
    if pixels is None:
        show(ax, np.full((8, 8), MISSING_GREY, dtype=np.uint8))
        note(ax, "not found")
    else:
        show(ax, pixels)
    ax.set_axis_off()


def write_memorization_grid(runs: Sequence[Run], out: Path, options: ReportOptions) -> list[Path]:
    """``memorization_pairs.{png,pdf}`` in ``out`` when any run has a pairs file; [] otherwise."""
    fig = memorization_figure(runs)
    return [] if fig is None else save(fig, out, STEM)


def memorization_figure(runs: Sequence[Run]) -> Figure | None:
    """The pairs grid (None when no run has pairs)."""
    rows: list[tuple[Run, str, pd.Series]] = []
    for k, run in enumerate(runs, start=1):
        pairs = read_pairs(run)
        if pairs is None or pairs.empty:
            continue
        for generator, group in pairs.groupby("generator", sort=True):
            label = f"{generator} (run {k})" if len(runs) > 1 else str(generator)
            top = group.sort_values("similarity", ascending=False, kind="stable").head(PAIRS_SHOWN)
            rows += [(run, label, pair) for _, pair in top.iterrows()]
    if not rows:
        return None
    fig = Figure(figsize=(3 * CELL_INCHES, CELL_INCHES * len(rows)))
    axes = fig.subplots(len(rows), 3, squeeze=False)
    for (run, label, pair), (generated, train, text) in zip(rows, axes, strict=True):
        draw_image(generated, gray_pixels(run.image_path(str(pair["generator"]), pair["case_id"], int(pair["sample_index"]))))
        draw_image(train, training_pixels(run, str(pair["train_image"])))
        generated.set_title(f"{label}: {pair['case_id'][:12]}", fontsize=MIN_FONT_PT)
        train.set_title(f"training {pair['train_case_id'][:12]}", fontsize=MIN_FONT_PT)
        memorized = "memorized" if str(pair["memorized"]).lower() == "true" else "below threshold"
        text.text(
            0.05,
            0.5,
            f"similarity {pair['similarity']:.3f}\nSSIM {pair['ssim']:.3f}\n{memorized}",
            fontsize=MIN_FONT_PT + 1,
            va="center",
            transform=text.transAxes,
        )
        text.set_axis_off()
    fig.tight_layout()
    return fig
