"""The memorization audit's pixel re-check: SSIM of an image and a training image after alignment.

Alignment: the integer translation ``(dy, dx)``, ``|dy|, |dx| <= max_shift`` (default
:data:`MAX_SHIFT_FRACTION` of the side), that maximises the normalised cross-correlation of the
two images over their overlap — Pearson correlation of the overlapping pixels, means and norms
taken over the overlap only, all shifts at once from FFT correlations (float64, zero-padded by the
largest shift). Shift
``(dy, dx)`` pairs ``image[y, x]`` with ``reference[y - dy, x - dx]``; among equal correlations the
first in row-major ``(dy, dx)`` order wins. SSIM is then pytorch-msssim's single-scale SSIM
(Gaussian window 11, sigma 1.5, ``data_range = 1``) on the overlapping rectangles.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from pytorch_msssim import ssim

#: Largest translation searched, as a fraction of the image side (a re-crop or small shift of a training image).
MAX_SHIFT_FRACTION = 0.125
#: Pixel variance below which an overlap counts as flat (its correlation is taken as 0).
FLAT = 1e-12


@dataclass(frozen=True)
class Aligned:
    ssim: float
    shift: tuple[int, int]


def default_max_shift(side: int) -> int:
    return int(side * MAX_SHIFT_FRACTION)


def best_shifts(image: torch.Tensor, references: torch.Tensor, max_shift: int) -> list[tuple[int, int]]:
    """Per reference ``[K, H, W]``, the translation maximising the overlap's NCC with ``image`` ``[H, W]``.

    Correlations ``c[s] = sum_p f[p] g[p - s]`` come from FFTs zero-padded by ``max_shift`` (enough for
    every searched shift not to wrap), each image's transform computed once."""
    h, w = image.shape
    size = (h + max_shift + 1, w + max_shift + 1)
    spectrum = lambda x: torch.fft.rfft2(x, s=size)  # noqa: E731
    ones, a, aa = spectrum(torch.ones_like(image)), spectrum(image), spectrum(image * image)
    b, bb = spectrum(references), spectrum(references * references)

    def correlation(f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return torch.fft.irfft2(f * g.conj(), s=size)

    n = correlation(ones, ones).clamp_min(1.0)
    sum_a, sum_aa = correlation(a, ones), correlation(aa, ones)
    sum_b, sum_bb, sum_ab = correlation(ones, b), correlation(ones, bb), correlation(a, b)
    covariance = sum_ab - sum_a * sum_b / n
    variance = (sum_aa - sum_a**2 / n).clamp_min(0.0) * (sum_bb - sum_b**2 / n).clamp_min(0.0)
    ncc = torch.where(variance > FLAT, covariance / variance.clamp_min(FLAT).sqrt(), torch.zeros_like(covariance))
    offsets = torch.arange(-max_shift, max_shift + 1, device=image.device)
    window = ncc[:, offsets % size[0]][:, :, offsets % size[1]]  # [K, 2m+1, 2m+1], rows dy, columns dx
    flat = window.reshape(len(references), -1).argmax(dim=1).tolist()
    side = 2 * max_shift + 1
    return [(int(offsets[i // side]), int(offsets[i % side])) for i in flat]


def overlap(image: torch.Tensor, reference: torch.Tensor, shift: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The rectangles of ``image`` and ``reference`` that ``shift`` pairs."""
    (h, w), (dy, dx) = image.shape, shift
    a = image[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)]
    b = reference[max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)]
    return a, b


def aligned_ssim(
    image: np.ndarray, references: list[np.ndarray], *, device: str = "cpu", max_shift: int | None = None
) -> list[Aligned]:
    """SSIM of ``image`` with each reference after alignment (all ``[H, W]`` in [0, 1], one size)."""
    if not references:
        return []
    dev = torch.device(device if torch.device(device).type != "mps" else "cpu")  # float64 FFTs
    a = torch.as_tensor(np.asarray(image, dtype=np.float64), device=dev)
    refs = torch.as_tensor(np.stack([np.asarray(r, dtype=np.float64) for r in references]), device=dev)
    if refs.shape[1:] != a.shape:
        raise ValueError(f"reference size {tuple(refs.shape[1:])} differs from the image's {tuple(a.shape)}")
    shift_limit = default_max_shift(min(a.shape)) if max_shift is None else max_shift
    out = []
    for reference, shift in zip(refs, best_shifts(a, refs, shift_limit), strict=True):
        x, y = overlap(a, reference, shift)
        value = ssim(x[None, None], y[None, None], data_range=1.0, size_average=False)
        out.append(Aligned(float(value[0]), shift))
    return out
