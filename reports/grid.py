"""The sample grid (the paper's Fig. 1/8): the same cases across models, with their conditions.

Rows: K cases — ``options.cases`` when given (unknown ids are an error naming them), else a seeded choice
(``options.grid_seed``) among the cases every shown generator has sample 0 of, preferring cases that add a
positive label not shown yet. Columns: the real image, its anatomy map over it (colour-blind-safe label colours,
patient's sides), its pathology boxes over it (label text; the box source when it is not a box file), then sample 0
of each generator ("missing" when it has none). Pixels are shown as stored, gray 0..255, with no per-image
stretch. Written as ``samples_grid.png`` (dpi 200) and ``samples_grid.pdf``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from xreal_bench.errors import UserFacingError
from xreal_bench.imaging import Geometry, ImageDecodeError, load_grayscale, quantize, standardize
from xreal_bench.reports.figures import MIN_FONT_PT, STYLE, Entry, entries, literal, save, wrapped
from xreal_bench.reports.options import ReportOptions
from xreal_bench.reports.palette import ANATOMY_COLOURS, ANATOMY_NAMES, BOX_COLOUR
from xreal_bench.reports.runs import REFERENCE, Run
from xreal_bench.types import BoxSet, CaseFacts

CONDITION_COLUMNS = ("real", "anatomy map", "pathology boxes")
CELL_IN = 1.3
ANATOMY_ALPHA = 0.45
NO_FINDING = "No Finding"
SHORT_ID = 8
STEM = "samples_grid"


@dataclass(frozen=True)
class GridLayout:
    """What the grid shows: its rows (case ids), column titles and row labels."""

    cases: tuple[str, ...]
    columns: tuple[str, ...]
    row_labels: tuple[str, ...]


def case_facts(runs: Sequence[Run]) -> dict[str, tuple[Run, CaseFacts]]:
    """Every case of the runs (first run that has it), in run and file order."""
    found: dict[str, tuple[Run, CaseFacts]] = {}
    for run in runs:
        for case_id, facts in run.cases.items():
            found.setdefault(case_id, (run, facts))
    return found


def label_set(facts: CaseFacts) -> tuple[str, ...]:
    return facts.case.positives or (NO_FINDING,)


def choose_cases(known: dict[str, tuple[Run, CaseFacts]], generators: Sequence[Entry], options: ReportOptions) -> list[str]:
    """``options.cases`` (checked), else ``options.grid_cases`` seeded picks preferring new positive labels."""
    if options.cases:
        unknown = [c for c in options.cases if c not in known]
        if unknown:
            raise UserFacingError(f"sample grid: unknown case id(s) {', '.join(unknown)} (not in the runs' cases.jsonl)")
        return list(dict.fromkeys(options.cases))
    complete = [c for c in known if all(e.run.image_path(e.generator, c, 0) is not None for e in generators)]
    pool = complete or list(known)
    order = [pool[i] for i in np.random.default_rng(options.grid_seed).permutation(len(pool))]
    chosen: list[str] = []
    shown: set[str] = set()
    for case_id in order:
        labels = set(label_set(known[case_id][1]))
        if len(chosen) < options.grid_cases and not labels <= shown:
            chosen.append(case_id)
            shown |= labels
    chosen += [c for c in order if c not in chosen][: options.grid_cases - len(chosen)]
    return chosen


def short_ids(case_ids: Sequence[str]) -> list[str]:
    """The shortest prefixes (at least :data:`SHORT_ID` characters) that still tell the cases apart."""
    for length in range(SHORT_ID, max((len(c) for c in case_ids), default=SHORT_ID) + 1):
        prefixes = [c[:length] for c in case_ids]
        if len(set(prefixes)) == len(set(case_ids)):
            return [p + ("…" if len(p) < len(c) else "") for p, c in zip(prefixes, case_ids)]
    return list(case_ids)


def gray_pixels(path: Path | None) -> np.ndarray | None:
    """A stored image as 8-bit gray (the project's decoding rule per mode); None when absent or unreadable."""
    if path is None:
        return None
    try:
        return quantize(load_grayscale(path), 8)
    except ImageDecodeError:
        return None


def real_pixels(runs: Sequence[Run], run: Run, facts: CaseFacts) -> np.ndarray | None:
    """The real image as the runs stored it, else the data set's file squared by the run's geometry."""
    for candidate in (run, *runs):
        if (pixels := gray_pixels(candidate.image_path(REFERENCE, facts.case_id, 0))) is not None:
            return pixels
    config = run.provenance.get("config", {})
    dataset = config.get("dataset", {})
    try:
        geometry = Geometry(dataset.get("square", "crop"), dataset.get("intensity", "none"))
        size = int(config.get("run", {}).get("resolution", 256))
        return standardize(load_grayscale(facts.case.image_path), size, 8, geometry)
    except (ImageDecodeError, ValueError):
        return None


def show(ax: Axes, pixels: np.ndarray) -> None:
    ax.imshow(pixels, cmap="gray", vmin=0, vmax=255, interpolation="antialiased")


def note(ax: Axes, text: str) -> None:
    ax.text(
        0.5,
        0.5,
        text,
        transform=ax.transAxes,
        ha="center",
        va="center",
        fontsize=MIN_FONT_PT,
        color="black",
        bbox={"facecolor": "white", "edgecolor": "none", "pad": 1.5, "alpha": 0.85},
    )


def anatomy_overlay(label_map: np.ndarray) -> np.ndarray:
    """RGBA image: each anatomy label in its colour at :data:`ANATOMY_ALPHA`, background transparent."""
    rgba = np.zeros((*label_map.shape, 4), dtype=np.float32)
    for value, colour in ANATOMY_COLOURS.items():
        where = label_map == value
        rgba[where, :3] = to_rgb(colour)
        rgba[where, 3] = ANATOMY_ALPHA
    return rgba


def draw_anatomy(ax: Axes, run: Run, case_id: str, real: np.ndarray | None) -> bool:
    """The anatomy map over the real image; True when a map was drawn."""
    try:
        label_map = run.anatomy_map(case_id)
    except UserFacingError:
        label_map = None
    if label_map is None:
        note(ax, "no anatomy map")
        return False
    if real is not None:
        show(ax, real)
    h, w = real.shape if real is not None else label_map.shape
    ax.imshow(anatomy_overlay(label_map), extent=(-0.5, w - 0.5, h - 0.5, -0.5), interpolation="nearest")
    return True


def case_boxes(facts: CaseFacts) -> BoxSet | None:
    try:
        return facts.boxes_for(0)
    except RuntimeError:
        return None


def draw_boxes(ax: Axes, facts: CaseFacts, real: np.ndarray | None) -> None:
    """The case's pathology boxes (fractions of the square image) as pixel rectangles over the real image."""
    if real is None:
        note(ax, "missing")
        return
    show(ax, real)
    boxes = case_boxes(facts)
    if boxes is None or not boxes.boxes:
        note(ax, "no box")
        return
    size = real.shape[1]
    for box in boxes.boxes:
        x0, y0, x1, y1 = box.clipped().pixels(size)
        ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor=BOX_COLOUR, linewidth=1.2))
        text = box.label if boxes.source == "boxes_csv" else f"{box.label} ({boxes.source})"
        ax.text(
            x0 - 0.5,
            y0 - 0.5,
            literal(text),
            fontsize=MIN_FONT_PT,
            ha="left",
            va="bottom",
            color="black",
            bbox={"facecolor": BOX_COLOUR, "edgecolor": "none", "pad": 1.0, "alpha": 0.85},
            clip_on=True,
        )


