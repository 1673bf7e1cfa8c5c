"""The memorization audit beside the evaluation pass (``memorization_rate`` and its parts).

1. **Training side**: the ``dataset.train_split`` images (optionally a seeded subsample,
   :mod:`xreal_bench.data.training`) through the ``embedding`` feature extractor only, with
   :func:`~xreal_bench.metrics.engine.evaluate_real` (decoded exactly like the real side), cached per
   case under ``<cache>/train/<key>`` where the key is :func:`real_fingerprint` of the training set's
   fingerprint (split scan + subsample + chosen ids), the preprocessing and that one-extractor suite.
   The features are then consolidated once, L2-normalised, into ``features.npy`` (float32,
   ``case_ids.json`` beside it), computed in chunks of :data:`CONSOLIDATE_CHUNK` images and read back
   memory-mapped, so neither building nor searching it holds the ``N x d`` matrix in memory.
2. **Search**: every image's ``metrics.memorization_top_k`` nearest training images by cosine
   similarity (:func:`~xreal_bench.metrics.neighbours.nearest`, exact, memory bounded independently of N).
3. **Null and threshold**: each real test image's nearest training image of a *different patient*
   (``subject_id``); the threshold is the ``metrics.memorization_quantile`` quantile of those
   similarities (``numpy.quantile``, method ``linear``). Per image: ``memorization_similarity`` (top-1
   similarity), ``memorization_rate`` (1 when it is above the threshold, else 0) and
   ``memorization_ssim`` (the largest aligned SSIM with its top-k training images,
   :mod:`xreal_bench.metrics.pixel_recheck`). The real row is scored on its null neighbours, so its
   rate is about ``1 - quantile`` by construction.

Every rank searches all images (the outputs are gathered to every rank): the duplicated work is the
search itself, whose memory stays bounded.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

import numpy as np
import pandas as pd

from xreal_bench import distributed
from xreal_bench.atomic import atomic_path, write_text_atomic
from xreal_bench.data.training import TrainingSet, load_training_set
from xreal_bench.errors import UserFacingError
from xreal_bench.metrics import table
from xreal_bench.metrics.engine import ImageItem, Preprocessing, SourceOutputs, evaluate_real, real_fingerprint
from xreal_bench.metrics.neighbours import Exclusion, Neighbours, nearest, search_memory_bytes
from xreal_bench.metrics.pixel_recheck import MAX_SHIFT_FRACTION, aligned_ssim
from xreal_bench.metrics.suite import Suite, resolve_role
from xreal_bench.tables import to_csv

if TYPE_CHECKING:
    from xreal_bench.evaluation import BesidePass
    from xreal_bench.pipeline import Session

#: The real test images' source name (the null).
REAL = "real"
PAIRS_FILE = "memorization_pairs.csv"
PAIRS_COLUMNS = ("generator", "case_id", "sample_index", "train_case_id", "train_image", "similarity", "ssim", "memorized")
#: Closest pairs per generator written to :data:`PAIRS_FILE`.
PAIRS_PER_GENERATOR = 8
#: Training images per feature pass while consolidating (bounds the memory of building the cache).
CONSOLIDATE_CHUNK = 4096
FEATURES_FILE = "features.npy"
IDS_FILE = "case_ids.json"
QUANTILE_METHOD: Final = "linear"


@dataclass(frozen=True)
class TrainingFeatures:
    """The consolidated, L2-normalised training features (memory-mapped) and their case ids."""

    features: np.ndarray  # [N, d] float32, np.memmap
    case_ids: list[str]
    cache_dir: Path


def training_features(
    training: TrainingSet, *, extractor: Suite, prep: Preprocessing, cache_root: Path, session: Session, progress: bool
) -> TrainingFeatures:
    """Compute (or reuse) the training side's features under its fingerprint and consolidate them once."""
    cache = cache_root / "train" / real_fingerprint(training.fingerprint, prep, extractor)[:16]
    features_path, ids_path = cache / FEATURES_FILE, cache / IDS_FILE
    if not (features_path.is_file() and ids_path.is_file()):
        consolidate(training, extractor=extractor, prep=prep, cache=cache, session=session, progress=progress)
    return TrainingFeatures(np.load(features_path, mmap_mode="r"), json.loads(ids_path.read_text()), cache)


