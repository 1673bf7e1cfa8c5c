"""Encoder agreement (Kendall's τ between the generator rankings of two Fréchet distances, with a paired-draw
bootstrap CI) against scipy and a hand computation; its results.json schema and report table; the distribution table."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import numpy as np
import pandas as pd
import pytest
from scipy.stats import kendalltau

from xreal_bench.metrics import table
from xreal_bench.metrics.agreement import encoder_agreement
from xreal_bench.metrics.context import ResultRow
from xreal_bench.reports.encoder_agreement import write_agreement_table
from xreal_bench.reports.export import schema
from xreal_bench.reports.options import ReportOptions
from xreal_bench.reports.runs import Run
from xreal_bench.reports.tables import paper_tables
from xreal_bench.results import COLUMNS

FID, DINO, RAD = (table.metric(n).name for n in ("fid", "fd_dinov2", "fd_raddino"))
GENERATORS = ("a", "b", "c", "d", "e")


def rows_with_draws(seed: int = 0, draws: int = 40) -> tuple[list[ResultRow], dict[str, dict[str, np.ndarray]]]:
    """Five generators on FID and FD-DINOv2 with correlated values and per-draw values; the real row and a
    generator without FD-DINOv2 (NaN) mixed in."""
    rng = np.random.default_rng(seed)
    rows, kept = [], {}
    base = np.array([10.0, 12.0, 15.0, 11.0, 20.0])
    for metric, noise in ((FID, 0.0), (DINO, 3.0)):
        values = base * (1 + 0.5 * (metric == DINO)) + rng.normal(0, noise, size=5)
        kept[metric] = {}
        for g, v in zip(GENERATORS, values):
            d = v + rng.normal(0, 2.0, size=draws)
            kept[metric][g] = d
            rows.append(ResultRow(g, metric, float(v), float(d.min()), float(d.max()), 100, "all", draws=d))
        rows.append(ResultRow("real", metric, 0.0, n=100))
        rows.append(ResultRow("a", metric, 99.0, subset="Edema", draws=np.zeros(draws)))  # not subset all
    rows.append(ResultRow("f", FID, 30.0, draws=np.zeros(draws)))
    rows.append(ResultRow("f", DINO, float("nan")))
    return rows, kept


def test_tau_matches_scipy_and_the_ci_is_tau_per_paired_draw():
    rows, draws = rows_with_draws()
    [record] = encoder_agreement(rows, confidence=0.9)
    value = {(r.generator, r.metric): r.value for r in rows if r.subset == "all"}
    expected = kendalltau([value[g, FID] for g in GENERATORS], [value[g, DINO] for g in GENERATORS]).statistic
    assert (record["a"], record["b"], record["n_generators"]) == (FID, DINO, 5)
    assert record["tau"] == pytest.approx(expected, abs=1e-12)
    by_hand = []
    for b in range(40):  # draw b of every generator on both metrics
        by_hand.append(kendalltau([draws[FID][g][b] for g in GENERATORS], [draws[DINO][g][b] for g in GENERATORS]).statistic)
    low, high = np.percentile(by_hand, [5, 95])
    assert (record["ci_low"], record["ci_high"]) == pytest.approx((low, high), abs=1e-12)
    assert record["resamples"] == 40 and record["ci_low"] < record["tau"] <= record["ci_high"] + 1e-12
    assert "Kendall tau-b over 5 generators" in record["note"]


def test_ties_use_tau_b_and_every_pair_of_encoders_is_reported():
    rows = []
    for g, (x, y, z) in zip(GENERATORS, [(1, 1, 5), (2, 1, 4), (3, 2, 3), (4, 3, 2), (4, 4, 1)]):
        rows += [ResultRow(g, FID, x), ResultRow(g, DINO, y), ResultRow(g, RAD, z)]
    records = {(r["a"], r["b"]): r for r in encoder_agreement(rows, confidence=0.95)}
    assert list(records) == [(FID, DINO), (FID, RAD), (DINO, RAD)]
    assert records[FID, DINO]["tau"] == pytest.approx(kendalltau([1, 2, 3, 4, 4], [1, 1, 2, 3, 4]).statistic)
    # reversed order with one tie in FID: tau-b = -9 / sqrt(9 * 10), not tau-a's -9 / 10
    assert records[FID, RAD]["tau"] == pytest.approx(-9 / np.sqrt(90), abs=1e-12)
    assert records[FID, DINO]["ci_low"] is None and "no CI (no bootstrap draws)" in records[FID, DINO]["note"]


def test_too_few_generators_or_constant_values_are_reported_not_guessed():
    rows = [ResultRow(g, m, v) for g, v in (("a", 1.0), ("b", 2.0)) for m in (FID, DINO)]
    [record] = encoder_agreement(rows, confidence=0.95)
    assert record["tau"] is None and record["note"] == "skipped: 2 generators with both values (need 3)"
    rows = [ResultRow(g, FID, 5.0) for g in "abc"] + [ResultRow(g, DINO, v) for g, v in zip("abc", (1.0, 2.0, 3.0))]
    [record] = encoder_agreement(rows, confidence=0.95)
    assert record["tau"] is None and "ties" in record["note"]
    uneven = [ResultRow(g, FID, v, draws=np.ones(5 + (g == "c"))) for g, v in zip("abc", (1.0, 2.0, 3.0))]
    [record] = encoder_agreement(
        uneven + [ResultRow(g, DINO, v, draws=np.ones(5)) for g, v in zip("abc", (1.0, 2.0, 3.0))], confidence=0.95
    )
    assert record["tau"] == pytest.approx(1.0) and record["ci_low"] is None and "draw counts differ" in record["note"]
    assert encoder_agreement([ResultRow(g, FID, 1.0) for g in "abcd"], confidence=0.95) == []  # one encoder: no pair


def test_records_are_strict_json_valid_under_the_results_schema():
    rows, _ = rows_with_draws()
    records = encoder_agreement(rows, confidence=0.95) + encoder_agreement(rows[:4], confidence=0.95)
    text = json.dumps(records, allow_nan=False)  # no NaN anywhere
    validator = jsonschema.Draft202012Validator({"$ref": "#/$defs/agreement", "$defs": schema()["$defs"]})
    for record in json.loads(text):
        validator.validate(record)
    assert schema()["properties"]["provenance"]["properties"]["encoder_agreement"]["items"] == {"$ref": "#/$defs/agreement"}
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({**records[0], "tau": 1.5})


def frame_run(frame: pd.DataFrame, provenance: dict, name: str = "run") -> Run:
    return Run(path=Path(name), frame=frame, provenance=provenance, coverage={}, per_image=None)


def test_the_report_table_of_encoder_agreement(tmp_path):
    rows, _ = rows_with_draws()
    records = encoder_agreement(rows, confidence=0.95)
    records.append({"a": RAD, "b": "fd_future", "tau": None, "ci_low": None, "ci_high": None, "n_generators": 2,
                    "resamples": 0, "note": "=skipped | <b>x</b>"})  # fmt: skip
    run = frame_run(pd.DataFrame(columns=COLUMNS), {"encoder_agreement": records})
    written = write_agreement_table([run], tmp_path, ReportOptions(decimals=2))
    assert sorted(p.name for p in written) == [f"table_encoder_agreement.{e}" for e in ("csv", "md", "tex")]
    md = (tmp_path / "table_encoder_agreement.md").read_text()
    cells = [[c.strip() for c in line.strip("| ").split(" | ")] for line in md.splitlines() if line.startswith("| ")]
    tau, low, high = records[0]["tau"], records[0]["ci_low"], records[0]["ci_high"]
    assert cells[0][:4] == ["Encoder A", "Encoder B", "Kendall tau-b", "Generators"]
    assert cells[1][:4] == ["FID", "FD \\(DINOv2\\)", f"{tau:.2f} \\[{low:.2f}, {high:.2f}\\]", "5"]
    assert cells[2] == ["FD \\(RAD-DINO\\)", "fd\\_future", "–", "2", "=skipped \\| \\<b\\>x\\</b\\>"]  # escaped
    csv = pd.read_csv(tmp_path / "table_encoder_agreement.csv")
    assert list(csv.columns) == ["run", "run_id", "a", "b", "tau", "ci_low", "ci_high", "n_generators", "resamples", "note"]
    assert csv["tau"].iloc[0] == pytest.approx(tau) and csv["note"].iloc[1] == "'=skipped | <b>x</b>"
    tex = (tmp_path / "table_encoder_agreement.tex").read_text()
    assert "fd\\_future" in tex and "\\begin{tabular}" in tex
    assert write_agreement_table([frame_run(pd.DataFrame(columns=COLUMNS), {})], tmp_path / "none", ReportOptions()) == []


def test_the_distribution_table_holds_every_encoder_and_family_when_a_new_metric_is_there():
    names = [table.metric(n).name for n in ("fid", "fd_dinov2", "cmmd", "prdc_precision", "vendi")]
    records = [("real", names[-1], "all", 30.0, 28.0, 32.0, 50, "images", 0, 0, "dinov2-vitl14", "")]
    for g, shift in (("a", 0.0), ("b", 1.0)):
        records += [
            (g, n, "all", 1.0 + k + shift, 0.5 + k + shift, 1.5 + k + shift, 50, "images", 0, 0, "ev", "")
            for k, n in enumerate(names)
        ]
    tables = {t.name: t for t in paper_tables([frame_run(pd.DataFrame(records, columns=COLUMNS), {})], ReportOptions())}
    dist = tables["table_distribution"]
    assert [c.text for c in dist.columns] == ["FID ↓", "FD (DINOv2) ↓", "CMMD ↓", "Precision ↑", "Vendi ↑"]
    assert [r.label for r in dist.rows] == ["Real images", "a", "b"]
    a = {c.metric: c for c in dist.rows[1].cells}
    assert (a["cmmd"].estimate.value, a["cmmd"].estimate.low, a["cmmd"].mark) == (3.0, 2.5, "best")  # lower is better
    assert dist.rows[2].cells[3].mark == "best"  # precision: higher is better
    fid_only = [r for r in records if r[1] == "fid"]
    assert "table_distribution" not in {
        t.name for t in paper_tables([frame_run(pd.DataFrame(fid_only, columns=COLUMNS), {})], ReportOptions())
    }
