"""One evaluation pass per image source: decode each image once, run each evaluator once.

Real side: every real test image is decoded through the run's image path
(:func:`xreal_bench.imaging.load_standard` with the run's :class:`~xreal_bench.imaging.Geometry`:
intensity rule, square, resize, quantise — the path generated images took when the harness
stored them), then every enabled evaluator runs on it. Its per-case outputs (pixels, packed masks, features, class
scores) are cached as one ``.npz`` per case under a fingerprint of the file list (sizes and
mtimes), the preprocessing, the evaluators' names, weight hashes and preprocessing, the
versions of the libraries that shape the numbers, :data:`CODE_VERSION` and the package
version; any change invalidates the cache, and a second generator (or a
re-run) never recomputes it. An interrupted real pass resumes case by case.

Generated side: each generated image is decoded once, as stored (the intensity rule was applied
when it was written and is not applied twice); the workers load the real case's
cached pixels and masks beside it, so paired MS-SSIM and Dice are computed in the same pass.
Only what metrics need is kept: per-image features and streaming feature statistics
(float64), class scores, per-image MS-SSIM and Dice, per-case diversity.

Distributed (torchrun): ranks take every ``world``-th case (all samples of a case stay on one
rank); feature statistics are all-reduced exactly, per-image outputs gathered to rank 0.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from xreal_bench import distributed
from xreal_bench.atomic import write_atomic
from xreal_bench.distributed import DistInfo
from xreal_bench.imaging import Geometry, ImageDecodeError, load_standard
from xreal_bench.metrics.dice import dice_per_structure
from xreal_bench.metrics.msssim import diversity_ms_ssim, paired_ms_ssim
from xreal_bench.metrics.stats import FeatureStats, all_reduce
from xreal_bench.metrics.suite import Suite
from xreal_bench.metrics.table import DICE

#: Bump when anything that changes cached evaluator outputs changes in this module.
CODE_VERSION = "1"


@dataclass(frozen=True)
class ImageItem:
    case_id: str
    sample_index: int
    path: Path


@dataclass(frozen=True)
class Preprocessing:
    """How every evaluated image is brought to the evaluators' common input."""

    resolution: int
    bits: int
    geometry: Geometry

    def load(self, path: Path) -> np.ndarray:
        return load_standard(path, self.resolution, self.bits, self.geometry)

    def stored(self) -> Preprocessing:
        """The same format for a stored run image: its intensity rule was applied when it was
        written (``harness.to_run_image``); a second min-max stretch would change it."""
        return replace(self, geometry=replace(self.geometry, intensity="none"))


@dataclass
class SourceOutputs:
    """Per-image evaluator outputs of one source, in ``keys`` order (sorted by case, sample)."""

    keys: list[tuple[str, int]]
    features: dict[str, np.ndarray] = field(default_factory=dict)  # role -> [N, d] float32
    stats: dict[str, FeatureStats] = field(default_factory=dict)  # role -> streaming statistics (all ranks)
    scores: np.ndarray | None = None  # [N, L] classifier probabilities
    ms_ssim: np.ndarray | None = None  # [N] paired with the real image of the case
    dice: dict[str, np.ndarray] = field(default_factory=dict)  # structure -> [N]
    diversity: dict[str, float] = field(default_factory=dict)  # case_id -> mean pairwise MS-SSIM
    #: Per-image values computed beside the pass, keyed by metric-table entry key (memorization, lesion
    #: adherence): float64 [N], NaN where undefined. Added on every rank after :func:`finish`.
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)  # "<file>: <error>" for undecodable images

    @property
    def case_ids(self) -> list[str]:
        return [k[0] for k in self.keys]


#: Distributions whose versions shape the cached real-side numbers (decoding, resizing, networks, MS-SSIM).
NUMERIC_LIBRARIES = ("torch", "torchvision", "torchxrayvision", "torch-fidelity", "numpy", "pillow", "pytorch-msssim")


