"""Pathology boxes: from a box CSV (MS-CXR or VinDr style) or a fallback rule.

All boxes are :class:`~xreal_bench.types.Box` in fractions of the square working image.

**Box CSVs.** MS-CXR style: per box a dicom_id, a category name, a phrase and ``x, y, w, h``
in pixels of an image of ``image_width`` x ``image_height`` (optional; column names in
:data:`MSCXR_COLUMNS`; the first alias present wins; pass ``columns`` to name others). VinDr
style: ``image_id, class_name, x_min, y_min, x_max, y_max``; the reference size is the
metadata's Rows/Columns, else the image file's own size. Boxes are rescaled from the
reference size to the image file's size, then mapped through the square mode of
:func:`xreal_bench.imaging.to_square` (:func:`square_geometry`: crop and pad shift by the
centred offset and divide by the square's side; stretch divides x by the width and y by the
height, as the resize scales them). Category names match
CheXpert labels ignoring case, ``_``/``-`` and repeated spaces; other categories are skipped
with a note.

**Fallback rules** (``box_fallback = "anatomy"``), from the case's anatomy label map, one
box per positive pathology and affected lung:

- Cardiomegaly -> the heart's bounding box; Enlarged Cardiomediastinum -> heart and aorta;
- Pleural Effusion -> lung bases (lower third of each affected lung's bounding box);
- Pneumothorax -> apices (upper third of each affected lung's bounding box);
- Edema -> both lungs, always;
- every other pathology -> the affected lung(s).

The affected side comes from report sentences that mention the pathology (keywords in
:data:`KEYWORDS`): "left" -> the patient's left lung (label 1), "right" -> label 2,
"bilateral"/"both"/"bibasilar" -> both; no such word (or no report) -> both lungs. Negations
are not parsed ("no left effusion" still reads as left).

``box_fallback = "random"``: per positive pathology, a box whose centre is a random lung
pixel and whose sides are 25-50 % of the lungs' bounding box, shifted to lie inside it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from xreal_bench.errors import UserFacingError
from xreal_bench.imaging import check_square
from xreal_bench.labels import CHEXPERT_LABELS
from xreal_bench.types import Box

MSCXR_COLUMNS: dict[str, tuple[str, ...]] = {
    "case_id": ("dicom_id", "image_id"),
    "category": ("category_name", "category", "label"),
    "x": ("x",),
    "y": ("y",),
    "w": ("w", "width"),
    "h": ("h", "height"),
    "image_width": ("image_width", "img_width"),
    "image_height": ("image_height", "img_height"),
}
VINDR_COLUMNS: dict[str, tuple[str, ...]] = {
    "case_id": ("image_id", "dicom_id"),
    "category": ("class_name", "category_name"),
    "x_min": ("x_min",),
    "y_min": ("y_min",),
    "x_max": ("x_max",),
    "y_max": ("y_max",),
}
FORMATS = {"ms-cxr": MSCXR_COLUMNS, "vindr": VINDR_COLUMNS}
#: Without them the reference size is the metadata's Rows/Columns, else the image's own size.
OPTIONAL_COLUMNS = ("image_width", "image_height")

LEFT, RIGHT = 1, 2  # label-map values of the patient's left / right lung
HEART, AORTA = 3, 4
KEYWORDS: dict[str, tuple[str, ...]] = {
    "Atelectasis": ("atelecta",),
    "Consolidation": ("consolidat",),
    "Edema": ("edema",),
    "Fracture": ("fracture",),
    "Lung Lesion": ("lesion", "nodul", "mass"),
    "Lung Opacity": ("opacit",),
    "Pleural Effusion": ("effusion",),
    "Pleural Other": ("pleural",),
    "Pneumonia": ("pneumonia",),
    "Pneumothorax": ("pneumothora",),
}
SIDE_WORDS = {"left": {LEFT}, "right": {RIGHT}, "bilateral": {LEFT, RIGHT}, "bilaterally": {LEFT, RIGHT},
              "both": {LEFT, RIGHT}, "bibasilar": {LEFT, RIGHT}, "bibasal": {LEFT, RIGHT}}  # fmt: skip
SIDE_PATTERN = re.compile(r"\b(" + "|".join(SIDE_WORDS) + r")\b", re.IGNORECASE)


class BoxError(UserFacingError):
    """The box CSV is missing or malformed."""


def normalize_name(name: str) -> str:
    return " ".join(str(name).replace("_", " ").replace("-", " ").lower().split())


CATEGORY_TO_LABEL = {normalize_name(label): label for label in CHEXPERT_LABELS}


@dataclass(frozen=True)
class RawBox:
    """A box as read from a CSV: original pixel corners and the size they refer to (if given)."""

    category: str
    x0: float
    y0: float
    x1: float
    y1: float
    ref_width: float | None = None
    ref_height: float | None = None


@dataclass
class BoxTable:
    boxes: dict[str, list[RawBox]] = field(default_factory=dict)  # case_id -> boxes
    source: str = ""


def pick_columns(frame: pd.DataFrame, wanted: dict[str, tuple[str, ...]], path: Path, fmt: str) -> dict[str, str]:
    chosen, lacking = {}, []
    for key, aliases in wanted.items():
        name = next((a for a in aliases if a in frame.columns), None)
        if name is None and key in OPTIONAL_COLUMNS:
            continue
        if name is None:
            lacking.append(f"{key} ({' or '.join(aliases)})")
        else:
            chosen[key] = name
    if lacking:
        raise BoxError(
            f"{path}: {fmt} box CSV lacks column(s) {', '.join(lacking)}; found: {', '.join(map(str, frame.columns))}\n"
            "  set [conditioning].boxes_format, or pass a column mapping to read_box_csv(columns=...)"
        )
    return chosen


def read_box_csv(path: str | Path, fmt: str = "ms-cxr", columns: dict[str, str] | None = None) -> BoxTable:
    """Read an MS-CXR or VinDr style box CSV. ``columns`` maps our keys (see
    :data:`MSCXR_COLUMNS` / :data:`VINDR_COLUMNS`) to the file's column names."""
    path = Path(path)
    if fmt not in FORMATS:
        raise BoxError(f"unknown box format {fmt!r}; expected one of {', '.join(FORMATS)}")
    try:
        frame = pd.read_csv(path, dtype=str)
    except FileNotFoundError:
        raise BoxError(f"box CSV not found: {path} (set [conditioning].boxes_csv)") from None
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise BoxError(f"cannot read box CSV {path}: {exc}") from None
    overrides = columns or {}
    unknown = sorted(set(overrides) - set(FORMATS[fmt]))
    if unknown:
        raise BoxError(f"unknown column key(s) {', '.join(unknown)} for {fmt}; known: {', '.join(FORMATS[fmt])}")
    wanted = {k: (overrides[k],) if k in overrides else v for k, v in FORMATS[fmt].items()}
    col = pick_columns(frame, wanted, path, fmt)
    numeric = [k for k in col if k not in ("case_id", "category")]
    values = frame[[col[k] for k in numeric]].apply(pd.to_numeric, errors="coerce")
    values.columns = numeric
    if fmt == "ms-cxr":
        corners = {"x0": values["x"], "y0": values["y"], "x1": values["x"] + values["w"], "y1": values["y"] + values["h"]}
    else:
        corners = {"x0": values["x_min"], "y0": values["y_min"], "x1": values["x_max"], "y1": values["y_max"]}
    bad = pd.concat(corners, axis=1).isna().any(axis=1)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise BoxError(f"{path}: {int(bad.sum())} row(s) with a missing or non-numeric coordinate (first: data row {row + 1})")
    table = BoxTable(source=str(path))
    missing = pd.Series(np.nan, index=values.index)
    refs = (values.get("image_width", missing), values.get("image_height", missing))
    fields = (frame[col["case_id"]].str.strip(), frame[col["category"]], *corners.values(), *refs)
    for case_id, category, x0, y0, x1, y1, ref_w, ref_h in zip(*fields):
        sized = not (pd.isna(ref_w) or pd.isna(ref_h))
        raw = RawBox(str(category), x0, y0, x1, y1, ref_w if sized else None, ref_h if sized else None)
        table.boxes.setdefault(case_id, []).append(raw)
    return table


