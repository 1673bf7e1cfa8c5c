"""The noise schedules of the released models, as diffusers schedulers.

LDM (XReal, its ControlNet, Cheff): 1000 training steps, the LDM "linear" schedule
``betas = linspace(sqrt(0.0015), sqrt(0.0295), 1000)**2`` — diffusers' ``scaled_linear``. The
LDM computes ``alphas_cumprod`` in float64 and stores it as float32; diffusers multiplies in
float32 (up to 8e-7 relative apart), so :func:`ldm_ddim_scheduler` installs the LDM's values.
Its DDIM sampler (``ddim_discretize="uniform"``) visits ``t = 1, 1 + c, ..., 1 + (S-1)c`` with
``c = 1000 // S`` from the top, and the last step's "previous alpha" is ``alphas_cumprod[0]``:
diffusers' ``timestep_spacing="leading"``, ``steps_offset=1``, ``set_alpha_to_one=False``. The
update itself (eps prediction, no clipping, ``sigma = eta * sqrt((1-a_prev)/(1-a) * (1-a/a_prev))``)
is diffusers' ``DDIMScheduler.step`` with ``clip_sample=False``; ``tests/test_diffusion_sampler.py``
checks all of this against hand computation.

Cheff's super-resolution model: cosine schedule over 2000 steps with betas clipped to
[0.0001, 0.9999] (diffusers' ``squaredcos_cap_v2`` clips differently, so the betas are passed
explicitly), DDIM on ``t = 0, c, ..., (S-1)c`` (no offset); or ancestral DDPM over all steps with
the coefficients of Cheff's ``BaseSchedule`` (:class:`DDPMSchedule`, float32 as the original).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from diffusers import DDIMScheduler


def ldm_linear_alphas_cumprod(linear_start: float, linear_end: float, timesteps: int) -> torch.Tensor:
    """``alphas_cumprod`` of the LDM linear schedule, computed in float64 and stored in float32 as the LDM does."""
    betas = np.linspace(linear_start**0.5, linear_end**0.5, timesteps, dtype=np.float64) ** 2
    return torch.tensor(np.cumprod(1.0 - betas), dtype=torch.float32)


def ldm_ddim_scheduler(linear_start: float = 0.0015, linear_end: float = 0.0295, timesteps: int = 1000) -> DDIMScheduler:
    """A ``DDIMScheduler`` reproducing the LDM DDIM sampler on the LDM linear schedule."""
    scheduler = DDIMScheduler(
        num_train_timesteps=timesteps,
        beta_start=linear_start,
        beta_end=linear_end,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        timestep_spacing="leading",
        prediction_type="epsilon",
    )
    exact = ldm_linear_alphas_cumprod(linear_start, linear_end, timesteps)
    scheduler.alphas_cumprod = exact
    scheduler.final_alpha_cumprod = exact[0]
    return scheduler


def cosine_betas(timesteps: int, s: float = 0.008) -> torch.Tensor:
    """Cheff SR's cosine betas (float32 as in the original): ``1 - abar(t+1)/abar(t)``, clipped to [1e-4, 0.9999]."""
    x = torch.linspace(0, timesteps, timesteps + 1)
    abar = torch.cos(((x / timesteps) + s) / (1 + s) * math.pi * 0.5) ** 2
    abar = abar / abar[0]
    return torch.clip(1 - (abar[1:] / abar[:-1]), 0.0001, 0.9999)


def sr3_ddim_scheduler(timesteps: int = 2000) -> DDIMScheduler:
    """A ``DDIMScheduler`` reproducing Cheff SR's DDIM sampler (cosine betas, timesteps without offset)."""
    return DDIMScheduler(
        num_train_timesteps=timesteps,
        trained_betas=cosine_betas(timesteps).tolist(),
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=0,
        timestep_spacing="leading",
        prediction_type="epsilon",
    )


@dataclass(frozen=True)
class DDPMSchedule:
    """The per-timestep coefficients Cheff's SR ``Diffusor`` uses (``cheff/sr/schedule.py``
    ``BaseSchedule.__init__``), computed in the same float32 operations."""

    betas: torch.Tensor
    sqrt_recip_alphas_cumprod: torch.Tensor
    sqrt_recipm1_alphas_cumprod: torch.Tensor
    post_mean_coef1: torch.Tensor
    post_mean_coef2: torch.Tensor
    post_log_var_clipped: torch.Tensor

    @property
    def timesteps(self) -> int:
        return len(self.betas)


def sr3_ddpm_schedule(timesteps: int = 2000) -> DDPMSchedule:
    """Cheff SR's cosine schedule with its posterior coefficients."""
    betas = cosine_betas(timesteps)
    alphas = 1.0 - betas
    abar = torch.cumprod(alphas, dim=0)
    abar_prev = torch.cat([torch.ones(1), abar[:-1]])
    post_var = betas * (1.0 - abar_prev) / (1.0 - abar)
    return DDPMSchedule(
        betas=betas,
        sqrt_recip_alphas_cumprod=torch.sqrt(1.0 / abar),
        sqrt_recipm1_alphas_cumprod=torch.sqrt(1.0 / abar - 1),
        post_mean_coef1=betas * torch.sqrt(abar_prev) / (1.0 - abar),
        post_mean_coef2=(1.0 - abar_prev) * torch.sqrt(alphas) / (1.0 - abar),
        post_log_var_clipped=torch.log(torch.maximum(post_var, torch.tensor(1e-20))),
    )
