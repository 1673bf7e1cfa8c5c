"""A run directory as the reports read it (:func:`load_run`): results rows, provenance, coverage,
per-image values, bootstrap draws, case facts, and where each source's images are.

Files ``evaluate`` writes beside ``results.csv`` / ``results.json`` (:mod:`xreal_bench.results`);
a run written before them loads without them, and whatever needs them says what it leaves out:

- ``per_image.csv``: one row per scored image, columns ``generator``, ``case_id``,
  ``sample_index``, then each per-image metric value (``ms_ssim``, ``dice_<structure>``,
  ``dice``) and the classifier's probabilities ``score/<label>``; blank where undefined.
- ``bootstrap.npz``: the resampled statistics behind every CI, key
  ``<generator>|<metric>|<subset>`` -> float64 ``[resamples]`` (NaN where a resample leaves the
  statistic undefined), and ``__meta__`` (JSON text: ``format``, ``seed``, ``confidence``,
  ``run_id``, and per generator the sha256 of its covered case ids).
  Resample *b* of every generator draws the same case positions (one seed, cases in sorted
  order), so generators that cover the same cases have paired draws.

Every name read from these files (generators, metrics) must follow the one safe-name rule
(:mod:`xreal_bench.names`) before anything uses it to build a path or a document.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from xreal_bench.cases import CasesFileError, read_cases
from xreal_bench.coverage import Coverage
from xreal_bench.errors import UserFacingError
from xreal_bench.names import NAME_RULE, inside, is_valid_name
from xreal_bench.results import (
    DRAW_KEY_SEPARATOR,
    DRAWS_FILE,
    DRAWS_META,
    PER_IMAGE_FILE,
    read_coverage,
    read_provenance,
    read_results,
)
from xreal_bench.rundir import GeneratorDir
from xreal_bench.types import CaseFacts

REFERENCE = "real"

#: Model-type groups of the paper's Table I, in row order.
GROUP_REFERENCE = "Reference"
GROUP_TEXT = "Text-to-image"
GROUP_SPATIAL = "Text + spatial control"
GROUPS = (GROUP_REFERENCE, GROUP_TEXT, GROUP_SPATIAL)
#: Generator inputs that are spatial conditions (a map, a box, an image to follow).
SPATIAL_INPUTS = frozenset({"anatomy", "pathology", "image", "mask"})
#: Modules of the suite's own reference generators (sanity rows, not models).
REFERENCE_MODULES = ("xreal_bench.generators.reference:", "xreal_bench.demo.generator:")

DrawKey = tuple[str, str, str]  # (generator, metric, subset)


@dataclass(frozen=True, eq=False)
class Run:
    """One evaluated run directory, read once; see the module docstring for the files."""

    path: Path
    frame: pd.DataFrame  # results.csv rows
    provenance: dict[str, Any]  # results.json ({} when absent)
    coverage: dict[str, Coverage]
    per_image: pd.DataFrame | None  # None: the run has no per_image.csv
    draws: Mapping[DrawKey, np.ndarray] = field(default_factory=dict)
    draws_meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def run_id(self) -> str:
        """``results.json``'s ``run_id``; the folder name for runs written before it existed."""
        return str(self.provenance.get("run_id") or self.path.name)

    @property
    def written(self) -> str:
        """When ``evaluate`` wrote the results (ISO 8601, UTC; "" unknown)."""
        return str(self.provenance.get("written", ""))

    @property
    def date(self) -> str:
        return self.written[:10]

    @property
    def label(self) -> str:
        """``<folder> (<date>)``: how tables name the run."""
        return f"{self.path.name} ({self.date})" if self.date else self.path.name

    @property
    def seed(self) -> int | None:
        seed = self.provenance.get("seeds", {}).get("run")
        return None if seed is None else int(seed)

    @property
    def demo(self) -> bool:
        """Scored with the demo's own evaluators (numbers not comparable with published ones)."""
        return bool(self.frame["evaluator"].str.startswith("demo:").any())

    @property
    def generators(self) -> list[str]:
        """Every source with a result row or a coverage record, ``real`` first, then by name."""
        names = set(self.frame["generator"]) | set(self.coverage)
        return ([REFERENCE] if REFERENCE in names else []) + sorted(names - {REFERENCE})

    @cached_property
    def cases(self) -> dict[str, CaseFacts]:
        """``cases.jsonl`` (case id -> facts); empty when the run has none."""
        try:
            return read_cases(self.path)
        except CasesFileError:
            return {}

    def identity(self, generator: str) -> dict[str, Any]:
        """The generator folder's recorded identity (``identity.json`` as ``results.json`` holds it)."""
        record = self.provenance.get("generators", {}).get(generator, {})
        identity = record.get("identity") if isinstance(record, dict) else None
        return identity if isinstance(identity, dict) else {}

    def group(self, generator: str) -> str:
        """Its Table I group: the real images and the suite's reference generators; text-to-image;
        text + spatial control (any spatial input: anatomy map, box, image)."""
        identity = self.identity(generator)
        code = str(identity.get("fields", {}).get("code.generator", ""))
        if generator == REFERENCE or code.startswith(REFERENCE_MODULES):
            return GROUP_REFERENCE
        inputs = set(identity.get("inputs", ()))
        return GROUP_SPATIAL if inputs & SPATIAL_INPUTS else GROUP_TEXT

    def image_path(self, generator: str, case_id: str, sample_index: int = 0) -> Path | None:
        """The stored image of (case, sample) of a source, if its manifest says it was made; else None. A manifest
        ``file`` that resolves outside the generator's folder is never followed."""
        entry = self.manifest(generator).get((case_id, sample_index))
        if entry is None or entry.status != "ok" or not entry.file:
            return None
        folder = self.path / generator
        path = folder / str(entry.file)
        return path if inside(folder, path) and path.is_file() else None

    def manifest(self, generator: str) -> dict:
        if generator not in self._manifests:
            folder = GeneratorDir(self.path, generator)
            self._manifests[generator] = folder.entries() if folder.root.is_dir() else {}
        return self._manifests[generator]

    @cached_property
    def _manifests(self) -> dict[str, dict]:
        return {}

    def anatomy_map(self, case_id: str) -> np.ndarray | None:
        """The case's anatomy label map when the run read maps from a folder (``conditioning.anatomy = 'folder'``) and the
        file is there; None otherwise (maps a segmenter made are not kept beside the run)."""
        from xreal_bench.conditioning.anatomy import read_label_map

        conditioning = self.provenance.get("config", {}).get("conditioning", {})
        folder = conditioning.get("anatomy_dir")
        if conditioning.get("anatomy") != "folder" or not folder:
            return None
        path = Path(folder) / f"{case_id}.png"
        if not path.is_file():
            return None
        square = self.provenance.get("config", {}).get("dataset", {}).get("square", "crop")
        return read_label_map(path, int(conditioning.get("resolution", 256)), square)

    def draws_for(self, generator: str, metric: str, subset: str = "all") -> np.ndarray | None:
        return self.draws.get((generator, metric, subset))


