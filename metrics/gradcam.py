"""Grad-CAM (Selvaraju et al., ICCV 2017) and the lesion-in-box measures read off its maps.

Grad-CAM of class ``c`` on a feature map ``A`` (``[C, h, w]``, the last convolutional layer as the
classifier head sees it): ``w_k = mean_{i,j} d y_c / d A_k[i, j]`` and ``L = ReLU(sum_k w_k A_k)``,
bilinearly upsampled to the image (``align_corners=False``). ``y_c`` is the pre-sigmoid logit.

On a map ``L >= 0`` (its "energy" is the sum of its values over a region), with a boolean box mask:

- :func:`in_box_share`: energy inside the box / total energy (NaN when the total is 0);
- :func:`pointing_hit`: 1.0 when the map's maximum (the first maximal pixel in row-major order) lies
  in the box, else 0.0 (Zhang et al. 2016's pointing game without tolerance; NaN for an all-zero map);
- :func:`laterality_share`: energy in the lung holding most of the box's area / energy in both lungs
  (NaN when the box touches neither lung, overlaps both equally, or the lungs hold no energy).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def grad_cam(activations: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """``[B, h, w]`` Grad-CAM maps at the feature map's size (detached).

    ``activations``: ``[B, C, h, w]``, part of the graph that computed ``scores`` (``[B]``, one
    target per image: each image's score depends on its own activations only).
    """
    if activations.ndim != 4 or scores.shape != (activations.shape[0],):
        raise ValueError(
            f"grad_cam needs [B, C, h, w] activations and [B] scores, got {tuple(activations.shape)}, {tuple(scores.shape)}"
        )
    (gradients,) = torch.autograd.grad(scores.sum(), activations)
    weights = gradients.mean(dim=(2, 3), keepdim=True)
    return F.relu((weights * activations).sum(dim=1)).detach()


def upsample(cams: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``[B, h, w]`` maps bilinearly resized to ``size`` (``align_corners=False``), kept >= 0."""
    if tuple(cams.shape[-2:]) == tuple(size):
        return cams
    return F.interpolate(cams[:, None], size=size, mode="bilinear", align_corners=False)[:, 0].clamp_min(0.0)


def in_box_share(cam: np.ndarray, box: np.ndarray) -> float:
    """Energy of ``cam`` inside the boolean mask ``box`` over its total energy."""
    total = float(cam.sum(dtype=np.float64))
    return float(cam[box].sum(dtype=np.float64)) / total if total > 0 else float("nan")


def pointing_hit(cam: np.ndarray, box: np.ndarray) -> float:
    """1.0 when the first maximal pixel of ``cam`` (row-major) lies in ``box``, 0.0 when not."""
    if not cam.size or float(cam.max()) <= 0:
        return float("nan")
    return float(box.flat[int(np.argmax(cam))])


def laterality_share(cam: np.ndarray, box: np.ndarray, left_lung: np.ndarray, right_lung: np.ndarray) -> float:
    """Energy in the lung covering more of ``box`` over the energy in both lungs."""
    left, right = int(np.count_nonzero(box & left_lung)), int(np.count_nonzero(box & right_lung))
    if left == right:  # neither lung (0 = 0) or no side named
        return float("nan")
    named = left_lung if left > right else right_lung
    both = float(cam[left_lung | right_lung].sum(dtype=np.float64))
    return float(cam[named].sum(dtype=np.float64)) / both if both > 0 else float("nan")
