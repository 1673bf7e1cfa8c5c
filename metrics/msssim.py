"""MS-SSIM, in the two uses the literature mixes up (named apart here):

- :func:`paired_ms_ssim` (metric ``ms_ssim``, XReal's use): each real test image against the
  image generated from that same case; higher = more faithful.
- :func:`diversity_ms_ssim` (RoentGen's use): mean pairwise MS-SSIM among several samples of
  one condition; lower = more diverse.

Both call ``pytorch_msssim.ms_ssim`` with ``data_range=1.0`` explicitly: its default of 255
silently returns ~1.0 for [0, 1] images. Five scales with the 11-px Gaussian window need
``min(H, W) > 160``. Pairs go through one at a time: the value of a pair then never depends on
which other images shared its batch, and on CPU pytorch-msssim's grouped convolutions are
4-5x faster per image at batch 1 than at batch 32 (``benchmarks/eval_throughput.py``).
"""

from __future__ import annotations

import torch
from pytorch_msssim import ms_ssim

#: Smallest image side pytorch-msssim accepts (5 scales, 11-px window: side > 10 * 2**4).
MIN_SIDE = 161


def check_images(images: torch.Tensor, name: str) -> torch.Tensor:
    """Validate a ``[B, 1, H, W]`` float batch in [0, 1]; returns it (float32 or float64)."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 1:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"{name} must be a [B, 1, H, W] tensor, got {shape}")
    if not images.is_floating_point():
        raise TypeError(f"{name} must be a float tensor in [0, 1], got {images.dtype}")
    h, w = images.shape[-2:]
    if min(h, w) < MIN_SIDE:
        raise ValueError(
            f"MS-SSIM (5 scales, 11-px window) needs min(H, W) > {MIN_SIDE - 1}; {name} is {h}x{w}. "
            f"Evaluate at a resolution of at least {MIN_SIDE} px (e.g. 256)."
        )
    lo, hi = float(images.min()), float(images.max())
    if not (0.0 <= lo and hi <= 1.0):  # also catches NaN
        raise ValueError(f"{name} must lie in [0, 1] (data_range=1.0), got values in [{lo:.4g}, {hi:.4g}]")
    return images if images.dtype in (torch.float32, torch.float64) else images.float()


def paired_ms_ssim(real: torch.Tensor, generated: torch.Tensor) -> torch.Tensor:
    """MS-SSIM of each pair ``(real[i], generated[i])``: a ``[B]`` tensor (higher = closer)."""
    real, generated = check_images(real, "real"), check_images(generated, "generated")
    if real.shape != generated.shape:
        raise ValueError(f"real {tuple(real.shape)} and generated {tuple(generated.shape)} must have the same shape")
    generated = generated.to(device=real.device, dtype=real.dtype)
    return torch.cat([ms_ssim(r[None], g[None], data_range=1.0, size_average=False) for r, g in zip(real, generated)])


def diversity_ms_ssim(samples: torch.Tensor) -> float:
    """Mean MS-SSIM over all ``N(N-1)/2`` pairs of ``N >= 2`` samples of one condition (lower = more diverse)."""
    samples = check_images(samples, "samples")
    n = samples.shape[0]
    if n < 2:
        raise ValueError(f"diversity MS-SSIM needs at least 2 samples of the condition, got {n}")
    first, second = torch.triu_indices(n, n, offset=1, device=samples.device)
    return float(paired_ms_ssim(samples[first], samples[second]).double().mean())
