"""The results store: ``results.csv`` (long format), ``results.json`` (provenance), and the
per-image values and bootstrap draws behind them (``per_image.csv``, ``bootstrap.npz``).

``results.csv`` has one row per (generator, metric, subset) with the columns
:data:`COLUMNS`; ``subset`` is ``all``, a pathology name, a demographic subgroup ``sex:female`` /
``age:40-60`` / ``race:WHITE`` / ``<attribute>:unknown`` or a fairness gap ``<attribute>:gap``
(:mod:`xreal_bench.subgroups`; a gap row's ``n`` counts cases); ``n`` counts what the row's value
rests on and ``n_unit`` says what that is (``images`` or ``cases``, the metric table's ``n_unit``;
per-class rows ``f1/<label>``, ``auc/<label>`` count the cases labelled for the class; results
written before the column get it from the table on reading); ``failed`` and ``missing`` are the generator's
failed and missing planned images (:mod:`xreal_bench.coverage`), repeated on each of its rows;
``evaluator`` names the network behind the number (``demo:`` prefix for the demo's own
evaluators, ``pixels`` for MS-SSIM).
``results.json`` records what is needed to trace every number: command line, config (and its
hash), dataset fingerprint, evaluators with weight hashes and preprocessing, thresholds,
package versions, device, world size, seeds, timings, failures, and ``coverage``: the rule
metrics follow for uncovered cases and, per source, the planned, ok, failed, missing and
evaluated images, the covered cases, the samples scored and the entries ignored. Each generator's
record holds ``demographics`` (:func:`demographics_counts`): how many of its scored images were
prompted with fallback demographics, which the leaderboard names in a footnote. ``run_id``
(:func:`new_run_id`, ``<UTC yyyymmddTHHMMSS>-<8 hex>``) is fresh for every evaluation and
``written`` is when it wrote the files (ISO 8601, UTC).

``per_image.csv`` (:func:`write_per_image`): one row per scored image of every source, ``real``
included — ``generator``, ``case_id``, ``sample_index``, each per-image metric value (``ms_ssim``,
``dice_<structure>``, ``dice``: the values the rows average) and the classifier's probabilities
``score/<label>``; blank where undefined. Plain CSV for tools (names are safe names, values numbers).

``bootstrap.npz`` (:func:`write_draws`): the resampled statistics behind every CI, key
``<generator>|<metric>|<subset>`` -> float64 ``[resamples]`` (NaN where a resample leaves the
statistic undefined; the row's CI is the percentile interval of the others), and ``__meta__``,
JSON text: ``format`` (:data:`DRAWS_FORMAT`), ``run_id``, ``seed``, ``confidence`` and ``cases``:
per generator the sha256 of its covered case ids, sorted, joined by ``"\n"``. Resample *b* of
every row draws the same positions among the sorted covered cases
(:func:`xreal_bench.metrics.bootstrap.case_picks`), so generators covering the same cases (equal
``cases`` hashes) have paired draws. No pickled objects (``numpy.load(allow_pickle=False)`` reads it).

``evaluate`` writes ``per_image.csv`` and ``bootstrap.npz`` first and ``results.csv`` /
``results.json`` last, each atomically.
"""

from __future__ import annotations

import hashlib
import json
import platform
import secrets
import socket
import sys
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from xreal_bench.atomic import write_atomic, write_text_atomic
from xreal_bench.coverage import Coverage
from xreal_bench.metrics import table
from xreal_bench.rundir import ManifestEntry
from xreal_bench.weights import VERIFIED, WEIGHT_FREE

COLUMNS = [
    "generator",
    "metric",
    "subset",
    "value",
    "ci_low",
    "ci_high",
    "n",
    "n_unit",
    "failed",
    "missing",
    "evaluator",
    "note",
]
PER_IMAGE_FILE = "per_image.csv"
DRAWS_FILE = "bootstrap.npz"
DRAWS_META = "__meta__"
DRAWS_FORMAT = 1
DRAW_KEY_SEPARATOR = "|"
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


def n_unit_of(metric: str) -> str:
    """What ``n`` of a row of ``metric`` counts, from the metric table ("" for a name it does not know)."""
    try:
        return table.row_metric(metric).n_unit if "/" not in metric else "cases"
    except KeyError:
        return ""


