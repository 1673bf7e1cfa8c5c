"""`xreal-bench demo` end to end: every output, every metric, the ranking theory predicts."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout

import pandas as pd
import pytest

from xreal_bench.cli import main


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
        "tables/main.tex",
        "figures/headline.png",
        "study/study.sqlite",
    ):
        assert (out / name).is_file(), name
    assert f"results: {out / 'results.csv'}" in printed
    assert "xreal-bench study serve" in printed and printed.count("?token=") >= 2
    assert "Demo evaluators" in (out / "leaderboard.md").read_text()
    provenance = json.loads((out / "results.json").read_text())
    assert provenance["demo_evaluators"] is True
    assert set(provenance["images"]) == {"phantom", "shuffled", "noise"}


@pytest.mark.slow
def test_demo_shows_every_metric_for_every_reference_generator(demo):
    out, _ = demo
    v = table(out)
    for g in ("phantom", "shuffled", "noise"):
        for m in (
            "fid",
            "fid_xrv",
            "kid",
            "ms_ssim",
            "ms_ssim_diversity",
            "dice_lungs",
            "dice_heart",
            "dice_aorta",
            "dice",
            "f1_macro",
            "auc_macro",
        ):
            assert (g, m) in v.index, (g, m)
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
