"""Chest-radiograph-like phantoms for the synthetic demo set and the ``phantom`` generator.

Three steps, shared by both users so that the dataset and the generator draw the same
anatomy and the same findings:

1. **anatomy** — :func:`sample_anatomy` builds a label map (0 background, 1 the patient's
   LEFT lung = image right, 2 the patient's right lung = image left, 3 heart, 4 aortic knob)
   from a *real* lung shape out of torchxrayvision's wheel
   (``torchxrayvision/data/semantic_masks_v7labs_lungs.zip``), jittered in scale and
   position, plus a heart (cardiothoracic ratio 0.38–0.46, or 0.56–0.66 with Cardiomegaly)
   and an aortic knob.
2. **boxes** — :func:`place_boxes` puts each finding's box where it belongs on a label map.
3. **painting** — :func:`paint` turns a label map plus boxes into an image: body outline and
   soft tissue, lungs, mediastinum, spine, ribs, clavicles, vessel markings, each finding
   inside its box, then texture (low-frequency variation and film grain) in a
   :class:`TextureStyle`. Everything except the label map (body, spine, ribs, clavicles,
   hila) is derived from the lungs' position, so a given map is followed exactly.

:func:`render_phantom` runs 1–3 with the dataset's style; :func:`render_from_anatomy` runs 3
(and 2 for findings without a box) on a given map in another style — the ``phantom``
generator. All randomness comes from the ``numpy.random.Generator`` passed in.

Findings (:data:`DRAWN_FINDINGS`, the eight MS-CXR categories) and how they look:
Cardiomegaly (enlarged heart in the map), Pleural Effusion (basal fluid with a meniscus,
blunted costophrenic angle), Pneumothorax (apical pleural line, no markings beyond it),
Consolidation (dense homogeneous opacity with dark air bronchograms), Lung Opacity (faint
ill-defined haze, vessels still seen), Pneumonia (cluster of small fluffy nodules),
Atelectasis (plate-like band plus volume loss: the lung's base is raised in the map),
Edema (bilateral perihilar haze with Kerley B lines at the lateral bases).
"""

from __future__ import annotations

import importlib.util
import io
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from xreal_bench.errors import UserFacingError
from xreal_bench.labels import ANATOMY_CLASSES
from xreal_bench.types import Box

LEFT_LUNG = ANATOMY_CLASSES["left_lung"]  # patient's left = image right
RIGHT_LUNG = ANATOMY_CLASSES["right_lung"]  # patient's right = image left
HEART = ANATOMY_CLASSES["heart"]
AORTA = ANATOMY_CLASSES["aorta"]

#: Findings the renderer can draw (the MS-CXR categories), in CheXpert order.
DRAWN_FINDINGS: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Lung Opacity",
    "Pleural Effusion",
    "Pneumonia",
    "Pneumothorax",
)
#: Findings that lie in one lung (a patient's side is chosen for them).
ONE_SIDED: frozenset[str] = frozenset(DRAWN_FINDINGS) - {"Cardiomegaly", "Edema"}
#: Normal and enlarged cardiothoracic ratio ranges (heart width / lungs' outer width).
NORMAL_CTR = (0.38, 0.46)
ENLARGED_CTR = (0.56, 0.66)

LUNG_ZIP = "semantic_masks_v7labs_lungs.zip"
TEMPLATE_SIDE = 128  # lung templates are stored at this size inside their joint bounding box

Side = Literal["left", "right"]


def as_side(value: str | None) -> Side | None:
    """``value`` if it names one side of the patient, else None (e.g. "bilateral", "")."""
    if value == "left":
        return "left"
    if value == "right":
        return "right"
    return None


# --------------------------------------------------------------------------- styles


@dataclass(frozen=True)
class TextureStyle:
    """How a phantom is textured; anatomy and findings do not depend on it."""

    name: str
    grain: float  # std of the film grain (image units)
    grain_blur: float  # correlation length of the grain, px at 256
    lowfreq: float  # amplitude of the smooth background variation
    gamma: float  # exponent of the final intensity curve (< 1 brightens, flattens contrast)
    contrast: float  # gain around mid-grey after the curve
    rib_mode: Literal["band", "cortex"]  # solid rib bands, or only their cortical outlines
    rib_strength: float
    marking_strength: float  # vessel markings in the lungs


#: The synthetic dataset's look: fine grain, full contrast, solid rib bands.
DATASET_STYLE = TextureStyle("dataset", 0.02, 0.6, 0.05, 1.0, 1.0, "band", 0.09, 0.12)
#: The ``phantom`` generator's default look: coarse blotchy grain, flat contrast, rib outlines.
ALTERNATE_STYLE = TextureStyle("alternate", 0.035, 1.6, 0.09, 0.8, 0.82, "cortex", 0.09, 0.07)
STYLES: dict[str, TextureStyle] = {s.name: s for s in (DATASET_STYLE, ALTERNATE_STYLE)}


@dataclass(frozen=True)
class Phantom:
    """One rendered frontal phantom."""

    image: np.ndarray  # float32 H x W in [0, 1]
    anatomy: np.ndarray  # uint8 H x W label map (0..4)
    boxes: tuple[Box, ...]  # one or more per drawn finding, fractions of the image


# --------------------------------------------------------------------------- lung shapes


@dataclass(frozen=True)
class LungTemplate:
    """A real pair of lungs, each a float mask stretched over their joint bounding box."""

    name: str
    image_left: np.ndarray  # the patient's right lung
    image_right: np.ndarray  # the patient's left lung
    aspect: float  # joint bounding box height / width in the source image


