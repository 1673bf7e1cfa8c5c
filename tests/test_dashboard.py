"""The results dashboard, headless (streamlit.testing.v1.AppTest: real script runs over constructed runs), its
table shaping and the `xreal-bench dashboard` command line."""

import dataclasses
import json
import shlex
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from report_runs import case_ids, write_run
from streamlit.testing.v1 import AppTest

from xreal_bench.cli import main
from xreal_bench.reports import dashboard as dash
from xreal_bench.reports.runs import load_run, load_runs
from xreal_bench.tables import markdown_cell

FID = {"real": 0.0, "roentgen": 5.0, "xreal": 10.0, "cheff": 20.0}
HOSTILE = "Edema [x](http://127.0.0.1:9/x) **b**"


def sources(fid: dict[str, float]) -> dict[str, dict[str, float]]:
    return {
        g: {"fid": v, "f1_macro": 0.6 - v / 100, "f1/Edema": 0.7 - v / 100, "f1/Cardiomegaly": 0.5 + v / 100}
        for g, v in fid.items()
    }


def add_subset_rows(run_dir, subset: str, fid: dict[str, float]) -> None:
    """Append per-pathology FID rows to results.csv (``write_run`` writes overall rows only)."""
    frame = pd.read_csv(run_dir / "results.csv", dtype={"subset": str})
    extra = [
        {"generator": g, "metric": "fid", "subset": subset, "value": v, "ci_low": v - 1, "ci_high": v + 1, "n": 4}
        | {"failed": 0, "missing": 0, "evaluator": "inception", "note": ""}
        for g, v in fid.items()
    ]
    pd.concat([frame, pd.DataFrame(extra)], ignore_index=True).to_csv(run_dir / "results.csv", index=False)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("dash")
    maps = root / "anatomy"
    maps.mkdir()
    for k, case_id in enumerate(case_ids(8)):
        label_map = np.zeros((32, 32), np.uint8)
        label_map[4:28, 2:14], label_map[4:28, 18:30], label_map[16:26, 10 + k % 2 : 20] = 2, 1, 3
        Image.fromarray(label_map).save(maps / f"{case_id}.png")
    per_case = {g: {"ms_ssim": list(np.linspace(0.3, 0.9, 8) - v / 100)} for g, v in FID.items() if g != "real"}
    conditioning = {"anatomy": "folder", "anatomy_dir": str(maps), "resolution": 32}
    out = write_run(root / "run", sources=sources(FID), per_case=per_case, config_extra={"conditioning": conditioning})
    add_subset_rows(out, "Edema", {"roentgen": 30.0, "xreal": 12.0, "cheff": 25.0})
    add_subset_rows(out, HOSTILE, {"xreal": 1.0})
    return out


def start(monkeypatch, *dirs) -> AppTest:
    monkeypatch.setenv(dash.RUNS_ENV, ":".join(str(d) for d in dirs))
    at = AppTest.from_file(str(dash.APP_SCRIPT), default_timeout=30).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def leaderboard(at: AppTest) -> pd.DataFrame:
    (board,) = [d.value for d in at.dataframe if "run" in d.value.columns and "group" in d.value.columns]
    return board


def widget(widgets, label: str):
    (found,) = [w for w in widgets if w.label == label]
    return found


def captions(at: AppTest) -> list[str]:
    return [c for image in at.image for c in image.captions]


def test_the_page_shows_the_leaderboard_with_cis_units_and_ranking_order(run_dir, monkeypatch):
    at = start(monkeypatch, run_dir)
    board = leaderboard(at)
    assert list(board["generator"]) == ["real", "roentgen", "xreal", "cheff"]  # real first, then FID best first
    results = pd.read_csv(run_dir / "results.csv").query("subset == 'all'").set_index(["generator", "metric"])
    fid = results.loc[("xreal", "fid")]
    row = board[board["generator"] == "xreal"].iloc[0]
    assert row["FID ↓"] == f"{fid['value']:.3f} [{fid['ci_low']:.3f}, {fid['ci_high']:.3f}]"
    assert row["n (FID ↓)"] == "16 images" and row["n (MS-SSIM ↑)"] == "8 cases" and row["n (F1 (macro) ↑)"] == "8 cases"
    assert row["MS-SSIM ↑"].startswith(f"{results.loc[('xreal', 'ms_ssim'), 'value']:.3f} [")
    assert board[board["generator"] == "real"].iloc[0]["MS-SSIM ↑"] == "–"  # real has no MS-SSIM row
    assert set(board["run"]) == {"run (2026-11-20)"}
    assert list(board.columns[3:5]) == ["MS-SSIM ↑", "n (MS-SSIM ↑)"]  # Table I's order: MS-SSIM, FID, ..., F1
    assert dash.MERGE_NOTE in [c.value for c in at.caption]
    assert not at.warning  # not a demo run, one data set
    provenance = next(d.value for d in at.dataframe if list(d.value.columns) == ["field", "value"]).set_index("field")
    assert provenance.loc["config hash", "value"] == load_run(run_dir).provenance["config_hash"]
    assert provenance.loc["dataset fingerprint", "value"] == "f" * 64
    assert provenance.loc["evaluator: classifier", "value"].startswith("torchxrayvision:densenet121-res224-all (sha256 aaaa")


