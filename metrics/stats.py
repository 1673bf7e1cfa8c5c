"""Streaming first- and second-moment statistics of feature vectors.

:class:`FeatureStats` keeps ``n``, ``sum = Σx`` and ``outer = Σ x xᵀ`` in float64, so memory
does not grow with the number of images, shards (batches, processes, resumed runs) merge
exactly by addition, and FID is computed once from the merged statistics (never by averaging
per-shard FIDs, which is biased: FID is not additive).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xreal_bench.atomic import write_atomic

STATS_FORMAT = "xreal-bench-feature-stats-v1"


def as_float64_matrix(features, name: str = "features") -> np.ndarray:
    """A ``[N, d]`` float64 numpy copy of a tensor/array; clear errors for bad input."""
    if hasattr(features, "detach"):  # torch.Tensor, without importing torch here
        features = features.detach().cpu().double().numpy()
    arr = np.asarray(features, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D [N, d] array, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).any(axis=1).sum())
        raise ValueError(f"{name} contains NaN or infinite values in {bad} of {arr.shape[0]} rows")
    return arr


@dataclass
class FeatureStats:
    """Running ``n``, ``Σx`` (``[d]``) and ``Σ x xᵀ`` (``[d, d]``), all accumulated in float64."""

    n: int
    sum: np.ndarray
    outer: np.ndarray

    def __post_init__(self) -> None:
        self.n = int(self.n)
        self.sum = np.asarray(self.sum, dtype=np.float64)
        self.outer = np.asarray(self.outer, dtype=np.float64)
        d = self.sum.shape[0] if self.sum.ndim == 1 else -1
        if self.sum.ndim != 1 or self.outer.shape != (d, d):
            raise ValueError(f"inconsistent shapes: sum {self.sum.shape}, outer {self.outer.shape} (need [d], [d, d])")
        if self.n < 0:
            raise ValueError(f"n must be >= 0, got {self.n}")

    @classmethod
    def empty(cls, dim: int) -> FeatureStats:
        return cls(0, np.zeros(dim), np.zeros((dim, dim)))

    @classmethod
    def from_features(cls, features) -> FeatureStats:
        arr = as_float64_matrix(features)
        return cls.empty(arr.shape[1]).update(arr)

    @property
    def dim(self) -> int:
        return self.sum.shape[0]

    def update(self, features) -> FeatureStats:
        """Add a batch ``[B, d]`` (tensor or array) in place; returns ``self``."""
        arr = as_float64_matrix(features)
        if arr.shape[1] != self.dim:
            raise ValueError(f"feature dimension {arr.shape[1]} does not match the statistics' dimension {self.dim}")
        self.n += arr.shape[0]
        self.sum += arr.sum(axis=0)
        self.outer += arr.T @ arr
        return self

    def merge(self, other: FeatureStats) -> FeatureStats:
        """The statistics of the union of both sample sets (a new object)."""
        if other.dim != self.dim:
            raise ValueError(f"cannot merge statistics of dimension {self.dim} and {other.dim}")
        return FeatureStats(self.n + other.n, self.sum + other.sum, self.outer + other.outer)

    __add__ = merge

    def mean(self) -> np.ndarray:
        if self.n < 1:
            raise ValueError("mean of empty statistics (n = 0)")
        return self.sum / self.n

    def cov(self) -> np.ndarray:
        """Unbiased covariance (divisor ``n - 1``), as ``np.cov(x, rowvar=False)``."""
        if self.n < 2:
            raise ValueError(f"covariance needs at least 2 samples, got n = {self.n}")
        mu = self.sum / self.n
        cov = (self.outer - self.n * np.outer(mu, mu)) / (self.n - 1)
        return (cov + cov.T) / 2  # exact symmetry despite rounding

    def save(self, path: str | Path) -> None:
        """Write an ``.npz`` file atomically (temp file + rename)."""
        write_atomic(
            path,
            lambda f: np.savez(
                f, format=np.array(STATS_FORMAT), n=np.array(self.n, dtype=np.int64), sum=self.sum, outer=self.outer
            ),
        )

    @classmethod
    def load(cls, path: str | Path) -> FeatureStats:
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {key: data[key] for key in data.files}
        except (OSError, ValueError, EOFError) as exc:
            raise ValueError(f"{path}: cannot read feature statistics ({exc})") from exc
        fmt = str(arrays["format"]) if "format" in arrays else "<none>"
        if fmt != STATS_FORMAT or not {"n", "sum", "outer"} <= set(arrays):
            raise ValueError(f"{path}: not a feature-statistics file (format {fmt!r}, expected {STATS_FORMAT!r})")
        return cls(int(arrays["n"]), arrays["sum"], arrays["outer"])


def all_reduce(stats: FeatureStats) -> FeatureStats:
    """Sum ``n``, ``Σx`` and ``Σ x xᵀ`` over all ranks of ``torch.distributed`` (new object).

    Without an initialised process group this returns ``stats`` unchanged. Every rank must
    call it (collective) with statistics of the same dimension. Reduction is in float64
    (``n`` in int64), so the result equals single-process statistics up to float64 rounding.
    """
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return stats
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    n = torch.tensor([stats.n], dtype=torch.int64, device=device)
    total = torch.tensor(stats.sum, dtype=torch.float64, device=device)  # copies: the input stays untouched
    outer = torch.tensor(stats.outer, dtype=torch.float64, device=device)
    for tensor in (n, total, outer):
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return FeatureStats(int(n.item()), total.cpu().numpy(), outer.cpu().numpy())
