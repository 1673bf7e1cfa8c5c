"""The results store: ``results.csv`` (long format) and ``results.json`` (provenance).

``results.csv`` has one row per (generator, metric, subset) with the columns
:data:`COLUMNS`; ``subset`` is ``all`` or a pathology name; ``n`` counts what the row's value
rests on (images or cases, per the metric table); ``failed`` and ``missing`` are the generator's
failed and missing planned images (:mod:`xreal_bench.coverage`), repeated on each of its rows;
``evaluator`` names the network behind the number (``demo:`` prefix for the demo's own
evaluators, ``pixels`` for MS-SSIM).
``results.json`` records what is needed to trace every number: command line, config (and its
hash), dataset fingerprint, evaluators with weight hashes and preprocessing, thresholds,
package versions, device, world size, seeds, timings, failures, and ``coverage``: the rule
metrics follow for uncovered cases and, per source, the planned, ok, failed, missing and
evaluated images, the covered cases, the samples scored and the entries ignored. Each generator's
record holds ``demographics`` (:func:`demographics_counts`): how many of its scored images were
prompted with fallback demographics, which the leaderboard names in a footnote.
"""

from __future__ import annotations

import json
import platform
import socket
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from xreal_bench.atomic import write_text_atomic
from xreal_bench.coverage import Coverage
from xreal_bench.rundir import ManifestEntry

