"""Machine-readable results: the run document validates against the shipped JSON Schema (and mutated
documents do not), NaN becomes null, every schema field is documented, and the model-index block."""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pandas as pd
import pytest
import yaml
from report_runs import write_run

from xreal_bench.reports.export import model_index, run_document, schema, suite_version, write_model_index, write_run_json
from xreal_bench.reports.runs import load_run

REPO = Path(__file__).resolve().parents[1]
SOURCES = {"real": {"fid": 0.25, "auc_macro": 0.8}, "alpha": {"fid": 12.5, "auc_macro": 0.7, "kid": math.nan}}
PER_CASE = {"alpha": {"ms_ssim": [0.25 + 0.125 * (k % 2) for k in range(8)]}}


@pytest.fixture()
def run(tmp_path):
    return load_run(write_run(tmp_path / "run", sources=SOURCES, per_case=PER_CASE, run_id="run-7"))


def validator() -> jsonschema.protocols.Validator:
    document = schema()
    jsonschema.Draft202012Validator.check_schema(document)
    return jsonschema.Draft202012Validator(document)


def test_document_validates_and_holds_the_run(run):
    document = run_document(run)
    validator().validate(document)
    assert document["schema"] == "xreal-bench/results" and document["version"] == 1
    assert document["run"] == {
        "run_id": "run-7",
        "path": str(run.path),
        "written": "2026-11-20T10:00:00+00:00",
        "xreal_bench_version": suite_version(),
    }
    assert document["provenance"]["dataset"]["fingerprint"] == "f" * 64
    csv = pd.read_csv(run.path / "results.csv")
    assert len(document["rows"]) == len(csv) == 6 + 11  # + alpha's MS-SSIM per subgroup (8) and its gaps (3)
    subsets = {r["subset"] for r in document["rows"] if r["metric"] == "ms_ssim"}
    assert {"all", "sex:female", "age:80+", "race:WHITE", "sex:gap", "age:gap", "race:gap"} <= subsets
    fid = next(r for r in document["rows"] if r["generator"] == "alpha" and r["metric"] == "fid")
    assert fid["value"] == 12.5 and fid["n"] == 16 and isinstance(fid["n"], int) and fid["subset"] == "all"
    kid = next(r for r in document["rows"] if r["metric"] == "kid")
    assert kid["value"] is None and kid["ci_low"] is None  # NaN -> null
    images = [r for r in document["per_image"] if r["generator"] == "alpha"]
    assert [r["ms_ssim"] for r in images] == [0.25, 0.375] * 4
    assert all(r["ms_ssim"] is None for r in document["per_image"] if r["generator"] == "real")


def test_written_file_is_strict_json(run, tmp_path):
    path = write_run_json(run, tmp_path / "out" / "run-7.json")

    def refuse(constant: str) -> None:
        raise AssertionError(f"non-standard JSON constant {constant}")

    document = json.loads(path.read_text(), parse_constant=refuse)
    assert document == json.loads(json.dumps(run_document(run)))


def test_run_without_per_image_file_has_an_empty_list(run):
    (run.path / "per_image.csv").unlink()
    document = run_document(load_run(run.path))
    assert document["per_image"] == []
    validator().validate(document)


def mutations() -> Iterator[tuple[str, object]]:
    yield "version 2", lambda d: d.__setitem__("version", 2)
    yield "another schema", lambda d: d.__setitem__("schema", "something/else")
    yield "no rows", lambda d: d.pop("rows")
    yield "row without metric", lambda d: d["rows"][0].pop("metric")
    yield "value as text", lambda d: d["rows"][0].__setitem__("value", "0.7")
    yield "n as a fraction", lambda d: d["rows"][0].__setitem__("n", 7.5)
    yield "markup as generator", lambda d: d["rows"][0].__setitem__("generator", "<b>x")
    yield "negative sample index", lambda d: d["per_image"][0].__setitem__("sample_index", -1)
    yield "per-image text value", lambda d: d["per_image"][0].__setitem__("ms_ssim", "high")
    yield "run without id", lambda d: d["run"].pop("run_id")
    yield "unknown subgroup attribute", lambda d: d["rows"][0].__setitem__("subset", "colour:red")
    yield "subgroup without value", lambda d: d["rows"][0].__setitem__("subset", "sex:")


