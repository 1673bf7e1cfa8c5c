"""Folder import (images made elsewhere) and the reports built from results.csv."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from xreal_bench.cli import main
from xreal_bench.coverage import Coverage
from xreal_bench.errors import UserFacingError
from xreal_bench.harness import to_run_image
from xreal_bench.imaging import Geometry, load_grayscale, quantize, save_png
from xreal_bench.importer import import_folder, match_case
from xreal_bench.reports import write_reports
from xreal_bench.reports.latex import check_latex, latex_table
from xreal_bench.reports.leaderboard import leaderboard, markdown
from xreal_bench.reports.options import ReportOptions
from xreal_bench.reports.runs import Run
from xreal_bench.reports.tables import main_table
from xreal_bench.results import COLUMNS
from xreal_bench.rundir import GeneratorDir
from xreal_bench.types import Case


def test_match_case_rules():
    known = {"abc-1", "abc-2"}
    assert match_case("abc-1", known) == ("abc-1", 0)
    assert match_case("abc-2_3", known) == ("abc-2", 3)
    assert match_case("abc-3_0", known) is None and match_case("abc", known) is None


def test_import_folder(tmp_path):
    cases = [Case(f"c{i}", tmp_path / f"c{i}.jpg", "10000000", "50000000", "PA", (0,) * 14) for i in range(3)]
    src = tmp_path / "mine"
    rng = np.random.default_rng(0)
    save_png(src / "c0.png", quantize(rng.random((300, 280)).astype(np.float32)))
    save_png(src / "sub" / "c1_2.png", quantize(rng.random((256, 256)).astype(np.float32), 16))  # 16-bit, nested
    Image.fromarray(quantize(rng.random((64, 64)).astype(np.float32))).save(src / "c2.jpg")
    save_png(src / "unknown_case.png", quantize(rng.random((64, 64)).astype(np.float32)))
    (src / "c2_1.png").write_bytes(b"not a png")
    report = import_folder(
        src, out=tmp_path / "run", name="mine", cases=cases, resolution=192, bits=8, geometry=Geometry("crop"), progress=False
    )
    assert report.imported == 3
    assert report.unmatched == ["unknown_case.png"] and len(report.unreadable) == 1
    gdir = GeneratorDir(tmp_path / "run", "mine")
    assert sorted(gdir.entries()) == [("c0", 0), ("c1", 2), ("c2", 0)]
    np.testing.assert_array_equal(
        np.asarray(Image.open(gdir.image_path("c1", 2))), to_run_image(load_grayscale(src / "sub" / "c1_2.png"), 192)
    )


def test_import_cli_bad_folder(tmp_path, capsys):
    config = tmp_path / "bench.toml"
    config.write_text(f'[dataset]\nkind = "synthetic"\nroot = "{tmp_path}/data"\n[dataset.synthetic]\nn_subjects = 8\n')
    assert (
        main(
            [
                "import",
                "--config",
                str(config),
                "--generator",
                "x",
                "--from",
                str(tmp_path / "nope"),
                "--out",
                str(tmp_path / "run"),
            ]
        )
        == 2
    )
    assert "import folder not found" in capsys.readouterr().err


def results_frame(demo: bool = False) -> pd.DataFrame:
    ev = "demo:net" if demo else "inception"
    rows = [
        ("real", "fid", "all", 0.0, np.nan, np.nan, 50, "images", 0, 0, ev, ""),
        ("good", "fid", "all", 10.0, 8.0, 12.0, 50, "images", 0, 0, ev, ""),
        ("bad", "fid", "all", 90.0, 80.0, 99.0, 50, "images", 3, 2, ev, ""),
        ("real", "ms_ssim", "all", 1.0, 1.0, 1.0, 50, "cases", 0, 0, "pixels", ""),
        ("good", "ms_ssim", "all", 0.7, 0.65, 0.75, 50, "cases", 0, 0, "pixels", ""),
        ("bad", "ms_ssim", "all", 0.2, 0.1, 0.3, 50, "cases", 3, 2, "pixels", ""),
        ("good", "ms_ssim", "Edema", 0.6, 0.5, 0.7, 12, "cases", 0, 0, "pixels", ""),
        ("bad", "ms_ssim", "Edema", 0.1, 0.0, 0.2, 12, "cases", 3, 2, "pixels", ""),
    ]
    return pd.DataFrame(rows, columns=COLUMNS)


def test_leaderboard_order_arrows_and_ci():
    df = results_frame()
    board = leaderboard(df)
    assert list(board.generator) == ["real", "good", "bad"]
    assert board.loc[1, "fid_ci_low"] == 8.0
    md = markdown(df)
    assert "| generator | n | failed | missing | coverage | fid ↓ | ms_ssim ↑ |" in md
    assert "| good | 50 | 0 | 0 | – | 10.000 [8.000, 12.000] | 0.700 [0.650, 0.750] |" in md
    assert "| bad | 50 | 3 | 2 | – | 90.000" in md  # without results.json: counts from results.csv, coverage unknown
    assert "†" not in md
    assert "Demo evaluators" not in md
    assert "Demo evaluators" in markdown(results_frame(demo=True))


def test_latex_marks_best_generator_not_the_reference(tmp_path):
    run = Run(path=tmp_path, frame=results_frame(), provenance={}, coverage={}, per_image=None)
    tex = latex_table(main_table([run], ReportOptions()), decimals=2, ci="brackets", label="tab:x")
    stacked = "\\begin{tabular}[c]{@{}c@{}}"  # value, then its CI on a second, smaller line
    assert f"Real images & {stacked}1.00\\\\ {{\\scriptsize [1.00, 1.00]}}\\end{{tabular}} & 0.00 \\\\" in tex
    good = f"good & {stacked}\\textbf{{0.70}}\\\\ {{\\scriptsize \\textbf{{[0.65, 0.75]}}}}\\end{{tabular}} & "
    assert good + f"{stacked}\\textbf{{10.00}}\\\\ {{\\scriptsize \\textbf{{[8.00, 12.00]}}}}\\end{{tabular}} \\\\" in tex
    bad = f"bad & {stacked}\\underline{{0.20}}\\\\ {{\\scriptsize \\underline{{[0.10, 0.30]}}}}\\end{{tabular}} & "
    assert bad + f"{stacked}\\underline{{90.00}}\\\\ {{\\scriptsize \\underline{{[80.00, 99.00]}}}}\\end{{tabular}} \\\\" in tex
    assert "MS-SSIM $\\uparrow$ & FID $\\downarrow$" in tex and "\\toprule" in tex and check_latex(tex) == []


def test_write_reports_and_cli(tmp_path, capsys):
    results_frame().to_csv(tmp_path / "results.csv", index=False)
    written = {p.relative_to(tmp_path).as_posix() for p in write_reports(tmp_path)}
    assert {
        "leaderboard.md",
        "leaderboard.csv",
        "report/table_main.tex",
        "report/table_main.md",
        "report/table_main.csv",
        "report/figures/metrics_bars.png",
    } <= written
    assert "report/table_pathology_ms_ssim.md" in written and "report/figures/pathology_ms_ssim.png" in written
    caption = (tmp_path / "report" / "table_main.md").read_text().splitlines()[0]
    assert caption == "**Generated chest X-rays against the real test images: MS-SSIM, FID, by model type.**"


def test_report_cli(tmp_path, capsys):
    results_frame().to_csv(tmp_path / "results.csv", index=False)
    assert main(["report", str(tmp_path), "--no-figures", "--formats", "md"]) == 0
    assert (tmp_path / "report" / "table_main.md").is_file() and not (tmp_path / "report" / "table_main.tex").exists()
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "no results at" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "absent")]) == 2
    assert "not a run directory" in capsys.readouterr().err


@pytest.mark.parametrize("decimals", [1, 4])
def test_decimals(decimals):
    assert f"{10.0:.{decimals}f} [" in markdown(results_frame(), decimals)


def coverage_record(evaluated: int, failed: int, missing: int, covered: int, cases: int = 25) -> dict:
    return Coverage(
        planned=2 * cases,
        ok=2 * cases - failed - missing,
        manifest_failed=failed,
        undecodable=0,
        missing=missing,
        no_reference=0,
        evaluated=evaluated,
        cases=cases,
        covered_cases=covered,
        samples_per_condition=2,
        samples_scored=(0, 1),
        ignored=0,
        min_coverage=0.9,
    ).to_dict()


def test_report_marks_sources_below_min_coverage_from_results_json(tmp_path):
    results_frame().to_csv(tmp_path / "results.csv", index=False)
    sources = {"good": coverage_record(50, 0, 0, 25), "bad": coverage_record(45, 3, 2, 22)}  # 22/25 = 0.88 < 0.9
    (tmp_path / "results.json").write_text(json.dumps({"coverage": {"sources": sources}}))
    write_reports(tmp_path, figures=False)
    board = (tmp_path / "leaderboard.md").read_text()
    assert "| bad† | 45 | 3 | 2 | 0.880 | 90.000" in board and "| good | 50 | 0 | 0 | 1.000 |" in board
    assert "† coverage below metrics.min_coverage = 0.9: bad (22 of 25 cases, 3 failed, 2 missing)" in board
    assert "| real | 50 | 0 | 0 | – |" in board  # no record: counts from results.csv, coverage unknown
    tex = (tmp_path / "report" / "table_main.tex").read_text()
    # marked, and not ranked: its numbers rest on 22 of 25 cases
    assert "bad$^\\dagger$ & \\begin{tabular}[c]{@{}c@{}}0.200\\\\ {\\scriptsize [0.100, 0.300]}" in tex
    assert "models below metrics.min\\_coverage ($^\\dagger$) are not ranked" in tex
    assert "$^\\dagger$ coverage below metrics.min\\_coverage = 0.9: bad (22 of 25 cases, 3 failed, 2 missing)" in tex
    assert "Failed / missing images of planned: bad 3 / 2 of 50." in tex and check_latex(tex) == []
    assert "| Pathology | Real images | bad† | good |" in (tmp_path / "report" / "table_pathology_ms_ssim.md").read_text()
    del sources["bad"]["evaluated"]
    (tmp_path / "results.json").write_text(json.dumps({"coverage": {"sources": sources}}))
    with pytest.raises(UserFacingError, match="unreadable coverage record"):
        write_reports(tmp_path, figures=False)


def test_leaderboard_footnote_names_every_unverified_weights_file(tmp_path):
    results_frame().to_csv(tmp_path / "results.csv", index=False)
    provenance = {
        "evaluators": {
            "suite": "standard",
            "features": {"name": "inception", "weights_sha256": "a" * 64, "weights_status": "verified"},
            "classifier": {
                "name": "xrv-densenet-mimic_ch",
                "weights_sha256": "b" * 64,
                "weights_status": "unverified (no published hash)",
            },
        },
        "generators": {
            "good": {"weights": {"xreal-backbone": {"sha256": "c" * 64, "status": "unverified (no published hash)"}}},
            "bad": {"weights": {"cheff-sr": {"sha256": None, "status": "absent"}}},
        },
    }
    (tmp_path / "results.json").write_text(json.dumps(provenance))
    write_reports(tmp_path, figures=False)
    board = (tmp_path / "leaderboard.md").read_text()
    line = next(x for x in board.splitlines() if x.startswith("Unverified weights"))
    assert "classifier `xrv-densenet-mimic_ch` (sha256 bbbbbbbbbbbb…)" in line
    assert "generator `good`: `xreal-backbone` (sha256 cccccccccccc…)" in line
    assert "inception" not in line and "cheff-sr" not in line
    provenance["evaluators"]["classifier"]["weights_status"] = "verified"
    del provenance["generators"]
    (tmp_path / "results.json").write_text(json.dumps(provenance))
    write_reports(tmp_path, figures=False)
    assert "Unverified weights" not in (tmp_path / "leaderboard.md").read_text()
