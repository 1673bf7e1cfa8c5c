"""The DDIM loop of the LDM code base, with XReal's masked blending.

:func:`ddim_sample` is the LDM ``DDIMSampler.ddim_sampling`` loop on a diffusers scheduler:
start from Gaussian noise; at loop index ``i`` (timestep ``t``), *before* the denoising step,
optionally blend a known latent in::

    z = q_sample(z0, t) * mask + (1 - mask) * z      # q_sample draws fresh noise every step

(XReal's anatomy pass blends for the first ``steps`` loop indices, its pathology pass at every
step); then ``eps = denoise(z, t)`` and one DDIM step with per-sample variance noise. All random
numbers come from :class:`~xreal_bench.generators.diffusion.noise.SampleNoise`, in the order: initial latent,
then per step the blend noise (when blending) and the variance noise (when ``eta > 0``).
The latent is kept in float32 whatever the networks' precision.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from xreal_bench.generators.diffusion.noise import SampleNoise

if TYPE_CHECKING:
    from diffusers import DDIMScheduler

#: ``denoise(z, t) -> eps``: the (guided) noise prediction for latents ``z`` at timestep ``t``.
Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Blend:
    """Keep part of the latent on a known target (1 in ``mask``: follow ``target``)."""

    target: torch.Tensor  # z0, (B, C, h, w)
    mask: torch.Tensor  # (B, 1 or C, h, w), values in [0, 1]; fractional values mix
    steps: int | None = None  # blend before loop indices 0 .. steps-1; None = before every step


def classifier_free_guidance(eps_uncond: torch.Tensor, eps_cond: torch.Tensor, scale: float) -> torch.Tensor:
    """``eps_u + scale * (eps_c - eps_u)`` (scale 1 is the conditional prediction)."""
    return eps_uncond + scale * (eps_cond - eps_uncond)


def q_sample(scheduler: DDIMScheduler, z0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """``sqrt(abar_t) z0 + sqrt(1 - abar_t) noise`` — the forward process at timestep ``t``."""
    return scheduler.add_noise(z0, noise, t.reshape(1))


def ddim_sample(
    denoise: Denoiser,
    scheduler: DDIMScheduler,
    noise: SampleNoise,
    latent_shape: tuple[int, int, int],
    *,
    steps: int,
    eta: float,
    blend: Blend | None = None,
) -> torch.Tensor:
    """Run the DDIM loop for ``len(noise)`` samples of ``latent_shape``; returns the final latents (float32)."""
    scheduler.set_timesteps(steps)
    z = noise.randn(*latent_shape)
    for i, t in enumerate(scheduler.timesteps):
        if blend is not None and (blend.steps is None or i < blend.steps):
            known = q_sample(scheduler, blend.target, t, noise.randn(*latent_shape))
            z = known * blend.mask + (1.0 - blend.mask) * z
        eps = denoise(z, t)
        variance_noise = noise.randn(*latent_shape) if eta > 0 else None
        z = scheduler.step(eps, t, z, eta=eta, variance_noise=variance_noise).prev_sample
    return z
