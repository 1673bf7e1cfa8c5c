"""Dice overlap of anatomy masks: lungs, heart, aorta (metrics ``dice_*`` and ``dice``).

Masks are boolean ``[B, 4, H, W]`` arrays/tensors with the channels of
:data:`MASK_CHANNELS` (patient's sides: the left lung lies on the image's right on a frontal
view), as every :class:`~xreal_bench.metrics.evaluators.base.Segmenter` returns them.

Conventions (explicit, because peers differ):

- Dice per image and structure: ``2|P∩R| / (|P| + |R|)``; ``lungs`` is the union of both lungs.
- Both masks empty: **NaN** (undefined, not 1.0 and not 0.0). NaN values are excluded from
  means and counted (:class:`DiceSummary.n_excluded`). One side empty: 0.0.
- ``dice`` per image is the mean of that image's defined structure scores (NaN only when all
  three are undefined); the ``dice`` metric is the mean of the per-image ``dice`` values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xreal_bench.labels import ANATOMY_CLASSES, DICE_STRUCTURES
from xreal_bench.metrics.table import DICE

#: Channel order of segmenter masks: the anatomy label-map classes, value = channel index + 1.
MASK_CHANNELS: tuple[str, ...] = tuple(
    sorted((k for k in ANATOMY_CLASSES if ANATOMY_CLASSES[k]), key=lambda k: ANATOMY_CLASSES[k])
)
#: Structures scored, in report order; ``dice`` is their mean.
STRUCTURES: tuple[str, ...] = tuple(DICE_STRUCTURES)


def as_mask_array(masks, name: str) -> np.ndarray:
    """A boolean ``[B, 4, H, W]`` numpy array from a tensor/array (nonzero = inside)."""
    if hasattr(masks, "detach"):
        masks = masks.detach().cpu().numpy()
    arr = np.asarray(masks)
    if arr.ndim != 4 or arr.shape[1] != len(MASK_CHANNELS):
        raise ValueError(
            f"{name} must be a [B, {len(MASK_CHANNELS)}, H, W] mask array ({', '.join(MASK_CHANNELS)}), got shape {arr.shape}"
        )
    return arr.astype(bool, copy=False)


def label_map_to_masks(label_map) -> np.ndarray:
    """Anatomy label maps ``[B, H, W]`` or ``[H, W]`` (0 background, 1..4) to ``[B, 4, H, W]`` masks."""
    arr = np.asarray(label_map)
    arr = arr[None] if arr.ndim == 2 else arr
    if arr.ndim != 3:
        raise ValueError(f"label maps must be [H, W] or [B, H, W], got shape {np.asarray(label_map).shape}")
    return np.stack([arr == ANATOMY_CLASSES[name] for name in MASK_CHANNELS], axis=1)


def structure_masks(masks: np.ndarray) -> dict[str, np.ndarray]:
    """``{structure: bool [B, H, W]}`` from ``[B, 4, H, W]`` masks (lungs = left | right)."""
    return {name: np.asarray(masks[:, [v - 1 for v in values]].any(axis=1)) for name, values in DICE_STRUCTURES.items()}


def dice_scores(pred: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Per-image Dice of boolean ``[B, H, W]`` masks; NaN where both are empty."""
    intersection = np.logical_and(pred, ref).sum(axis=(1, 2), dtype=np.int64)
    total = pred.sum(axis=(1, 2), dtype=np.int64) + ref.sum(axis=(1, 2), dtype=np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, 2.0 * intersection / total, np.nan)


def dice_per_structure(pred, ref) -> dict[str, np.ndarray]:
    """Per-image Dice for ``lungs``, ``heart``, ``aorta`` and their mean ``dice`` (each ``[B]``)."""
    pred, ref = as_mask_array(pred, "pred"), as_mask_array(ref, "ref")
    if pred.shape != ref.shape:
        raise ValueError(f"pred {pred.shape} and ref {ref.shape} masks must have the same shape (resize first)")
    pred_s, ref_s = structure_masks(pred), structure_masks(ref)
    scores = {name: dice_scores(pred_s[name], ref_s[name]) for name in STRUCTURES}
    stacked = np.stack([scores[name] for name in STRUCTURES])
    defined = ~np.isnan(stacked)
    with np.errstate(invalid="ignore"):
        scores[DICE.name] = np.where(defined.any(axis=0), np.nansum(stacked, axis=0) / defined.sum(axis=0), np.nan)
    return scores


def left_lung_on_image_right(masks) -> float:
    """Share of images whose ``left_lung`` channel lies right of the ``right_lung`` channel.

    Compares the mean column of both channels, over images where both are non-empty (NaN if
    none). On real frontal radiographs a correct patient-side mapping gives a value near 1;
    a value near 0 means the segmenter's lungs are swapped.
    """
    masks = as_mask_array(masks, "masks")
    cols = np.arange(masks.shape[-1])
    left, right = masks[:, 0].sum(axis=1), masks[:, 1].sum(axis=1)  # [B, W] pixel counts per column
    both = (left.sum(axis=1) > 0) & (right.sum(axis=1) > 0)
    if not both.any():
        return float("nan")
    left_x = (left[both] @ cols) / left[both].sum(axis=1)
    right_x = (right[both] @ cols) / right[both].sum(axis=1)
    return float(np.mean(left_x > right_x))


@dataclass(frozen=True)
class DiceSummary:
    """Mean over images of one structure's Dice; NaN (both-empty) images excluded and counted."""

    mean: float
    n: int
    n_excluded: int


def summarize_dice(values: np.ndarray) -> DiceSummary:
    values = np.asarray(values, dtype=np.float64)
    valid = values[~np.isnan(values)]
    mean = float(valid.mean()) if valid.size else float("nan")
    return DiceSummary(mean=mean, n=int(valid.size), n_excluded=int(values.size - valid.size))
