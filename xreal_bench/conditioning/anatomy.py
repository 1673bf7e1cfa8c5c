"""Anatomy label maps: uint8, 0 background, 1 left lung, 2 right lung, 3 heart, 4 aorta.

"Left" and "right" are always the **patient's** sides (XReal's convention, see
:data:`xreal_bench.labels.ANATOMY_CLASSES`): on a standard frontal (PA/AP) radiograph the
patient faces the viewer, so the patient's left lung (value 1) lies on the **image's right**.

Two sources, both giving maps square at the conditioning resolution, in the run's
:class:`~xreal_bench.imaging.Geometry`:

- :class:`FolderAnatomy` reads ``<anatomy_dir>/<case_id>.png`` holding values 0..4, or
  XReal's x64 encoding (0/64/128/192/255 -> 0..4). A map covers its whole image; maps of
  another size go through :func:`xreal_bench.imaging.resize_label_map` with the run's square
  mode (centred crop, zero padding, or the whole map stretched; nearest neighbour), so a map
  drawn on the original image lands on the squared image's pixels in every mode.
- :class:`SegmenterAnatomy` runs a :class:`Segmenter` on each real image (decoded, stretched
  by the intensity rule and squared by :func:`xreal_bench.imaging.conform` at the
  conditioning resolution, exactly as the real image) and caches the map at
  ``<cache_dir>/anatomy/<weights_hash[:16]>/<geometry tag>-<resolution>/<image sha256>.png``
  (tag: the square mode, plus ``-minmax`` under that intensity rule, e.g. ``stretch-minmax-256``):
  a changed image or changed weights gives a new key; the geometry folder keeps maps made for
  another resolution, square mode or intensity rule apart.

Overlapping masks become one label map by painting left lung, right lung, heart, aorta in
that order, later ones winning: aorta over heart over right lung over left lung.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Protocol

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from xreal_bench.errors import UserFacingError
from xreal_bench.imaging import Geometry, conform, load_grayscale, resize_label_map, save_png
from xreal_bench.types import Case
from xreal_bench.weights import sha256_file

if TYPE_CHECKING:
    import torch

#: Values of XReal's example masks (label x 64, 255 for the aorta) -> labels.
XREAL_ENCODING = {0: 0, 64: 1, 128: 2, 192: 3, 255: 4}
#: Segmenter channel order -> label value (painting order: later wins on overlaps).
CHANNEL_LABELS = (1, 2, 3, 4)
CACHED_MAPS = 64  # label maps kept in memory per AnatomyMaps (a case's samples are built together)


class AnatomyError(UserFacingError):
    """Anatomy maps are missing or unreadable."""


class Segmenter(Protocol):
    """Anatomy segmenter: ``[B,1,H,W]`` float in [0, 1] -> ``[B,4,H,W]`` bool masks of
    (left lung, right lung, heart, aorta), patient's sides."""

    name: str
    weights_hash: str

    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...


def decode_label_map(pixels: np.ndarray, where: str) -> np.ndarray:
    """Label values 0..4 from a stored map (plain 0..4 or XReal's x64 encoding)."""
    arr = np.asarray(pixels)
    if arr.ndim == 3:
        if not all(np.array_equal(arr[..., 0], arr[..., c]) for c in range(1, min(arr.shape[2], 3))):
            raise AnatomyError(f"{where}: colour label map; expected one channel of values 0..4 (or 0/64/128/192/255)")
        arr = arr[..., 0]
    values = set(np.unique(arr).tolist())
    if values <= {0, 1, 2, 3, 4}:
        return arr.astype(np.uint8)
    if values <= set(XREAL_ENCODING):
        lut = np.zeros(256, dtype=np.uint8)
        for stored, label in XREAL_ENCODING.items():
            lut[stored] = label
        return lut[arr.astype(np.uint8)]
    odd = sorted(values - {0, 1, 2, 3, 4} - set(XREAL_ENCODING))[:8]
    raise AnatomyError(
        f"{where}: unexpected label values {odd}; expected 0..4 (background, left lung, right lung, "
        "heart, aorta) or XReal's 0/64/128/192/255"
    )


def read_label_map(path: Path, size: int, square: str = "crop") -> np.ndarray:
    """Read, decode and bring one stored map to ``size`` x ``size`` by the ``square`` mode of its image."""
    try:
        with Image.open(path) as img:
            pixels = np.asarray(img)
    except (OSError, ValueError) as exc:
        raise AnatomyError(f"{path}: cannot read the anatomy map ({exc})") from None
    labels = decode_label_map(pixels, str(path))
    return resize_label_map(labels, size, square) if labels.shape != (size, size) else labels


def masks_to_label_map(masks: np.ndarray) -> np.ndarray:
    """``[4,H,W]`` bool masks (left lung, right lung, heart, aorta) -> uint8 label map."""
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim != 3 or masks.shape[0] != len(CHANNEL_LABELS):
        raise ValueError(f"expected masks of shape [4,H,W], got {masks.shape}")
    out = np.zeros(masks.shape[1:], dtype=np.uint8)
    for channel, label in enumerate(CHANNEL_LABELS):
        out[masks[channel]] = label
    return out


