"""The one image path shared by real and generated images.

Every image that is evaluated, shown or written goes through these functions, so real JPEGs
and generated PNGs are decoded, stretched, squared, resized and quantised identically:

1. :func:`load_grayscale` decodes to float32 in [0, 1] by one fixed rule per PIL image mode
   (table below) — never by a scale chosen from the pixel values, never clipped.
2. :func:`apply_intensity` applies the run's intensity rule to the image *as decoded* (its own
   size, before any squaring): ``"none"`` (default) keeps the values; ``"minmax"`` maps each
   image to ``(x - min) / (max - min)`` over its own pixels (float64, then float32), and a
   constant image (max = min) becomes all zeros. This is XReal's order: its preprocessing
   notebook (``data_preprocessing/prerprocess_mimic_cxr.ipynb``, last cell) min-max stretches
   the stored full-resolution image, and its data loader (``xreal/data_utils.py``, ``DataVAE``)
   resizes afterwards; stretching after the resize would stretch a second time wherever the
   resize narrowed the range (a thin bright marker averaged away).
3. :func:`to_square` makes the image square — ``mode="crop"`` (default) centre-crops the longer
   side, ``"pad"`` pads it with black, ``"stretch"`` keeps the whole image and lets the resize
   change its aspect (XReal's ``Resize(256, 256)``) — then resizes to ``size`` x ``size`` with
   PIL's antialiased bicubic filter on float data, clipped back to [0, 1]. XReal resized with
   albumentations ``Resize(..., interpolation=cv2.INTER_LINEAR)`` (bilinear, not antialiased);
   the suite keeps its one antialiased bicubic resize for every image and mode, so a
   ``"stretch"`` image matches XReal's geometry but not its interpolation kernel.
4. :func:`quantize` rounds (never truncates) to 8- or 16-bit integers.

:class:`Geometry` carries the square mode and the intensity rule as one value;
:func:`conform` applies 2 and 3, :func:`standardize` 2 to 4, i.e. the exact pixels of a stored
run image, which is what the metrics see for both sides. The rule is applied exactly once per
image: to a real image whenever it is decoded for use, to a generated image when the harness
stores it; a stored run image is read back as it is (a second min-max stretch would change an
image the resize narrowed). :func:`resize_label_map` brings label maps and masks through the
same square modes by nearest neighbour.

Pixel rules (mode as decoded by Pillow; anything not listed is refused naming its mode):

=========================  ==================================================================
``1``                      black 0.0, white 1.0
``L``                      value / 255
``I;16`` ``I;16B``         value / 65535 (unsigned 16-bit: 16-bit PNG, TIFF and PGM)
``I;16L`` ``I;16N``
``I``                      32-bit integer: every value must lie in 0..65535 and is divided by
                           65535 (a 16-bit image held in 32 bits); a value outside is refused
                           naming the range found
signed 16-bit samples      refused (TIFF ``SampleFormat`` 2, Pillow raw mode ``I;16S``/``I;16BS``,
                           decoded as ``I``): their full scale is not 0..65535
``F``                      32-bit float, taken as intensities: every value must be finite and
                           within [0, 1]; anything else is refused naming the range found
``RGB`` ``RGBX``           ITU-R 601-2 luma ``L = R*299/1000 + G*587/1000 + B*114/1000``,
                           rounded to 8 bits by Pillow's fixed ``convert("L")``, then / 255
``YCbCr``                  the Y (luma) channel / 255
``LA`` ``RGBA``            alpha must be 255 (opaque) at every pixel and is then dropped; the
                           rest follows ``L`` / ``RGB``. A pixel that is not opaque is refused:
                           its grey value is undefined (it depends on the background)
``P`` ``PA``               palette (with its transparency) expanded to ``RGBA``, then as ``RGBA``
``CMYK``                   refused: ink coverage has no defined grey value without a colour
                           profile (Pillow's conversion ignores it); convert to grayscale first
``LAB`` ``HSV`` ``La``     refused by name
``RGBa`` and others
=========================  ==================================================================

Colour PNGs with 16 bits per channel arrive from Pillow as 8-bit ``RGB``/``RGBA``/``LA``
(Pillow keeps the high byte); the rules above then apply. Store 16-bit data as grayscale.

Size limit: an image with more than :data:`MAX_PIXELS` pixels (Pillow's default
``Image.MAX_IMAGE_PIXELS``, 89,478,485: about 9459 x 9459; MIMIC-CXR-JPG images are at most
about 4k x 4k) is refused from its header, before any pixel is decoded, with an
:class:`ImageDecodeError` naming the file, its size and the limit. This replaces Pillow's
decompression-bomb warning (silenced for that reason) and its error (converted).
"""