def test_filtering_by_generator_removes_the_other_rows_panels_and_columns(run_dir, monkeypatch):
    at = start(monkeypatch, run_dir)
    widget(at.multiselect, "Generators").set_value(["real", "cheff"]).run()
    assert not at.exception
    assert list(leaderboard(at)["generator"]) == ["real", "cheff"]
    assert [c.split(" · ")[0] for c in captions(at)] == ["real", "anatomy map", "cheff"]
    pathology = next(d.value for d in at.dataframe if d.value.index.name == "source")
    assert list(pathology.index) == ["cheff"]  # FID per pathology: real has no subset rows
    widget(at.selectbox, "Metric").set_value("f1_macro").run()
    pathology = next(d.value for d in at.dataframe if d.value.index.name == "source")
    assert list(pathology.index) == ["real", "cheff"]


def test_metrics_filter_and_ranking_metric(run_dir, monkeypatch):
    at = start(monkeypatch, run_dir)
    metrics = widget(at.multiselect, "Metrics")
    assert metrics.value == ["ms_ssim", "fid", "f1_macro"]  # Table I's columns present, in its order
    expected = ["fid", "ms_ssim", "f1_macro", "f1/Cardiomegaly", "f1/Edema"]  # headline rows present, then per-class rows
    assert dash.metric_choices(load_runs([run_dir])) == expected
    assert metrics.options == ["FID ↓", "MS-SSIM ↑", "F1 (macro) ↑", "F1 Cardiomegaly ↑", "F1 Edema ↑"]
    metrics.set_value(["ms_ssim"]).run()  # without FID the leaderboard ranks by the first chosen metric
    board = leaderboard(at)
    assert list(board["generator"]) == ["real", "roentgen", "xreal", "cheff"]  # MS-SSIM: higher is better
    assert [c for c in board.columns if c not in ("generator", "run", "group")] == ["MS-SSIM ↑", "n (MS-SSIM ↑)"]
    metrics.set_value([]).run()
    assert "Choose one or more metrics in the sidebar." in [i.value for i in at.info]


def test_changing_the_subset_shows_the_pathology_rows(run_dir, monkeypatch):
    at = start(monkeypatch, run_dir)
    subset = widget(at.selectbox, "Subset")
    assert subset.options[:2] == ["all", "Edema"]  # pathology subsets after "all", CheXpert ones first
    subset.set_value("Edema").run()
    board = leaderboard(at)
    # Edema rows reorder the models (xreal 12 < cheff 25 < roentgen 30); real has no Edema row
    assert list(board["generator"]) == ["real", "xreal", "cheff", "roentgen"]
    assert list(board["FID ↓"]) == ["–", "12.000 [11.000, 13.000]", "25.000 [24.000, 26.000]", "30.000 [29.000, 31.000]"]
    assert list(board["n (FID ↓)"]) == ["–", "4 images", "4 images", "4 images"]
    assert at.caption[0].value == markdown_cell("subset Edema; sorted by FID ↓, real images first; value [95 % CI].")
    subset.set_value(HOSTILE).run()  # a subset name from the file is shown as escaped text, never as a link
    shown = at.caption[0].value
    assert markdown_cell(HOSTILE) in shown and "[x](" not in shown and "**b**" not in shown