@pytest.mark.parametrize(("what", "mutate"), list(mutations()), ids=[w for w, _ in mutations()])
def test_mutated_documents_fail(run, what, mutate):
    document = copy.deepcopy(run_document(run))
    mutate(document)
    assert not validator().is_valid(document), what


def schema_fields(node: object) -> set[str]:
    """Every property name the schema declares, at any depth."""
    found: set[str] = set()
    if isinstance(node, dict):
        found |= set(node.get("properties", {}))
        for value in node.values():
            found |= schema_fields(value)
    elif isinstance(node, list):
        for value in node:
            found |= schema_fields(value)
    return found


def test_every_schema_field_is_documented():
    documented = set(re.findall(r"^\| `([^`]+)` \|", (REPO / "docs" / "results-schema.md").read_text(), re.MULTILINE))
    fields = schema_fields(schema())
    assert len(fields) > 25
    assert fields - documented == set()


def test_model_index_block(run):
    block = model_index(run, "alpha")
    [entry] = block["model-index"]
    assert entry["name"] == "alpha"
    [result] = entry["results"]
    assert result["task"] == {"type": "text-to-image", "name": "Chest X-ray generation"}
    assert result["dataset"] == {"type": "mimic-cxr-jpg", "name": "MIMIC-CXR-JPG test", "split": "test"}
    evaluator = "torchxrayvision:densenet121-res224-all"
    assert result["metrics"] == [  # headline order; kid has no value and is left out
        {"type": "fid", "value": 12.5, "name": f"FID ({evaluator})", "verified": False},
        {"type": "ms_ssim", "value": pytest.approx(0.3125), "name": "MS-SSIM (pixels)", "verified": False},
        {"type": "auc_macro", "value": 0.7, "name": f"AUC (macro) ({evaluator})", "verified": False},
    ]
    assert result["source"]["name"] == f"xreal-bench {suite_version()}"


def test_model_index_files_and_demo_names(tmp_path):
    run = load_run(write_run(tmp_path / "demo", sources=SOURCES, evaluator="demo:classifier"))
    written = write_model_index(run, tmp_path / "cards")
    assert [p.name for p in written] == ["alpha.model-index.yaml"]  # not the real images
    block = yaml.safe_load(written[0].read_text())
    assert block == model_index(run, "alpha")
    names = [m["name"] for m in block["model-index"][0]["results"][0]["metrics"]]
    assert names == [
        "FID (demo:classifier; demo evaluators, not comparable)",
        "AUC (macro) (demo:classifier; demo evaluators, not comparable)",
    ]


def test_model_index_names_failed_and_missing_images(tmp_path):
    """A generator that lost images publishes its numbers with the cases they rest on, never as if complete."""
    from xreal_bench.coverage import Coverage

    path = write_run(tmp_path / "lossy", sources=SOURCES)
    record = Coverage(
        planned=8, ok=3, manifest_failed=4, undecodable=1, missing=0, no_reference=0, evaluated=3, cases=8,
        covered_cases=3, samples_per_condition=1, samples_scored=(0,), ignored=0, min_coverage=0.95,
    )  # fmt: skip
    provenance = json.loads((path / "results.json").read_text())
    provenance["coverage"] = {"sources": {"alpha": record.to_dict()}}
    (path / "results.json").write_text(json.dumps(provenance))
    names = [m["name"] for m in model_index(load_run(path), "alpha")["model-index"][0]["results"][0]["metrics"]]
    assert (
        names[0]
        == "FID (torchxrayvision:densenet121-res224-all; on 3 of 8 cases: 5 failed, 0 missing images, below min_coverage 0.95)"
    )
