"""``xreal-bench report RUN_DIR... --out DIR``: the report folder on constructed runs — every file, the
README's provenance, refusal and sections for runs that are not comparable, hostile run records,
and Table I drawn as a picture with the same marks as the text tables."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from report_runs import write_run

from xreal_bench.cli import main
from xreal_bench.reports.options import ReportOptions
from xreal_bench.reports.runs import load_run
from xreal_bench.reports.table_image import table_figure
from xreal_bench.reports.tables import main_table

SOURCES = {
    "real": {"fid": 0.0, "f1_macro": 0.95},
    "xreal": {"fid": 10.0, "f1_macro": 0.80},
    "cheff": {"fid": 14.0, "f1_macro": 0.60},
    "roentgen": {"fid": 30.0, "f1_macro": 0.50},
}
PER_CASE = {"xreal": {"ms_ssim": [0.7, 0.8] * 4}, "cheff": {"ms_ssim": [0.4] * 8}, "roentgen": {"ms_ssim": [0.3, 0.2] * 4}}
INPUTS = {"xreal": ["labels", "anatomy", "pathology"], "cheff": ["text"], "roentgen": ["text"]}


def run_dir(path: Path, **kwargs) -> Path:
    return write_run(path, **{"sources": SOURCES, "per_case": PER_CASE, "inputs": INPUTS, **kwargs})


def files_under(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def test_report_writes_the_whole_folder_and_traces_it(tmp_path, capsys):
    run = run_dir(tmp_path / "run-a")
    out = tmp_path / "paper"
    assert main(["report", str(run), "--out", str(out), "--grid-cases", "2"]) == 0
    assert f"report: {out}" in capsys.readouterr().out
    files = files_under(out)
    for name in (
        "table_main.md",
        "table_main.tex",
        "table_main.csv",
        "table_main.png",
        "figures/metrics_bars.png",
        "figures/metrics_bars.pdf",
        "figures/fid_vs_clinical.png",
        "fid_vs_clinical.csv",
        "samples_grid.png",
        "samples_grid.pdf",
        "leaderboard.html",
        "rank_plot.png",
        "results/run-1.json",
        "model-index/xreal.model-index.yaml",
        "README.md",
    ):
        assert name in files, name
    assert "model-index/real.model-index.yaml" not in files  # the real images are not a model
    readme = (out / "README.md").read_text()
    provenance = json.loads((run / "results.json").read_text())
    assert provenance["config_hash"] in readme and provenance["dataset"]["fingerprint"] in readme
    assert "a" * 64 in readme  # the classifier's weights sha256
    assert f"xreal-bench report {run} --out {out} --grid-cases 2" in readme
    assert "`table_main.{csv,md,png,tex}`: Table I" in readme and "Demo evaluators" not in readme
    document = json.loads((out / "results" / "run-1.json").read_text())
    assert document["schema"] == "xreal-bench/results" and document["run"]["run_id"] == provenance["run_id"]


def test_one_run_defaults_to_its_report_folder_and_several_need_out(tmp_path, capsys):
    first, second = run_dir(tmp_path / "a"), run_dir(tmp_path / "b", seed=1)
    assert main(["report", str(first), "--no-figures"]) == 0
    assert (first / "report" / "table_main.md").is_file() and not (first / "report" / "samples_grid.png").exists()
    assert main(["report", str(first), str(second)]) == 2
    assert "several runs need --out DIR" in capsys.readouterr().err


def test_runs_that_are_not_comparable_are_refused_or_put_in_sections(tmp_path, capsys):
    first = run_dir(tmp_path / "a")
    other = run_dir(tmp_path / "b", fingerprint="0" * 64)
    out = tmp_path / "paper"
    assert main(["report", str(first), str(other), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "differ in dataset fingerprint" in err and not out.exists()
    assert main(["report", str(first), str(other), "--out", str(out), "--allow-mixed", "--no-figures"]) == 0
    files = files_under(out)
    assert {"section-1/table_main.md", "section-2/table_main.md", "section-1/results/run-1.json"} <= files
    assert "section-2/results/run-2.json" in files  # runs keep their number across sections
    readme = (out / "README.md").read_text()
    assert "not all comparable" in readme and "differ in dataset fingerprint" in readme


def test_hostile_run_records_never_become_paths_or_markup(tmp_path):
    run = run_dir(tmp_path / "odd<b>name", run_id="../../escaped")
    out = tmp_path / "paper"
    assert main(["report", str(run), "--out", str(out), "--no-figures"]) == 0
    assert not (tmp_path / "escaped").exists() and not list(tmp_path.glob("**/escaped*"))
    assert "results/run-1.json" in files_under(out)
    readme = (out / "README.md").read_text()
    assert "odd\\<b\\>name" in readme  # escaped in the runs section
    assert all(line.startswith("    ") for line in readme.splitlines() if "odd<b>name" in line)  # literal in the command block


def test_a_generator_name_outside_the_rule_is_refused_before_anything_is_written(tmp_path, capsys):
    run = run_dir(tmp_path / "run")
    results = (run / "results.csv").read_text().replace("cheff,", "../cheff,")
    (run / "results.csv").write_text(results)
    assert main(["report", str(run), "--out", str(tmp_path / "paper")]) == 2
    assert "'../cheff'" in capsys.readouterr().err and not (tmp_path / "paper").exists()


@pytest.mark.parametrize("ci", ["brackets", "pm"])
def test_table_picture_has_the_text_tables_cells_and_marks(tmp_path, ci):
    run = load_run(run_dir(tmp_path / "run"))
    options = ReportOptions(ci=ci)
    table = main_table([run], options)
    assert table is not None
    figure = table_figure(table, options)
    texts = {t.get_text(): t for t in figure.axes[0].texts}
    bold = sorted(t for t, artist in texts.items() if artist.get_fontweight() == "bold" and t[:1].isdigit())
    best = sorted(text for row in table.rows for c in row.cells if c.mark == "best" and (text := texts_of(c, options)) in texts)
    assert bold == best and len(best) == 3  # MS-SSIM, FID and F1: xreal is best in each
    seconds = sum(c.mark == "second" for row in table.rows for c in row.cells)
    rules = [line for line in figure.axes[0].lines if len(set(line.get_ydata())) == 1]
    assert len(rules) == 3 + seconds  # top, header and bottom rules, then one underline per second-best value
    pm = "±" in " ".join(texts)
    assert pm == (ci == "pm")


def texts_of(cell, options) -> str:
    from xreal_bench.reports.table_model import value_text

    return value_text(cell.estimate, decimals=options.decimals, ci=options.ci)


def test_table_picture_file_is_a_png_of_the_drawn_size(tmp_path):
    run = run_dir(tmp_path / "run")
    out = tmp_path / "paper"
    assert main(["report", str(run), "--out", str(out)]) == 0
    with Image.open(out / "table_main.png") as image:
        assert image.format == "PNG" and image.width > 1000 and image.height > 300


def test_a_command_with_line_breaks_stays_inside_the_code_block(tmp_path):
    from xreal_bench.reports.folder import write_report_folder

    run = load_run(run_dir(tmp_path / "run"))
    out = tmp_path / "paper"
    write_report_folder([run], out, ReportOptions(figures=False), command=["xreal-bench", "report", "x\n# injected\n<b>"])
    lines = (out / "README.md").read_text().splitlines()
    assert not [line for line in lines if line.startswith(("# injected", "<b>"))]
    assert "    # injected" in lines


def test_a_manifest_file_outside_the_generator_folder_is_never_shown(tmp_path):
    run = run_dir(tmp_path / "run")
    secret = tmp_path / "secret.png"
    Image.new("L", (8, 8), 255).save(secret)
    manifest = run / "xreal" / "manifest.jsonl"
    lines = manifest.read_text().splitlines()
    first = {**json.loads(lines[0]), "file": "../../secret.png"}
    manifest.write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
    loaded = load_run(run)
    assert (run / "xreal" / first["file"]).resolve() == secret.resolve()
    assert loaded.image_path("xreal", first["case_id"]) is None
    assert loaded.image_path("cheff", first["case_id"]) is not None
