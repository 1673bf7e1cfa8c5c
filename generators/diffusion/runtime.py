"""What every diffusion adapter does the same way: logger, weights, device, output."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from xreal_bench.generators.base import GeneratorContext, GeneratorOutput
from xreal_bench.generators.diffusion.conditions import Notes
from xreal_bench.generators.diffusion.images import to_gray
from xreal_bench.generators.diffusion.precision import denoiser_dtype
from xreal_bench.weights import Artifact, WeightsManager


def adapter_logger(context: GeneratorContext, name: str) -> logging.Logger:
    """The run's logger, or a named one when the adapter runs outside the harness."""
    return context.log if context.log is not None else logging.getLogger(f"xreal_bench.generators.{name}")


def require_weights(context: GeneratorContext, artifacts: Sequence[Artifact]) -> dict[str, Path]:
    """Each artifact's path by name, checked before anything is loaded (the manager's message if one is missing)."""
    manager = context.weights if context.weights is not None else WeightsManager()
    return {artifact.name: manager.require(artifact) for artifact in artifacts}


def device_and_dtype(context: GeneratorContext, log: logging.Logger) -> tuple[torch.device, torch.dtype]:
    device = context.torch_device()
    return device, denoiser_dtype(context.precision, device, log)


def to_output(images: torch.Tensor, notes: Notes, inputs: Sequence[Mapping[str, Any]] = ()) -> GeneratorOutput:
    """``(B, C, H, W)`` images in [0, 1] -> one ``1 x H x W`` grayscale CPU tensor per sample, with the
    batch's notes and the model inputs used for each image."""
    gray = to_gray(images.float()).clamp(0.0, 1.0).cpu()
    return GeneratorOutput(gray.unbind(0), notes.as_tuples(), inputs)