def test_per_pathology_view_tables_class_rows_and_subset_rows(run_dir, monkeypatch):
    at = start(monkeypatch, run_dir)
    chooser = widget(at.selectbox, "Metric")
    assert chooser.options == ["FID ↓", "F1 (macro) ↑"]
    chooser.set_value("f1_macro").run()
    table = next(d.value for d in at.dataframe if d.value.index.name == "source")
    assert list(table.columns) == ["Cardiomegaly", "Edema"]  # CheXpert order
    assert table.loc["cheff", "Edema"] == pytest.approx(0.5) and table.loc["roentgen", "Cardiomegaly"] == pytest.approx(0.55)
    assert list(table.index) == ["real", "cheff", "roentgen", "xreal"]  # the sidebar's order
    chooser.set_value("fid").run()
    table = next(d.value for d in at.dataframe if d.value.index.name == "source")
    assert list(table.columns) == ["Edema", HOSTILE]
    assert table.loc["xreal"].tolist() == [12.0, 1.0] and np.isnan(table.loc["cheff", HOSTILE])
    assert list(table.index) == ["cheff", "roentgen", "xreal"]  # real has no pathology-subset FID rows
    (chart,) = at.get("vega_lite_chart")  # the bar chart beside the table
    encoding = json.loads(chart.proto.spec)["encoding"]
    assert (encoding["x"]["title"], encoding["y"]["title"]) == ("pathology", "FID ↓")


def test_case_picker_shows_the_chosen_case_and_leaves_no_stale_images(run_dir, monkeypatch):
    ids = case_ids(8)
    at = start(monkeypatch, run_dir)
    case = widget(at.selectbox, "Case")
    assert case.value == ids[0] and case.options[1] == f"{ids[1]} — Edema"
    case.set_value(ids[2]).run()
    assert captions(at) == [
        f"real · {ids[2]}",
        f"anatomy map · {ids[2]}",
        *(f"{g} · {ids[2]} · sample 0" for g in ("cheff", "roentgen", "xreal")),
    ]
    assert f"Case {ids[2]}: view PA; positive labels: Pleural Effusion" in [t.value for t in at.text]
    boxes = next(d.value for d in at.dataframe if "x0" in d.value.columns)
    assert boxes.to_dict("records") == [
        {"label": "Pleural Effusion", "x0": 0.2, "y0": 0.3, "x1": 0.6, "y1": 0.7, "source": "boxes_csv"}
    ]
    case.set_value(ids[3]).run()  # a "No Finding" case: no box
    shown = captions(at)
    assert len(shown) == 5 and all(ids[3] in c for c in shown) and not any(ids[2] in c for c in shown)
    assert "No pathology boxes for this case." in [t.value for t in at.text]
    assert not [d for d in at.dataframe if "x0" in d.value.columns]


def test_grid_panels_hold_each_sources_own_pixels(run_dir):
    run = load_run(run_dir)
    case_id = case_ids(8)[1]
    panels = {p.title: p for p in dash.grid_panels(run, case_id, ["xreal", "missing-model"])}
    assert list(panels) == ["real", "anatomy map", "xreal"]  # a generator the run lacks gets no panel
    expected = np.asarray(Image.open(run_dir / "xreal" / "images" / f"{case_id}_0.png"))
    assert np.array_equal(panels["xreal"].pixels, expected)
    assert np.array_equal(panels["real"].pixels, np.asarray(Image.open(run_dir / "real" / "images" / f"{case_id}_0.png")))
    colours = panels["anatomy map"].pixels
    assert tuple(colours[20, 5]) == dash.ANATOMY_COLOURS[2] and tuple(colours[6, 20]) == dash.ANATOMY_COLOURS[1]
    assert tuple(colours[20, 15]) == dash.ANATOMY_COLOURS[3] and tuple(colours[0, 0]) == (0, 0, 0)
    (run_dir / "xreal" / "images" / f"{case_id}_0.png").rename(run_dir / "moved.png")
    try:
        assert dash.grid_panels(run, case_id, ["xreal"])[-1].pixels is None  # listed in the manifest, file gone
    finally:
        (run_dir / "moved.png").rename(run_dir / "xreal" / "images" / f"{case_id}_0.png")