def bare(ax: Axes) -> None:
    """No ticks or frame, but the axis labels stay visible (row labels)."""
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


@matplotlib.rc_context(STYLE)
def samples_grid_figure(runs: Sequence[Run], options: ReportOptions) -> tuple[Figure, GridLayout]:
    """The grid as a figure (``K x (3 + G)`` axes) and what it shows; an error when the runs have no case facts."""
    known = case_facts(runs)
    if not known:
        raise UserFacingError("sample grid: the runs have no case facts (cases.jsonl); run `xreal-bench generate` again")
    generators = [e for e in entries(runs) if e.generator != REFERENCE]
    cases = choose_cases(known, generators, options)
    columns = (*CONDITION_COLUMNS, *(e.label for e in generators))
    row_labels = [f"{short}\n" + wrapped(", ".join(label_set(known[c][1])), 0.9) for short, c in zip(short_ids(cases), cases)]
    fig = Figure(figsize=(CELL_IN * len(columns) + 1.0, CELL_IN * len(cases) + 0.9), layout="constrained")
    axes = fig.subplots(len(cases), len(columns), squeeze=False)
    any_map = False
    for r, case_id in enumerate(cases):
        run, facts = known[case_id]
        real = real_pixels(runs, run, facts)
        row = axes[r]
        for ax in row:
            bare(ax)
        if real is None:
            note(row[0], "missing")
        else:
            show(row[0], real)
        any_map |= draw_anatomy(row[1], run, case_id, real)
        draw_boxes(row[2], facts, real)
        for ax, entry in zip(row[3:], generators):
            pixels = gray_pixels(entry.run.image_path(entry.generator, case_id, 0))
            if pixels is None:
                note(ax, "missing")
            else:
                show(ax, pixels)
        row[0].set_ylabel(literal(row_labels[r]), fontsize=MIN_FONT_PT, rotation=0, ha="right", va="center")
    for ax, title in zip(axes[0], columns):
        ax.set_title(wrapped(title, CELL_IN), fontsize=MIN_FONT_PT + 1)
    if any_map:
        handles = [
            Patch(facecolor=c, alpha=ANATOMY_ALPHA + 0.3, label=f"{ANATOMY_NAMES[v]} (patient)")
            for v, c in ANATOMY_COLOURS.items()
        ]
        fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), frameon=False)
    return fig, GridLayout(tuple(cases), tuple(columns), tuple(row_labels))


def write_samples_grid(runs: Sequence[Run], out: Path, options: ReportOptions) -> list[Path]:
    """``out/samples_grid.png`` and ``.pdf``; nothing when the runs have no case facts."""
    if not case_facts(runs):
        return []
    fig, _ = samples_grid_figure(runs, options)
    return save(fig, Path(out), STEM)