from __future__ import annotations

import io
import os
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from xreal_bench.atomic import write_atomic

SQUARE_MODES = ("crop", "pad", "stretch")
INTENSITY_RULES = ("none", "minmax")

#: Largest image accepted, in pixels (Pillow's default ``Image.MAX_IMAGE_PIXELS``).
MAX_PIXELS = 89_478_485

#: Modes by rule; see the module docstring.
UINT16_MODES = ("I;16", "I;16B", "I;16L", "I;16N")
ALPHA_MODES = {"LA": "L", "RGBA": "RGB"}
REFUSED_MODES = {
    "CMYK": "ink coverage has no defined grey value without a colour profile; convert the file to grayscale first",
    "LAB": "a colour-space image; convert the file to grayscale first",
    "HSV": "a colour-space image; convert the file to grayscale first",
    "La": "premultiplied alpha; store a grayscale image without alpha",
    "RGBa": "premultiplied alpha; store a grayscale image without alpha",
}
SIGNED_16_RAWMODES = ("I;16S", "I;16BS", "I;16NS")

# Our own header check (MAX_PIXELS) refuses every image Pillow would warn about.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


class ImageDecodeError(RuntimeError):
    """An image file is missing, empty, truncated, too large, undecodable or of a refused mode."""


def too_large(name: object, pixels: int, size: tuple[int, int] | None = None) -> ImageDecodeError:
    shape = f"{size[0]} x {size[1]} = " if size else ""
    return ImageDecodeError(
        f"{name}: image is {shape}{pixels:,} pixels, more than the limit of {MAX_PIXELS:,} pixels "
        "(refused unread as a possible decompression bomb)"
    )


