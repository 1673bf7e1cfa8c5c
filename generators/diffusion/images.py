"""Image-space conventions of the adapted models.

- Value ranges: XReal and its ControlNet work on images in [0, 1]; Cheff and its SR model in
  [-1, 1]; every adapter returns [0, 1] (the Generator contract).
- Colour: the autoencoders decode 3 channels; the benchmark is grayscale, so outputs are
  reduced with the ITU-R 601 luma weights — the weights of PIL's ``convert("L")``, which is how
  :mod:`xreal_bench.imaging` reads an RGB file, so an adapter's output equals what the harness
  would read back from the same image saved in colour.
- Resizing inside the algorithm: XReal resizes with OpenCV's ``INTER_CUBIC``, i.e. Keys' cubic
  kernel with a = -0.75, pixel-centre alignment and no antialiasing — exactly
  ``F.interpolate(mode="bicubic", align_corners=False, antialias=False)``.
  (Maps of the wrong size *coming into* an adapter go through
  :func:`xreal_bench.imaging.resize_label_map`, the project's one rule.)
- 8-bit round trips: :func:`pil_gray_8bit` is the Cheff notebook's
  ``to_tensor(to_grayscale(to_pil_image(x)))``, integer arithmetic and all.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: ITU-R 601 luma weights (PIL "L" conversion).
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def unit_to_signed(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> [-1, 1]."""
    return x * 2.0 - 1.0


def signed_to_unit(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1], clamped (the originals clamp to [-1, 1] before rescaling)."""
    return (x.clamp(-1.0, 1.0) + 1.0) / 2.0


def to_gray(x: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` -> ``(B, 1, H, W)`` by ITU-R 601 luma; 1-channel input is returned as is."""
    if x.shape[1] == 1:
        return x
    if x.shape[1] != 3:
        raise ValueError(f"expected 1 or 3 channels, got {x.shape[1]}")
    weights = torch.tensor(LUMA_WEIGHTS, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * weights).sum(dim=1, keepdim=True)


def cv2_cubic_resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize ``(B, C, H, W)`` to ``size`` x ``size`` like ``cv2.resize(..., INTER_CUBIC)``."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False, antialias=False)


#: PIL's fixed-point RGB -> L weights (``L24`` in libImaging/Convert.c), rounding by + 0x8000 >> 16.
PIL_LUMA_FIXED = (19595, 38470, 7471)


def pil_gray_8bit(x: torch.Tensor) -> torch.Tensor:
    """``(B, 3 or 1, H, W)`` in [0, 1] -> ``(B, 1, H, W)`` as ``to_tensor(to_grayscale(to_pil_image(x)))``:
    each channel *truncated* to uint8 (``to_pil_image``: ``(x * 255).astype(uint8)``; ``mul(255).byte()``
    in older torchvision), PIL's rounded fixed-point luma, then divided by 255."""
    q = (x.float().clamp(0.0, 1.0) * 255).to(torch.uint8).to(torch.int64)
    if q.shape[1] == 3:
        r, g, b = PIL_LUMA_FIXED
        q = (q[:, 0:1] * r + q[:, 1:2] * g + q[:, 2:3] * b + 0x8000) >> 16
    elif q.shape[1] != 1:
        raise ValueError(f"expected 1 or 3 channels, got {q.shape[1]}")
    return q.to(torch.float32) / 255
