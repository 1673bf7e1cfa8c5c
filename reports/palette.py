"""Colours, hatches and text colours of the report figures: readable by colour-blind readers and in grayscale print.

- Sources are told apart by an Okabe-Ito colour **and** a hatch each (:func:`source_styles`); the colours are
  ordered so that neighbouring bars differ by at least :data:`MIN_LUMINANCE_STEP` in relative luminance, and the
  reference rows (real images) are plain grey without a hatch (light and dark grey alternating when several runs
  each bring one).
- Heatmaps use a colormap whose lightness rises monotonically (:data:`HEATMAP_CMAP`, cividis), so grayscale keeps
  the order, and each number is drawn in the text colour with the higher WCAG contrast on its cell
  (:func:`text_colour`).
- Anatomy map labels and pathology boxes in the sample grid use Okabe-Ito colours too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from matplotlib.colors import to_rgb

from xreal_bench.labels import ANATOMY_CLASSES

#: Okabe & Ito (2008) colours without black, ordered so that neighbours differ in luminance by >= 0.11.
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#F0E442", "#D55E00", "#56B4E9", "#CC79A7")
#: Hatches paired with the colours; 10 patterns against 7 colours give 70 distinct pairs.
HATCHES = ("//", "..", "xx", "\\\\", "oo", "++", "--", "||", "**", "OO")
REFERENCE_GREYS = ("#BBBBBB", "#6E6E6E")
DARK_TEXT = "#000000"
LIGHT_TEXT = "#FFFFFF"
HEATMAP_CMAP = "cividis"
MIN_LUMINANCE_STEP = 0.1
#: Relative luminance above which dark text contrasts more than light text (where both ratios are equal).
TEXT_THRESHOLD = (1.05 * 0.05) ** 0.5 - 0.05
#: Anatomy label value -> colour (patient's sides; :mod:`xreal_bench.conditioning.anatomy`).
ANATOMY_COLOURS = {
    ANATOMY_CLASSES["left_lung"]: "#0072B2",
    ANATOMY_CLASSES["right_lung"]: "#009E73",
    ANATOMY_CLASSES["heart"]: "#D55E00",
    ANATOMY_CLASSES["aorta"]: "#F0E442",
}
ANATOMY_NAMES = {ANATOMY_CLASSES[k]: k.replace("_", " ") for k in ("left_lung", "right_lung", "heart", "aorta")}
BOX_COLOUR = "#E69F00"
#: Scatter markers, one per source (with the source's colour).
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h")


@dataclass(frozen=True)
class SourceStyle:
    """How one source (a bar, a point) is drawn: face colour, hatch ("" none), hatch colour and marker."""

    colour: str
    hatch: str
    hatch_colour: str
    marker: str
    reference: bool


def relative_luminance(colour) -> float:
    """WCAG 2 relative luminance (0 black .. 1 white) of a matplotlib colour."""

    def linear(c: float) -> float:
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(c) for c in to_rgb(colour))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_ratio(first, second) -> float:
    """WCAG contrast ratio of two colours (1 .. 21)."""
    a, b = sorted((relative_luminance(first), relative_luminance(second)))
    return (b + 0.05) / (a + 0.05)


def text_colour(background) -> str:
    """Dark text on light backgrounds, light text on dark ones (whichever has the higher WCAG contrast, >= 4.58)."""
    return DARK_TEXT if relative_luminance(background) > TEXT_THRESHOLD else LIGHT_TEXT


def source_styles(references: Sequence[bool]) -> list[SourceStyle]:
    """One style per source in drawing order; ``references[i]`` marks a reference row (grey, no hatch)."""
    styles = []
    k = r = 0
    for is_reference in references:
        if is_reference:
            grey = REFERENCE_GREYS[r % len(REFERENCE_GREYS)]
            styles.append(SourceStyle(grey, "", text_colour(grey), "*", True))
            r += 1
            continue
        colour = OKABE_ITO[k % len(OKABE_ITO)]
        styles.append(SourceStyle(colour, HATCHES[k % len(HATCHES)], text_colour(colour), MARKERS[k % len(MARKERS)], False))
        k += 1
    return styles
