"""Images prompted with fallback demographics: counted per generator from the manifest lines the
test writes, recorded in results.json and named in the leaderboard footnote."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from mimic_tree import write_mimic_tree

from xreal_bench.config import config_from_dict
from xreal_bench.evaluation import evaluate
from xreal_bench.pipeline import generate, open_session
from xreal_bench.reports import write_reports
from xreal_bench.reports.leaderboard import DEMOGRAPHICS_NOTE, markdown
from xreal_bench.results import demographics_counts, read_demographics_fallbacks
from xreal_bench.rundir import GeneratorDir, ManifestEntry, manifest_line

FULL = "fallback (age 65, race white, sex female)"
SEX = "fallback (sex female)"


def entry(k: int, demographics: str | None) -> ManifestEntry:
    inputs = {"prompt": "p"} if demographics is None else {"prompt": "p", "demographics": demographics}
    return ManifestEntry(generator="g", case_id=f"c{k}", sample_index=0, seed=k, status="ok", condition={"inputs": inputs})


def test_counts_by_recorded_value():
    entries = [entry(0, "mimic-iv"), entry(1, FULL), entry(2, SEX), entry(3, FULL), entry(4, None)]
    entries.append(replace(entry(5, None), condition={}))  # a line written before inputs were recorded
    assert demographics_counts(entries) == {"images": 6, "recorded": 4, "fallback": 3, "fallback_values": {FULL: 2, SEX: 1}}
    assert demographics_counts([entry(0, "mimic-iv"), entry(1, None)]) == {
        "images": 2,
        "recorded": 1,
        "fallback": 0,
        "fallback_values": {},
    }


def test_footnote_lines_from_results_json(tmp_path):
    provenance = {
        "generators": {
            "roentgen_v2": {"demographics": {"images": 40, "recorded": 40, "fallback": 12, "fallback_values": {FULL: 12}}},
            "mixed": {"demographics": {"images": 10, "recorded": 10, "fallback": 3, "fallback_values": {FULL: 2, SEX: 1}}},
            "cheff": {"demographics": {"images": 40, "recorded": 0, "fallback": 0, "fallback_values": {}}},
            "older": {"weights": {}},
        }
    }
    (tmp_path / "results.json").write_text(json.dumps(provenance))
    assert read_demographics_fallbacks(tmp_path) == [
        "`roentgen_v2`: 12 of 40 images used fallback demographics (age 65, race white, sex female)",
        "`mixed`: 3 of 10 images used fallback demographics (age 65, race white, sex female: 2; sex female: 1)",
    ]
    assert read_demographics_fallbacks(tmp_path / "nothing") == []


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> tuple[Path, list[ManifestEntry]]:
    """A run of `shuffled` whose manifest lines the test rewrites with recorded demographics, then evaluated."""
    data = tmp_path_factory.mktemp("mimic")
    write_mimic_tree(data, n_random=6, seed=4)
    out = tmp_path_factory.mktemp("run")
    cfg = config_from_dict(
        {
            "dataset": {"kind": "mimic", "root": str(data), "views": ["AP", "PA", "UNKNOWN"]},
            "conditioning": {"anatomy": "none"},
            "generators": {"shuffled": {}, "noise": {}},
            "metrics": {"enabled": ["ms_ssim"], "bootstrap": 0, "num_workers": 0},
            "run": {"out": str(out), "resolution": 192},
        }
    )
    session = open_session(cfg, progress=False)
    generate(session, progress=False)
    gdir = GeneratorDir(out, "shuffled")
    entries = sorted(gdir.entries().values(), key=lambda e: e.key)
    values = ["mimic-iv", FULL, SEX, FULL] + ["mimic-iv"] * len(entries)
    written = []
    for e, value in zip(entries, values):
        condition = {**e.condition, "inputs": {"prompt": "x", "demographics": value}}
        written.append(replace(e, condition=condition))
    gdir.manifest.write_text("".join(manifest_line(e) for e in written))
    evaluate(session, progress=False)
    write_reports(out, figures=False)
    return out, written, session


def test_results_json_and_leaderboard_name_the_fallbacks(run_dir):
    out, written, _ = run_dir
    record = json.loads((out / "results.json").read_text())["generators"]["shuffled"]["demographics"]
    assert record == {"images": len(written), "recorded": len(written), "fallback": 3, "fallback_values": {FULL: 2, SEX: 1}}
    board = (out / "leaderboard.md").read_text()
    line = (
        f"{DEMOGRAPHICS_NOTE} `shuffled`: 3 of {len(written)} images used fallback demographics "
        "(age 65, race white, sex female: 2; sex female: 1)."
    )
    assert line in board.splitlines()


def test_no_footnote_without_fallbacks():
    frame = pd.DataFrame(
        [["g", "ms_ssim", "all", 0.5, float("nan"), float("nan"), 4, 0, 0, "pixels", ""]],
        columns=["generator", "metric", "subset", "value", "ci_low", "ci_high", "n", "failed", "missing", "evaluator", "note"],
    )
    assert "Fallback demographics" not in markdown(frame)
    assert f"{DEMOGRAPHICS_NOTE} `g`: 1 of 4 images used fallback demographics (sex female)." in markdown(
        frame, demographics=["`g`: 1 of 4 images used fallback demographics (sex female)"]
    )


def test_evaluating_another_generator_keeps_the_record(run_dir):
    """`evaluate --generators noise` keeps the other generators' provenance, footnote included."""
    out, written, session = run_dir
    evaluate(session, ["noise"], progress=False)
    write_reports(out, figures=False)
    generators = json.loads((out / "results.json").read_text())["generators"]
    assert generators["noise"]["demographics"] == {"images": len(written), "recorded": 0, "fallback": 0, "fallback_values": {}}
    assert generators["shuffled"]["demographics"]["fallback"] == 3
    assert f"`shuffled`: 3 of {len(written)} images used fallback demographics" in (out / "leaderboard.md").read_text()