def test_runs_filter_demo_warning_and_different_data(tmp_path, monkeypatch):
    first = write_run(tmp_path / "a", sources=sources({"real": 0.0, "xreal": 9.0}), written="2026-11-01T10:00:00+00:00")
    second = write_run(
        tmp_path / "b",
        sources=sources({"real": 0.0, "xreal": 7.0, "cheff": 8.0}),
        evaluator="demo:classifier",
        fingerprint="e" * 64,
        written="2026-11-02T10:00:00+00:00",
    )
    at = start(monkeypatch, first, second)
    board = leaderboard(at)
    assert list(zip(board["generator"], board["run"])) == [
        ("real", "a (2026-11-01)"),
        ("real", "b (2026-11-02)"),
        ("xreal", "b (2026-11-02)"),
        ("cheff", "b (2026-11-02)"),
        ("xreal", "a (2026-11-01)"),
    ]
    warnings = [w.value for w in at.warning]
    assert warnings[0].startswith("Demo run: scored with the demo's own evaluators")
    assert warnings[1] == markdown_cell(
        "These runs were scored on different data (dataset fingerprints a (2026-11-01): ffffffffffff; "
        "b (2026-11-02): eeeeeeeeeeee): their numbers are not comparable."
    )
    widget(at.multiselect, "Runs").set_value([0]).run()
    assert set(leaderboard(at)["run"]) == {"a (2026-11-01)"} and not at.warning
    pathology = next(d.value for d in at.dataframe if d.value.index.name == "source")
    assert list(pathology.index) == ["real", "xreal"]


def test_a_run_dir_without_results_is_a_clear_error_not_a_traceback(tmp_path, monkeypatch):
    (tmp_path / "empty").mkdir()
    at = start(monkeypatch, tmp_path / "empty")
    assert [e.value for e in at.error] == [
        markdown_cell(f"no results at {tmp_path / 'empty' / 'results.csv'}; run `xreal-bench evaluate` (or `run`) first")
    ]
    assert not at.dataframe and not at.exception
    at = start(monkeypatch, tmp_path / "absent")
    assert [e.value for e in at.error] == [markdown_cell(f"{tmp_path / 'absent'}: not a run directory (no such folder)")]
    monkeypatch.delenv(dash.RUNS_ENV)
    at = AppTest.from_file(str(dash.APP_SCRIPT), default_timeout=30).run()
    assert [e.value for e in at.error] == ["No run directories: start this page with `xreal-bench dashboard RUN_DIR...`."]


def test_run_dirs_come_from_the_scripts_arguments_else_the_environment(tmp_path):
    env = {dash.RUNS_ENV: f"{tmp_path / 'x'}:{tmp_path / 'y'}"}
    assert dash.run_dirs_from([str(dash.APP_SCRIPT), "r1", "r2"], env) == [dash.Path("r1"), dash.Path("r2")]
    assert dash.run_dirs_from(["/usr/bin/pytest", "-q", "tests"], env) == [tmp_path / "x", tmp_path / "y"]  # not our script
    assert dash.run_dirs_from([str(dash.APP_SCRIPT)], {}) == []


def test_run_names_stay_distinct_for_folders_of_the_same_name(tmp_path):
    runs = [load_run(write_run(tmp_path / p / "run", sources=sources({"xreal": 1.0}), run_id=f"id-{p}")) for p in ("a", "b")]
    assert dash.run_names(runs) == ["run (2026-11-20) [id-a]", "run (2026-11-20) [id-b]"]


def test_print_command_is_the_streamlit_command_line(run_dir, capsys):
    assert main(["dashboard", str(run_dir), "--port", "8600", "--address", "0.0.0.0", "--print-command"]) == 0
    command = shlex.split(capsys.readouterr().out)
    assert command[:5] == [sys.executable, "-m", "streamlit", "run", str(dash.APP_SCRIPT)]
    options = command[5 : command.index("--")]
    assert dict(zip(options[::2], options[1::2])) == {
        "--server.address": "0.0.0.0",
        "--server.port": "8600",
        "--server.headless": "true",
        "--browser.gatherUsageStats": "false",
        "--server.fileWatcherType": "none",
        "--global.developmentMode": "false",
        "--client.toolbarMode": "minimal",
    }
    assert command[command.index("--") + 1 :] == [str(run_dir.resolve())]
    assert main(["dashboard", str(run_dir), "--print-command"]) == 0
    default = shlex.split(capsys.readouterr().out)
    assert default[default.index("--server.port") + 1] == "8502" and default[default.index("--server.address") + 1] == "127.0.0.1"


