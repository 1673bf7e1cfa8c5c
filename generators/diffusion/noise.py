"""Per-sample random streams.

Each sample of a batch owns a CPU ``torch.Generator`` seeded with its :class:`Condition`'s
``seed``. Every random draw the sampler makes for that sample — posterior samples of the
autoencoder, the initial latent, the fresh q_sample noise of each blended step, the DDIM
variance noise of each step — comes from that generator in a fixed order. An image therefore
depends only on its own seed, never on the batch it was generated in, its position in it or the
device (CPU generators give the same numbers everywhere).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


class SampleNoise:
    """Gaussian noise for a batch, one independent stream per sample."""

    def __init__(self, generators: Sequence[torch.Generator], device: torch.device | str = "cpu"):
        self.generators = list(generators)
        self.device = torch.device(device)

    @classmethod
    def from_seeds(cls, seeds: Sequence[int], device: torch.device | str = "cpu") -> SampleNoise:
        return cls([torch.Generator("cpu").manual_seed(int(seed)) for seed in seeds], device)

    def __len__(self) -> int:
        return len(self.generators)

    def randn(self, *shape: int) -> torch.Tensor:
        """A ``(batch, *shape)`` float32 standard normal tensor on the device; row i from stream i."""
        rows = [torch.randn((1, *shape), generator=g, dtype=torch.float32) for g in self.generators]
        return torch.cat(rows).to(self.device)

    def subset(self, indices: Sequence[int]) -> SampleNoise:
        """The streams of some samples (shared, so their draws continue where they are)."""
        return SampleNoise([self.generators[i] for i in indices], self.device)
