"""The paper tables (reports/tables.py) on constructed runs with known orders: Table I layout and groups,
bold / underline / ties by overlapping CIs in both directions, missing values, reader-study columns,
footnotes (n with its unit, evaluators, demo, coverage), several runs, CI styles, per-pathology,
per-organ and per-subgroup tables, and the run directory's ``report/`` folder."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pandas as pd
import pytest
from report_runs import write_run

from xreal_bench.coverage import Coverage
from xreal_bench.errors import UserFacingError
from xreal_bench.reader_study.layout import RUNS_META
from xreal_bench.reader_study.storage import Storage
from xreal_bench.reports import write_reports
from xreal_bench.reports.latex import check_latex, latex_table
from xreal_bench.reports.options import ReportOptions
from xreal_bench.reports.runs import GROUP_REFERENCE, GROUP_SPATIAL, GROUP_TEXT, Run, load_run
from xreal_bench.reports.study_scores import reader_scores
from xreal_bench.reports.table_model import Cell, Estimate, Source, csv_frame, markdown_table, marks
from xreal_bench.reports.tables import NO_SUBGROUP_ROWS, main_table, paper_tables, per_pathology, write_tables

OPTIONS = ReportOptions()

# FID (lower is better): a and b overlap (tie for best), c is second, d is last; spread 0.05 gives CIs of about ±0.1.
# F1 (higher is better): b and c overlap (tie for best), d second, a last.
SOURCES = {
    "real": {"fid": 0.0, "f1_macro": 0.95, "f1/Edema": 0.9, "f1/Cardiomegaly": 0.8},
    "a": {"fid": 10.0, "f1_macro": 0.50, "f1/Edema": 0.40, "f1/Cardiomegaly": 0.6},
    "b": {"fid": 10.05, "f1_macro": 0.90, "f1/Edema": 0.70, "f1/Cardiomegaly": math.nan},
    "c": {"fid": 10.5, "f1_macro": 0.85, "f1/Edema": 0.20},
    "d": {"fid": 20.0, "f1_macro": 0.70},
}
INPUTS = {"a": ["labels"], "b": ["labels", "anatomy"], "c": ["impression", "pathology"], "d": ["labels"]}
MS_SSIM = {"a": [0.6] * 8, "b": [0.7, 0.8] * 4, "c": [0.2] * 8}


def make_run(path: Path, **kwargs) -> Run:
    options = {"sources": SOURCES, "per_case": {g: {"ms_ssim": v} for g, v in MS_SSIM.items()}, "inputs": INPUTS}
    return load_run(write_run(path, **{**options, **kwargs}))


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Run:
    return make_run(tmp_path_factory.mktemp("tables") / "run")


def column(table, header: str) -> dict[str, Cell]:
    k = [c.text for c in table.columns].index(header)
    return {row.label: row.cells[k] for row in table.rows}


def test_table_one_groups_rows_and_columns_in_the_papers_order(run):
    table = main_table([run], OPTIONS)
    assert [c.text for c in table.columns] == ["MS-SSIM ↑", "FID ↓", "F1 (macro) ↑"]
    assert [(r.group, r.label) for r in table.rows] == [
        (GROUP_REFERENCE, "Real images"),
        (GROUP_TEXT, "a"),
        (GROUP_TEXT, "d"),
        (GROUP_SPATIAL, "b"),
        (GROUP_SPATIAL, "c"),
    ]
    md = markdown_table(table, decimals=3, ci="brackets")
    headings = [line for line in md.splitlines() if line.startswith("| **")]
    assert headings == ["| **Reference** | | | |", "| **Text-to-image** | | | |", "| **Text \\+ spatial control** | | | |"]
    tex = latex_table(table, decimals=3, ci="brackets", label="tab:main")
    assert "\\multicolumn{4}{l}{\\textit{Text-to-image}} \\\\" in tex and tex.count("\\midrule") == 3
    assert tex.index("Real images &") < tex.index("\n a &".strip()) < tex.index("\\textit{Text + spatial control}")
    assert check_latex(tex) == []


def test_best_bold_second_underlined_ties_by_overlapping_cis(run):
    table = main_table([run], OPTIONS)
    fid = {label: cell.mark for label, cell in column(table, "FID ↓").items()}
    assert fid == {"Real images": "", "a": "best", "b": "best", "c": "second", "d": ""}  # lower is better
    f1 = {label: cell.mark for label, cell in column(table, "F1 (macro) ↑").items()}
    assert f1 == {"Real images": "", "a": "", "b": "best", "c": "best", "d": "second"}  # the real row never competes
    ms = column(table, "MS-SSIM ↑")
    assert {label: cell.mark for label, cell in ms.items()} == {"Real images": "", "a": "second", "b": "best", "c": "", "d": ""}
    assert ms["d"].estimate is None and ms["b"].estimate.value == pytest.approx(0.75)
    md = markdown_table(table, decimals=2, ci="brackets")
    assert "| a | <u>0.60 [0.60, 0.60]</u> | **10.00 [" in md
    assert "| d | – | 20.00 [" in md and "| <u>0.70 [" in md
    tex = latex_table(table, decimals=2, ci="brackets", label="tab:main")
    stacked = "\\begin{tabular}[c]{@{}c@{}}"  # a bracketed CI goes on a second, smaller line of the cell
    assert (
        f"a & {stacked}\\underline{{0.60}}\\\\ {{\\scriptsize \\underline{{[0.60, 0.60]}}}}\\end{{tabular}} & {stacked}\\textbf{{10.00}}\\\\"
        in tex
    )
    assert f"d & -- & {stacked}20.00\\\\ " in tex


def estimate(value: float, low: float = math.nan, high: float = math.nan) -> Estimate:
    return Estimate(value=value, low=low, high=high)


def cells(source_run: Run, direction: str, *values: Estimate | None) -> list[Cell]:
    names = ["real", "p", "q", "r", "s"]
    return [
        Cell(source=Source(run=source_run, generator=g, label=g, group=""), metric="m", estimate=e, direction=direction)
        for g, e in zip(names, values)
    ]


def test_marks_without_cis_tie_only_on_equal_values_and_skip_nan(run):
    line = cells(run, "higher", estimate(9.0), estimate(0.5), estimate(0.5), estimate(0.49), estimate(math.nan))
    assert marks(line) == ["", "best", "best", "second", ""]
    line = cells(run, "lower", estimate(0.0), estimate(3.0, 2.0, 4.0), estimate(3.5), None, estimate(5.0, 3.9, 6.0))
    assert marks(line) == ["", "best", "second", "", "best"]  # 3.5 has no CI: no overlap test; [3.9, 6] overlaps [2, 4]
    line = cells(run, "lower", estimate(0.0), estimate(1.0, 0.0, 2.0), estimate(2.0, 1.5, 3.0), estimate(2.6, 2.5, 3.5))
    assert marks(line) == ["", "best", "best", "second"]  # the second tier: best of the rest (2.6) and its overlaps
    assert marks(cells(run, "higher", estimate(1.0))) == [""]


def test_nan_and_missing_metrics_show_a_dash_and_are_never_marked(tmp_path):
    sources = {"real": {"fid": 0.0}, "a": {"fid": math.nan, "auc_macro": 0.7}, "b": {"fid": 12.0}}
    one = make_run(tmp_path / "run", sources=sources, per_case={}, inputs={})
    table = main_table([one], OPTIONS)
    fid, auc = column(table, "FID ↓"), column(table, "AUC (macro) ↑")
    assert fid["a"].mark == "" and fid["b"].mark == "best" and auc["b"].estimate is None and auc["a"].mark == "best"
    md = markdown_table(table, decimals=1, ci="brackets")
    assert "| a | – | **0.7 [" in md and "| b | **12.0 [" in md and "| Real images | 0.0 [" in md
    tex = latex_table(table, decimals=1, ci="brackets", label="x")
    stacked = "\\begin{tabular}[c]{@{}c@{}}"
    assert (
        f"a & -- & {stacked}\\textbf{{0.7}}\\\\ {{\\scriptsize \\textbf{{[" in tex and f"b & {stacked}\\textbf{{12.0}}\\\\" in tex
    )
    assert tex.split("b &")[1].split("\n")[0].endswith("& -- \\\\")
    frame = csv_frame(table)
    row = frame[(frame.generator == "a") & (frame.metric == "fid")].iloc[0]
    assert math.isnan(row["value"]) and row["mark"] == ""


def test_ci_styles(run):
    table = main_table([run], OPTIONS)
    a = column(table, "FID ↓")["a"].estimate
    half = (a.high - a.low) / 2
    md = markdown_table(table, decimals=3, ci="pm")
    assert f"**10.000 ± {half:.3f}**" in md and "[" not in md.split("| a |")[1].split("\n")[0]
    assert f"\\textbf{{10.000 $\\pm$ {half:.3f}}}" in latex_table(table, decimals=3, ci="pm", label="x")
    notes = markdown_table(main_table([run], ReportOptions(ci="pm")), decimals=3, ci="pm")
    assert "Values: point estimate ± half the width of its 95 % bootstrap CI over cases" in notes
    assert "Values: point estimate [95 % bootstrap CI over cases]" in markdown_table(table, decimals=3, ci="brackets")


def test_footnotes_name_n_units_evaluators_and_the_tie_rule(run):
    md = markdown_table(main_table([run], OPTIONS), decimals=3, ci="brackets")
    assert "FID: n = 16 images per generator (8 real); features torchxrayvision:densenet121-res224-all." in md
    assert "MS-SSIM: n = 8 cases per generator; computed from pixels \\(no network\\)." in md
    assert (
        "F1 (macro): n = 8 cases per generator; classifier torchxrayvision:densenet121-res224-all \\(weights sha256 aaaaaaaaaaaa...\\)"
        in md
    )
    assert "every model whose 95 % CI overlaps the best's CI is bold too" in md and "DEMO" not in md


def test_n_unit_column_of_results_csv_wins_over_the_metric_table(tmp_path, run):
    frame = run.frame.assign(n_unit=["studies" if m == "fid" else "" for m in run.frame.metric])
    table = main_table([dataclasses.replace(run, frame=frame)], OPTIONS)
    md = markdown_table(table, decimals=3, ci="brackets")
    assert "FID: n = 16 studies per generator (8 real)" in md and "MS-SSIM: n = 8 cases per generator" in md


def test_demo_warning_and_coverage_marks(tmp_path):
    demo = make_run(tmp_path / "demo", evaluator="demo:classifier")
    record = Coverage(
        planned=8, ok=5, manifest_failed=2, undecodable=0, missing=1, no_reference=0, evaluated=5, cases=8,
        covered_cases=5, samples_per_condition=1, samples_scored=(0,), ignored=0, min_coverage=0.9,
    )  # fmt: skip
    marked = dataclasses.replace(demo, coverage={"c": record})
    table = main_table([marked], OPTIONS)
    assert table.caption.endswith("DEMO evaluators on synthetic data: not comparable with published numbers.")
    md = markdown_table(table, decimals=3, ci="brackets")
    assert "DEMO evaluators (demo:)" in md and "| c† |" in md
    assert "† coverage below metrics.min\\_coverage = 0.9: c \\(5 of 8 cases, 2 failed, 1 missing\\)" in md
    tex = latex_table(table, decimals=3, ci="brackets", label="x")
    assert "c$^\\dagger$ & " in tex and "$^\\dagger$ coverage below metrics.min\\_coverage = 0.9" in tex
    assert "Failed / missing images of planned: c 2 / 1 of 8." in tex and check_latex(tex) == []


def test_several_runs_show_a_generator_once_per_run(tmp_path):
    first = make_run(tmp_path / "first", written="2026-11-20T10:00:00+00:00", run_id="id-1")
    second = make_run(tmp_path / "second", sources={"real": SOURCES["real"], "a": {"fid": 9.0}}, per_case={}, run_id="id-2",
                      written="2026-11-21T10:00:00+00:00", inputs={"a": ["labels"]})  # fmt: skip
    table = main_table([first, second], OPTIONS)
    labels = [r.label for r in table.rows]
    assert labels[:2] == ["Real images (first (2026-11-20))", "Real images (second (2026-11-21))"]
    assert labels[2:5] == ["a (first (2026-11-20))", "a (second (2026-11-21))", "d"]
    fid = column(table, "FID ↓")
    assert fid["a (second (2026-11-21))"].mark == "best" and fid["a (first (2026-11-20))"].mark == "second"
    md = markdown_table(table, decimals=3, ci="brackets")
    assert "Runs: first \\(2026-11-20\\) = run id-1, seed 0; second \\(2026-11-21\\) = run id-2, seed 0." in md
    frame = csv_frame(table)
    assert set(frame[frame.generator == "a"].run_id) == {"id-1", "id-2"}


def write_study(folder: Path, records: list[dict], summary: list[tuple[str, str, float, float, float]]) -> Path:
    """A study folder as `study create` + `study analyze` leave it, for what the tables read: meta runs, summary.csv."""
    folder.mkdir(parents=True)
    storage = Storage.create(folder / "study.sqlite")
    with storage.write() as conn:
        conn.execute("INSERT INTO meta VALUES (?, ?)", (RUNS_META, json.dumps(records)))
    storage.close()
    rows = [
        {"source": s, "criterion": c, "n": 12, "n_readers": 3, "n_cases": 4, "mean": m, "sd": 0.5, "median": m, "ci_low": lo, "ci_high": hi}
        for s, c, m, lo, hi in summary
    ]  # fmt: skip
    (folder / "analysis").mkdir()
    pd.DataFrame(rows).to_csv(folder / "analysis" / "summary.csv", index=False)
    return folder


SCORES = [
    ("real", "anatomy_realism", 4.5, 4.2, 4.8),
    ("a", "anatomy_realism", 2.0, 1.7, 2.3),
    ("b", "anatomy_realism", 3.5, 3.2, 3.8),
    ("c", "anatomy_realism", 3.4, 3.0, 3.6),
    ("a", "pathology_realism", 2.5, 2.4, 2.6),
    ("b", "pathology_realism", 3.0, 2.9, 3.1),
    ("other", "pathology_realism", 5.0, 4.9, 5.0),
    ("a", "image_quality", 5.0, 5.0, 5.0),
]


def record_of(run: Run, **changes) -> dict:
    record = {
        "path": str(run.path),
        "run_id": run.run_id,
        "config_hash": run.provenance["config_hash"],
        "dataset_fingerprint": run.provenance["dataset"]["fingerprint"],
    }
    return {**record, **changes}


def test_reader_columns_only_with_a_matching_analysed_study(tmp_path):
    one = make_run(tmp_path / "run")
    assert reader_scores([one], None) is None
    assert [c.text for c in main_table([one], OPTIONS).columns][-1] == "F1 (macro) ↑"
    write_study(one.path / "study", [record_of(one)], SCORES)
    scores = reader_scores([one], None)
    assert scores is not None and scores.criteria == ("anatomy_realism", "pathology_realism")
    table = main_table([one], OPTIONS, scores)
    assert [c.text for c in table.columns][-2:] == ["Anatomy ↑", "Pathology ↑"]
    anatomy, pathology = column(table, "Anatomy ↑"), column(table, "Pathology ↑")
    assert anatomy["Real images"].estimate.value == 4.5 and anatomy["Real images"].mark == ""
    assert {k: c.mark for k, c in anatomy.items()} == {"Real images": "", "a": "second", "d": "", "b": "best", "c": "best"}
    assert pathology["b"].mark == "best" and pathology["a"].mark == "second" and pathology["c"].estimate is None
    md = markdown_table(table, decimals=2, ci="brackets")
    assert "| **3.50 [3.20, 3.80]** | **3.00 [2.90, 3.10]** |" in md
    assert "Anatomy and Pathology: n = 12 ratings per generator." in md and "3 readers, 4 cases" in md
    assert check_latex(latex_table(table, decimals=2, ci="brackets", label="x")) == []
    written = {p.name for p in write_tables([one], tmp_path / "out", OPTIONS)}
    assert "Anatomy ↑" in (tmp_path / "out" / "table_main.md").read_text() and "table_main.tex" in written


def test_reader_study_of_other_runs_is_ignored_or_refused(tmp_path):
    one = make_run(tmp_path / "run")
    other = {"path": "/elsewhere", "run_id": "someone-else", "config_hash": "c" * 64, "dataset_fingerprint": "d" * 64}
    write_study(one.path / "study", [other], SCORES)
    assert reader_scores([one], None) is None
    with pytest.raises(UserFacingError) as refused:
        reader_scores([one], one.path / "study")
    message = str(refused.value)
    assert "is not a study of these runs: it was built from someone-else (config cccccccccccc, data dddddddddddd)" in message
    assert f"the report's runs are {one.run_id} (config {one.provenance['config_hash'][:12]}, data ffffffffffff)" in message
    with pytest.raises(UserFacingError, match="no study.sqlite there"):
        reader_scores([one], tmp_path / "nowhere")


def test_reader_study_matched_by_config_and_fingerprint_and_must_be_analysed(tmp_path):
    one = make_run(tmp_path / "run")
    study = write_study(tmp_path / "s", [record_of(one, run_id=None)], SCORES)
    assert reader_scores([one], study) is not None
    (study / "analysis" / "summary.csv").unlink()
    with pytest.raises(UserFacingError, match="has not been analysed: run `xreal-bench study analyze"):
        reader_scores([one], study)
    wrong = write_study(tmp_path / "s2", [record_of(one, run_id=None, dataset_fingerprint="0" * 64)], SCORES)
    with pytest.raises(UserFacingError, match="not a study of these runs"):
        reader_scores([one], wrong)


def test_hostile_strings_in_notes_and_labels_are_escaped(tmp_path):
    evil = "ev|l_&%$#{}~^\\x*`<b>"
    a = make_run(tmp_path / "r&d_50%", evaluator=evil)
    b = make_run(tmp_path / "r#2{x}")
    table = main_table([a, b], OPTIONS)
    tex = latex_table(table, decimals=3, ci="brackets", label="x")
    assert check_latex(tex) == []
    assert "r\\&d\\_50\\% (2026-11-20)" in tex and "r\\#2\\{x\\} (2026-11-20)" in tex
    assert "ev|l\\_\\&\\%\\$\\#\\{\\}\\textasciitilde{}\\textasciicircum{}\\textbackslash{}x*`<b>" in tex
    md = markdown_table(table, decimals=3, ci="brackets")
    assert "ev\\|l\\_&%$\\#\\{\\}\\~^\\\\x\\*\\`\\<b\\>" in md and "<b>" not in md
    assert all(line.count("|") - line.count("\\|") == 5 for line in md.splitlines() if line.startswith("| "))


def test_pathology_and_organ_tables(run):
    tables = {t.name: t for t in paper_tables([run], OPTIONS)}
    assert set(tables) == {"table_main", "table_pathology_f1_macro", "table_subgroups"}
    f1 = tables["table_pathology_f1_macro"]
    assert f1.compare == "rows" and [c.text for c in f1.columns] == ["Real images", "a", "d", "b", "c"]
    assert [r.label for r in f1.rows] == ["Cardiomegaly", "Edema", "Macro average"]
    assert [c.mark for c in f1.rows[1].cells] == ["", "second", "", "best", ""]  # Edema: b 0.7, a 0.4, c 0.2, d none
    assert [c.mark for c in f1.rows[0].cells] == ["", "best", "", "", ""]  # Cardiomegaly: b NaN, only a
    assert f1.rows[1].cells[1].metric == "f1/Edema" and f1.rows[2].group == "Overall"
    assert "| Cardiomegaly | 0.800 [" in markdown_table(f1, decimals=3, ci="brackets")


def test_subset_and_organ_tables(tmp_path):
    sources = {"real": {"fid": 0.0}, "a": {"fid": 10.0}, "b": {"fid": 30.0}}
    per_case = {"a": {"dice_lungs": [0.8] * 8, "dice_heart": [0.5] * 8, "dice": [0.65] * 8}, "b": {"dice_lungs": [0.9] * 8}}
    one = make_run(tmp_path / "run", sources=sources, per_case=per_case, inputs={})
    rows = [
        ("a", "fid", "Edema", 12.0, 11.0, 13.0, 4, "images", 0, 0, "inception", ""),
        ("b", "fid", "Edema", 11.5, 11.2, 11.8, 4, "images", 0, 0, "inception", ""),
    ]
    frame = pd.concat([one.frame, pd.DataFrame(rows, columns=one.frame.columns)], ignore_index=True)
    tables = {t.name: t for t in paper_tables([dataclasses.replace(one, frame=frame)], OPTIONS)}
    fid = tables["table_pathology_fid"]
    assert [r.label for r in fid.rows] == ["Edema", "All cases"] and [c.text for c in fid.columns] == ["Real images", "a", "b"]
    assert [c.mark for c in fid.rows[0].cells] == ["", "best", "best"] and [c.mark for c in fid.rows[1].cells] == [
        "",
        "best",
        "second",
    ]
    organs = tables["table_dice_organs"]
    assert [c.text for c in organs.columns] == ["Dice lungs ↑", "Dice heart ↑", "Dice ↑"]
    lungs = column(organs, "Dice lungs ↑")
    assert lungs["b"].mark == "best" and lungs["a"].mark == "second" and column(organs, "Dice heart ↑")["b"].estimate is None
    assert check_latex(latex_table(organs, decimals=3, ci="pm", label="x")) == []


def test_subgroup_table_shows_the_results_rows_and_gaps(tmp_path):
    values = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
    one = make_run(tmp_path / "run", per_case={"a": {"ms_ssim": values}, "b": {"ms_ssim": [0.5] * 8}})
    table = next(t for t in paper_tables([one], OPTIONS) if t.name == "table_subgroups")
    groups = {r.group for r in table.rows}
    assert groups == {"MS-SSIM by sex", "MS-SSIM by age", "MS-SSIM by race"} and [c.text for c in table.columns] == ["a", "b"]
    assert [r.label for r in table.rows] == ["female (n = 4 cases)", "male (n = 4 cases)", "gap (max - min) (n = 8 cases)",
                          "40-60 (n = 3 cases)", "60-80 (n = 3 cases)", "80+ (n = 2 cases)", "gap (max - min) (n = 8 cases)",
                          "ASIAN (n = 2 cases)", "BLACK (n = 3 cases)", "WHITE (n = 3 cases)",
                          "gap (max - min) (n = 8 cases)"]  # fmt: skip
    frame = one.frame.set_index(["generator", "metric", "subset"])
    female = table.rows[0].cells[0]  # cases 0, 2, 4, 6 are female (report_runs cycles sex)
    expected = frame.loc[("a", "ms_ssim", "sex:female")]
    assert (female.estimate.value, female.estimate.low, female.estimate.high) == pytest.approx(
        (0.4, expected.ci_low, expected.ci_high)
    )
    assert female.subset == "sex:female" and female.direction == "higher"
    gap = table.rows[2].cells[0]  # a: male 0.5 - female 0.4; b: 0
    assert (gap.subset, gap.direction, gap.estimate.value) == ("sex:gap", "lower", pytest.approx(0.1))
    assert [c.mark for c in table.rows[2].cells] == ["second", "best"]  # the smaller gap is best
    assert table.rows[6].cells[0].estimate.value == pytest.approx(0.75 - 0.2)  # age: 80+ (cases 6, 7) - 40-60 (0, 1, 2)
    csv = csv_frame(table)
    assert set(csv.subset) == {f"{a}:{v}" for a, vs in [("sex", ("female", "male", "gap")), ("age", ("40-60", "60-80", "80+",
                               "gap")), ("race", ("ASIAN", "BLACK", "WHITE", "gap"))] for v in vs}  # fmt: skip
    assert check_latex(latex_table(table, decimals=3, ci="brackets", label="x")) == []


def test_subgroup_rows_stay_out_of_the_pathology_tables(run):
    assert any(":" in s for s in run.frame.subset)  # the run has subgroup rows of MS-SSIM
    tables = {t.name: t for t in paper_tables([run], OPTIONS)}
    ms_ssim = tables.get("table_pathology_ms_ssim")
    assert ms_ssim is None  # MS-SSIM has no pathology subset in this run, only subgroups
    assert per_pathology(run.frame, "ms_ssim").empty


def test_subgroup_table_needs_subgroup_rows_and_demographics(tmp_path):
    one = make_run(tmp_path / "run", subgroups=False)
    tables = paper_tables([one], OPTIONS)
    assert "table_subgroups" not in {t.name for t in tables}
    assert (NO_SUBGROUP_ROWS,) in tables[0].notes
    (one.path / "cases.jsonl").unlink()  # nothing says the cases had demographics
    assert (NO_SUBGROUP_ROWS,) not in paper_tables([load_run(one.path)], OPTIONS)[0].notes


def test_write_tables_writes_every_format_and_tidy_csv(tmp_path, run):
    written = write_tables([run], tmp_path / "out", ReportOptions(formats=("md", "csv", "tex")))
    names = sorted(p.name for p in written)
    assert names == sorted(
        f"{stem}.{ext}" for stem in ("table_main", "table_pathology_f1_macro", "table_subgroups") for ext in ("md", "csv", "tex")
    )
    frame = pd.read_csv(tmp_path / "out" / "table_main.csv")
    assert list(frame.columns) == ["row", "column", "generator", "run_id", "run", "group", "metric", "subset", "value",
                                   "ci_low", "ci_high", "n", "n_unit", "mark", "below_min_coverage"]  # fmt: skip
    b = frame[(frame.generator == "b") & (frame.metric == "fid")].iloc[0]
    assert (b["value"], b["n"], b["n_unit"], b["mark"], b["group"]) == (10.05, 16, "images", "best", GROUP_SPATIAL)
    assert (tmp_path / "out" / "table_main.csv").read_bytes().count(b"\r\n") == len(frame) + 1
    for path in written:
        if path.suffix == ".tex":
            assert check_latex(path.read_text()) == [], path.name
            assert "95 \\%" in path.read_text() and "textbackslash" not in path.read_text()
    only = write_tables([run], tmp_path / "md", ReportOptions(formats=("md",)))
    assert {p.suffix for p in only} == {".md"}


def test_per_run_reports_write_the_report_folder(tmp_path):
    one = make_run(tmp_path / "run")
    written = {p.relative_to(one.path).as_posix() for p in write_reports(one.path, figures=False)}
    assert {
        "leaderboard.md",
        "leaderboard.csv",
        "report/table_main.md",
        "report/table_main.tex",
        "report/table_main.csv",
    } <= written
    assert "report/table_pathology_f1_macro.md" in written and "report/table_subgroups.csv" in written
    board = (one.path / "leaderboard.md").read_text()
    assert "Each metric's n in results.csv counts images for `fid`; cases for `ms_ssim`, `f1_macro`." in board