COLUMNS = ["generator", "metric", "subset", "value", "ci_low", "ci_high", "n", "failed", "missing", "evaluator", "note"]
PACKAGES = (
    "xreal-bench",
    "torch",
    "torchvision",
    "torchxrayvision",
    "torch-fidelity",
    "pytorch-msssim",
    "scikit-learn",
    "scipy",
    "numpy",
    "pandas",
    "pillow",
    "diffusers",
    "transformers",
)


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def environment(device: str, world: int) -> dict[str, Any]:
    import torch

    return {
        "device": device,
        "device_name": torch.cuda.get_device_name(0)
        if device.startswith("cuda") and torch.cuda.is_available()
        else platform.processor() or platform.machine(),
        "world_size": world,
        "host": socket.gethostname(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(),
    }


def rows_frame(rows: Sequence) -> pd.DataFrame:
    frame = pd.DataFrame([asdict(r) for r in rows], columns=COLUMNS)
    return frame.sort_values(
        ["generator", "subset", "metric"], key=lambda col: col.map(sort_key) if col.name == "subset" else col, kind="stable"
    ).reset_index(drop=True)


def sort_key(subset: str) -> str:
    return "" if subset == "all" else subset


def write_results(out: Path, rows: Sequence, provenance: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``results.csv`` and ``results.json`` atomically; returns both paths."""
    out.mkdir(parents=True, exist_ok=True)
    frame = rows_frame(rows)
    csv_path, json_path = out / "results.csv", out / "results.json"
    write_text_atomic(csv_path, frame.to_csv(index=False))
    provenance = {"written": datetime.now(UTC).isoformat(timespec="seconds"), **provenance}
    write_text_atomic(json_path, json.dumps(provenance, indent=2, sort_keys=False, default=str))
    return csv_path, json_path


def read_results(out: Path) -> pd.DataFrame:
    path = Path(out) / "results.csv"
    if not path.is_file():
        from xreal_bench.errors import UserFacingError

        raise UserFacingError(f"no results at {path}; run `xreal-bench evaluate` (or `run`) first")
    text = dict.fromkeys(("generator", "metric", "subset", "evaluator", "note"), str)
    frame = pd.read_csv(path, dtype=text).fillna({"evaluator": "", "note": ""})
    return frame.reindex(columns=COLUMNS)  # results written before the failed/missing columns: NaN there


def read_provenance(out: Path) -> dict[str, Any]:
    """``results.json`` of the run in ``out`` (empty when it is absent or unreadable: the reports then omit what it adds)."""
    try:
        provenance = json.loads((Path(out) / "results.json").read_text())
    except (OSError, ValueError):
        return {}
    return provenance if isinstance(provenance, dict) else {}


def read_coverage(out: Path) -> dict[str, Coverage]:
    """Each source's coverage record from ``results.json`` (empty when there is none)."""
    path = Path(out) / "results.json"
    section = read_provenance(out).get("coverage", {})
    try:
        return {name: Coverage.from_dict(record) for name, record in section.get("sources", {}).items()}
    except (TypeError, AttributeError) as exc:
        from xreal_bench.errors import UserFacingError

        raise UserFacingError(f"{path}: unreadable coverage record ({exc}); run `xreal-bench evaluate` again") from None


def read_unverified_weights(out: Path) -> list[str]:
    """Every weights file behind ``results.json`` that no published hash confirms, as
    ``"<who> `<artifact>` (sha256 <prefix>…)"`` lines for the reports' footnotes."""
    provenance = read_provenance(out)
    found = []
    for role, record in provenance.get("evaluators", {}).items():
        if isinstance(record, dict) and record.get("weights_status", "verified") != "verified":
            found.append(f"{role} `{record.get('name')}` (sha256 {str(record.get('weights_sha256'))[:12]}…)")
    for generator, record in provenance.get("generators", {}).items():
        for artifact, weights in record.get("weights", {}).items():
            if weights.get("status") not in ("verified", "absent"):
                found.append(f"generator `{generator}`: `{artifact}` (sha256 {str(weights.get('sha256'))[:12]}…)")
    return found


#: ``condition.inputs.demographics`` of an image prompted with the case's own MIMIC-IV demographics;
#: any other recorded value (``"fallback (age 65, ...)"``) names the fallback values used.
MIMIC_IV_DEMOGRAPHICS = "mimic-iv"


def recorded_demographics(entry: ManifestEntry) -> str | None:
    """Where the demographics of the entry's prompt came from (``condition.inputs.demographics``); None if not recorded."""
    inputs = entry.condition.get("inputs") if isinstance(entry.condition, dict) else None
    value = inputs.get("demographics") if isinstance(inputs, dict) else None
    return None if value in (None, "") else str(value)


def demographics_counts(entries: Iterable[ManifestEntry]) -> dict[str, Any]:
    """Of a generator's scored images (``entries``): how many there are, how many recorded where their
    prompt's demographics came from, and how many used a fallback, per recorded fallback value."""
    images, recorded, fallbacks = 0, 0, Counter[str]()
    for entry in entries:
        images += 1
        value = recorded_demographics(entry)
        if value is None:
            continue
        recorded += 1
        if value != MIMIC_IV_DEMOGRAPHICS:
            fallbacks[value] += 1
    return {
        "images": images,
        "recorded": recorded,
        "fallback": sum(fallbacks.values()),
        "fallback_values": dict(fallbacks.most_common()),
    }


def fallback_text(values: dict[str, int]) -> str:
    """``"age 65, race white, sex female"``, or with counts when several fallbacks were used."""
    inner = {value.removeprefix("fallback (").removesuffix(")"): count for value, count in values.items()}
    if len(inner) <= 1:
        return next(iter(inner), "values not recorded")
    return "; ".join(f"{value}: {count}" for value, count in inner.items())


def read_demographics_fallbacks(out: Path) -> list[str]:
    """Every generator behind ``results.json`` whose images used fallback demographics, as
    ``"`<generator>`: 12 of 40 images used fallback demographics (age 65, ...)"`` lines for the leaderboard footnote."""
    provenance = read_provenance(out)
    found = []
    for generator, record in provenance.get("generators", {}).items():
        counts = record.get("demographics") if isinstance(record, dict) else None
        if not isinstance(counts, dict) or not counts.get("fallback"):
            continue
        found.append(
            f"`{generator}`: {counts['fallback']} of {counts.get('images', '?')} images used fallback demographics "
            f"({fallback_text(counts.get('fallback_values', {}))})"
        )
    return found
