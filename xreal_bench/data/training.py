"""The training images of the memorization audit: the ``dataset.train_split`` scan and its seeded subsample.

One definition serves the audit (whose features are searched) and the ``memorizer`` reference
generator (whose images are drawn from the same set), so both see exactly the same training cases.
``run.num_cases`` limits the evaluated split only; the training side is the whole split or, with
``metrics.memorization_train_n = N > 0``, ``N`` rows of the split drawn uniformly without replacement by
``numpy.random.default_rng(metrics.bootstrap_seed)`` in case-id order *before* the file check (only their
files are read; an undecodable one is dropped and counted in the scan, not replaced), the usable ones
are the training set.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from xreal_bench.config import BenchConfig
from xreal_bench.data.csvfile import DatasetError
from xreal_bench.errors import UserFacingError
from xreal_bench.types import Case


@dataclass(frozen=True)
class TrainingSet:
    """The searched training images (sorted by case id) and what determines them."""

    split: str
    cases: tuple[Case, ...]
    available: int  # images of the split that passed the scan's file check
    subsample: int  # metrics.memorization_train_n (0 = all)
    seed: int
    scan_fingerprint: str

    @property
    def fingerprint(self) -> str:
        """sha256 over the split scan's fingerprint, the subsample rule and the chosen case ids."""
        blob = json.dumps(
            {
                "scan": self.scan_fingerprint,
                "subsample": self.subsample,
                "seed": self.seed,
                "cases": [c.case_id for c in self.cases],
            }
        )
        return hashlib.sha256(blob.encode()).hexdigest()


def subsample_training(cases: Sequence[Case], n: int, seed: int) -> tuple[Case, ...]:
    """``n`` cases drawn without replacement (seeded) from ``cases`` in case-id order; all of them when
    ``n`` is 0 or at least their number. The result is sorted by case id."""
    ordered = sorted(cases, key=lambda c: c.case_id)
    if n <= 0 or n >= len(ordered):
        return tuple(ordered)
    picks = np.sort(np.random.default_rng(seed).choice(len(ordered), size=n, replace=False))
    return tuple(ordered[i] for i in picks)


def load_training_set(cfg: BenchConfig, *, progress: bool = False) -> TrainingSet:
    """Scan ``dataset.train_split`` (every image, whatever ``run.num_cases``) and apply the subsample."""
    from xreal_bench.data.dataset import load_dataset

    split, m = cfg.dataset.train_split, cfg.metrics
    whole = replace(cfg, run=replace(cfg.run, num_cases=0))
    try:
        # Only the drawn rows' files are read and checked: a 370k-image split is not read in full at every evaluate.
        scan = load_dataset(whole, split=split, progress=progress, announce=False, preselect=m.memorization_train_n)
    except DatasetError as exc:
        raise UserFacingError(
            f"memorization audit: the training split (dataset.train_split = {split!r}) cannot be read: {exc}"
        ) from exc
    if not scan.cases:
        raise UserFacingError(
            f"memorization audit: no usable image in the training split (dataset.train_split = {split!r}) under {scan.root}"
        )
    cases = subsample_training(scan.cases, m.memorization_train_n, m.bootstrap_seed)
    return TrainingSet(split, cases, len(scan.cases), m.memorization_train_n, m.bootstrap_seed, scan.fingerprint)


def training_loader(cfg: BenchConfig) -> Callable[[], tuple[Case, ...]]:
    """The training cases of ``cfg``, scanned on the first call only (for a generator's context)."""

    @functools.cache
    def cases() -> tuple[Case, ...]:
        return load_training_set(cfg).cases

    return cases
