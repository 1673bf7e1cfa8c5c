"""What the Hugging Face encoders share: strict offline snapshot loading and the Pillow input path.

:func:`load_model` loads a transformers model from a local snapshot folder only
(``local_files_only=True``) and refuses a snapshot that would leave any weight of the model
randomly initialised (transformers only logs a warning for missing keys).
:func:`pil_processor` asks for the Pillow implementation of a snapshot's image processor: the one
the model cards' ``AutoImageProcessor`` returned when they were written (transformers 4.x; 5.x
defaults to a torchvision implementation whose resize differs by up to one grey level).
:func:`gray_pil_images` turns the suite's ``[B, 1, H, W]`` [0, 1] input into the 8-bit images
the reference pipelines read from PNG files (rounding ``x * 255`` as :func:`xreal_bench.imaging.quantize`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from xreal_bench.weights import Artifact, MissingWeightsError, WeightsLoadError, WeightsManager

#: Threads resizing one batch with Pillow (which releases the GIL while resampling).
RESIZE_THREADS = max(1, min(8, os.cpu_count() or 1))


def load_model(model_class: Any, folder: Path, *, what: str, model_type: str, allow_unexpected: bool = False) -> Any:
    """``model_class`` from the snapshot in ``folder``, in float32 and eval mode.

    A snapshot of another architecture (``config.model_type`` not ``model_type``), an unreadable
    file, or weights that leave parameters missing or of the wrong shape raise
    :class:`WeightsLoadError`. ``allow_unexpected`` accepts extra weights (a full CLIP checkpoint
    holds the text tower too).
    """
    try:
        model, info = model_class.from_pretrained(folder, local_files_only=True, output_loading_info=True)
    except Exception as exc:  # noqa: BLE001 - any failure to read the snapshot is the same user error
        raise WeightsLoadError(f"{folder} is not a loadable {what} snapshot ({type(exc).__name__}: {exc})") from None
    found = getattr(model.config, "model_type", "")
    problems = []
    if found != model_type:
        problems.append(f"config model_type {found!r}, expected {model_type!r}")
    if info.get("missing_keys"):
        problems.append(f"missing weights {sorted(info['missing_keys'])[:5]}")
    if info.get("mismatched_keys"):
        problems.append(f"weights of the wrong shape {sorted(map(str, info['mismatched_keys']))[:5]}")
    if info.get("unexpected_keys") and not allow_unexpected:
        problems.append(f"unexpected weights {sorted(info['unexpected_keys'])[:5]}")
    if problems:
        raise WeightsLoadError(f"{folder} is not a complete {what} snapshot: {'; '.join(problems)}")
    return model.float().eval()


#: The image processor's file in a Hugging Face snapshot.
PROCESSOR_FILE = "preprocessor_config.json"


def pil_processor(folder: Path, *, what: str, weights: WeightsManager, artifact: Artifact) -> Any:
    """The snapshot's image processor in its Pillow implementation (read offline); a snapshot without its
    processor file is missing weights, named like any other missing file."""
    import transformers
    from transformers import AutoImageProcessor

    if not (folder / PROCESSOR_FILE).is_file():
        raise MissingWeightsError(weights.missing_message(artifact, [folder / PROCESSOR_FILE]))

    major = int(transformers.__version__.split(".")[0])
    backend = {"backend": "pil"} if major >= 5 else {"use_fast": False}
    try:
        return AutoImageProcessor.from_pretrained(folder, local_files_only=True, **backend)
    except Exception as exc:  # noqa: BLE001 - any failure to read the snapshot is the same user error
        raise WeightsLoadError(f"{folder}: unreadable {what} image processor ({type(exc).__name__}: {exc})") from None


def gray_pil_images(images: torch.Tensor) -> list[Image.Image]:
    """``[B, 1, H, W]`` floats in [0, 1] -> 8-bit grey (mode ``L``) Pillow images: ``round(x * 255)``, half to
    even, as :func:`xreal_bench.imaging.quantize` (computed where the images are, then copied as bytes)."""
    pixels = torch.round(images[:, 0].detach().clamp(0, 1) * 255).to(torch.uint8).cpu().numpy()
    return [Image.fromarray(p) for p in pixels]


def resized_batch(images: torch.Tensor, resize: Callable[[Image.Image], Image.Image]) -> torch.Tensor:
    """Each image through :func:`gray_pil_images` and ``resize`` (in threads), stacked as ``uint8 [B, h, w]``."""
    gray = gray_pil_images(images)
    with ThreadPoolExecutor(max_workers=min(RESIZE_THREADS, len(gray) or 1)) as pool:
        resized: Sequence[Image.Image] = list(pool.map(resize, gray))
    return torch.from_numpy(np.stack([np.asarray(im, dtype=np.uint8) for im in resized]))


def model_input(pixels: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``uint8 [B, h, w]`` -> float32 ``[B, 3, h, w]``: ``x / 255`` on 3 identical channels, then ``(x - mean) / std``
    per channel (torchvision's ``ToTensor`` then ``Normalize``, in float32)."""
    x = pixels.to(torch.float32).div(255)[:, None].expand(-1, len(mean), -1, -1)
    m = torch.as_tensor(mean, dtype=torch.float32, device=x.device)[None, :, None, None]
    s = torch.as_tensor(std, dtype=torch.float32, device=x.device)[None, :, None, None]
    return (x - m) / s