class AnatomyMaps:
    """Prepared label maps, read-only: ``load(case_id)`` gives the case's map (a shared,
    non-writable array; recently read maps stay in memory)."""

    def __init__(self, paths: Mapping[str, Path], resolution: int, square: str):
        self.paths: Mapping[str, Path] = MappingProxyType(dict(paths))
        self.resolution = resolution
        self.square = square
        self._read = functools.lru_cache(maxsize=CACHED_MAPS)(self._read_path)

    def load(self, case_id: str) -> np.ndarray:
        try:
            path = self.paths[case_id]
        except KeyError:
            raise RuntimeError(f"no anatomy map prepared for case {case_id!r}") from None
        return self._read(path)

    def _read_path(self, path: Path) -> np.ndarray:
        labels = read_label_map(path, self.resolution, self.square)
        labels.setflags(write=False)  # shared between the samples of a case
        return labels


class AnatomySource:
    """Finds or makes the label map of each case: ``maps(cases)`` -> :class:`AnatomyMaps`."""

    def __init__(self, resolution: int, geometry: Geometry):
        self.resolution = resolution
        self.geometry = geometry

    def maps(self, cases: Sequence[Case], progress: bool = True) -> AnatomyMaps:
        """The maps of ``cases``, every one found or made now; errors name what is missing."""
        return AnatomyMaps(self.locate(cases, progress), self.resolution, self.geometry.square)

    def locate(self, cases: Sequence[Case], progress: bool) -> dict[str, Path]:
        raise NotImplementedError


class FolderAnatomy(AnatomySource):
    """``<anatomy_dir>/<case_id>.png`` per case."""

    def __init__(self, anatomy_dir: Path, resolution: int, geometry: Geometry):
        super().__init__(resolution, geometry)
        self.dir = Path(anatomy_dir)

    def locate(self, cases: Sequence[Case], progress: bool) -> dict[str, Path]:
        if not self.dir.is_dir():
            raise AnatomyError(
                f"anatomy folder not found: {self.dir}\n  set [conditioning].anatomy_dir to a folder of "
                "<case_id>.png label maps, or use [conditioning].anatomy = 'pspnet'"
            )
        paths = {c.case_id: self.dir / f"{c.case_id}.png" for c in cases}
        missing = [cid for cid, p in paths.items() if not p.is_file()]
        if missing:
            shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
            raise AnatomyError(
                f"{len(missing)} of {len(paths)} cases have no anatomy map in {self.dir} "
                f"(looked for <case_id>.png: {shown})\n  add the maps, or use [conditioning].anatomy = 'pspnet'"
            )
        return paths

    def maps(self, cases: Sequence[Case], progress: bool = True) -> AnatomyMaps:
        maps = super().maps(cases, progress)
        for case_id in tqdm(maps.paths, disable=not progress, desc="checking anatomy maps", unit="map"):
            maps.load(case_id)  # decode + value check now, not mid-generation
        return maps


class SegmenterAnatomy(AnatomySource):
    """Label maps from a segmenter, cached on disk by image content and weights."""

    def __init__(
        self,
        factory: Callable[[], Segmenter],
        cache_dir: Path,
        resolution: int,
        geometry: Geometry,
        batch_size: int = 16,
        *,
        variant: str = "",
    ):
        super().__init__(resolution, geometry)
        self.factory = factory
        self.cache_dir = Path(cache_dir)
        self.batch_size = batch_size
        self.variant = variant
        self.segmenter: Segmenter | None = None

    def map_dir(self, weights_hash: str) -> Path:
        """The cache folder of this segmenter's weights, geometry, resolution and ``variant`` (whatever
        else shapes its maps, e.g. which lung PSPNet's "Left Lung" channel is)."""
        suffix = f"-{self.variant}" if self.variant else ""
        return self.cache_dir / "anatomy" / weights_hash[:16] / f"{self.geometry.tag}-{self.resolution}{suffix}"

    def built_segmenter(self) -> Segmenter:
        """The segmenter, built on first use (only when maps are missing from the cache)."""
        if self.segmenter is None:
            self.segmenter = self.factory()
        return self.segmenter

    def locate(self, cases: Sequence[Case], progress: bool) -> dict[str, Path]:
        segmenter = self.built_segmenter()
        folder = self.map_dir(segmenter.weights_hash)
        paths = {
            c.case_id: folder / f"{sha256_file(c.image_path)}.png"
            for c in tqdm(cases, disable=not progress, desc="hashing images", unit="img")
        }
        todo = [c for c in cases if not paths[c.case_id].is_file()]
        bar = tqdm(total=len(todo), disable=not progress or not todo, desc=f"segmenting ({segmenter.name})", unit="img")
        for start in range(0, len(todo), self.batch_size):
            batch = todo[start : start + self.batch_size]
            for case, labels in zip(batch, self.segment(batch)):
                save_png(paths[case.case_id], labels)
            bar.update(len(batch))
        bar.close()
        return paths

    def segment(self, cases: Sequence[Case]) -> list[np.ndarray]:
        import torch

        images = np.stack([conform(load_grayscale(c.image_path), self.resolution, self.geometry) for c in cases])
        with torch.no_grad():
            masks = self.built_segmenter()(torch.from_numpy(images)[:, None])
        if masks.dtype != torch.bool or tuple(masks.shape[:2]) != (len(cases), 4) or masks.ndim != 4:
            raise TypeError(
                f"segmenter {self.built_segmenter().name!r} returned {masks.dtype} {tuple(masks.shape)}; "
                f"expected a bool tensor of shape [{len(cases)},4,H,W]"
            )
        out = []
        for m in masks.cpu().numpy():
            labels = masks_to_label_map(m)
            out.append(labels if labels.shape == (self.resolution,) * 2 else resize_label_map(labels, self.resolution))
        return out