def lung_zip_path() -> Path:
    """Where torchxrayvision's wheel keeps the lung masks (clear error when absent)."""
    spec = importlib.util.find_spec("torchxrayvision")
    if spec is None or not spec.submodule_search_locations:
        raise UserFacingError(
            "the synthetic demo data needs real lung shapes from torchxrayvision's wheel "
            f"(torchxrayvision/data/{LUNG_ZIP}), but torchxrayvision is not installed; "
            "install it with: pip install torchxrayvision"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / LUNG_ZIP
    if not path.is_file():
        raise UserFacingError(
            f"lung masks not found: {path}\n  the synthetic demo data needs torchxrayvision's bundled "
            f"{LUNG_ZIP}; reinstall it with: pip install --force-reinstall torchxrayvision"
        )
    return path


@lru_cache(maxsize=1)
def lung_archive() -> tuple[bytes, tuple[str, ...]]:
    """The zip's bytes (read once per process) and its image entries, sorted."""
    data = lung_zip_path().read_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = tuple(sorted(n for n in zf.namelist() if not n.endswith("/")))
    if not names:
        raise UserFacingError(f"{lung_zip_path()} holds no lung masks")
    return data, names


def lung_archive_digest() -> str:
    """Identity of the lung shapes (entry names and CRCs), for dataset stamps."""
    data, names = lung_archive()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return ";".join(f"{n}:{zf.getinfo(n).CRC:08x}" for n in names)


def decode_mask(blob: bytes, max_side: int = 160) -> np.ndarray:
    """A mask image (PNG/JPEG, grayscale or colour) as bool, downscaled to ``max_side``."""
    with Image.open(io.BytesIO(blob)) as img:
        if img.format == "JPEG":
            img.draft("L", (max_side, max_side))  # decode at 1/2..1/8 scale: much faster
        gray = img.convert("L")
    gray.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    return np.asarray(gray) > 127


def template_from_mask(name: str, mask: np.ndarray) -> LungTemplate | None:
    """Split a two-lung mask into image-left/right lungs; ``None`` if it is not a clean pair.

    Holes are filled, the two largest connected components are kept (the smaller must be at
    least half the larger and the two side by side); a mask where the lungs touch is split at
    the column between them with the least lung.
    """
    mask = ndimage.binary_fill_holes(mask)
    labels, n = ndimage.label(mask)
    if n == 0:
        return None
    sizes = np.bincount(labels.ravel())[1:]
    order = np.argsort(sizes)[::-1]
    if n >= 2 and sizes[order[1]] >= 0.5 * sizes[order[0]]:
        a, b = labels == order[0] + 1, labels == order[1] + 1
    else:  # one blob: split it at the emptiest column of its middle third
        blob = labels == order[0] + 1
        cols = np.flatnonzero(blob.any(axis=0))
        lo, hi = cols[0] + (cols[-1] - cols[0]) // 3, cols[0] + 2 * (cols[-1] - cols[0]) // 3
        if hi <= lo:
            return None
        cut = lo + int(np.argmin(blob[:, lo:hi].sum(axis=0)))
        a, b = blob.copy(), blob.copy()
        a[:, cut:] = False
        b[:, :cut] = False
        if min(a.sum(), b.sum()) < 0.5 * max(a.sum(), b.sum()):
            return None
    xa, xb = np.nonzero(a)[1].mean(), np.nonzero(b)[1].mean()
    left, right = (a, b) if xa < xb else (b, a)
    if np.nonzero(left)[1].max() > np.nonzero(right)[1].min() + 2:  # overlapping columns: not a pair
        return None
    both = left | right
    rows, cols = np.flatnonzero(both.any(axis=1)), np.flatnonzero(both.any(axis=0))
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    aspect = (y1 - y0) / (x1 - x0)
    if not 0.6 <= aspect <= 1.3 or min(y1 - y0, x1 - x0) < 32:
        return None

    def stretch(m: np.ndarray) -> np.ndarray:
        img = Image.fromarray(m[y0:y1, x0:x1].astype(np.float32))
        return np.asarray(img.resize((TEMPLATE_SIDE, TEMPLATE_SIDE), Image.Resampling.BILINEAR))

    return LungTemplate(name, stretch(left), stretch(right), float(aspect))


@cache
def lung_template(index: int) -> LungTemplate | None:
    """Decode entry ``index`` of the zip (memoised); ``None`` when it is unusable."""
    data, names = lung_archive()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        blob = zf.read(names[index])
    try:
        mask = decode_mask(blob)
    except OSError:
        return None
    return template_from_mask(names[index], mask)


def pick_template(index: int) -> int:
    """The first usable template at or after ``index`` (wrapping); deterministic."""
    n = len(lung_archive()[1])
    for k in range(n):
        if lung_template((index + k) % n) is not None:
            return (index + k) % n
    raise UserFacingError(f"no usable lung mask in {lung_zip_path()}")


# --------------------------------------------------------------------------- anatomy


@dataclass(frozen=True)
class Patient:
    """Per-subject anatomy: the same patient keeps it across studies and images."""

    template: int  # index of a usable lung template
    width: float  # lungs' joint width as a fraction of the image
    aspect: float  # multiplies the lungs' height/width (the template's, pulled towards 0.9)
    center_x: float  # lungs' centre, fraction of the image
    top: float  # lung apices, fraction of the image
    ctr: float  # normal cardiothoracic ratio of this patient
    heart_tilt: float  # radians, long axis of the heart from horizontal
    knob: float  # aortic knob radius / lungs' width


def sample_patient(rng: np.random.Generator) -> Patient:
    n = len(lung_archive()[1])
    return Patient(
        template=pick_template(int(rng.integers(n))),
        width=float(rng.uniform(0.72, 0.82)),
        aspect=float(rng.uniform(0.95, 1.08)),
        center_x=float(0.5 + rng.normal(0.0, 0.012)),
        top=float(rng.uniform(0.07, 0.12)),
        ctr=float(rng.uniform(*NORMAL_CTR)),
        heart_tilt=float(rng.uniform(0.35, 0.6)),
        knob=float(rng.uniform(0.038, 0.05)),
    )


def sample_anatomy(
    rng: np.random.Generator,
    size: int,
    patient: Patient,
    *,
    ctr: float | None = None,
    volume_loss: Side | None = None,
) -> np.ndarray:
    """Label map of ``patient`` at ``size`` with per-image jitter of scale and position.

    ``ctr`` overrides the patient's cardiothoracic ratio (Cardiomegaly); ``volume_loss``
    raises that lung's base by 10–16 % of its height (Atelectasis).
    """
    tpl = lung_template(patient.template)
    assert tpl is not None  # Patient.template is always a usable index
    scale = rng.uniform(0.97, 1.03)
    w = patient.width * scale * size
    h = min(w * (0.4 * tpl.aspect + 0.6 * 0.9) * patient.aspect, (0.84 - patient.top) * size)
    x0 = (patient.center_x + rng.normal(0.0, 0.01)) * size - w / 2
    y0 = (patient.top + rng.normal(0.0, 0.008)) * size
    shrink = 1.0 - rng.uniform(0.10, 0.16) if volume_loss else 1.0

    out = np.zeros((size, size), np.uint8)
    for mask, value, side in ((tpl.image_left, RIGHT_LUNG, "right"), (tpl.image_right, LEFT_LUNG, "left")):
        lung_h = h * (shrink if volume_loss == side else 1.0)
        placed = place_mask(mask, size, x0, y0, w, lung_h)
        out[placed] = value

    lungs = out > 0
    rows, cols = np.flatnonzero(lungs.any(axis=1)), np.flatnonzero(lungs.any(axis=0))
    lx0, lx1, ly0, ly1 = cols[0], cols[-1] + 1, rows[0], rows[-1] + 1
    width = lx1 - lx0
    mid = (lx0 + lx1) / 2

    # heart: a tilted ellipse whose horizontal extent is ctr * width, mostly left of midline
    ratio = ctr if ctr is not None else patient.ctr
    half_w = ratio * width / 2
    b_over_a = 0.72
    theta = patient.heart_tilt
    a = half_w / np.sqrt(np.cos(theta) ** 2 + (b_over_a * np.sin(theta)) ** 2)
    b = b_over_a * a
    half_h = np.sqrt((a * np.sin(theta)) ** 2 + (b * np.cos(theta)) ** 2)
    cx = mid + half_w / 3 + rng.normal(0.0, 0.01 * width)  # two thirds on the patient's left
    bottom = ly0 + 0.9 * (ly1 - ly0)
    cy = bottom - half_h
    heart = ellipse_mask(size, cx, cy, a, b, theta)  # long axis down towards the patient's left
    heart &= np.arange(size)[:, None] < bottom  # flat on the diaphragm
    out[heart] = HEART

    # aortic knob: a disc at the medial edge of the patient's left lung, above the heart
    knob_y = int(round(ly0 + 0.2 * (ly1 - ly0)))
    row = np.flatnonzero(out[knob_y] == LEFT_LUNG)
    edge = row[0] if row.size else mid + 0.08 * width
    r = patient.knob * width
    out[ellipse_mask(size, edge - 0.15 * r, knob_y, r, r * 1.1, 0.0)] = AORTA
    return out


def place_mask(mask: np.ndarray, size: int, x0: float, y0: float, w: float, h: float) -> np.ndarray:
    """Resize a [0,1] float mask to ``w x h`` and place it at ``(x0, y0)`` on a ``size`` canvas."""
    wi, hi = max(2, int(round(w))), max(2, int(round(h)))
    resized = np.asarray(Image.fromarray(mask).resize((wi, hi), Image.Resampling.BILINEAR)) > 0.5
    canvas = np.zeros((size, size), bool)
    xi, yi = int(round(x0)), int(round(y0))
    sx0, sy0 = max(0, -xi), max(0, -yi)
    dx0, dy0 = max(0, xi), max(0, yi)
    dx1, dy1 = min(size, xi + wi), min(size, yi + hi)
    if dx1 > dx0 and dy1 > dy0:
        canvas[dy0:dy1, dx0:dx1] = resized[sy0 : sy0 + dy1 - dy0, sx0 : sx0 + dx1 - dx0]
    return canvas


@lru_cache(maxsize=8)
def grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates ``(yy, xx)`` as float32, shape ``size x size`` (read-only)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    yy.flags.writeable = False
    xx.flags.writeable = False
    return yy, xx


def ellipse_mask(size: int, cx: float, cy: float, a: float, b: float, angle: float) -> np.ndarray:
    """Bool mask of a rotated ellipse (semi-axes ``a``, ``b``; computed in its bounding square)."""
    out = np.zeros((size, size), bool)
    r = max(a, b)
    x0, x1 = max(0, int(cx - r) - 1), min(size, int(cx + r) + 2)
    y0, y1 = max(0, int(cy - r) - 1), min(size, int(cy + r) + 2)
    if x1 <= x0 or y1 <= y0:
        return out
    yy, xx = grid(size)
    c, s = np.cos(angle), np.sin(angle)
    dx, dy = xx[y0:y1, x0:x1] - cx, yy[y0:y1, x0:x1] - cy
    u, v = (dx * c + dy * s) / a, (-dx * s + dy * c) / b
    out[y0:y1, x0:x1] = u * u + v * v <= 1.0
    return out


def gaussian(size: int, cx: float, cy: float, sx: float, sy: float) -> np.ndarray:
    """Separable 2-D bump ``exp(-((x-cx)/sx)^2 - ((y-cy)/sy)^2)``."""
    axis = np.arange(size, dtype=np.float32)
    return np.outer(np.exp(-(((axis - cy) / sy) ** 2)), np.exp(-(((axis - cx) / sx) ** 2)))


# --------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class Geometry:
    """What painting needs to know about a label map."""

    size: int
    labels: np.ndarray
    lungs: np.ndarray  # bool, both lungs
    x0: int
    y0: int
    x1: int  # exclusive
    y1: int  # exclusive

    @classmethod
    def of(cls, anatomy: np.ndarray) -> Geometry:
        anatomy = np.asarray(anatomy)
        if anatomy.ndim != 2 or anatomy.shape[0] != anatomy.shape[1]:
            raise ValueError(f"expected a square 2-D anatomy label map, got shape {anatomy.shape}")
        lungs = (anatomy == LEFT_LUNG) | (anatomy == RIGHT_LUNG)
        if lungs.sum() < 0.01 * anatomy.size:
            raise ValueError("the anatomy label map has no lungs (labels 1/2 cover < 1% of it)")
        rows, cols = np.flatnonzero(lungs.any(axis=1)), np.flatnonzero(lungs.any(axis=0))
        return cls(anatomy.shape[0], anatomy, lungs, cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    @property
    def mid(self) -> float:
        return (self.x0 + self.x1) / 2

    @property
    def unit(self) -> float:
        """Pixels per pixel-at-256: every length below is written for a 256 px image."""
        return self.size / 256

    def lung(self, side: Side) -> np.ndarray:
        return self.labels == (LEFT_LUNG if side == "left" else RIGHT_LUNG)

    def lung_box(self, side: Side) -> tuple[int, int, int, int]:
        m = self.lung(side)
        if not m.any():
            return self.x0, self.y0, self.x1, self.y1
        rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
        return cols[0], rows[0], cols[-1] + 1, rows[-1] + 1

    def lateral_sign(self, side: Side) -> int:
        """+1 if lateral is towards larger x (the patient's left lung), else -1."""
        return 1 if side == "left" else -1

    def hilum(self, side: Side) -> tuple[float, float]:
        sign = self.lateral_sign(side)
        return self.mid + sign * 0.15 * self.width, self.y0 + 0.42 * self.height

    def side_of(self, box: tuple[int, int, int, int]) -> Side:
        """The lung that overlaps the pixel box most (by midline when neither does)."""
        x0, y0, x1, y1 = box
        left = int(self.lung("left")[y0:y1, x0:x1].sum())
        right = int(self.lung("right")[y0:y1, x0:x1].sum())
        if left == right:
            return "left" if (x0 + x1) / 2 > self.mid else "right"
        return "left" if left > right else "right"


def to_box(label: str, px: tuple[int, int, int, int], size: int) -> Box:
    x0, y0, x1, y1 = px
    return Box(label, x0 / size, y0 / size, x1 / size, y1 / size)


def box_pixels(box: Box, size: int) -> tuple[int, int, int, int]:
    """Nearest pixel bounds (x1/y1 exclusive, never empty) of a fractional box."""
    b = box.clipped()
    x0, y0 = int(round(b.x0 * size)), int(round(b.y0 * size))
    x1, y1 = int(round(b.x1 * size)), int(round(b.y1 * size))
    x0, y0 = min(x0, size - 1), min(y0, size - 1)
    return x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)


# --------------------------------------------------------------------------- boxes


def place_boxes(
    anatomy: np.ndarray,
    findings: Sequence[str],
    rng: np.random.Generator,
    sides: Mapping[str, str] | None = None,
) -> tuple[Box, ...]:
    """Boxes where each finding belongs on ``anatomy`` (one per finding; two for Edema).

    One-sided findings use ``sides[finding]`` (the patient's side) or a random side.
    """
    g = Geometry.of(anatomy)
    sides = dict(sides or {})
    boxes: list[Box] = []
    for name in findings:
        if name not in DRAWN_FINDINGS:
            raise ValueError(f"cannot draw {name!r}; drawable findings: {', '.join(DRAWN_FINDINGS)}")
        side = as_side(sides.get(name)) or ("left" if rng.random() < 0.5 else "right")
        for px in finding_boxes(name, g, side, rng):
            boxes.append(to_box(name, px, g.size))
    return tuple(boxes)


def finding_boxes(name: str, g: Geometry, side: Side, rng: np.random.Generator) -> list[tuple[int, int, int, int]]:
    if name == "Cardiomegaly":
        heart = g.labels == HEART
        if not heart.any():
            raise ValueError("Cardiomegaly needs a heart (label 3) in the anatomy map")
        rows, cols = np.flatnonzero(heart.any(axis=1)), np.flatnonzero(heart.any(axis=0))
        return [(cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)]
    if name == "Edema":
        out = []
        for s in ("right", "left"):
            bx0, by0, bx1, by1 = g.lung_box(s)
            h = by1 - by0
            out.append(band_box(g, s, by0 + int(0.28 * h), by1 - int(0.04 * h)))
        return out
    bx0, by0, bx1, by1 = g.lung_box(side)
    lw, lh = bx1 - bx0, by1 - by0
    if name == "Pleural Effusion":
        return [band_box(g, side, by1 - int(rng.uniform(0.28, 0.4) * lh), by1)]
    if name == "Pneumothorax":
        return [band_box(g, side, by0, by0 + int(rng.uniform(0.38, 0.5) * lh))]
    shape = {  # (width range, height range, centre-height range), fractions of the lung
        "Consolidation": ((0.5, 0.66), (0.22, 0.3), (0.45, 0.7)),
        "Lung Opacity": ((0.55, 0.72), (0.3, 0.4), (0.35, 0.6)),
        "Pneumonia": ((0.4, 0.52), (0.2, 0.28), (0.55, 0.78)),
        "Atelectasis": ((0.5, 0.66), (0.1, 0.14), (0.6, 0.78)),
    }[name]
    width = rng.uniform(*shape[0]) * lw
    height = rng.uniform(*shape[1]) * lh
    cy = by0 + rng.uniform(*shape[2]) * lh
    row = np.flatnonzero(g.lung(side)[int(cy)])
    cols = row if row.size else np.arange(bx0, bx1)
    cx = (cols[0] + cols[-1]) / 2 + rng.uniform(-0.1, 0.1) * (cols[-1] - cols[0])
    x0, x1 = int(round(cx - width / 2)), int(round(cx + width / 2))
    y0, y1 = int(round(cy - height / 2)), int(round(cy + height / 2))
    x0, x1 = max(x0, bx0), min(x1, bx1)
    return [(x0, max(y0, 0), max(x1, x0 + 2), min(max(y1, y0 + 2), g.size))]


def band_box(g: Geometry, side: Side, top: int, bottom: int) -> tuple[int, int, int, int]:
    """Bounding box of one lung between two rows."""
    m = g.lung(side)[top:bottom]
    cols = np.flatnonzero(m.any(axis=0))
    if cols.size == 0:
        bx0, _, bx1, _ = g.lung_box(side)
        return bx0, top, bx1, max(bottom, top + 1)
    return int(cols[0]), int(top), int(cols[-1] + 1), int(max(bottom, top + 1))


# --------------------------------------------------------------------------- painting


@dataclass
class Layers:
    """Fields the findings edit before they are composed into an image."""

    air: np.ndarray  # 1 where lung air darkens the image
    markings: np.ndarray  # vessel markings (0..1)
    extra: np.ndarray  # added density (may be negative)


def blur(a: np.ndarray, sigma: float) -> np.ndarray:
    return ndimage.gaussian_filter(a.astype(np.float32, copy=False), sigma, mode="nearest", truncate=3.0)


def strokes(size: int, lines: Sequence[tuple[Sequence[tuple[float, float]], float, int]]) -> np.ndarray:
    """Polylines ``(points, width, value 0..255)`` drawn in order on a black canvas, as [0,1]."""
    img = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(img)
    for points, width, value in lines:
        joint = "curve" if len(points) > 2 else None
        draw.line([(float(x), float(y)) for x, y in points], fill=int(value), width=max(1, int(round(width))), joint=joint)
    return np.asarray(img, dtype=np.float32) / 255.0


def smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Zero-mean, unit-ish smooth random field (bicubic upsampling of a coarse grid)."""
    coarse = rng.standard_normal((cells, cells)).astype(np.float32)
    return np.asarray(Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC))


def box_window(size: int, px: tuple[int, int, int, int], soft: float) -> np.ndarray:
    """1 inside the pixel box, edges blurred by ``soft`` px."""
    win = np.zeros((size, size), np.float32)
    x0, y0, x1, y1 = px
    win[y0:y1, x0:x1] = 1.0
    return blur(win, soft) if soft > 0 else win


def oval_window(size: int, px: tuple[int, int, int, int]) -> np.ndarray:
    """1 at the centre of the pixel box falling to 0 on the ellipse inscribed in it."""
    x0, y0, x1, y1 = px
    yy, xx = grid(size)
    r2 = ((xx + 0.5 - (x0 + x1) / 2) / max((x1 - x0) / 2, 1)) ** 2 + ((yy + 0.5 - (y0 + y1) / 2) / max((y1 - y0) / 2, 1)) ** 2
    return np.sqrt(np.clip(1.0 - r2, 0.0, 1.0))


def paint(
    anatomy: np.ndarray,
    boxes: Sequence[Box],
    rng: np.random.Generator,
    style: TextureStyle = DATASET_STYLE,
    noise: float = 1.0,
) -> np.ndarray:
    """Render a frontal radiograph for ``anatomy`` with each box's finding drawn inside it.

    ``noise`` multiplies the style's film grain. Returns float32 in [0, 1]. Findings draw
    from their own random stream, so adding one changes the image only around its box.
    """
    rng, finding_rng = (np.random.default_rng(int(s)) for s in rng.integers(2**63, size=2))
    g = Geometry.of(anatomy)
    size, u = g.size, g.unit
    yy, xx = grid(size)
    w, h, mid = g.width, g.height, g.mid

    # body: chest walls a little outside the lungs, widening into the shoulders above the
    # apices, thicker (denser) in the middle
    half = 0.5 * w * rng.uniform(1.12, 1.18)
    shoulder = 1.0 / (1.0 + np.exp((yy - (g.y0 + 0.04 * h)) / (0.05 * h)))
    half_at = half + (0.62 * size - half) * shoulder
    rel = np.abs(xx - mid) / half_at
    thickness = np.sqrt(np.clip(1.0 - rel**2, 0.0, 1.0))
    body = np.clip(0.5 + (1.0 - rel) * half_at / (5.0 * u), 0.0, 1.0)  # skin edge ~5 px wide
    density = 0.04 + body * (0.4 + 0.22 * thickness)

    lungs = g.lungs.astype(np.float32)
    layers = Layers(
        air=blur(lungs, 1.3 * u),
        markings=vessel_markings(g, rng, style),
        extra=np.zeros((size, size), np.float32),
    )
    for box in boxes:
        draw_finding(box.label, box_pixels(box, size), g, finding_rng, layers)

    # lungs: air darkens, less so towards the bases (soft tissue of the breasts and diaphragm)
    depth = np.clip((yy - g.y0) / max(h, 1), 0.0, 1.0)
    density -= layers.air * (0.36 - 0.1 * depth**2)
    density += style.marking_strength * layers.markings * layers.air
    density += 0.025 * smooth_noise(rng, size, 48) * layers.air  # parenchymal texture
    density += hilum_shadows(g) * layers.air
    # mediastinum, heart and aortic knob
    density += blur(0.07 * (g.labels == HEART) + 0.1 * (g.labels == AORTA), 1.1 * u)
    bones, spine = skeleton(g, rng, style)
    density += (bones * (0.35 + 0.65 * layers.air) + spine) * body  # bones show best against air
    density += stomach_bubble(g, rng)
    density += layers.extra

    density += style.lowfreq * smooth_noise(rng, size, 6)
    image = np.clip(density, 0.0, 1.0) ** style.gamma
    image = 0.5 + style.contrast * (image - 0.5)
    grain = rng.standard_normal((size, size)).astype(np.float32)
    if style.grain_blur > 0:
        grain = blur(grain, style.grain_blur * u)
        grain /= max(float(grain.std()), 1e-6)
    image = image + noise * style.grain * grain * (1.2 - 0.6 * image)
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def vessel_markings(g: Geometry, rng: np.random.Generator, style: TextureStyle) -> np.ndarray:
    """Branching vessels fanning out from each hilum and tapering towards the periphery."""
    u = g.unit
    lines = []
    for side in ("right", "left"):
        hx, hy = g.hilum(side)
        sign = g.lateral_sign(side)
        for _ in range(int(rng.integers(16, 22))):
            angle = rng.uniform(-1.5, 1.4)  # from up (-) through lateral (0) to down (+)
            length = rng.uniform(0.3, 0.5) * g.width
            x, y, width = hx, hy, rng.uniform(2.0, 2.8) * u
            value = 255.0
            for step in range(6):
                angle += rng.normal(0.0, 0.3)
                seg = length / 6
                nx, ny = x + sign * np.cos(angle) * seg, y + np.sin(angle) * seg
                lines.append(([(x, y), (nx, ny)], width, int(value)))
                x, y = nx, ny
                width, value = max(0.8 * u, width * 0.8), value * 0.85
                if step >= 1 and rng.random() < 0.5:  # a side branch
                    a2 = angle + rng.choice([-1, 1]) * rng.uniform(0.4, 0.8)
                    bx, by = x + sign * np.cos(a2) * seg, y + np.sin(a2) * seg
                    lines.append(([(x, y), (bx, by)], width * 0.8, int(value * 0.8)))
    return blur(strokes(g.size, lines), 0.9 * u)


def hilum_shadows(g: Geometry) -> np.ndarray:
    out = np.zeros((g.size, g.size), np.float32)
    for side in ("right", "left"):
        hx, hy = g.hilum(side)
        out += gaussian(g.size, hx, hy, 0.06 * g.width, 0.09 * g.height)
    return 0.09 * out


def skeleton(g: Geometry, rng: np.random.Generator, style: TextureStyle) -> tuple[np.ndarray, np.ndarray]:
    """Ribs and clavicles, and the spine (densities to add)."""
    size, u = g.size, g.unit
    w, h, mid = g.width, g.height, g.mid
    yy, xx = grid(size)
    # spine: a column with darker disc spaces; seen faintly through the mediastinum
    spine_half = 0.05 * w
    column = np.clip(1.0 - (np.abs(xx - mid) / spine_half) ** 6, 0.0, 1.0)
    period = 0.1 * h
    discs = 0.5 + 0.5 * np.cos(2 * np.pi * (yy - g.y0) / period)
    spine = ndimage.gaussian_filter1d(column * (0.75 + 0.25 * (discs < 0.85)), 0.8 * u, axis=0, truncate=3.0) * 0.08

    band, cortex = [], []
    spacing = rng.uniform(0.098, 0.11) * h
    thick = rng.uniform(0.03, 0.038) * h
    for side in ("right", "left"):
        sign = g.lateral_sign(side)
        lx0, _, lx1, _ = g.lung_box(side)
        lateral = (lx0 if sign < 0 else lx1) + sign * 0.03 * w
        start = mid + sign * 0.055 * w
        for k in range(10):
            ys = g.y0 - 0.05 * h + k * spacing
            t = np.linspace(0.0, 1.0, 12)
            px = start + (lateral - start) * t
            py = ys + h * (-0.05 * t + 0.26 * t**2.6)
            pts = list(zip(px, py, strict=True))
            band.append((pts, thick, 150))
            # anterior rib: from the lateral end downwards-medially, thinner
            t2 = np.linspace(0.0, 1.0, 8)
            ax = lateral + (start - lateral) * 0.6 * t2
            ay = py[-1] + h * (0.12 * t2 + 0.06 * t2**1.5)
            cortex.append((list(zip(ax, ay, strict=True)), 0.7 * thick, 90))
    sides: tuple[Side, Side] = ("right", "left")
    for side in sides:  # clavicles, denser than ribs
        sign = g.lateral_sign(side)
        t = np.linspace(0.0, 1.0, 10)
        cx = mid + sign * (0.06 * w + 0.55 * w * t)
        cy = g.y0 + h * (0.04 - 0.12 * t + 0.05 * np.sin(np.pi * t))
        cortex.append((list(zip(cx, cy, strict=True)), 0.045 * h, 255))
    bones = strokes(size, band + cortex)
    gain = style.rib_strength / (150 / 255)  # posterior ribs get exactly rib_strength
    if style.rib_mode == "cortex":  # hollow the posterior ribs: only their outlines remain
        inner = strokes(size, [(p, max(1.0, wd - 2.5 * u), 255) for p, wd, _ in band])
        bones = np.clip(bones - inner, 0.0, 1.0) + 0.25 * inner * (150 / 255)
        gain *= 1.6
    return blur(bones, 0.9 * u) * gain, spine


def stomach_bubble(g: Geometry, rng: np.random.Generator) -> np.ndarray:
    """A gas bubble under the patient's left hemidiaphragm (most of the time)."""
    if rng.random() < 0.35:
        return np.zeros((g.size, g.size), np.float32)
    lx0, _, lx1, ly1 = g.lung_box("left")
    cx, cy = lx0 + 0.55 * (lx1 - lx0), ly1 + 0.05 * g.height
    a = rng.uniform(0.06, 0.1) * g.width
    return -0.12 * gaussian(g.size, cx, cy, a, 0.6 * a) ** 2 * ~g.lungs


# --------------------------------------------------------------------------- findings


def draw_finding(name: str, px: tuple[int, int, int, int], g: Geometry, rng: np.random.Generator, layers: Layers) -> None:
    """Draw one finding inside pixel box ``px`` (the heart itself is Cardiomegaly's drawing)."""
    if name == "Cardiomegaly":
        return
    drawer = DRAWERS.get(name)
    if drawer is None:
        raise ValueError(f"cannot draw {name!r}; drawable findings: {', '.join(DRAWN_FINDINGS)}")
    drawer(px, g, rng, layers)


def draw_effusion(px, g: Geometry, rng, layers: Layers) -> None:
    """Dependent fluid: homogeneous, a meniscus climbing laterally, costophrenic angle filled."""
    x0, y0, x1, y1 = px
    side = g.side_of(px)
    yy, xx = grid(g.size)
    lateral = (xx - x0) / max(x1 - x0, 1) if side == "left" else (x1 - xx) / max(x1 - x0, 1)
    lateral = np.clip(lateral, 0.0, 1.0)
    meniscus = y1 - (y1 - y0) * (0.4 + 0.6 * lateral**1.3)  # concave up: climbs the lateral wall
    region = (yy >= meniscus) & (xx >= x0) & (xx < x1) & (yy < y1 + 0.03 * g.height)
    region &= ndimage.binary_dilation(g.lung(side), iterations=max(1, int(2 * g.unit)))
    fluid = blur(region.astype(np.float32), 1.5 * g.unit)
    layers.air *= 1.0 - 0.95 * fluid
    layers.markings *= 1.0 - fluid
    layers.extra += 0.08 * fluid


def draw_pneumothorax(px, g: Geometry, rng, layers: Layers) -> None:
    """Apical air: the lung edge pulled away from the chest wall, a thin white pleural line."""
    x0, y0, x1, y1 = px
    side = g.side_of(px)
    lung = g.lung(side)
    yy, xx = grid(g.size)
    bx0, _, bx1, _ = g.lung_box(side)
    cx = bx1 if side == "right" else bx0  # collapse towards the medial side of the box's bottom
    cy = float(y1)
    t = np.clip((yy - y0) / max(y1 - y0, 1), 0.0, 1.0)
    start = rng.uniform(0.72, 0.8)
    factor = start + (1.0 - start) * (3 * t**2 - 2 * t**3)  # collapsed at the apex, none at the box's bottom
    sy, sx = cy + (yy - cy) / factor, cx + (xx - cx) / factor
    collapsed = ndimage.map_coordinates(lung.astype(np.uint8), [sy, sx], order=0, mode="constant", cval=0) > 0
    inside = np.zeros_like(lung)
    inside[y0:y1, x0:x1] = True
    space = lung & ~collapsed & inside
    line = collapsed & ~ndimage.binary_erosion(collapsed, iterations=max(1, int(round(g.unit)))) & inside
    line &= ndimage.binary_dilation(space, iterations=2)
    soft = blur(space.astype(np.float32), 0.8 * g.unit)
    layers.markings *= 1.0 - soft
    layers.extra += -0.1 * soft + 0.24 * blur(line.astype(np.float32), 0.5 * g.unit)


def blob(rng: np.random.Generator, g: Geometry, px, parts: int, sigma: float) -> np.ndarray:
    """A smooth random field inside ``px``: a sum of ``parts`` Gaussians, max 1."""
    x0, y0, x1, y1 = px
    field = np.zeros((g.size, g.size), np.float32)
    bw, bh = x1 - x0, y1 - y0
    for _ in range(parts):
        cx = x0 + bw * rng.uniform(0.3, 0.7)
        cy = y0 + bh * rng.uniform(0.3, 0.7)
        field += gaussian(g.size, cx, cy, sigma * bw, sigma * bh)
    return field / max(float(field.max()), 1e-6)


def draw_consolidation(px, g: Geometry, rng, layers: Layers) -> None:
    """Dense homogeneous airspace opacity with dark branching air bronchograms."""
    x0, y0, x1, y1 = px
    field = blob(rng, g, px, 4, 0.45) * oval_window(g.size, px) * (1.0 + 0.35 * smooth_noise(rng, g.size, 20))
    region = np.clip((field - 0.12) / 0.15, 0.0, 1.0) * blur(g.lungs.astype(np.float32), 1.0)
    region = blur(region, 1.2 * g.unit)
    sign = g.lateral_sign(g.side_of(px))
    lines = []  # bronchi enter from the medial side and branch laterally
    for _ in range(int(rng.integers(2, 4))):
        x, y = (x0 if sign > 0 else x1), y0 + (y1 - y0) * rng.uniform(0.3, 0.7)
        angle, width = rng.normal(0.0, 0.3), 1.6 * g.unit
        for _ in range(4):
            angle += rng.normal(0.0, 0.25)
            seg = (x1 - x0) / 4
            nx, ny = x + sign * np.cos(angle) * seg, y + np.sin(angle) * seg
            lines.append(([(x, y), (nx, ny)], width, 255))
            if rng.random() < 0.5:
                a2 = angle + rng.choice([-1, 1]) * 0.6
                lines.append(([(nx, ny), (nx + sign * np.cos(a2) * seg * 0.7, ny + np.sin(a2) * seg * 0.7)], width * 0.8, 255))
            x, y, width = nx, ny, max(1.0, width * 0.85)
    bronchi = blur(strokes(g.size, lines), 0.6 * g.unit) * region
    layers.air *= 1.0 - 0.88 * region
    layers.markings *= 1.0 - region
    layers.extra += 0.04 * region - 0.16 * bronchi


def draw_lung_opacity(px, g: Geometry, rng, layers: Layers) -> None:
    """Faint, ill-defined, mottled haze; vessels remain visible through it."""
    x0, y0, x1, y1 = px
    window = box_window(g.size, (x0 + 2, y0 + 2, max(x1 - 2, x0 + 3), max(y1 - 2, y0 + 3)), 0.15 * min(x1 - x0, y1 - y0))
    mottle = 0.75 + 0.25 * np.clip(smooth_noise(rng, g.size, 24), -1.5, 1.5)
    haze = window * mottle * layers.air
    layers.air *= 1.0 - 0.7 * np.clip(haze, 0.0, 1.0)


def draw_pneumonia(px, g: Geometry, rng, layers: Layers) -> None:
    """A cluster of small fluffy nodular opacities."""
    x0, y0, x1, y1 = px
    field = np.zeros((g.size, g.size), np.float32)
    for _ in range(int(rng.integers(12, 18))):
        cx = rng.uniform(x0 + 0.1 * (x1 - x0), x1 - 0.1 * (x1 - x0))
        cy = rng.uniform(y0 + 0.12 * (y1 - y0), y1 - 0.12 * (y1 - y0))
        s = rng.uniform(2.4, 3.8) * g.unit * np.sqrt(2)
        field += gaussian(g.size, cx, cy, s, s)
    field = np.clip(field, 0.0, 1.0) * blur(g.lungs.astype(np.float32), 1.0)
    layers.air *= 1.0 - 0.75 * field
    layers.extra += 0.03 * field


def draw_atelectasis(px, g: Geometry, rng, layers: Layers) -> None:
    """Plate-like (discoid) band across the box (the volume loss is in the map)."""
    x0, y0, x1, y1 = px
    cy = (y0 + y1) / 2
    tilt = rng.uniform(-0.35, 0.35) * (y1 - y0)
    pts = [(x0 + 2, cy - tilt), ((x0 + x1) / 2, cy + rng.normal(0.0, 0.1) * (y1 - y0)), (x1 - 2, cy + tilt)]
    band = blur(strokes(g.size, [(pts, max(3.0 * g.unit, 0.3 * (y1 - y0)), 255)]), 0.9 * g.unit)
    band *= blur(g.lungs.astype(np.float32), 1.0)
    layers.air *= 1.0 - 0.85 * band
    layers.markings *= 1.0 - band
    layers.extra += 0.05 * band


def draw_edema(px, g: Geometry, rng, layers: Layers) -> None:
    """Perihilar (bat-wing) haze and short horizontal Kerley B lines at the lateral bases."""
    x0, y0, x1, y1 = px
    window = box_window(g.size, px, 3.0 * g.unit)
    haze = np.zeros((g.size, g.size), np.float32)
    lines = []
    for side in ("right", "left"):
        bx0, by0, bx1, by1 = g.lung_box(side)
        if min(x1, bx1) - max(x0, bx0) < 0.3 * (bx1 - bx0):
            continue  # the box does not cover this lung
        hx, hy = g.hilum(side)
        haze += gaussian(g.size, hx, hy, 0.25 * g.width, 0.32 * g.height)
        sign = g.lateral_sign(side)
        lung = g.lung(side)
        for _ in range(int(rng.integers(5, 9))):
            y = int(rng.uniform(max(y0, by0 + 0.62 * (by1 - by0)), max(y1 - 2, by0 + 0.63 * (by1 - by0))))
            row = np.flatnonzero(lung[min(y, g.size - 1)])
            if row.size < 4:
                continue
            edge = row[-1] if sign > 0 else row[0]
            length = rng.uniform(8, 14) * g.unit
            lines.append(([(edge - sign * 1.0, y), (edge - sign * length, y)], 1.2 * g.unit, 255))
    haze = np.clip(haze, 0.0, 1.0) * window * layers.air
    layers.air *= 1.0 - 0.65 * haze
    layers.markings = layers.markings * (1.0 - 0.5 * haze)
    layers.extra += 0.22 * blur(strokes(g.size, lines), 0.5 * g.unit) * window * g.lungs


DRAWERS = {
    "Atelectasis": draw_atelectasis,
    "Consolidation": draw_consolidation,
    "Edema": draw_edema,
    "Lung Opacity": draw_lung_opacity,
    "Pleural Effusion": draw_effusion,
    "Pneumonia": draw_pneumonia,
    "Pneumothorax": draw_pneumothorax,
}


# --------------------------------------------------------------------------- entry points


def render_phantom(
    rng: np.random.Generator,
    size: int,
    findings: Sequence[str] = (),
    patient: Patient | None = None,
    style: TextureStyle = DATASET_STYLE,
    sides: Mapping[str, str] | None = None,
) -> Phantom:
    """A frontal phantom with ``findings`` drawn (dataset style by default).

    ``sides`` fixes the patient's side of one-sided findings (the others are drawn at random).
    """
    unknown = [f for f in findings if f not in DRAWN_FINDINGS]
    if unknown:
        raise ValueError(f"cannot draw {', '.join(unknown)}; drawable findings: {', '.join(DRAWN_FINDINGS)}")
    patient = patient or sample_patient(rng)
    given = dict(sides or {})
    chosen: dict[str, Side] = {
        f: as_side(given.get(f)) or ("left" if rng.random() < 0.5 else "right") for f in findings if f in ONE_SIDED
    }
    anatomy = sample_anatomy(
        rng,
        size,
        patient,
        ctr=float(rng.uniform(*ENLARGED_CTR)) if "Cardiomegaly" in findings else None,
        volume_loss=chosen.get("Atelectasis"),
    )
    boxes = place_boxes(anatomy, findings, rng, chosen)
    return Phantom(paint(anatomy, boxes, rng, style), anatomy, boxes)


def render_from_anatomy(
    anatomy: np.ndarray,
    findings: Sequence[str],
    boxes: Sequence[Box],
    rng: np.random.Generator,
    style: TextureStyle = ALTERNATE_STYLE,
    noise: float = 1.0,
) -> np.ndarray:
    """Paint a phantom that follows a GIVEN label map; each finding in its boxes.

    A finding in ``findings`` without a box of its label gets one from :func:`place_boxes`;
    boxes of labels not in ``findings`` are ignored. Findings outside :data:`DRAWN_FINDINGS`
    raise ``ValueError``.
    """
    unknown = [f for f in findings if f not in DRAWN_FINDINGS]
    if unknown:
        raise ValueError(f"cannot draw {', '.join(unknown)}; drawable findings: {', '.join(DRAWN_FINDINGS)}")
    anatomy = np.asarray(anatomy, dtype=np.uint8)
    given = [b for b in boxes if b.label in findings]
    missing = [f for f in findings if not any(b.label == f for b in given)]
    placement_rng = np.random.default_rng(int(rng.integers(2**63)))  # drawn even when unused
    placed = place_boxes(anatomy, missing, placement_rng)
    return paint(anatomy, (*given, *placed), rng, style, noise)


def render_lateral(rng: np.random.Generator, size: int, patient: Patient) -> np.ndarray:
    """A lateral-looking view: one superimposed lung field, heart in front, spine behind."""
    tpl = lung_template(patient.template)
    assert tpl is not None
    u = size / 256
    yy, xx = grid(size)
    cx, cy = size * (0.5 + rng.normal(0, 0.01)), size * 0.55
    body = ((xx - cx) / (0.36 * size)) ** 2 + ((yy - cy) / (0.75 * size)) ** 2 <= 1.0
    density = 0.05 + blur(body.astype(np.float32), 2 * u) * 0.62
    lung_w = 0.5 * size
    lung = place_mask(
        np.maximum(tpl.image_left, tpl.image_left[:, ::-1]),
        size,
        cx - lung_w / 2,
        patient.top * size,
        lung_w,
        0.62 * size,
    )
    density -= blur(lung.astype(np.float32), 1.5 * u) * 0.3
    heart = ellipse_mask(size, cx - 0.12 * size, patient.top * size + 0.45 * size, 0.15 * size, 0.12 * size, -0.5)
    density += blur(heart.astype(np.float32), 2 * u) * 0.16
    spine = (np.abs(xx - (cx + 0.2 * size)) < 0.04 * size) & body
    discs = np.cos(2 * np.pi * yy / (0.065 * size)) > 0.8
    density += blur((spine & ~discs).astype(np.float32), 0.8 * u) * 0.2
    density += DATASET_STYLE.lowfreq * smooth_noise(rng, size, 6)
    image = np.clip(density, 0.0, 1.0)
    image += DATASET_STYLE.grain * blur(rng.standard_normal((size, size)).astype(np.float32), 0.6 * u) / 0.45
    return np.clip(image, 0.0, 1.0).astype(np.float32)