def test_the_command_refuses_a_run_without_results_and_a_bad_port(tmp_path, run_dir, capsys):
    assert main(["dashboard", str(tmp_path), "--print-command"]) == 2
    assert (
        capsys.readouterr().err
        == f"error: no results at {tmp_path / 'results.csv'}; run `xreal-bench evaluate` (or `run`) first\n"
    )
    with pytest.raises(SystemExit) as exit_:
        main(["dashboard", str(run_dir), "--port", "70000"])
    assert exit_.value.code == 2 and "port 70000 is outside 1..65535" in capsys.readouterr().err


def test_the_grid_keeps_its_run_and_case_when_another_run_is_filtered_out(run_dir, tmp_path, monkeypatch):
    ids = case_ids(8)
    other = write_run(tmp_path / "other", sources=sources({"real": 0.0, "cheff": 3.0}), n_cases=4)
    at = start(monkeypatch, other, run_dir)
    widget(at.selectbox, "Run").set_value(1).run()
    widget(at.selectbox, "Case").set_value(ids[6]).run()
    widget(at.multiselect, "Runs").set_value([1]).run()  # the first run goes; the grid's run stays
    assert not at.exception
    assert widget(at.selectbox, "Run").value == 1 and widget(at.selectbox, "Case").value == ids[6]
    assert captions(at)[0] == f"real · {ids[6]}" and all(ids[6] in c for c in captions(at))
    widget(at.multiselect, "Runs").set_value([0]).run()  # now the grid's run is filtered out: the other run's cases
    assert not at.exception and widget(at.selectbox, "Run").value == 0
    assert len(widget(at.selectbox, "Case").options) == 4 and not any(ids[6] in c for c in captions(at))


def test_the_ci_label_names_each_runs_confidence(run_dir):
    run = load_run(run_dir)
    other = dataclasses.replace(run, provenance={**run.provenance, "bootstrap": {"confidence": 0.9}})
    assert dash.ci_label([run]) == "95 % CI" and dash.ci_label([run, other]) == "90 % or 95 % CI"


def test_merged_leaderboard_combines_seeds_and_ranks(tmp_path):
    """Two runs that differ only in the seed: one merged row per generator with both seeds and a rank interval."""
    from report_runs import write_run

    from xreal_bench.reports import dashboard as dash
    from xreal_bench.reports.runs import load_run

    sources = {"real": {"fid": 0.0}, "a": {"fid": 10.0}, "b": {"fid": 30.0}}
    runs = [
        load_run(write_run(tmp_path / f"s{seed}", sources=sources, seed=seed, bootstrap_seed=0, run_id=f"r{seed}"))
        for seed in (0, 1)
    ]  # one bootstrap seed: the seeds' draws are paired and pooled
    [(title, table)] = dash.merged_sections(runs, metrics=["fid"], generators=["real", "a", "b"])
    assert title == "Comparable runs"
    assert table["seeds"].tolist()[1:] == ["0, 1", "0, 1"]
    assert table["rank"].tolist()[1:] == ["1 [1, 1]", "2 [2, 2]"]
    assert {"failed", "missing", "coverage", "note"} <= set(table.columns)
    assert table[dash.metric_label("fid")].tolist()[1].startswith("10.000 [")


def test_no_module_beside_a_streamlit_script_shadows_the_standard_library():
    """``streamlit run`` puts the script's folder first on sys.path: a reports/html.py there replaced the stdlib
    ``html`` for Starlette and the dashboard could not start."""
    import sys
    from pathlib import Path

    root = Path(__file__).parents[1]
    for folder in ("reports", "reader_study"):
        clashes = sorted(p.stem for p in (root / folder).glob("*.py") if p.stem in sys.stdlib_module_names)
        assert clashes == [], f"{folder}/{clashes} shadow standard-library modules under `streamlit run`"


def test_importing_the_streamlit_scripts_runs_nothing(monkeypatch):
    """A worker spawned after an AppTest re-imports ``__main__`` by path (as ``__mp_main__``): the scripts must not
    run their page then (a torch.multiprocessing test failed that way)."""
    import runpy
    from pathlib import Path

    root = Path(__file__).parents[1]
    for script in (root / "reports" / "dashboard_app.py", root / "reader_study" / "app.py"):
        namespace = runpy.run_path(str(script), run_name="__mp_main__")
        assert callable(namespace["main"])