def with_units(frame: pd.DataFrame) -> pd.DataFrame:
    """``n_unit`` filled from the metric table where blank (rows made without it, results written before it)."""
    given = zip(frame["n_unit"], frame["metric"], strict=True)
    frame["n_unit"] = [unit if isinstance(unit, str) and unit else n_unit_of(metric) for unit, metric in given]
    return frame


def rows_frame(rows: Sequence) -> pd.DataFrame:
    frame = with_units(pd.DataFrame([{c: getattr(r, c) for c in COLUMNS} for r in rows], columns=COLUMNS))
    return frame.sort_values(
        ["generator", "subset", "metric"], key=lambda col: col.map(sort_key) if col.name == "subset" else col, kind="stable"
    ).reset_index(drop=True)


def sort_key(subset: str) -> str:
    return "" if subset == "all" else subset


def new_run_id(now: datetime | None = None) -> str:
    """A fresh evaluation id: ``<UTC yyyymmddTHHMMSS>-<8 hex>`` (random hex)."""
    return f"{(now or datetime.now(UTC)).astimezone(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(4)}"


def write_results(out: Path, rows: Sequence, provenance: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``results.csv`` and ``results.json`` atomically; returns both paths. ``run_id`` and
    ``written`` are added unless ``provenance`` has them."""
    out.mkdir(parents=True, exist_ok=True)
    frame = rows_frame(rows)
    csv_path, json_path = out / "results.csv", out / "results.json"
    write_text_atomic(csv_path, frame.to_csv(index=False))
    now = datetime.now(UTC)
    provenance = {"run_id": new_run_id(now), "written": now.isoformat(timespec="seconds"), **provenance}
    write_text_atomic(json_path, json.dumps(provenance, indent=2, sort_keys=False, default=str))
    return csv_path, json_path


def write_per_image(out: Path, frame: pd.DataFrame) -> Path:
    """Write ``per_image.csv`` atomically (see the module docstring); returns its path."""
    path = Path(out) / PER_IMAGE_FILE
    write_text_atomic(path, frame.to_csv(index=False))
    return path


def draw_key(generator: str, metric: str, subset: str) -> str:
    return DRAW_KEY_SEPARATOR.join((generator, metric, subset))


def case_set_hash(case_ids: Iterable[str]) -> str:
    """sha256 of a source's covered case ids, sorted and joined by newlines."""
    return hashlib.sha256("\n".join(sorted(set(case_ids))).encode()).hexdigest()


def write_draws(out: Path, rows: Sequence, *, run_id: str, seed: int, confidence: float, cases: Mapping[str, str]) -> Path:
    """Write ``bootstrap.npz`` atomically: the draws of every row that has them, and ``__meta__``
    (``cases``: generator -> :func:`case_set_hash`); returns its path."""
    meta = {"format": DRAWS_FORMAT, "run_id": run_id, "seed": seed, "confidence": confidence, "cases": dict(cases)}
    arrays = {DRAWS_META: np.array(json.dumps(meta))}
    arrays.update(
        (draw_key(r.generator, r.metric, r.subset), np.asarray(r.draws, dtype=np.float64)) for r in rows if r.draws is not None
    )
    path = Path(out) / DRAWS_FILE
    write_atomic(path, lambda f: np.savez(f, allow_pickle=False, **arrays))
    return path


def read_results(out: Path) -> pd.DataFrame:
    path = Path(out) / "results.csv"
    if not path.is_file():
        from xreal_bench.errors import UserFacingError

        raise UserFacingError(f"no results at {path}; run `xreal-bench evaluate` (or `run`) first")
    text = dict.fromkeys(("generator", "metric", "subset", "n_unit", "evaluator", "note"), str)
    frame = pd.read_csv(path, dtype=text).fillna({"evaluator": "", "note": ""})
    return with_units(frame.reindex(columns=COLUMNS))  # results written before later columns: NaN there, n_unit from the table


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
        if isinstance(record, dict) and record.get("weights_status", VERIFIED) not in (VERIFIED, WEIGHT_FREE):
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
