"""Cheff's super-resolution stage (256 -> 1024): an SR3-style UNet and its DDIM sampler.

The network is not a diffusers family, so it is written here, module for module, with the
parameter names of Cheff's ``cheff/sr/model.py`` so that ``cheff_sr_fine.pt['model']`` loads
strictly: a UNet over ``[x_t, upsampled low-res image]`` (2 channels in, 1 out) with
ResNet blocks (conv-GroupNorm(8)-SiLU, time added between the two blocks), linear attention at
the deepest levels, full attention in the middle, 4x4 stride-2 (transposed) convolutions for
down/upsampling, and sinusoidal time features ``[sin, cos]``. Released settings: ``dim`` 16,
``dim_mults`` (1, 2, 4, 8, 16, 32, 32, 32), 5 attention levels; cosine schedule over 2000 steps;
ancestral DDPM over all 2000 steps (the notebook's ``method='ddpm'``) or DDIM 100 steps with eta 0
(``CheffSRModel.sample``'s defaults); input = the 256 px image in [-1, 1], bicubically resized to
1024; output clamped to [-1, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from xreal_bench.generators.diffusion.images import signed_to_unit, unit_to_signed
from xreal_bench.generators.diffusion.noise import SampleNoise
from xreal_bench.generators.diffusion.schedules import DDPMSchedule

if TYPE_CHECKING:
    from diffusers import DDIMScheduler


@dataclass
class SR3Config:
    """Architecture of the SR UNet (``CheffSRModel``'s ``Unet(...)`` arguments) and its schedule."""

    dim: int = 16
    dim_mults: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16, 32, 32, 32])
    channels: int = 2
    out_dim: int = 1
    num_attention_layer: int = 5
    block_groups: int = 8
    timesteps: int = 2000

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SR3Config:
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(
                f"unknown SR config keys: {', '.join(sorted(unknown))} (known: {', '.join(cls.__dataclass_fields__)})"
            )
        return cls(**data)


class Residual(nn.Module):
    def __init__(self, fn: nn.Module):
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x) + x


class PreNorm(nn.Module):
    def __init__(self, dim: int, fn: nn.Module):
        super().__init__()
        self.fn = fn
        self.norm = nn.GroupNorm(1, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(self.norm(x))


class Block(nn.Module):
    def __init__(self, dim: int, dim_out: int, groups: int):
        super().__init__()
        self.proj = nn.Conv2d(dim, dim_out, 3, padding=1)
        self.norm = nn.GroupNorm(groups, dim_out)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.proj(x)))


class ResnetBlock(nn.Module):
    def __init__(self, dim: int, dim_out: int, time_dim: int, groups: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.SiLU(), nn.Linear(time_dim, dim_out))
        self.block1 = Block(dim, dim_out, groups)
        self.block2 = Block(dim_out, dim_out, groups)
        self.res_conv = nn.Conv2d(dim, dim_out, 1) if dim != dim_out else nn.Identity()

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        h = self.block1(x) + self.mlp(t)[:, :, None, None]
        return self.block2(h) + self.res_conv(x)