@contextmanager
def open_image(path: str | os.PathLike, data: bytes | None = None) -> Iterator[Image.Image]:
    """Open an image header (from ``data`` when given, else from ``path``), refusing more than :data:`MAX_PIXELS`.

    Only the header is read; ``path`` names the file in messages.
    """
    try:
        img = Image.open(io.BytesIO(data) if data is not None else path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        found = re.search(r"\((\d+) pixels\)", str(exc))
        if found is None:
            raise ImageDecodeError(f"{path}: {exc} (limit {MAX_PIXELS:,} pixels)") from None
        raise too_large(path, int(found[1])) from None
    with img:
        width, height = img.size
        if width * height > MAX_PIXELS:
            raise too_large(path, width * height, (width, height))
        yield img


def load_grayscale(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file to an ``H x W`` float32 array in [0, 1] by the rule of its mode."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise ImageDecodeError(f"{path}: file is empty (0 bytes)")
        with open_image(path) as img:
            refuse_signed_samples(img, path)
            img.load()
            return pil_to_gray(img, name=path)
    except ImageDecodeError:
        raise
    except FileNotFoundError:
        raise ImageDecodeError(f"{path}: file not found") from None
    except OSError as exc:
        if exc.errno is not None:  # the file could not be read (permission, directory, I/O error)
            raise ImageDecodeError(f"{path}: cannot read ({exc.strerror})") from None
        raise ImageDecodeError(f"{path}: cannot decode image ({exc})") from None
    except (ValueError, SyntaxError, EOFError) as exc:
        raise ImageDecodeError(f"{path}: cannot decode image ({exc})") from None


def refuse_signed_samples(img: Image.Image, name: object) -> None:
    """Refuse signed 16-bit samples, which Pillow decodes to mode ``I`` (call before ``load``)."""
    for tile in img.tile:
        args = tile[3]  # (codec, extents, offset, args) on every Pillow version
        rawmode = args[0] if isinstance(args, tuple) and args else args
        if rawmode in SIGNED_16_RAWMODES:
            raise ImageDecodeError(f"{name}: signed 16-bit samples ({rawmode}) are refused; store unsigned 16-bit (I;16)")


def pil_to_gray(img: Image.Image, *, name: object = "image") -> np.ndarray:
    """Convert a decoded PIL image to float32 grayscale in [0, 1] by the rule of its mode (module docstring)."""
    mode = img.mode
    if mode == "1":
        return np.asarray(img, dtype=np.float32)
    if mode == "L":
        return np.asarray(img, dtype=np.float32) / np.float32(255)
    if mode in UINT16_MODES:
        return np.asarray(img, dtype=np.float32) / np.float32(65535)
    if mode == "I":
        return int32_to_gray(np.asarray(img), name)
    if mode == "F":
        return float_to_gray(np.asarray(img, dtype=np.float32), name)
    if mode in ("RGB", "RGBX"):
        return np.asarray(img.convert("RGB").convert("L"), dtype=np.float32) / np.float32(255)
    if mode == "YCbCr":
        return np.asarray(img.getchannel("Y"), dtype=np.float32) / np.float32(255)
    if mode in ("P", "PA"):
        return pil_to_gray(img.convert("RGBA"), name=name)
    if mode in ALPHA_MODES:
        refuse_transparency(np.asarray(img.getchannel("A")), name)
        return pil_to_gray(img.convert(ALPHA_MODES[mode]), name=name)
    reason = REFUSED_MODES.get(mode, "no pixel rule for this mode")
    raise ImageDecodeError(f"{name}: image mode {mode!r} is refused: {reason}")


def int32_to_gray(values: np.ndarray, name: object) -> np.ndarray:
    lo, hi = (int(values.min()), int(values.max())) if values.size else (0, 0)
    if lo < 0 or hi > 65535:
        raise ImageDecodeError(
            f"{name}: 32-bit integer image (mode 'I') has values {lo}..{hi}; only 0..65535 is accepted (divided by 65535)"
        )
    return (values.astype(np.float64) / 65535.0).astype(np.float32)


def float_to_gray(values: np.ndarray, name: object) -> np.ndarray:
    finite = np.isfinite(values)
    if not finite.all():
        raise ImageDecodeError(f"{name}: float image (mode 'F') has {int((~finite).sum())} NaN/inf value(s); refused")
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if lo < 0.0 or hi > 1.0:
        raise ImageDecodeError(
            f"{name}: float image (mode 'F') has values {lo:.6g}..{hi:.6g}; only [0, 1] is accepted (not clipped)"
        )
    return values


def refuse_transparency(alpha: np.ndarray, name: object) -> None:
    clear = int((alpha < 255).sum())
    if clear:
        raise ImageDecodeError(
            f"{name}: {clear} of {alpha.size} pixels are not opaque (alpha < 255); the grey value of a transparent pixel "
            "is undefined, store the image without transparency"
        )


@dataclass(frozen=True)
class Geometry:
    """How an image becomes the run's square working image: the square mode and the intensity rule.

    One value for every place an image or map is squared (``[dataset] square`` and
    ``intensity``); see the module docstring for the order and the rules.
    """

    square: str = "crop"
    intensity: str = "none"

    def __post_init__(self) -> None:
        check_square(self.square)
        if self.intensity not in INTENSITY_RULES:
            raise ValueError(f"intensity rule must be one of {INTENSITY_RULES}, got {self.intensity!r}")

    @property
    def tag(self) -> str:
        """Folder-name key: the square mode, followed by the intensity rule unless it is ``"none"``."""
        return self.square if self.intensity == "none" else f"{self.square}-{self.intensity}"


def check_square(mode: str) -> None:
    if mode not in SQUARE_MODES:
        raise ValueError(f"square mode must be one of {SQUARE_MODES}, got {mode!r}")


def apply_intensity(image: np.ndarray, rule: str) -> np.ndarray:
    """The intensity rule on one whole image: ``"none"`` keeps it, ``"minmax"`` maps its own
    minimum to 0 and maximum to 1 (computed in float64); a constant image becomes all zeros."""
    image = np.asarray(image, dtype=np.float32)
    if rule == "none":
        return image
    if rule != "minmax":
        raise ValueError(f"intensity rule must be one of {INTENSITY_RULES}, got {rule!r}")
    lo, hi = float(image.min()), float(image.max())
    if hi == lo:
        return np.zeros_like(image)
    return ((image.astype(np.float64) - lo) / (hi - lo)).astype(np.float32)


def to_square(image: np.ndarray, size: int, mode: str = "crop") -> np.ndarray:
    """Centre-crop, pad or stretch to a square, then resize to ``size`` with antialiased bicubic."""
    check_square(mode)
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 3 and image.shape[0] == 1:
        image = image[0]
    if image.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale image, got shape {image.shape}")
    image = square_pixels(image, mode)
    if image.shape == (size, size):
        return np.ascontiguousarray(image)
    resized = Image.fromarray(image).resize((size, size), Image.Resampling.BICUBIC)
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)


def square_pixels(arr: np.ndarray, mode: str) -> np.ndarray:
    """The square before resizing: the centred crop (``crop``), the image centred on a zero
    canvas (``pad``), or the image itself (``stretch``: the resize changes its aspect)."""
    h, w = arr.shape
    if mode == "crop":
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        return arr[top : top + side, left : left + side]
    if mode == "pad" and h != w:
        side = max(h, w)
        canvas = np.zeros((side, side), dtype=arr.dtype)
        top, left = (side - h) // 2, (side - w) // 2
        canvas[top : top + h, left : left + w] = arr
        return canvas
    return arr


def conform(image: np.ndarray, size: int, geometry: Geometry) -> np.ndarray:
    """The intensity rule on the whole image, then the square and the resize: float32 in [0, 1]."""
    return to_square(apply_intensity(image, geometry.intensity), size, geometry.square)


def resize_label_map(label_map: np.ndarray, size: int, mode: str = "crop") -> np.ndarray:
    """Resize an integer label map (or bool mask) to ``size`` x ``size`` by nearest neighbour.

    The one rule for anatomy maps and pathology masks of the wrong size: a map covers the whole
    image, so it is squared like the image (:func:`to_square`'s ``mode``: centred crop, zero
    padding = background, or the whole map), then resized by nearest neighbour (labels are
    never blended). For a square map every mode is the plain nearest-neighbour resize.
    """
    check_square(mode)
    arr = np.asarray(label_map)
    dtype = arr.dtype
    arr = square_pixels(arr, mode)
    if arr.shape == (size, size):
        return np.ascontiguousarray(arr)
    img = Image.fromarray(arr.astype(np.uint8))
    return np.asarray(img.resize((size, size), Image.Resampling.NEAREST)).astype(dtype)


def quantize(image: np.ndarray, bits: int = 8) -> np.ndarray:
    """Round a [0, 1] float image to ``uint8`` (bits=8) or ``uint16`` (bits=16)."""
    if bits not in (8, 16):
        raise ValueError(f"bit depth must be 8 or 16, got {bits}")
    top = 255 if bits == 8 else 65535
    dtype = np.uint8 if bits == 8 else np.uint16
    return np.rint(np.clip(image, 0.0, 1.0) * top).astype(dtype)


def dequantize(image: np.ndarray) -> np.ndarray:
    """Inverse of :func:`quantize`: integer pixels back to float32 in [0, 1]."""
    top = 65535.0 if image.dtype == np.uint16 else 255.0
    return image.astype(np.float32) / top


#: The default geometry: centre crop, intensities kept.
PLAIN = Geometry()


def standardize(image: np.ndarray, size: int, bits: int = 8, geometry: Geometry = PLAIN) -> np.ndarray:
    """Intensity rule, square, resize and quantise like a stored run image; returns the quantised integers."""
    return quantize(conform(image, size, geometry), bits)


def load_standard(path: str | os.PathLike, size: int, bits: int = 8, geometry: Geometry = PLAIN) -> np.ndarray:
    """Decode a file and bring it to the run's image format (integer pixels)."""
    return standardize(load_grayscale(path), size, bits, geometry)


def save_png(path: str | os.PathLike, pixels: np.ndarray) -> None:
    """Write a ``uint8``/``uint16`` grayscale PNG atomically (temp file + rename)."""
    path = Path(path)
    if pixels.dtype not in (np.uint8, np.uint16) or pixels.ndim != 2:
        raise ValueError(f"save_png expects a 2-D uint8/uint16 array, got {pixels.dtype} {pixels.shape}")
    img = Image.fromarray(pixels)  # uint8 -> "L", uint16 -> "I;16"
    write_atomic(path, lambda f: img.save(f, format="PNG"))
