"""Run precision: which dtype the denoising networks use on a device.

fp16 / bf16 apply on GPUs only; on the CPU every network runs in fp32 (half precision there
is slow and poorly supported), and the downgrade is logged. Autoencoders and text encoders
always run in fp32: they run once or twice per image, and KL autoencoders are known to
overflow in fp16, while the 100 UNet steps dominate the run time.
"""

from __future__ import annotations

import logging

import torch

DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def denoiser_dtype(precision: str, device: torch.device, log: logging.Logger) -> torch.dtype:
    """The dtype of UNet / ControlNet weights for ``precision`` (``fp32``/``fp16``/``bf16``) on ``device``."""
    if precision not in DTYPES:
        raise ValueError(f"precision must be one of {', '.join(DTYPES)}, got {precision!r}")
    if device.type != "cuda" and precision != "fp32":
        log.warning("precision %s requested on %s: running in fp32 (half precision is used on CUDA only)", precision, device)
        return torch.float32
    return DTYPES[precision]