def _heads(t: torch.Tensor, heads: int) -> torch.Tensor:
    """``(b, heads*c, x, y)`` -> ``(b, heads, c, x*y)``."""
    b, hc, x, y = t.shape
    return t.reshape(b, heads, hc // heads, x * y)


class Attention(nn.Module):
    """Softmax attention over all positions (4 heads of 32)."""

    def __init__(self, dim: int, heads: int = 4, dim_head: int = 32):
        super().__init__()
        self.scale, self.heads = dim_head**-0.5, heads
        self.to_qkv = nn.Conv2d(dim, dim_head * heads * 3, 1, bias=False)
        self.to_out = nn.Conv2d(dim_head * heads, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        q, k, v = (_heads(t, self.heads) for t in self.to_qkv(x).chunk(3, dim=1))
        sim = torch.einsum("bhdi,bhdj->bhij", q * self.scale, k)
        attn = (sim - sim.amax(dim=-1, keepdim=True)).softmax(dim=-1)
        out = torch.einsum("bhij,bhdj->bhid", attn, v)  # (b, heads, positions, c)
        return self.to_out(out.permute(0, 1, 3, 2).reshape(b, -1, h, w))


class LinearAttention(nn.Module):
    """Linear attention (softmax of queries over channels, of keys over positions)."""

    def __init__(self, dim: int, heads: int = 4, dim_head: int = 32):
        super().__init__()
        self.scale, self.heads = dim_head**-0.5, heads
        self.to_qkv = nn.Conv2d(dim, dim_head * heads * 3, 1, bias=False)
        self.to_out = nn.Sequential(nn.Conv2d(dim_head * heads, dim, 1), nn.GroupNorm(1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        q, k, v = (_heads(t, self.heads) for t in self.to_qkv(x).chunk(3, dim=1))
        q = q.softmax(dim=-2) * self.scale
        k = k.softmax(dim=-1)
        context = torch.einsum("bhdn,bhen->bhde", k, v)
        out = torch.einsum("bhde,bhdn->bhen", context, q)
        return self.to_out(out.reshape(b, -1, h, w))


class SinusoidalTime(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        freqs = torch.exp(torch.arange(half, device=t.device) * -(math.log(10000) / (half - 1)))
        args = t[:, None] * freqs[None, :]
        return torch.cat((args.sin(), args.cos()), dim=-1)


class SR3UNet(nn.Module):
    """Cheff's SR ``Unet`` (same module tree, so the released state dict loads strictly)."""

    def __init__(self, config: SR3Config):
        super().__init__()
        dim, groups = config.dim, config.block_groups
        init_dim = dim // 3 * 2
        self.init_conv = nn.Conv2d(config.channels, init_dim, 7, padding=3)
        dims = [init_dim, *(dim * m for m in config.dim_mults)]
        in_out = list(zip(dims[:-1], dims[1:], strict=False))
        levels = len(in_out)
        first_attention = levels - config.num_attention_layer + 1
        time_dim = dim * 4
        self.time_mlp = nn.Sequential(SinusoidalTime(dim), nn.Linear(dim, time_dim), nn.GELU(), nn.Linear(time_dim, time_dim))

        def attention(channels: int, level: int) -> nn.Module:
            return Residual(PreNorm(channels, LinearAttention(channels))) if level >= first_attention else nn.Identity()

        self.downs = nn.ModuleList(
            nn.ModuleList(
                [
                    ResnetBlock(d_in, d_out, time_dim, groups),
                    ResnetBlock(d_out, d_out, time_dim, groups),
                    attention(d_out, level),
                    nn.Conv2d(d_out, d_out, 4, 2, 1) if level < levels - 1 else nn.Identity(),
                ]
            )
            for level, (d_in, d_out) in enumerate(in_out)
        )
        mid = dims[-1]
        self.mid_block1 = ResnetBlock(mid, mid, time_dim, groups)
        self.mid_attn = Residual(PreNorm(mid, Attention(mid))) if config.num_attention_layer >= 1 else nn.Identity()
        self.mid_block2 = ResnetBlock(mid, mid, time_dim, groups)
        self.ups = nn.ModuleList(
            nn.ModuleList(
                [
                    ResnetBlock(d_out * 2, d_in, time_dim, groups),
                    ResnetBlock(d_in, d_in, time_dim, groups),
                    attention(d_in, level),
                    nn.ConvTranspose2d(d_in, d_in, 4, 2, 1) if level < levels - 1 else nn.Identity(),
                ]
            )
            for level, (d_in, d_out) in enumerate(reversed(in_out[1:]))
        )
        self.final_conv = nn.Sequential(
            Residual(nn.Sequential(Block(dim, dim, groups), Block(dim, dim, groups))),
            nn.Conv2d(dim, config.out_dim, 1),
        )

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        x = self.init_conv(x)
        t = self.time_mlp(t)
        skips = []
        for block1, block2, attn, down in self.downs:
            x = attn(block2(block1(x, t), t))
            skips.append(x)
            x = down(x)
        x = self.mid_block2(self.mid_attn(self.mid_block1(x, t)), t)
        for block1, block2, attn, up in self.ups:
            x = up(attn(block2(block1(torch.cat((x, skips.pop()), dim=1), t), t)))
        return self.final_conv(x)


def ddpm_step(schedule: DDPMSchedule, eps: torch.Tensor, t: int, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """One ancestral step of Cheff's ``SR3Diffusor.p_sample``: x0 from eps, clamped to [-1, 1]; the
    posterior mean; plus ``exp(0.5 log_var) * noise`` except at t = 0."""
    x0 = (schedule.sqrt_recip_alphas_cumprod[t] * x - schedule.sqrt_recipm1_alphas_cumprod[t] * eps).clamp(-1.0, 1.0)
    mean = schedule.post_mean_coef1[t] * x0 + schedule.post_mean_coef2[t] * x
    if t == 0:
        return mean
    return mean + (0.5 * schedule.post_log_var_clipped[t]).exp() * noise


@torch.no_grad()
def super_resolve(
    model: SR3UNet,
    images: torch.Tensor,
    sampler: DDIMScheduler | DDPMSchedule,
    noise: SampleNoise,
    *,
    size: int,
    steps: int = 100,
    eta: float = 0.0,
) -> torch.Tensor:
    """``(B, 1, h, w)`` images in [0, 1] -> ``(B, 1, size, size)`` in [0, 1] (``CheffSRModel.sample``).

    ``sampler``: a DDIM scheduler (``steps``, ``eta``; ``method='ddim'``) or the DDPM schedule
    (every training step, ``method='ddpm'``: the step noise is drawn at every step, t = 0 included,
    as the original's ``p_sample`` does)."""
    param = next(model.parameters())
    low = F.interpolate(unit_to_signed(images.float()), size=(size, size), mode="bicubic", align_corners=False)
    shape = low.shape[1:]
    x = noise.randn(*shape)

    def eps(t: torch.Tensor) -> torch.Tensor:
        return model(torch.cat([x, low], dim=1).to(param.dtype), t.expand(len(x)).to(x.device)).float()

    if isinstance(sampler, DDPMSchedule):
        for step in reversed(range(sampler.timesteps)):
            predicted = eps(torch.tensor(step))
            x = ddpm_step(sampler, predicted, step, x, noise.randn(*shape))
        return signed_to_unit(x)
    sampler.set_timesteps(steps)
    for t in sampler.timesteps:
        predicted = eps(t)
        variance_noise = noise.randn(*shape) if eta > 0 else None
        x = sampler.step(predicted, t, x, eta=eta, variance_noise=variance_noise).prev_sample
    return signed_to_unit(x)