def consolidate(training: TrainingSet, *, extractor: Suite, prep: Preprocessing, cache: Path, session: Session, progress: bool):
    """Features of the training images, :data:`CONSOLIDATE_CHUNK` at a time (cached per case by
    :func:`evaluate_real`), L2-normalised into a staging memmap, then the decoded rows into
    ``features.npy`` (atomically, by rank 0): memory is bounded by the chunk, not by N."""
    ((role, ex),) = extractor.features.items()
    items = [ImageItem(c.case_id, 0, c.image_path) for c in training.cases]
    main, m = session.info.is_main, session.cfg.metrics
    cache.mkdir(parents=True, exist_ok=True)
    staging_path = cache / "features.staging.npy"
    staging = np.lib.format.open_memmap(staging_path, mode="w+", dtype=np.float32, shape=(len(items), ex.dim)) if main else None
    kept: list[str] = []
    for start in range(0, len(items), CONSOLIDATE_CHUNK):
        out = evaluate_real(
            items[start : start + CONSOLIDATE_CHUNK],
            suite=extractor,
            prep=prep,
            cache_dir=cache,
            info=session.info,
            batch_size=m.batch_size,
            workers=m.num_workers,
            progress=progress,
        )
        rows = out.features[role].astype(np.float32)
        if staging is not None:
            staging[len(kept) : len(kept) + len(rows)] = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
        kept += out.case_ids
    if staging is not None:
        write_text_atomic(cache / IDS_FILE, json.dumps(kept))
        with atomic_path(cache / FEATURES_FILE) as tmp:
            final = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(len(kept), ex.dim))
            for start in range(0, len(kept), CONSOLIDATE_CHUNK):
                final[start : start + CONSOLIDATE_CHUNK] = staging[start : start + CONSOLIDATE_CHUNK]
            final.flush()
            del final
        del staging
        staging_path.unlink()
    distributed.barrier()


def dataset_relative(path: Path, root: Path) -> str:
    """``path`` relative to the dataset root (locations are not identity: the report resolves it under the run's
    recorded root and never follows it outside); absolute when it lies elsewhere."""
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return str(path)


def to_unit(pixels: np.ndarray) -> np.ndarray:
    return pixels.astype(np.float64) / (255.0 if pixels.dtype == np.uint8 else 65535.0)