def square_geometry(height: int, width: int, mode: str) -> tuple[int, int, int, int]:
    """``(span_y, span_x, top, left)`` of :func:`xreal_bench.imaging.to_square`: an image pixel
    ``(y, x)`` lies at ``((y + top) / span_y, (x + left) / span_x)`` of the square working image.

    crop: the square's side and the negative offsets of the centred crop; pad: the side and the
    offsets of the image on the canvas; stretch: the image's own height and width, no offset."""
    check_square(mode)
    if mode == "stretch":
        return height, width, 0, 0
    if mode == "crop":
        side = min(height, width)
        return side, side, -((height - side) // 2), -((width - side) // 2)
    side = max(height, width)
    return side, side, (side - height) // 2, (side - width) // 2


def to_working_box(raw: RawBox, label: str, size: tuple[int, int], ref: tuple[float, float] | None, mode: str) -> Box:
    """Original-pixel box -> fractions of the square working image (unclipped).

    ``size`` is the image file's ``(height, width)``; ``ref`` the ``(height, width)`` the box
    coordinates refer to (``None``: the file's size)."""
    height, width = size
    ref_h, ref_w = ref or size
    sx, sy = width / ref_w, height / ref_h
    span_y, span_x, top, left = square_geometry(height, width, mode)
    return Box(
        label,
        (raw.x0 * sx + left) / span_x,
        (raw.y0 * sy + top) / span_y,
        (raw.x1 * sx + left) / span_x,
        (raw.y1 * sy + top) / span_y,
    )


def clip_box(box: Box, notes: list[str]) -> Box | None:
    """Clip to the image; note what changed; ``None`` (with a note) if nothing is left."""
    clipped = box.clipped()
    if clipped == box:
        return box
    if clipped.x1 <= clipped.x0 or clipped.y1 <= clipped.y0:
        notes.append(f"{box.label} box ({fmt_box(box)}) lies outside the image; dropped")
        return None
    notes.append(f"{box.label} box clipped to the image: ({fmt_box(box)}) -> ({fmt_box(clipped)})")
    return clipped


def fmt_box(box: Box) -> str:
    return ", ".join(f"{v:.3f}" for v in (box.x0, box.y0, box.x1, box.y1))


def image_size(path: Path) -> tuple[int, int]:
    """``(height, width)`` from the image header (no pixel decoding)."""
    with Image.open(path) as img:
        return img.height, img.width


def csv_boxes(
    raws: Sequence[RawBox], image_path: Path, metadata_size: tuple[int, int] | None, mode: str
) -> tuple[tuple[Box, ...], tuple[str, ...]]:
    """Boxes of one image from its CSV rows, mapped, clipped and noted."""
    size = image_size(image_path)
    notes: list[str] = []
    boxes = []
    for raw in raws:
        label = CATEGORY_TO_LABEL.get(normalize_name(raw.category))
        if label is None:
            notes.append(f"box category {raw.category!r} is not a CheXpert label; ignored")
            continue
        if raw.ref_width is not None and raw.ref_height is not None:
            ref = (raw.ref_height, raw.ref_width)
        else:
            ref = metadata_size or size
        box = clip_box(to_working_box(raw, label, size, ref, mode), notes)
        if box is not None:
            boxes.append(box)
    return tuple(boxes), tuple(notes)


# ---------------------------------------------------------------- fallback rules


def bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Pixel bounds ``(x0, y0, x1, y1)`` (exclusive ends) of a bool mask, ``None`` if empty."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def fraction_box(label: str, bounds: tuple[float, float, float, float], size: int) -> Box:
    x0, y0, x1, y1 = bounds
    return Box(label, x0 / size, y0 / size, x1 / size, y1 / size)


def report_sides(report: str, pathology: str) -> set[int]:
    """Lungs named in report sentences about ``pathology``; empty when none are named."""
    keywords = KEYWORDS.get(pathology, (pathology.lower(),))
    sides: set[int] = set()
    for sentence in re.split(r"(?<=[.;!?])\s+|\n+", report):
        low = sentence.lower()
        if any(k in low for k in keywords):
            for word in SIDE_PATTERN.findall(sentence):
                sides |= SIDE_WORDS[word.lower()]
    return sides


def anatomy_rule_boxes(positives: Sequence[str], anatomy: np.ndarray, report: str) -> tuple[tuple[Box, ...], tuple[str, ...]]:
    """The documented default box per positive pathology from the anatomy map."""
    size = anatomy.shape[0]
    boxes: list[Box] = []
    notes: list[str] = []
    lung_bounds = {side: bbox(anatomy == side) for side in (LEFT, RIGHT)}
    for name in positives:
        if name in ("Cardiomegaly", "Enlarged Cardiomediastinum"):
            structure = anatomy == HEART if name == "Cardiomegaly" else np.isin(anatomy, (HEART, AORTA))
            bounds = bbox(structure)
            if bounds is None:
                notes.append(f"{name}: the anatomy map has no heart; no box")
            else:
                boxes.append(fraction_box(name, bounds, size))
            continue
        sides = {LEFT, RIGHT} if name == "Edema" else report_sides(report, name) or {LEFT, RIGHT}
        for side in sorted(sides):
            bounds = lung_bounds[side]
            if bounds is None:
                notes.append(f"{name}: the anatomy map has no {'left' if side == LEFT else 'right'} lung; no box")
                continue
            x0, y0, x1, y1 = (float(v) for v in bounds)
            third = (y1 - y0) / 3.0
            if name == "Pleural Effusion":
                y0 = y1 - third
            elif name == "Pneumothorax":
                y1 = y0 + third
            boxes.append(fraction_box(name, (x0, y0, x1, y1), size))
    return tuple(boxes), tuple(notes)


def random_boxes(
    positives: Sequence[str], anatomy: np.ndarray, rng: np.random.Generator
) -> tuple[tuple[Box, ...], tuple[str, ...]]:
    """One seeded random box inside the lungs per positive pathology."""
    size = anatomy.shape[0]
    lungs = np.isin(anatomy, (LEFT, RIGHT))
    bounds = bbox(lungs)
    if bounds is None:
        return (), (("the anatomy map has no lungs; no random box",) if positives else ())
    ys, xs = np.nonzero(lungs)
    bx0, by0, bx1, by1 = bounds
    boxes = []
    for name in positives:
        k = int(rng.integers(len(xs)))
        w = rng.uniform(0.25, 0.5) * (bx1 - bx0)
        h = rng.uniform(0.25, 0.5) * (by1 - by0)
        x0 = min(max(xs[k] + 0.5 - w / 2, bx0), bx1 - w)
        y0 = min(max(ys[k] + 0.5 - h / 2, by0), by1 - h)
        boxes.append(fraction_box(name, (x0, y0, x0 + w, y0 + h), size))
    return tuple(boxes), ()


def boxes_mask(boxes: Sequence[Box], size: int) -> np.ndarray:
    """Union of the boxes as a ``size`` x ``size`` bool mask (bounds from :meth:`Box.pixels`)."""
    mask = np.zeros((size, size), dtype=bool)
    for box in boxes:
        x0, y0, x1, y1 = box.pixels(size)
        mask[y0:y1, x0:x1] = True
    return mask
