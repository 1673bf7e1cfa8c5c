"""The one image path shared by real and generated images.

Every image that is evaluated, shown or written goes through these functions, so real JPEGs
and generated PNGs are decoded, squared, resized and quantised identically:

1. :func:`load_grayscale` decodes to float32 in [0, 1]: 8-bit modes are divided by 255,
   16-bit modes (``I;16*``, ``I``) by 65535 — explicitly, never through PIL's clipping
   ``convert("RGB")``; colour is converted with ITU-R 601 luma; alpha is dropped.
2. :func:`to_square` centre-crops the longer side (``mode="crop"``, default) or pads it with
   black (``mode="pad"``), then resizes to ``size`` x ``size`` with PIL's antialiased bicubic
   filter on float data, clipped back to [0, 1].
3. :func:`quantize` rounds (never truncates) to 8- or 16-bit integers.

:func:`standardize` applies 2 and 3 then returns to float, i.e. the exact pixels of a stored
run image; it is what the metrics see for both sides.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from xreal_bench.atomic import write_atomic

SQUARE_MODES = ("crop", "pad")


class ImageDecodeError(RuntimeError):
    """An image file is missing, empty, truncated or otherwise undecodable."""


def load_grayscale(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file to an ``H x W`` float32 array in [0, 1]."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise ImageDecodeError(f"{path}: file is empty (0 bytes)")
        with Image.open(path) as img:
            img.load()
            return pil_to_gray(img)
    except ImageDecodeError:
        raise
    except FileNotFoundError:
        raise ImageDecodeError(f"{path}: file not found") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageDecodeError(f"{path}: cannot decode image ({exc})") from exc


def pil_to_gray(img: Image.Image) -> np.ndarray:
    """Convert a decoded PIL image to float32 grayscale in [0, 1], bit depth made explicit."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(img, dtype=np.float32) / 65535.0
    if mode == "I":
        arr = np.asarray(img, dtype=np.float64)
        scale = 65535.0 if arr.max(initial=0) > 255 else 255.0
        return np.clip(arr / scale, 0.0, 1.0).astype(np.float32)
    if mode == "F":
        return np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0)
    if mode == "1":
        return np.asarray(img, dtype=np.float32)
    if mode == "L":
        return np.asarray(img, dtype=np.float32) / 255.0
    if mode in ("LA", "P", "PA", "RGBA", "RGB", "CMYK", "YCbCr", "LAB", "HSV"):
        return np.asarray(img.convert("RGB").convert("L"), dtype=np.float32) / 255.0
    raise ImageDecodeError(f"unsupported image mode {mode!r}")


def to_square(image: np.ndarray, size: int, mode: str = "crop") -> np.ndarray:
    """Centre-crop (or pad) to a square, then resize to ``size`` with antialiased bicubic."""
    if mode not in SQUARE_MODES:
        raise ValueError(f"square mode must be one of {SQUARE_MODES}, got {mode!r}")
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 3 and image.shape[0] == 1:
        image = image[0]
    if image.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale image, got shape {image.shape}")
    h, w = image.shape
    if mode == "crop":
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        image = image[top : top + side, left : left + side]
    elif h != w:
        side = max(h, w)
        canvas = np.zeros((side, side), dtype=np.float32)
        top, left = (side - h) // 2, (side - w) // 2
        canvas[top : top + h, left : left + w] = image
        image = canvas
    if image.shape[0] == size:
        return np.ascontiguousarray(image)
    resized = Image.fromarray(image).resize((size, size), Image.Resampling.BICUBIC)
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)


def resize_label_map(label_map: np.ndarray, size: int) -> np.ndarray:
    """Resize an integer label map (or bool mask) to ``size`` x ``size`` by nearest neighbour.

    The one rule for anatomy maps and pathology masks of the wrong size: centre-crop to a
    square like :func:`to_square`, then nearest-neighbour resize (labels are never blended).
    """
    arr = np.asarray(label_map)
    dtype = arr.dtype
    h, w = arr.shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    arr = arr[top : top + side, left : left + side]
    if side == size:
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


def standardize(image: np.ndarray, size: int, bits: int = 8, mode: str = "crop") -> np.ndarray:
    """Square, resize and quantise like a stored run image; returns the quantised integers."""
    return quantize(to_square(image, size, mode), bits)


def load_standard(path: str | os.PathLike, size: int, bits: int = 8, mode: str = "crop") -> np.ndarray:
    """Decode a file and bring it to the run's image format (integer pixels)."""
    return standardize(load_grayscale(path), size, bits, mode)


def save_png(path: str | os.PathLike, pixels: np.ndarray) -> None:
    """Write a ``uint8``/``uint16`` grayscale PNG atomically (temp file + rename)."""
    path = Path(path)
    if pixels.dtype not in (np.uint8, np.uint16) or pixels.ndim != 2:
        raise ValueError(f"save_png expects a 2-D uint8/uint16 array, got {pixels.dtype} {pixels.shape}")
    img = Image.fromarray(pixels)  # uint8 -> "L", uint16 -> "I;16"
    write_atomic(path, lambda f: img.save(f, format="PNG"))