def check_names(path: Path, frame: pd.DataFrame) -> None:
    """Refuse results whose generator or metric names break the safe-name rule (they become paths and markup)."""
    bad = sorted({g for g in frame["generator"].astype(str) if not is_valid_name(g)})
    metrics = {m.partition("/")[0] for m in frame["metric"].astype(str)}
    bad += sorted(m for m in metrics if not is_valid_name(m))
    if bad:
        shown = ", ".join(repr(b) for b in bad[:5])
        raise UserFacingError(f"{path / 'results.csv'}: names that are not valid ({NAME_RULE}): {shown}")


def read_per_image(path: Path) -> pd.DataFrame | None:
    file = path / PER_IMAGE_FILE
    if not file.is_file():
        return None
    try:
        frame = pd.read_csv(file, dtype={"generator": str, "case_id": str})
    except (OSError, ValueError) as exc:
        raise UserFacingError(f"{file}: unreadable ({exc}); run `xreal-bench evaluate` again") from None
    missing = {"generator", "case_id", "sample_index"} - set(frame.columns)
    if missing:
        raise UserFacingError(f"{file}: missing column(s) {', '.join(sorted(missing))}; run `xreal-bench evaluate` again")
    return frame


def read_draws(path: Path) -> tuple[dict[DrawKey, np.ndarray], dict[str, Any]]:
    file = path / DRAWS_FILE
    if not file.is_file():
        return {}, {}
    try:
        with np.load(file, allow_pickle=False) as archive:
            meta = json.loads(str(archive[DRAWS_META])) if DRAWS_META in archive.files else {}
            draws: dict[DrawKey, np.ndarray] = {}
            for key in archive.files:
                if key == DRAWS_META:
                    continue
                parts = key.split(DRAW_KEY_SEPARATOR)
                if len(parts) != 3:
                    raise ValueError(f"key {key!r} is not <generator>|<metric>|<subset>")
                draws[(parts[0], parts[1], parts[2])] = np.asarray(archive[key], dtype=np.float64)
    except (OSError, ValueError) as exc:
        raise UserFacingError(f"{file}: unreadable ({exc}); run `xreal-bench evaluate` again") from None
    return draws, meta


def load_run(path: str | Path) -> Run:
    """Read the run directory ``path`` (a clear error when it holds no results)."""
    path = Path(path)
    if not path.is_dir():
        raise UserFacingError(f"{path}: not a run directory (no such folder)")
    frame = read_results(path)
    check_names(path, frame)
    draws, meta = read_draws(path)
    return Run(
        path=path,
        frame=frame,
        provenance=read_provenance(path),
        coverage=read_coverage(path),
        per_image=read_per_image(path),
        draws=draws,
        draws_meta=meta,
    )


def load_runs(paths: Sequence[str | Path]) -> list[Run]:
    """Each run directory once, in the order given (a folder named twice is an error)."""
    resolved = [Path(p).resolve() for p in paths]
    repeated = sorted({str(p) for p in resolved if resolved.count(p) > 1})
    if repeated:
        raise UserFacingError(f"run directory given more than once: {', '.join(repeated)}")
    return [load_run(p) for p in paths]
