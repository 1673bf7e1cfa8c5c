"""The metric table is the one place metric names live: no other module of the package writes
one, and config validation, scoring, the leaderboard, the paper tables and LaTeX names follow it."""

from __future__ import annotations

import ast
import dataclasses
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from xreal_bench.config import MetricsConfig, config_from_dict
from xreal_bench.demo.command import demo_tables
from xreal_bench.labels import DICE_STRUCTURES
from xreal_bench.metrics import table
from xreal_bench.metrics.context import ScoringSettings
from xreal_bench.metrics.engine import SourceOutputs
from xreal_bench.metrics.scoring import score
from xreal_bench.metrics.suite import Suite
from xreal_bench.reports.latex import latex_table
from xreal_bench.reports.leaderboard import leaderboard, markdown
from xreal_bench.reports.options import ReportOptions
from xreal_bench.reports.runs import Run
from xreal_bench.reports.tables import main_table
from xreal_bench.results import COLUMNS
from xreal_bench.types import Case
from xreal_bench.validation import ConfigError

REPO = Path(__file__).resolve().parents[1]
TABLE_MODULE = REPO / "metrics" / "table.py"


def package_folders() -> list[Path]:
    """The repository folders installed as the package (pyproject's package-dir)."""
    package_dir = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    return sorted({REPO / folder for folder in package_dir.values()})


def metric_literals(path: Path) -> list[str]:
    """``line: 'literal'`` for each string literal in ``path`` naming a metric row or starting with a per-class prefix."""
    names = {m.name for m in table.rows()}
    prefixes = table.per_class_prefixes()
    nodes = ast.walk(ast.parse(path.read_text(), str(path)))
    strings = [n for n in nodes if isinstance(n, ast.Constant) and isinstance(n.value, str)]
    hits = [node for node in strings if node.value in names or node.value.startswith(prefixes)]
    return [f"{path}:{node.lineno}: {node.value!r}" for node in sorted(hits, key=lambda n: (n.lineno, n.col_offset))]


def test_package_folders_are_the_ones_scanned():
    assert {p.name for p in package_folders()} == {"xreal_bench", "generators", "metrics", "reports", "reader_study"}


def test_no_module_but_the_table_names_a_metric():
    modules = [p for folder in package_folders() for p in sorted(folder.rglob("*.py")) if p != TABLE_MODULE]
    assert len(modules) > 50
    found = [hit for p in modules for hit in metric_literals(p)]
    assert not found, "metric names outside metrics/table.py:\n" + "\n".join(found)


def test_the_scanner_flags_planted_names(tmp_path):
    planted = tmp_path / "planted.py"
    planted.write_text('"""fid in prose is fine."""\nX = {"ms_ssim": 1}\ny = f"auc/{X}"\nz = "f1/Edema"\nok = "fidx"\n')
    assert [hit.split(": ", 1)[1] for hit in metric_literals(planted)] == ["'ms_ssim'", "'auc/'", "'f1/Edema'"]
    assert metric_literals(TABLE_MODULE)  # the table itself is where they are


def test_table_order_and_lookups():
    pixels = ["ms_ssim", "ms_ssim_diversity"]
    dice = ["dice_lungs", "dice_heart", "dice_aorta", "dice"]
    assert [m.name for m in table.headline()] == ["fid", "fid_xrv", "kid", *pixels, *dice, "f1_macro", "auc_macro"]
    assert [m.name for m in table.main_table()] == ["ms_ssim", "fid", "fid_xrv", "dice", "f1_macro", "auc_macro"]
    distribution = ["fd_dinov2", "fd_raddino", "cmmd", "prdc_precision", "prdc_recall", "prdc_density", "prdc_coverage"]
    assert table.selectable_names() == (
        *("fid", "fid_xrv", "kid", *distribution, "ms_ssim", "ms_ssim_diversity", "vendi", "dice", "f1_macro", "auc_macro"),
        *("memorization_rate", "lesion_in_box"),
    )
    assert [m.name for m in table.frechet_distances()] == ["fid", "fid_xrv", "fd_dinov2", "fd_raddino"]
    assert table.default_enabled() == ["fid", "fid_xrv", "ms_ssim", "ms_ssim_diversity", "dice", "f1_macro", "auc_macro"]
    assert [m.name for m in table.pathology_tables()] == ["fid", "ms_ssim", "dice"]
    assert table.row_metric("auc/Edema").name == "auc_macro" and table.row_metric("f1/Edema").name == "f1_macro"
    assert table.row_metric("dice_heart").name == "dice_heart" and table.row_metric("dice_heart").role == "segmenter"
    assert table.ranking().name == "fid" and table.metric("fid").arrow == "↓" and table.metric("dice").arrow == "↑"
    with pytest.raises(KeyError, match="unknown metric 'is'"):
        table.row_metric("is")


def test_table_is_consistent():
    names = [m.name for m in table.rows()]
    assert len(names) == len(set(names)) and len(table.per_class_prefixes()) == len(set(table.per_class_prefixes()))
    for m in table.METRICS:
        assert m.compute is not None and all(p.compute is None and not p.parts for p in m.parts)
        assert (m.role is None) != (m.pixels is None), m.name  # an evaluator, or a pixel computation
    assert [p.key for p in table.DICE.parts] == list(DICE_STRUCTURES)
    assert {m.n_unit for m in table.rows()} <= {"images", "cases"} and {m.direction for m in table.rows()} <= {"lower", "higher"}


