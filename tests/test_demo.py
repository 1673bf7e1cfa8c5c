"""`xreal-bench demo` end to end: every output, every metric, the ranking theory predicts."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from pathlib import Path

import pandas as pd
import pytest

from xreal_bench.cli import main
from xreal_bench.config import config_from_dict
from xreal_bench.demo.command import demo_tables
from xreal_bench.evaluation import evaluate
from xreal_bench.metrics import table as metric_table
from xreal_bench.pipeline import generate, open_session
from xreal_bench.reports import write_reports
from xreal_bench.results import read_results


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "run"
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        assert main(["demo", "--out", str(out), "--quiet"]) == 0
    return out, buffer.getvalue()


def table(out) -> pd.DataFrame:
    df = pd.read_csv(out / "results.csv")
    return df[df.subset == "all"].set_index(["generator", "metric"])["value"]


@pytest.mark.slow
def test_demo_writes_everything_and_prints_where(demo):
    out, printed = demo
    for name in (
        "results.csv",
        "results.json",
        "leaderboard.md",
        "leaderboard.csv",
        "report/table_main.tex",
        "report/figures/metrics_bars.png",
        "study/study.sqlite",
    ):
        assert (out / name).is_file(), name
    assert f"results: {out / 'results.csv'}" in printed
    assert printed.rstrip().splitlines()[-1].startswith(f"report folder: {out / 'report'} ")  # the demo ends with it
    assert (out / "report" / "README.md").is_file() and (out / "report" / "samples_grid.png").is_file()
    assert "xreal-bench study serve" in printed and printed.count("?token=") >= 2
    assert "Demo evaluators" in (out / "leaderboard.md").read_text()
    provenance = json.loads((out / "results.json").read_text())
    assert provenance["demo_evaluators"] is True
    assert set(provenance["coverage"]["sources"]) == {"real", "phantom", "shuffled", "noise", "memorizer"}
    assert all(c["coverage"] == 1.0 and c["failed"] == c["missing"] == 0 for c in provenance["coverage"]["sources"].values())


@pytest.mark.slow
def test_demo_shows_every_metric_for_every_reference_generator(demo):
    out, _ = demo
    v = table(out)
    for g in ("phantom", "shuffled", "noise", "memorizer"):
        for m in metric_table.rows():  # every family, on the demo's own encoders
            assert (g, m.name) in v.index, (g, m.name)
    assert ("real", "vendi") in v.index and ("real", "memorization_rate") in v.index and ("real", "lesion_in_box") in v.index
    df = pd.read_csv(out / "results.csv")
    assert df.evaluator.str.startswith(("demo:", "pixels")).all()  # every number labelled as the demo's


@pytest.mark.slow
def test_demo_ranking_follows_theory(demo):
    out, _ = demo
    v = table(out)
    # Dice: real > phantom > shuffled > noise.
    assert v["real", "dice"] > v["phantom", "dice"] > v["shuffled", "dice"] > v["noise", "dice"]
    # FID: shuffled (realistic, unconditioned) near real, the phantom's texture clearly worse, noise worst.
    assert v["shuffled", "fid"] < v["phantom", "fid"] < v["noise", "fid"]
    assert v["shuffled", "fid"] < 0.5 * v["phantom", "fid"]
    # Paired fidelity and label fidelity: phantom follows the condition, shuffled and noise do not.
    assert v["real", "ms_ssim"] > v["phantom", "ms_ssim"] > v["shuffled", "ms_ssim"] > v["noise", "ms_ssim"]
    assert v["real", "auc_macro"] > 0.9 and v["phantom", "auc_macro"] > 0.8
    assert abs(v["shuffled", "auc_macro"] - 0.5) < 0.15 and abs(v["noise", "auc_macro"] - 0.5) < 0.15
    # Memorization: the memorizer copies training images, the others do not (the null's quantile keeps them near 0).
    assert v["memorizer", "memorization_rate"] > 0.9 and v["memorizer", "memorization_ssim"] > 0.99
    assert all(v[g, "memorization_rate"] < 0.1 for g in ("phantom", "shuffled", "noise"))
    # Lesion-in-box: the phantom draws the finding in its box; shuffled and noise put no evidence there.
    assert v["phantom", "lesion_in_box"] > 2 * v["shuffled", "lesion_in_box"]
    assert v["phantom", "lesion_in_box"] > v["noise", "lesion_in_box"]
    # The other encoders agree on the extremes: shuffled nearest the real images, noise farthest.
    for fd in ("fd_dinov2", "fd_raddino", "cmmd"):
        assert v["shuffled", fd] < v["phantom", fd] < v["noise", fd], fd
    assert v["shuffled", "prdc_precision"] > 0.9 > 0.1 > v["noise", "prdc_precision"]
    agreement = json.loads((out / "results.json").read_text())["encoder_agreement"]
    assert len(agreement) == 6 and all(a["tau"] is not None for a in agreement)


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory):
    """The demo's config on a tiny synthetic set, one generator, small bootstrap; images generated once."""
    root = tmp_path_factory.mktemp("tiny_demo")
    tables = demo_tables(str(root / "run"))
    tables["dataset"]["synthetic"] = {"n_subjects": 12, "image_size": 192}
    tables["generators"] = {"noise": {}}
    tables["metrics"].update(bootstrap=10, fid_bootstrap=5, kid_subsets=3, kid_subset_size=4, min_subset_n=2)
    tables["run"]["resolution"] = 192
    session = open_session(config_from_dict(tables), progress=False)
    generate(session, progress=False)
    return tables, len(session.scan.cases)


@pytest.mark.parametrize("name", metric_table.selectable_names())
def test_every_metric_alone_evaluates_and_reports(tiny_demo, name):
    """Each selectable metric on its own: results with its rows, a leaderboard with counts, the tables it belongs to."""
    tables, n = tiny_demo
    tables = {**tables, "metrics": {**tables["metrics"], "enabled": [name]}}
    cfg = config_from_dict(tables)
    evaluate(open_session(cfg, progress=False), progress=False)
    out = Path(cfg.run.out)
    written = {p.relative_to(out).as_posix() for p in write_reports(out)}
    df = read_results(out)
    entry = metric_table.metric(name)
    assert {metric_table.row_metric(m).name for m in df.metric} == {name, *(part.name for part in entry.parts)}
    assert not df[df.generator == "noise"].empty
    assert f"| noise | {2 * n} | 0 | 0 | 1.000 |" in (out / "leaderboard.md").read_text()
    assert f"| real | {n} | 0 | 0 | 1.000 |" in (out / "leaderboard.md").read_text()
    assert ("report/table_main.md" in written) == bool(entry.main_column)
    assert "report/figures/metrics_bars.png" in written