@functools.cache
def library_versions() -> dict[str, str]:
    """Installed versions of :data:`NUMERIC_LIBRARIES` (``"absent"`` for one not installed); torch's
    includes its build (``+cu130``, ``+cpu``)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in NUMERIC_LIBRARIES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "absent"
    found["torch"] = torch.__version__
    return found


def real_fingerprint(scan_fingerprint: str, prep: Preprocessing, suite: Suite) -> str:
    """Key of the real-side cache: the scanned files, the preprocessing, the evaluators (names, weight
    hashes, preprocessing), the library versions that shape the numbers and the code versions."""
    from xreal_bench import __version__

    blob = json.dumps(
        {
            "scan": scan_fingerprint,
            "prep": [prep.resolution, prep.bits, prep.geometry.square, prep.geometry.intensity],
            "suite": suite.describe(),
            "code": CODE_VERSION,
            "xreal_bench": __version__,
            "libraries": library_versions(),
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


class RealImages(Dataset):
    """Decodes real images; failures come back flagged, never raised."""

    def __init__(self, items: Sequence[ImageItem], prep: Preprocessing):
        self.items, self.prep = list(items), prep

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        try:
            pixels = self.prep.load(self.items[i].path)
            error = ""
        except ImageDecodeError as exc:
            pixels = np.zeros((self.prep.resolution,) * 2, dtype=np.uint8 if self.prep.bits == 8 else np.uint16)
            error = str(exc)
        return {"index": i, "pixels": torch.from_numpy(pixels.astype(np.int32)), "error": error}


class GeneratedImages(RealImages):
    """Decodes generated images and loads the real case's cached pixels (and masks) beside them.

    With ``ms_ssim``, the paired MS-SSIM against the real image (float64) is computed here, in
    the DataLoader workers, overlapping the evaluators' forward passes.
    """

    def __init__(
        self, items: Sequence[ImageItem], prep: Preprocessing, real_dir: Path, reference_masks: Callable | None, ms_ssim: bool
    ):
        super().__init__(items, prep.stored())
        self.real_dir, self.reference_masks, self.ms_ssim = real_dir, reference_masks, ms_ssim

    def paired_ms_ssim(self, real: torch.Tensor, generated: torch.Tensor) -> float:
        return float(paired_ms_ssim(*(to_float(p[None], self.prep.bits).double() for p in (real, generated)))[0])

    def __getitem__(self, i: int) -> dict:
        sample = super().__getitem__(i)
        case_id = self.items[i].case_id
        with np.load(self.real_dir / f"{case_id}.npz") as cached:
            ref_pixels = torch.from_numpy(cached["pixels"].astype(np.int32))
            if self.ms_ssim:
                sample["paired"] = float("nan") if sample["error"] else self.paired_ms_ssim(ref_pixels, sample["pixels"])
            if self.reference_masks is not None:
                sample["ref_masks"] = torch.from_numpy(self.reference_masks(case_id))
            elif "masks" in cached.files:
                sample["ref_masks"] = torch.from_numpy(unpack_masks(cached["masks"], self.prep.resolution))
        return sample


def pack_masks(masks: np.ndarray) -> np.ndarray:
    return np.packbits(masks.astype(bool), axis=-1)


def unpack_masks(packed: np.ndarray, width: int) -> np.ndarray:
    return np.unpackbits(packed, axis=-1, count=width).astype(bool)


def to_float(pixels: torch.Tensor, bits: int) -> torch.Tensor:
    """Integer pixels ``[B, H, W]`` -> float ``[B, 1, H, W]`` in [0, 1] (the evaluators' input)."""
    return (pixels.float() / (255.0 if bits == 8 else 65535.0)).unsqueeze(1)


def loader(dataset: Dataset, batch_size: int, workers: int) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers, persistent_workers=False)


def case_shard(case_ids: Sequence[str], info: DistInfo) -> set[str]:
    """Cases this rank evaluates: every ``world``-th case id in sorted order."""
    return set(distributed.shard(sorted(set(case_ids)), info))