def test_evaluation_flags_come_from_the_table():
    assert table.roles(["fid", "kid", "ms_ssim"]) == {"features"}
    assert table.roles(["dice", "auc_macro", "fid_xrv"]) == {"segmenter", "classifier", "domain_features"}
    assert table.pixel_passes(["ms_ssim", "dice"]) == {"paired"} and table.pixel_passes(["ms_ssim_diversity"]) == {"diversity"}
    assert table.needs_thresholds(["f1_macro"]) and not table.needs_thresholds(["auc_macro", "dice"])


def test_demo_enables_every_selectable_metric():
    assert demo_tables("out")["metrics"]["enabled"] == list(table.selectable_names())


SHARPNESS = table.Metric(
    name="sharpness",
    direction="higher",
    family="fidelity",
    display="Sharpness",
    latex="Sharp",
    n_unit="images",
    pixels="paired",
    headline=True,
    main_column=2,  # after MS-SSIM; beside FID in table order
    default=True,
    compute=lambda ctx, metric, subset: [ctx.row(metric, 0.5, subset=subset[0], n=len(subset[1]))],
)


@pytest.fixture
def with_sharpness(monkeypatch):
    """A new metric added to the table the way a contributor would: one entry (after fid)."""
    monkeypatch.setattr(table, "METRICS", (table.METRICS[0], SHARPNESS, *table.METRICS[1:]))


def test_a_new_entry_is_selectable_and_enabled_by_default(with_sharpness):
    assert "sharpness" in table.selectable_names() and MetricsConfig().enabled[:2] == ["fid", "sharpness"]
    assert config_from_dict({"metrics": {"enabled": ["sharpness"]}}).metrics.enabled == ["sharpness"]
    with pytest.raises(ConfigError, match=r"expected one of 'fid', 'sharpness', 'fid_xrv', .*, got 'is'"):
        config_from_dict({"metrics": {"enabled": ["is"]}})


def test_a_new_entry_is_scored_by_its_compute_function(with_sharpness):
    cases = {c: Case(c, Path(f"{c}.png"), "1", "2", "PA", (0,) * 14) for c in ("a", "b")}
    gen = SourceOutputs(keys=[("a", 0), ("b", 0)])
    settings = ScoringSettings(
        enabled=["sharpness"],
        bootstrap=0,
        fid_bootstrap=0,
        confidence=0.95,
        seed=0,
        subsets=True,
        min_subset_n=2,
        kid_subsets=1,
        kid_subset_size=2,
        label_set=["classifier"],
        f1_zero_division=0.0,
    )
    rows = score("g", gen, real=gen, cases=cases, suite=Suite("standard"), settings=settings, thresholds=None)
    assert [(r.metric, r.value, r.n, r.evaluator) for r in rows] == [("sharpness", 0.5, 2, "pixels")]


def frame_run(frame: pd.DataFrame) -> Run:
    return Run(path=Path("run"), frame=frame, provenance={}, coverage={}, per_image=None)


def test_a_new_entry_appears_in_leaderboard_main_table_and_latex(with_sharpness):
    frame = pd.DataFrame(
        [
            ("real", "fid", "all", 0.0, np.nan, np.nan, 4, "images", 0, 0, "inception", ""),
            ("good", "fid", "all", 10.0, 8.0, 12.0, 4, "images", 0, 0, "inception", ""),
            ("real", "sharpness", "all", 1.0, np.nan, np.nan, 4, "images", 0, 0, "pixels", ""),
            ("good", "sharpness", "all", 0.5, 0.4, 0.6, 4, "images", 0, 0, "pixels", ""),
            ("good", "ms_ssim", "all", 0.7, 0.6, 0.8, 4, "cases", 0, 0, "pixels", ""),
        ],
        columns=COLUMNS,
    )
    columns = [c for c in leaderboard(frame).columns if not c.endswith(("_ci_low", "_ci_high"))]
    assert columns == ["generator", "n", "failed", "missing", "coverage", "coverage_note", "fid", "sharpness", "ms_ssim"]
    assert "| generator | n | failed | missing | coverage | fid ↓ | sharpness ↑ | ms_ssim ↑ |" in markdown(frame)
    paper = main_table([frame_run(frame)], ReportOptions())
    assert [c.metric for c in paper.rows[0].cells] == ["ms_ssim", "fid", "sharpness"]
    assert [c.text for c in paper.columns] == ["MS-SSIM ↑", "FID ↓", "Sharpness ↑"]
    tex = latex_table(paper, decimals=3, ci="brackets", label="l")
    assert "Model & MS-SSIM $\\uparrow$ & FID $\\downarrow$ & Sharp $\\uparrow$ \\\\" in tex


def test_latex_names_come_from_the_table(monkeypatch):
    renamed = [dataclasses.replace(m, latex="Dice\\textsuperscript{new}") if m.name == "dice" else m for m in table.METRICS]
    monkeypatch.setattr(table, "METRICS", tuple(renamed))
    frame = pd.DataFrame([("good", "dice", "all", 0.7, 0.6, 0.8, 4, "cases", 0, 0, "seg", "")], columns=COLUMNS)
    paper = main_table([frame_run(frame)], ReportOptions())
    assert "Model & Dice\\textsuperscript{new} $\\uparrow$ \\\\" in latex_table(paper, decimals=3, ci="brackets", label="l")