@dataclass
class MemorizationAudit:
    """:class:`~xreal_bench.evaluation.BesidePass` of the memorization audit (see the module docstring)."""

    training: TrainingSet
    train: TrainingFeatures
    role: str
    evaluator: str
    prep: Preprocessing
    subjects: dict[str, str]  # evaluated case id -> subject id
    device: str
    dataset_root: Path
    real_cache: Path  # the real side's per-case cache (its pixels)
    top_k: int
    quantile: float
    key: str = "memorization"
    threshold: float | None = None
    null_n: int = 0
    backend: str = ""
    pairs: list[dict] = field(default_factory=list)

    def search(self, features: np.ndarray, case_ids: Sequence[str], *, null: bool) -> Neighbours:
        exclusion = None
        if null:
            ids = {s: i for i, s in enumerate(sorted({*self.subjects.values(), *(c.subject_id for c in self.training.cases)}))}
            train_subject = {c.case_id: c.subject_id for c in self.training.cases}
            exclusion = Exclusion(
                np.array([ids[self.subjects[c]] for c in case_ids], dtype=np.int64),
                np.array([ids[train_subject[c]] for c in self.train.case_ids], dtype=np.int64),
            )
        found = nearest(features, self.train.features, k=self.top_k, device=self.device, exclude=exclusion)
        self.backend = found.backend
        return found

    def pixels(self, source: str, key: tuple[str, int], path: Path) -> np.ndarray:
        """An image's pixels for the re-check: a real image's from the real side's cache (decoded once, by the
        pass), a generated image's decoded again as stored (the pass keeps features, not pixels)."""
        if source == REAL:
            with np.load(self.real_cache / f"{key[0]}.npz") as cached:
                return to_unit(cached["pixels"])
        return to_unit(self.prep.stored().load(path))

    def train_pixels(self, row: int) -> np.ndarray:
        with np.load(self.train.cache_dir / f"{self.train.case_ids[row]}.npz") as cached:
            return to_unit(cached["pixels"])

    def annotate(self, source: str, outputs: SourceOutputs, items: Sequence[ImageItem]) -> None:
        null = source == REAL
        found = self.search(outputs.features[self.role], outputs.case_ids, null=null)
        top1 = found.similarity[:, 0].astype(np.float64)
        if null:
            values = top1[np.isfinite(top1)]
            if not len(values):
                raise ValueError("the memorization audit needs at least one real test image with a training neighbour")
            self.threshold, self.null_n = float(np.quantile(values, self.quantile, method=QUANTILE_METHOD)), len(values)
        if self.threshold is None:
            raise RuntimeError("the real side is annotated before any generator (it sets the threshold)")
        paths = {(i.case_id, i.sample_index): i.path for i in items}
        best_ssim, top1_ssim = np.full(len(top1), np.nan), np.full(len(top1), np.nan)
        for n, key in enumerate(outputs.keys):
            rows = [int(r) for r in found.index[n] if r >= 0]
            if rows:
                checks = aligned_ssim(
                    self.pixels(source, key, paths[key]), [self.train_pixels(r) for r in rows], device=self.device
                )
                best_ssim[n], top1_ssim[n] = max(c.ssim for c in checks), checks[0].ssim
        memorized = np.where(np.isfinite(top1), (top1 > self.threshold).astype(np.float64), np.nan)
        similarity_part, ssim_part = table.MEMORIZATION.parts
        outputs.extra[table.MEMORIZATION.key] = memorized
        outputs.extra[similarity_part.key] = top1
        outputs.extra[ssim_part.key] = best_ssim
        if not null:
            self.keep_pairs(source, outputs.keys, found, top1, top1_ssim)

    def keep_pairs(self, source: str, keys: Sequence[tuple[str, int]], found: Neighbours, top1: np.ndarray, ssim: np.ndarray):
        assert self.threshold is not None
        order = [n for n in np.argsort(-np.nan_to_num(top1, nan=-np.inf), kind="stable") if np.isfinite(top1[n])]
        train_cases = {c.case_id: c for c in self.training.cases}
        for n in order[:PAIRS_PER_GENERATOR]:
            train_id = self.train.case_ids[int(found.index[n, 0])]
            self.pairs.append(
                {
                    "generator": source,
                    "case_id": keys[n][0],
                    "sample_index": keys[n][1],
                    "train_case_id": train_id,
                    "train_image": dataset_relative(train_cases[train_id].image_path, self.dataset_root),
                    "similarity": float(top1[n]),
                    "ssim": float(ssim[n]),
                    "memorized": bool(top1[n] > self.threshold),
                }
            )

    def provenance(self) -> dict:
        dim = int(self.train.features.shape[1]) if self.train.features.ndim == 2 else 0
        return {
            "train_split": self.training.split,
            "train_images": len(self.train.case_ids),
            "train_available": self.training.available,
            "train_undecodable": len(self.training.cases) - len(self.train.case_ids),
            "subsample": self.training.subsample,
            "subsample_seed": self.training.seed,
            "train_fingerprint": self.training.fingerprint,
            "embedding": {"role": self.role, "evaluator": self.evaluator},
            "quantile": self.quantile,
            "quantile_method": QUANTILE_METHOD,
            "threshold": self.threshold,
            "null": f"real {self.null_n} test images' nearest training image of a different patient",
            "null_n": self.null_n,
            "search_backend": self.backend,
            "top_k": self.top_k,
            "memory_bound_bytes": search_memory_bytes(dim=dim, k=self.top_k),
            "alignment_max_shift": MAX_SHIFT_FRACTION,
        }

    def write(self, out: Path, *, kept: set[str]) -> None:
        """``memorization_pairs.csv``: this call's pairs, and the earlier file's pairs of ``kept`` generators."""
        frame = pd.DataFrame(self.pairs, columns=list(PAIRS_COLUMNS))
        if kept and (out / PAIRS_FILE).is_file():
            try:
                earlier = pd.read_csv(out / PAIRS_FILE, dtype={"generator": str, "case_id": str, "train_case_id": str})
            except (OSError, ValueError):
                earlier = None
            if earlier is not None and tuple(earlier.columns) == PAIRS_COLUMNS:
                frame = pd.concat([earlier[earlier.generator.isin(kept)], frame], ignore_index=True)
        write_text_atomic(out / PAIRS_FILE, to_csv(frame))


def memorization_audit(session: Session, suite: Suite, progress: bool) -> BesidePass | None:
    """The audit when ``memorization_rate`` is enabled: training features ready before any pass."""
    from xreal_bench.evaluation import cache_root, preprocessing, real_cache_dir

    cfg = session.cfg
    if table.MEMORIZATION.name not in cfg.metrics.enabled:
        return None
    if cfg.dataset.train_split == cfg.dataset.split:
        raise UserFacingError(
            f"memorization audit: dataset.train_split = {cfg.dataset.train_split!r} is the evaluated split: its images "
            "would count as training images (every real image memorized); set dataset.train_split to the training split"
        )
    role = resolve_role(table.EMBEDDING, cfg.metrics)
    extractor = suite.features[role]
    training = load_training_set(cfg, progress=progress and session.info.is_main)
    prep = preprocessing(session)
    features = training_features(
        training,
        extractor=Suite(suite.name, features={role: extractor}),
        prep=prep,
        cache_root=cache_root(session),
        session=session,
        progress=progress,
    )
    label = f"demo:{extractor.name}" if suite.name == "demo" else extractor.name
    return MemorizationAudit(
        training=training,
        train=features,
        role=role,
        evaluator=label,
        prep=prep,
        subjects={c.case_id: c.subject_id for c in session.scan.cases},
        device=session.device,
        dataset_root=session.scan.root,
        real_cache=real_cache_dir(session, suite),
        top_k=cfg.metrics.memorization_top_k,
        quantile=cfg.metrics.memorization_quantile,
    )
