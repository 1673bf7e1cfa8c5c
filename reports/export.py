"""Machine-readable results: one JSON document per run (schema ``xreal-bench/results``, version 1,
``xreal_bench/schemas/results-v1.schema.json``, documented in ``docs/results-schema.md``), and per
generator the Hugging Face model-card ``model-index`` block.

The document is strict JSON: NaN and infinities become ``null`` everywhere, counts are integers.
"""

from __future__ import annotations

import importlib.resources
import json
import math
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from xreal_bench.atomic import write_text_atomic
from xreal_bench.metrics import table as metric_table
from xreal_bench.names import check_generator_name
from xreal_bench.reports.runs import REFERENCE, Run

SCHEMA_NAME = "xreal-bench/results"
SCHEMA_VERSION = 1
SCHEMA_FILE = "results-v1.schema.json"
#: Columns holding counts: integers in the document even where pandas read them as floats (a blank made them NaN).
COUNT_COLUMNS = ("n", "failed", "missing", "sample_index")
TASK = {"type": "text-to-image", "name": "Chest X-ray generation"}
DEMO_NOTE = "demo evaluators, not comparable"
#: Project-URL labels read from the package metadata, in order of preference.
URL_LABELS = ("homepage", "repository", "source")


def suite_version() -> str:
    try:
        return metadata.version("xreal-bench")
    except metadata.PackageNotFoundError:
        from xreal_bench import __version__

        return __version__


def project_url() -> str | None:
    """The project's URL from the installed metadata (``[project.urls]`` in pyproject.toml); None if it names none."""
    try:
        entries = metadata.metadata("xreal-bench").get_all("Project-URL") or []
    except metadata.PackageNotFoundError:
        return None
    urls = {label.strip().lower(): url.strip() for label, _, url in (e.partition(",") for e in entries)}
    return next((urls[label] for label in URL_LABELS if label in urls), None)


def schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of :func:`run_document`'s output."""
    return json.loads((importlib.resources.files("xreal_bench") / "schemas" / SCHEMA_FILE).read_text())


def plain(value: Any) -> Any:
    """``value`` as JSON: numpy scalars as Python numbers, NaN and infinities as None, containers recursively."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows of ``frame`` as JSON objects (NaN -> null; count columns as integers)."""
    rows = []
    for row in frame.to_dict(orient="records"):
        record = {str(k): plain(v) for k, v in row.items()}
        for column in COUNT_COLUMNS:
            value = record.get(column)
            if isinstance(value, float) and value.is_integer():
                record[column] = int(value)
        rows.append(record)
    return rows


def run_document(run: Run) -> dict[str, Any]:
    """The run as one JSON document: what made it, its results rows and its per-image rows."""
    return {
        "schema": SCHEMA_NAME,
        "version": SCHEMA_VERSION,
        "run": {"run_id": run.run_id, "path": str(run.path), "written": run.written, "xreal_bench_version": suite_version()},
        "provenance": plain(run.provenance),
        "rows": records(run.frame),
        "per_image": [] if run.per_image is None else records(run.per_image),
    }


def write_run_json(run: Run, path: Path) -> Path:
    """Write :func:`run_document` to ``path`` (UTF-8, strict JSON)."""
    write_text_atomic(path, json.dumps(run_document(run), indent=1, allow_nan=False, ensure_ascii=False) + "\n")
    return path


def dataset_record(run: Run) -> dict[str, str]:
    dataset = run.provenance.get("dataset", {})
    split = str(dataset.get("split") or run.provenance.get("config", {}).get("dataset", {}).get("split", "test"))
    if dataset.get("kind") == "synthetic":
        return {"type": "xreal-bench-synthetic", "name": f"xreal-bench synthetic phantoms {split} (demo)", "split": split}
    return {"type": "mimic-cxr-jpg", "name": f"MIMIC-CXR-JPG {split}", "split": split}


def model_index(run: Run, generator: str) -> dict[str, Any]:
    """The ``model-index`` block of a Hugging Face model card for ``generator``'s results in ``run``:
    every headline metric it has a value for, named with its evaluator (and the demo warning, and the
    coverage when images failed or are missing: the numbers rest on the cases it covers), unverified."""
    rows = run.frame[(run.frame.generator == generator) & (run.frame.subset == "all")].set_index("metric")
    caveats = [DEMO_NOTE] if run.demo else []
    record = run.coverage.get(generator)
    if record is not None and (record.failed or record.missing):
        caveats.append(
            f"on {record.covered_cases} of {record.cases} cases: {record.failed} failed, {record.missing} missing images"
            + (f", below min_coverage {record.min_coverage:g}" if record.below_min_coverage else "")
        )
    metrics = []
    for m in metric_table.headline():
        if m.name not in rows.index or not math.isfinite(float(rows.loc[m.name, "value"])):
            continue
        name = "; ".join([f"{m.display} ({rows.loc[m.name, 'evaluator']}", *caveats]) + ")"
        metrics.append({"type": m.name, "value": float(rows.loc[m.name, "value"]), "name": name, "verified": False})
    source = {"name": f"xreal-bench {suite_version()}"}
    if (url := project_url()) is not None:
        source["url"] = url
    result = {"task": dict(TASK), "dataset": dataset_record(run), "metrics": metrics, "source": source}
    return {"model-index": [{"name": generator, "results": [result]}]}


def write_model_index(run: Run, folder: Path) -> list[Path]:
    """``<generator>.model-index.yaml`` in ``folder`` for each generator of the run (not the real images)."""
    written = []
    for generator in run.generators:
        if generator == REFERENCE:
            continue
        path = folder / f"{check_generator_name(generator)}.model-index.yaml"
        text = yaml.safe_dump(model_index(run, generator), sort_keys=False, allow_unicode=True)
        write_text_atomic(path, text)
        written.append(path)
    return written