def evaluate_real(
    items: Sequence[ImageItem],
    *,
    suite: Suite,
    prep: Preprocessing,
    cache_dir: Path,
    info: DistInfo,
    batch_size: int,
    workers: int,
    progress: bool = True,
) -> SourceOutputs:
    """Per-case real outputs, computed for cases missing from ``cache_dir`` and cached there."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    mine = case_shard([i.case_id for i in items], info)
    local = sorted((i for i in items if i.case_id in mine), key=lambda i: i.case_id)
    todo = [i for i in local if not (cache_dir / f"{i.case_id}.npz").exists()]
    failed: list[str] = []
    if todo:
        bar = tqdm(total=len(todo), desc="real images", unit="img", disable=not (progress and info.is_main), dynamic_ncols=True)
        for batch in loader(RealImages(todo, prep), batch_size, workers):
            ok = [j for j, e in enumerate(batch["error"]) if not e]
            failed += [f"{todo[int(batch['index'][j])].path}: {e}" for j, e in enumerate(batch["error"]) if e]
            if ok:
                pixels = batch["pixels"][ok]
                out = run_evaluators(suite, to_float(pixels, prep.bits))
                for row, j in enumerate(ok):
                    item = todo[int(batch["index"][j])]
                    arrays: dict[str, Any] = {"pixels": pixels[row].numpy().astype(np.uint8 if prep.bits == 8 else np.uint16)}
                    arrays.update({f"features_{r}": f[row] for r, f in out["features"].items()})
                    if "scores" in out:
                        arrays["scores"] = out["scores"][row]
                    if "masks" in out:
                        arrays["masks"] = pack_masks(out["masks"][row])
                    write_atomic(cache_dir / f"{item.case_id}.npz", functools.partial(np.savez, **arrays))
            bar.update(len(batch["error"]))
        bar.close()
    outputs = SourceOutputs(keys=[])
    features: dict[str, list] = {r: [] for r in suite.features}
    scores, masks_n = [], []
    for item in local:
        path = cache_dir / f"{item.case_id}.npz"
        if not path.exists():
            continue
        with np.load(path) as cached:
            outputs.keys.append((item.case_id, 0))
            for r in features:
                features[r].append(cached[f"features_{r}"])
            if suite.classifier is not None:
                scores.append(cached["scores"])
            if suite.segmenter is not None:
                masks_n.append(unpack_masks(cached["masks"], prep.resolution).any(axis=(-1, -2)))
    outputs.features = {r: np.stack(v) if v else np.zeros((0, suite.features[r].dim), np.float32) for r, v in features.items()}
    if suite.classifier is not None:
        outputs.scores = np.stack(scores) if scores else np.zeros((0, len(suite.classifier.labels)), np.float32)
    if suite.segmenter is not None:
        # The reference row compares the real segmentation with itself: 1 where defined, NaN where empty.
        present = np.stack(masks_n) if masks_n else np.zeros((0, 4), bool)
        outputs.dice = self_dice(present)
    outputs.ms_ssim = np.ones(len(outputs.keys))
    outputs.failed = failed
    return finish(outputs, suite, info)


def self_dice(present: np.ndarray) -> dict[str, np.ndarray]:
    """Dice of masks with themselves: 1.0 for a non-empty structure, NaN for an empty one."""
    structures = {"lungs": present[:, :2].any(axis=1), "heart": present[:, 2], "aorta": present[:, 3]}
    out = {k: np.where(v, 1.0, np.nan) for k, v in structures.items()}
    stacked = np.stack(list(out.values())) if len(present) else np.zeros((3, 0))
    with np.errstate(invalid="ignore"):
        out[DICE.name] = np.where(np.isnan(stacked).all(axis=0), np.nan, 1.0)
    return out


def run_evaluators(suite: Suite, images: torch.Tensor) -> dict:
    """Every evaluator of the suite once on a batch (an extractor serving two roles runs once)."""
    by_evaluator: dict[int, np.ndarray] = {}
    for ex in suite.features.values():
        if id(ex) not in by_evaluator:
            by_evaluator[id(ex)] = ex(images).numpy()
    out: dict = {"features": {role: by_evaluator[id(ex)] for role, ex in suite.features.items()}}
    if suite.classifier is not None:
        out["scores"] = suite.classifier(images).numpy()
    if suite.segmenter is not None:
        out["masks"] = suite.segmenter(images).numpy()
    return out


def evaluate_generated(
    items: Sequence[ImageItem],
    *,
    suite: Suite,
    prep: Preprocessing,
    real_dir: Path,
    info: DistInfo,
    name: str,
    batch_size: int,
    workers: int,
    ms_ssim: bool = True,
    diversity: bool = True,
    reference_masks: Callable[[str], np.ndarray] | None = None,
    progress: bool = True,
) -> SourceOutputs:
    """One pass over a generator's images (this rank's cases); outputs gathered to every rank."""
    mine = case_shard([i.case_id for i in items], info)
    local = sorted(
        (i for i in items if i.case_id in mine and (real_dir / f"{i.case_id}.npz").exists()),
        key=lambda i: (i.case_id, i.sample_index),
    )
    outputs = SourceOutputs(keys=[])
    features: dict[str, list] = {r: [] for r in suite.features}
    stats = {r: FeatureStats.empty(ex.dim) for r, ex in suite.features.items()}
    scores, msssim = [], []
    dice: dict[str, list] = {}
    pending: tuple[str, list[torch.Tensor]] = ("", [])
    bar = tqdm(total=len(local), desc=f"evaluate {name}", unit="img", disable=not (progress and info.is_main), dynamic_ncols=True)
    for batch in loader(GeneratedImages(local, prep, real_dir, reference_masks, ms_ssim), batch_size, workers):
        ok = [j for j, e in enumerate(batch["error"]) if not e]
        outputs.failed += [f"{local[int(batch['index'][j])].path}: {e}" for j, e in enumerate(batch["error"]) if e]
        if ok:
            images = to_float(batch["pixels"][ok], prep.bits)
            out = run_evaluators(suite, images)
            outputs.keys += [(local[int(batch["index"][j])].case_id, local[int(batch["index"][j])].sample_index) for j in ok]
            for r, f in out["features"].items():
                features[r].append(f)
                stats[r].update(f)
            if "scores" in out:
                scores.append(out["scores"])
            if "masks" in out:
                for k, v in dice_per_structure(out["masks"], batch["ref_masks"][ok].numpy()).items():
                    dice.setdefault(k, []).append(v)
            if ms_ssim:
                msssim.append(batch["paired"][ok].numpy())
            if diversity:
                for key, image in zip(outputs.keys[-len(ok) :], images):
                    if key[0] != pending[0]:
                        flush_diversity(pending, outputs.diversity)
                        pending = (key[0], [])
                    pending[1].append(image.double())
        bar.update(len(batch["error"]))
    bar.close()
    flush_diversity(pending, outputs.diversity)
    outputs.features = {
        r: np.concatenate(v) if v else np.zeros((0, suite.features[r].dim), np.float32) for r, v in features.items()
    }
    outputs.stats = stats
    if suite.classifier is not None:
        outputs.scores = np.concatenate(scores) if scores else np.zeros((0, len(suite.classifier.labels)), np.float32)
    outputs.dice = {k: np.concatenate(v) for k, v in dice.items()}
    outputs.ms_ssim = np.concatenate(msssim) if msssim else None
    return finish(outputs, suite, info, streamed=True)


def flush_diversity(pending: tuple[str, list[torch.Tensor]], into: dict[str, float]) -> None:
    case_id, images = pending
    if len(images) >= 2:
        into[case_id] = diversity_ms_ssim(torch.stack(images))


def finish(local: SourceOutputs, suite: Suite, info: DistInfo, streamed: bool = False) -> SourceOutputs:
    """All-reduce feature statistics exactly and gather per-image outputs (sorted by key)."""
    stats = (
        local.stats if streamed else {r: FeatureStats.empty(ex.dim).update(local.features[r]) for r, ex in suite.features.items()}
    )
    stats = {r: all_reduce(s) for r, s in stats.items()}
    parts = distributed.gather_objects(local)
    if len(parts) == 1:
        merged = local
    else:
        merged = SourceOutputs(keys=[k for p in parts for k in p.keys])
        merged.features = {r: np.concatenate([p.features[r] for p in parts]) for r in local.features}
        if local.scores is not None:
            merged.scores = np.concatenate([p.scores for p in parts])
        if local.ms_ssim is not None:
            merged.ms_ssim = np.concatenate([p.ms_ssim for p in parts])
        merged.dice = {k: np.concatenate([p.dice[k] for p in parts]) for k in local.dice}
        merged.diversity = dict(sorted((k, v) for p in parts for k, v in p.diversity.items()))
        merged.failed = [f for p in parts for f in p.failed]
        order = sorted(range(len(merged.keys)), key=merged.keys.__getitem__)
        merged = reorder(merged, np.asarray(order, dtype=np.int64))
    merged.stats = stats
    return merged


def reorder(out: SourceOutputs, order: np.ndarray) -> SourceOutputs:
    return SourceOutputs(
        keys=[out.keys[i] for i in order],
        features={r: f[order] for r, f in out.features.items()},
        stats=out.stats,
        scores=out.scores[order] if out.scores is not None else None,
        ms_ssim=out.ms_ssim[order] if out.ms_ssim is not None else None,
        dice={k: v[order] for k, v in out.dice.items()},
        diversity=out.diversity,
        extra={k: v[order] for k, v in out.extra.items()},
        failed=out.failed,
    )
