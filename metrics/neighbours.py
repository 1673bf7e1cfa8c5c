"""Exact k-nearest-neighbour search by cosine similarity, streamed over a training matrix.

Both sides are L2-normalised (a zero row stays zero: similarity 0 to everything). The training
matrix (``[N, d]``, typically a memory-mapped ``.npy``) is read in chunks of ``chunk`` rows and the
queries in blocks of ``query_block`` rows; each chunk's similarities are one matrix product on the
run's device, merged into a running top-``k``. Memory is therefore bounded independently of ``N``
and of the number of queries (:func:`search_memory_bytes`). The result is exact and deterministic:
neighbours by descending similarity, equal similarities by ascending training row, including at the
``k``-th place.

Backends: ``torch`` (any device) or ``faiss`` (``IndexFlatIP`` per chunk, CPU, when the optional
``faiss`` package is importable). ``auto`` picks faiss on the CPU when it is importable, torch
otherwise. faiss returns the same neighbours up to float rounding; among candidates tied exactly at
the ``k``-th place it may keep another one of them.

``exclude``: per-row group ids (e.g. patients); a query never gets a training row of its own group.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

Backend = Literal["auto", "torch", "faiss"]
DEFAULT_CHUNK = 16_384
DEFAULT_QUERY_BLOCK = 4_096
FLOAT_BYTES = 4


@dataclass(frozen=True)
class Neighbours:
    """``[Q, k]`` nearest training rows per query, best first (index -1 and similarity NaN where
    fewer than ``k`` training rows were eligible)."""

    similarity: np.ndarray  # float32
    index: np.ndarray  # int64
    backend: str


@dataclass(frozen=True)
class Exclusion:
    """Group ids of the queries and of the training rows: equal ids are never neighbours."""

    queries: np.ndarray  # [Q] int64
    train: np.ndarray  # [N] int64


def faiss_available() -> bool:
    return importlib.util.find_spec("faiss") is not None


def choose_backend(backend: Backend, device: str) -> str:
    if backend == "faiss" and not faiss_available():
        raise ValueError("backend 'faiss' asked for but the faiss package is not installed")
    if backend == "auto":
        return "faiss" if faiss_available() and torch.device(device).type == "cpu" else "torch"
    return backend


def search_memory_bytes(*, dim: int, k: int, chunk: int = DEFAULT_CHUNK, query_block: int = DEFAULT_QUERY_BLOCK) -> int:
    """Upper bound of the search's working memory, independent of N: the float32 query block and training
    chunk (each read from the array and normalised in place: two copies at most), the block's similarities
    (float32) with room for one float32 workspace of top-k, the exclusion mask (bool), the running and candidate
    top-k."""
    inputs = 2 * FLOAT_BYTES * (query_block + chunk) * dim
    similarities = query_block * chunk * (2 * FLOAT_BYTES + 2)
    top = 2 * query_block * 2 * k * (FLOAT_BYTES + 8)
    return inputs + similarities + top


def unit_rows(x: torch.Tensor) -> torch.Tensor:
    """``x``'s rows scaled to unit length, in place (``x`` is a fresh copy of the stored rows)."""
    return x.div_(x.norm(dim=1, keepdim=True).clamp_min(1e-12))


def ordered(values: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row sorted by descending value, equal values by ascending index."""
    index, perm = index.sort(dim=1)
    values = values.gather(1, perm)
    values, perm = values.sort(dim=1, descending=True, stable=True)
    return values, index.gather(1, perm)


def chunk_top(sims: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` best columns per row (ties at the ``k``-th place broken by the lower column), ordered. A tie
    there shows as a (k+1)-th value equal to the k-th: only those rows are sorted exactly."""
    values, columns = sims.topk(min(k + 1, sims.shape[1]), dim=1)
    if values.shape[1] > k:
        tied = values[:, k] >= values[:, k - 1]
        values, columns = values[:, :k].clone(), columns[:, :k].clone()
        if bool(tied.any()):
            rows = tied.nonzero().squeeze(1)
            exact, where = sims[rows].sort(dim=1, descending=True, stable=True)
            values[rows], columns[rows] = exact[:, :k], where[:, :k]
    return ordered(values, columns)


def faiss_top(queries: torch.Tensor, rows: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    import faiss

    index = faiss.IndexFlatIP(rows.shape[1])
    index.add(np.ascontiguousarray(rows.cpu().numpy()))
    values, columns = index.search(np.ascontiguousarray(queries.cpu().numpy()), k)
    values = torch.from_numpy(values).to(queries.device)
    columns = torch.from_numpy(columns.astype(np.int64)).to(queries.device)
    return ordered(values.masked_fill(columns < 0, float("-inf")), columns.clamp_min(0))


def nearest(
    queries: np.ndarray,
    train: np.ndarray,
    *,
    k: int,
    device: str = "cpu",
    backend: Backend = "auto",
    chunk: int = DEFAULT_CHUNK,
    query_block: int = DEFAULT_QUERY_BLOCK,
    exclude: Exclusion | None = None,
) -> Neighbours:
    """The ``k`` training rows most cosine-similar to each query (see the module docstring)."""
    if k < 1 or chunk < 1 or query_block < 1:
        raise ValueError(f"k, chunk and query_block must be >= 1, got {k}, {chunk}, {query_block}")
    used = choose_backend(backend, device)
    n_queries, n_train = len(queries), len(train)
    similarity = np.full((n_queries, k), np.nan, dtype=np.float32)
    index = np.full((n_queries, k), -1, dtype=np.int64)
    dev = torch.device(device)
    for q0 in range(0, n_queries, query_block):
        block = unit_rows(torch.as_tensor(np.array(queries[q0 : q0 + query_block], dtype=np.float32), device=dev))
        best_v = torch.full((len(block), 0), float("-inf"), device=dev)
        best_i = torch.zeros((len(block), 0), dtype=torch.int64, device=dev)
        for t0 in range(0, n_train, chunk):
            rows = unit_rows(torch.as_tensor(np.array(train[t0 : t0 + chunk], dtype=np.float32), device=dev))
            mask = None
            if exclude is not None:
                groups = torch.as_tensor(exclude.queries[q0 : q0 + query_block], device=dev)
                mask = groups[:, None] == torch.as_tensor(exclude.train[t0 : t0 + chunk], device=dev)
            if used == "faiss":
                extra = 0 if mask is None else int(mask.sum(dim=1).max())
                values, columns = faiss_top(block, rows, min(k + extra, len(rows)))
                if mask is not None:
                    values = values.masked_fill(mask.gather(1, columns), float("-inf"))
                    values, columns = ordered(values, columns)
                values, columns = values[:, :k], columns[:, :k]
            else:
                sims = block @ rows.T
                if mask is not None:
                    sims.masked_fill_(mask, float("-inf"))
                values, columns = chunk_top(sims, min(k, len(rows)))
            merged_v, order = torch.cat([best_v, values], dim=1).sort(dim=1, descending=True, stable=True)
            merged_i = torch.cat([best_i, columns + t0], dim=1).gather(1, order)
            best_v, best_i = merged_v[:, :k], merged_i[:, :k]
        found = best_v.shape[1]
        value = best_v.cpu().numpy()
        eligible = np.isfinite(value)
        similarity[q0 : q0 + len(block), :found] = np.where(eligible, value, np.nan)
        index[q0 : q0 + len(block), :found] = np.where(eligible, best_i.cpu().numpy(), -1)
    return Neighbours(similarity, index, used)
