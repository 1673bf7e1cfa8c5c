"""ChexGen's diffusion transformer and its sampler, written in plain torch from the released code.

The network is a PixArt-style DiT (era-ai-biomed/ChexGen radiffuser/models/dit.py, block.py,
embedder.py): patch embedding plus a stored sin-cos position table; a timestep MLP whose output
``t_block`` maps to six modulation vectors shared by every block, each block adding its own
``shift_scale_gate_table``; self-attention, cross-attention to the projected T5 tokens (each
sample attends only to its own non-padding tokens: the released code packs them with an xformers
``BlockDiagonalMask``, here a key-padding mask gives the same per-sample attention), and a GELU
(tanh) MLP; a final layer modulated by the raw timestep embedding. The mask-controlled release
wraps it (dit_control.py ``ControlT2IDiT``): trainable copies of the first 13 blocks read the VAE
latent of the mask, and each copy's zero-initialised ``after_proj`` output is added to the input
of the next base block.

Module and parameter names follow the released ``state_dict_ema`` keys exactly, so a released
state dict loads with ``strict=True``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

#: The released configs' model type (configs/sample/*.py:8 ``type='DiT_XL_2'``: radiffuser/models/dit.py:313-314).
XL_HEADS = 16
#: Control copies of the first blocks (dit_control.py:54 ``copy_blocks_num=13``).
CONTROL_BLOCKS = 13
#: Sinusoidal timestep features (embedder.py:17 ``frequency_embedding_size=256``).
FREQUENCY_DIM = 256


def gelu_tanh() -> nn.Module:
    return nn.GELU(approximate="tanh")


class TwoLayerMlp(nn.Module):
    """``fc1 -> GELU(tanh) -> fc2``, parameter names as timm's ``Mlp``."""

    def __init__(self, width: int, hidden: int, out: int):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.act = gelu_tanh()
        self.fc2 = nn.Linear(hidden, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class PatchEmbed(nn.Module):
    def __init__(self, patch: int, channels: int, width: int):
        super().__init__()
        self.proj = nn.Conv2d(channels, width, kernel_size=patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class TimestepEmbedder(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(FREQUENCY_DIM, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = FREQUENCY_DIM // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
        args = t.float()[:, None] * freqs[None]
        return self.mlp(torch.cat([torch.cos(args), torch.sin(args)], dim=-1))


class CaptionEmbedder(nn.Module):
    """Projects T5 tokens to the model width; ``y_embedding`` is the learnt unconditional token sequence."""

    def __init__(self, text_dim: int, width: int, tokens: int):
        super().__init__()
        self.y_proj = TwoLayerMlp(text_dim, width, width)
        self.y_embedding = nn.Parameter(torch.zeros(tokens, text_dim))


class SelfAttention(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c))


class CrossAttention(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q_linear = nn.Linear(width, width)
        self.kv_linear = nn.Linear(width, 2 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, text: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        d = c // self.heads
        q = self.q_linear(x).reshape(b, n, self.heads, d).transpose(1, 2)
        k, v = self.kv_linear(text).reshape(b, text.shape[1], 2, self.heads, d).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=keep[:, None, None, :])
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


class Block(nn.Module):
    """block.py ``PixArtMSBlock``: adaLN-single modulated self-attention, cross-attention, MLP."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(width, heads)
        self.cross_attn = CrossAttention(width, heads)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.mlp = TwoLayerMlp(width, 4 * width, width)
        self.shift_scale_gate_table = nn.Parameter(torch.zeros(6, width))

    def forward(self, x: torch.Tensor, text: torch.Tensor, keep: torch.Tensor, t6: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        shift1, scale1, gate1, shift2, scale2, gate2 = (self.shift_scale_gate_table[None] + t6.reshape(b, 6, -1)).chunk(6, 1)
        x = x + gate1 * self.attn(modulate(self.norm1(x), shift1, scale1))
        x = x + self.cross_attn(x, text, keep)
        return x + gate2 * self.mlp(modulate(self.norm2(x), shift2, scale2))


class FinalLayer(nn.Module):
    def __init__(self, width: int, patch: int, out_channels: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(width, patch * patch * out_channels)
        self.shift_scale_table = nn.Parameter(torch.zeros(2, width))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        shift, scale = (self.shift_scale_table[None] + t[:, None]).chunk(2, dim=1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


@dataclass(frozen=True)
class DiTShape:
    """The architecture read from a state dict's tensor shapes (heads cannot be read: given)."""

    width: int
    depth: int
    heads: int
    patch: int
    in_channels: int
    out_channels: int
    latent: int
    text_dim: int
    tokens: int

    @classmethod
    def of(cls, state: dict[str, torch.Tensor], *, heads: int, prefix: str = "") -> DiTShape:
        proj = state[f"{prefix}x_embedder.proj.weight"]
        width, in_channels, patch, _ = proj.shape
        depth = len({k[len(prefix) :].split(".")[1] for k in state if k.startswith(f"{prefix}blocks.")})
        side = math.isqrt(state[f"{prefix}pos_embed"].shape[1])
        tokens, text_dim = state[f"{prefix}y_embedder.y_embedding"].shape
        out_channels = state[f"{prefix}final_layer.linear.weight"].shape[0] // (patch * patch)
        return cls(width, depth, heads, patch, in_channels, out_channels, side * patch, text_dim, tokens)


class ChexGenDiT(nn.Module):
    """dit.py ``DiT`` at inference: ``forward(x, t, text, keep) -> (B, out_channels, H, W)``."""

    def __init__(self, shape: DiTShape):
        super().__init__()
        s = shape
        self.shape = s
        self.x_embedder = PatchEmbed(s.patch, s.in_channels, s.width)
        self.t_embedder = TimestepEmbedder(s.width)
        self.y_embedder = CaptionEmbedder(s.text_dim, s.width, s.tokens)
        self.pos_embed = nn.Parameter(torch.zeros(1, (s.latent // s.patch) ** 2, s.width), requires_grad=False)
        self.blocks = nn.ModuleList(Block(s.width, s.heads) for _ in range(s.depth))
        self.final_layer = FinalLayer(s.width, s.patch, s.out_channels)
        self.t_block = nn.Sequential(nn.SiLU(), nn.Linear(s.width, 6 * s.width))

    def embed(self, x: torch.Tensor, t: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, ...]:
        t_emb = self.t_embedder(t)
        return self.x_embedder(x) + self.pos_embed, t_emb, self.t_block(t_emb), self.y_embedder.y_proj(text)

    def head(self, x: torch.Tensor, t_emb: torch.Tensor) -> torch.Tensor:
        p, c, side = self.shape.patch, self.shape.out_channels, self.shape.latent // self.shape.patch
        x = self.final_layer(x, t_emb).reshape(x.shape[0], side, side, p, p, c)
        return torch.einsum("nhwpqc->nchpwq", x).reshape(x.shape[0], c, side * p, side * p)

    def forward(self, x: torch.Tensor, t: torch.Tensor, text: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        x, t_emb, t6, y = self.embed(x, t, text)
        for block in self.blocks:
            x = block(x, y, keep, t6)
        return self.head(x, t_emb)


class ControlCopy(nn.Module):
    """dit_control.py ``ControlT2IDitBlockHalf``: a copied block; the first one also has ``before_proj``."""

    def __init__(self, width: int, heads: int, first: bool):
        super().__init__()
        self.copied_block = Block(width, heads)
        self.before_proj = nn.Linear(width, width) if first else None
        self.after_proj = nn.Linear(width, width)


class ChexGenControlDiT(nn.Module):
    """dit_control.py ``ControlT2IDiT`` at inference (keys ``base_model.*`` and ``controlnet.*``)."""

    def __init__(self, shape: DiTShape, *, pos_embed_scale: float, copies: int = CONTROL_BLOCKS):
        super().__init__()
        self.base_model = ChexGenDiT(shape)
        self.controlnet = nn.ModuleList(ControlCopy(shape.width, shape.heads, i == 0) for i in range(copies))
        self.pos_embed_scale = pos_embed_scale

    def control_pos_embed(self, device: torch.device) -> torch.Tensor:
        """The control path's position table, recomputed as dit_control.py:76-83 does (diffusers' sin-cos)."""
        from diffusers.models.embeddings import get_2d_sincos_pos_embed

        s = self.base_model.shape
        grid = s.latent // s.patch
        table = get_2d_sincos_pos_embed(s.width, (grid, grid), interpolation_scale=self.pos_embed_scale, base_size=grid)
        return torch.as_tensor(table, dtype=torch.float32, device=device)[None]

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, text: torch.Tensor, keep: torch.Tensor, control: torch.Tensor
    ) -> torch.Tensor:
        base = self.base_model
        c = base.x_embedder(control) + self.control_pos_embed(x.device)
        x, t_emb, t6, y = base.embed(x, t, text)
        x = base.blocks[0](x, y, keep, t6)
        for index, copy in enumerate(self.controlnet, start=1):
            if copy.before_proj is not None:
                c = copy.copied_block(x + copy.before_proj(c), y, keep, t6)
            else:
                c = copy.copied_block(c, y, keep, t6)
            x = base.blocks[index](x + copy.after_proj(c), y, keep, t6)
        for block in base.blocks[len(self.controlnet) + 1 :]:
            x = block(x, y, keep, t6)
        return base.head(x, t_emb)


def spaced_timesteps(train_steps: int, steps: int) -> list[int]:
    """respace.py ``space_timesteps(train_steps, str(steps))`` for one section: evenly strided, rounded."""
    if not 1 <= steps <= train_steps:
        raise ValueError(f"cannot take {steps} steps out of {train_steps}")
    stride = 1.0 if steps <= 1 else (train_steps - 1) / (steps - 1)
    return sorted({round(i * stride) for i in range(steps)})


@dataclass(frozen=True)
class RespacedSchedule:
    """The IDDPM schedule ChexGen samples with (diffusion/__init__.py ``create_diffusion``: linear betas
    over 1000 steps, respaced; learned-range variance), as float64 arrays indexed by the sampling step."""

    timesteps: np.ndarray  # original timestep of each sampling step, ascending
    betas: np.ndarray
    alphas_cumprod: np.ndarray
    alphas_cumprod_prev: np.ndarray

    @classmethod
    def linear(cls, steps: int, *, train_steps: int = 1000) -> RespacedSchedule:
        scale = 1000 / train_steps
        base = np.cumprod(1.0 - np.linspace(scale * 0.0001, scale * 0.02, train_steps, dtype=np.float64))
        kept = spaced_timesteps(train_steps, steps)
        cumprod = base[kept]
        previous = np.append(1.0, cumprod[:-1])
        return cls(np.array(kept), 1.0 - cumprod / previous, cumprod, previous)

    def step_values(self, i: int) -> dict[str, float]:
        """Per-step coefficients (float64), for sampling step ``i`` (0 = least noise)."""
        a, a_prev, beta = self.alphas_cumprod[i], self.alphas_cumprod_prev[i], self.betas[i]
        posterior = beta * (1.0 - a_prev) / (1.0 - a)
        # gaussian_diffusion.py: the log of the posterior variance, its first entry replaced by the second
        clipped = self.posterior_variance(1) if i == 0 else posterior
        return {
            "recip": math.sqrt(1.0 / a),
            "recipm1": math.sqrt(1.0 / a - 1.0),
            "coef_x0": beta * math.sqrt(a_prev) / (1.0 - a),
            "coef_xt": (1.0 - a_prev) * math.sqrt(1.0 - beta) / (1.0 - a),
            "min_log": math.log(clipped),
            "max_log": math.log(beta),
        }

    def posterior_variance(self, i: int) -> float:
        a, a_prev, beta = self.alphas_cumprod[i], self.alphas_cumprod_prev[i], self.betas[i]
        return float(beta * (1.0 - a_prev) / (1.0 - a))


def guided_output(cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """dit.py ``forward_with_cfg``: guidance on the first three output channels only; the fourth noise
    channel and the variance channels are the conditional pass's."""
    guided = uncond[:, :3] + scale * (cond[:, :3] - uncond[:, :3])
    return torch.cat([guided, cond[:, 3:]], dim=1)


def ddpm_step(schedule: RespacedSchedule, i: int, x: torch.Tensor, output: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """One ancestral step of gaussian_diffusion.py ``p_sample`` (epsilon prediction, learned-range
    variance, no clipping of x0), coefficients cast to float32 as ``_extract_into_tensor`` does."""
    v = {k: torch.tensor(val, dtype=torch.float32) for k, val in schedule.step_values(i).items()}
    channels = x.shape[1]
    eps, var_values = output[:, :channels], output[:, channels:]
    frac = (var_values + 1) / 2
    log_variance = frac * v["max_log"] + (1 - frac) * v["min_log"]
    x0 = v["recip"] * x - v["recipm1"] * eps
    mean = v["coef_x0"] * x0 + v["coef_xt"] * x
    if i == 0:
        return mean
    return mean + torch.exp(0.5 * log_variance) * noise
