"""What ``evaluate`` leaves for the reports beside results.csv: per_image.csv, bootstrap.npz, the ``n_unit``
column and the ``run_id`` — read back through :func:`xreal_bench.reports.runs.load_run` from a real (small)
evaluation with toy evaluators, and checked against the rows they stand behind."""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mimic_tree import write_mimic_tree
from sklearn.metrics import roc_auc_score
from toy_evaluators import register, unregister

from xreal_bench.config import config_from_dict
from xreal_bench.evaluation import evaluate
from xreal_bench.labels import label_index
from xreal_bench.metrics import table
from xreal_bench.metrics.bootstrap import case_picks, percentile_interval
from xreal_bench.metrics.engine import SourceOutputs
from xreal_bench.metrics.scoring import per_image_frame
from xreal_bench.pipeline import generate, open_session
from xreal_bench.reports.runs import load_run
from xreal_bench.results import COLUMNS, read_results, write_per_image

RESAMPLES, FID_RESAMPLES, SEED, BOOTSTRAP_SEED = 40, 30, 3, 5  # the CIs' seed is metrics.bootstrap_seed, not run.seed
SCORE_COLUMNS = ["score/Cardiomegaly", "score/Edema", "score/Pneumonia"]  # the toy classifier's labels


@pytest.fixture(scope="module", autouse=True)
def toy_evaluators():
    register()
    yield
    unregister()


def make_config(data: Path, out: Path, **metrics):
    return config_from_dict(
        {
            "dataset": {"kind": "mimic", "root": str(data), "views": ["AP", "PA", "UNKNOWN"]},
            "conditioning": {"anatomy": "none"},
            # two copies of the real images: identical per-image values, so their draws must be identical too
            "generators": {"copy_a": {"type": "real"}, "copy_b": {"type": "real"}, "noise": {}},
            "metrics": {
                "features": "toy-features",
                "domain_features": "toy-features",
                "segmenter": "toy-segmenter",
                "classifier": "toy-classifier",
                "thresholds": "calibrated",
                "enabled": ["fid", "fid_xrv", "kid", "ms_ssim", "ms_ssim_diversity", "dice", "f1_macro", "auc_macro"],
                "bootstrap": RESAMPLES,
                "fid_bootstrap": FID_RESAMPLES,
                "bootstrap_seed": BOOTSTRAP_SEED,
                "min_subset_n": 3,
                "kid_subsets": 5,
                "kid_subset_size": 8,
                "num_workers": 0,
                **metrics,
            },
            "run": {"out": str(out), "seed": SEED, "samples_per_condition": 2, "batch_size": 8, "resolution": 192},
        }
    )


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mimic_files")
    write_mimic_tree(root, n_random=10, seed=7)
    return root


@pytest.fixture(scope="module")
def out(data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run_files")
    session = open_session(make_config(data, out), progress=False)
    generate(session, progress=False)
    evaluate(session, progress=False)
    return out


def test_per_image_means_are_the_rows_values(out):
    run = load_run(out)
    images = run.per_image
    assert images is not None
    per_image_columns = [m.name for m in table.rows() if m.name in ("ms_ssim", "dice") or m.name.startswith("dice_")]
    assert list(images.columns) == ["generator", "case_id", "sample_index", *per_image_columns, *SCORE_COLUMNS]
    n_cases = len(run.cases)
    counts = images.groupby("generator").size().to_dict()
    assert counts == {"real": n_cases, "copy_a": 2 * n_cases, "copy_b": 2 * n_cases, "noise": 2 * n_cases}
    assert not images.duplicated(["generator", "case_id", "sample_index"]).any()
    results = run.frame.set_index(["generator", "metric", "subset"])["value"]
    checked = 0
    for generator in run.generators:
        rows = images[images.generator == generator]
        for column in per_image_columns:
            assert rows[column].mean() == pytest.approx(results[(generator, column, "all")], abs=1e-9)
            checked += 1
        # a pathology subset: the images of its positive cases
        for (g, metric, subset), value in results.items():
            if g == generator and metric == "ms_ssim" and subset != "all":
                positive = {c for c, f in run.cases.items() if f.case.labels[label_index(subset)] == 1}
                assert rows[rows.case_id.isin(positive)]["ms_ssim"].mean() == pytest.approx(value, abs=1e-9)
                checked += 1
    assert checked > 4 * len(per_image_columns)


def test_undefined_per_image_values_are_blank(tmp_path):
    """Dice undefined for an image (both masks empty) and a source without MS-SSIM values: blank cells."""
    keys = [("c1", 0), ("c1", 1)]
    dice = {"lungs": np.array([0.5, 0.25]), "heart": np.array([np.nan, 1.0]), "aorta": np.array([np.nan, np.nan])}
    dice["dice"] = np.array([0.5, 0.625])
    with_ms_ssim = SourceOutputs(keys=keys, dice=dice, ms_ssim=np.array([0.75, 0.5]), scores=np.array([[0.25], [0.5]]))
    without = SourceOutputs(keys=[("c2", 0)], dice={k: v[:1] for k, v in dice.items()}, scores=np.array([[0.125]]))
    frames = [
        per_image_frame(g, o, enabled=["ms_ssim", "dice", "auc_macro"], classifier_labels=["Edema"])
        for g, o in (("a", with_ms_ssim), ("b", without))
    ]
    write_per_image(tmp_path, pd.concat(frames, ignore_index=True))
    assert (tmp_path / "per_image.csv").read_text().splitlines() == [
        "generator,case_id,sample_index,ms_ssim,dice_lungs,dice_heart,dice_aorta,dice,score/Edema",
        "a,c1,0,0.75,0.5,,,0.5,0.25",
        "a,c1,1,0.5,0.25,1.0,,0.625,0.5",
        "b,c2,0,,0.5,,,0.5,0.125",
    ]


def test_per_image_scores_give_the_auc_rows(out):
    run = load_run(out)
    rows = run.per_image[run.per_image.generator == "noise"]
    labels = np.array([run.cases[c].case.labels[label_index("Edema")] for c in rows.case_id], dtype=float)
    keep = (labels == 0) | (labels == 1)
    auc = roc_auc_score(labels[keep], rows["score/Edema"].to_numpy()[keep])
    assert run.frame.set_index(["generator", "metric"]).loc[("noise", "auc/Edema"), "value"] == pytest.approx(auc, abs=1e-12)


def test_stored_draws_are_the_intervals(out):
    run = load_run(out)
    with_ci = run.frame[run.frame.ci_low.notna()]
    assert set(run.draws) == {(r.generator, r.metric, r.subset) for r in with_ci.itertuples()}
    assert {"kid", "f1_macro", "auc/Edema", "dice_heart"} <= {k[1] for k in run.draws}
    for r in with_ci.itertuples():
        draws = run.draws_for(r.generator, r.metric, r.subset)
        entry = table.row_metric(r.metric)
        assert draws.dtype == np.float64 and draws.shape == ((FID_RESAMPLES if entry.ci == "fid_bootstrap" else RESAMPLES),)
        low, high, _ = percentile_interval(draws, 0.95)
        assert (r.ci_low, r.ci_high) == pytest.approx((low, high), abs=1e-12), (r.generator, r.metric, r.subset)
    kid = run.frame[(run.frame.generator == "noise") & (run.frame.metric == "kid") & (run.frame.subset == "all")].iloc[0]
    assert kid.ci_low < kid.value < kid.ci_high and "bias-corrected case bootstrap CI of the all-pairs MMD²" in kid.note


def test_n_unit_column_and_run_id(out):
    frame = pd.read_csv(out / "results.csv")
    assert list(frame.columns) == COLUMNS and COLUMNS.index("n_unit") == COLUMNS.index("n") + 1
    for r in frame.itertuples():
        expected = "cases" if "/" in r.metric else table.row_metric(r.metric).n_unit
        assert r.n_unit == expected, r.metric
    noise = frame[frame.generator == "noise"].set_index(["metric", "subset"])
    n_cases = int(noise.loc[("ms_ssim", "all"), "n"])
    assert noise.loc[("fid", "all"), "n"] == 2 * n_cases and noise.loc[("auc/Edema", "all"), "n"] <= n_cases
    run = load_run(out)
    assert re.fullmatch(r"\d{8}T\d{6}-[0-9a-f]{8}", run.run_id)
    assert run.draws_meta["run_id"] == run.run_id
    assert (run.draws_meta["format"], run.draws_meta["seed"], run.draws_meta["confidence"]) == (1, BOOTSTRAP_SEED, 0.95)
    assert run.provenance["seeds"] == {"run": SEED, "bootstrap": BOOTSTRAP_SEED}
    for generator in run.generators:
        covered = sorted(set(run.per_image[run.per_image.generator == generator].case_id))
        assert run.draws_meta["cases"][generator] == hashlib.sha256("\n".join(covered).encode()).hexdigest()
    with np.load(out / "bootstrap.npz", allow_pickle=False) as archive:  # nothing pickled
        assert all(archive[k].dtype != object for k in archive.files)


def test_results_written_before_the_unit_column_get_it_from_the_table(out, tmp_path):
    old = pd.read_csv(out / "results.csv").drop(columns="n_unit")
    old.to_csv(tmp_path / "results.csv", index=False)
    frame = read_results(tmp_path)
    assert list(frame.columns) == COLUMNS
    units = dict(zip(frame.metric, frame.n_unit, strict=True))
    assert (units["fid"], units["ms_ssim"], units["f1/Edema"], units["kid"]) == ("images", "cases", "cases", "images")


def test_draw_b_of_every_generator_resamples_the_same_cases(out):
    run = load_run(out)
    a = {k[1:]: v for k, v in run.draws.items() if k[0] == "copy_a"}
    b = {k[1:]: v for k, v in run.draws.items() if k[0] == "copy_b"}
    assert a.keys() == b.keys() and len(a) > 10
    for key in a:  # identical per-image values: identical draws (MS-SSIM, Dice, FID, KID, F1, AUC, per class)
        np.testing.assert_array_equal(a[key], b[key], err_msg=str(key))
    noise = run.draws_for("noise", "ms_ssim")
    assert not np.allclose(noise, a[("ms_ssim", "all")])
    # resample b draws positions case_picks(...)[b] among the sorted covered cases, for every source
    rows = run.per_image[run.per_image.generator == "noise"]
    cases = sorted(set(rows.case_id))
    sums = rows.groupby("case_id")["ms_ssim"].sum().loc[cases].to_numpy()
    counts = rows.groupby("case_id").size().loc[cases].to_numpy()
    picks = case_picks(len(cases), RESAMPLES, BOOTSTRAP_SEED)
    np.testing.assert_allclose(noise, sums[picks].sum(axis=1) / counts[picks].sum(axis=1), rtol=1e-12)


def test_evaluating_some_generators_keeps_the_others_files(out, data, tmp_path):
    before = load_run(out)
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    evaluate(open_session(make_config(data, copy), progress=False), ["noise"], progress=False)
    after = load_run(copy)
    assert after.run_id != before.run_id
    for name in ("copy_a", "copy_b"):
        old = before.per_image[before.per_image.generator == name].reset_index(drop=True)
        new = after.per_image[after.per_image.generator == name].reset_index(drop=True)
        pd.testing.assert_frame_equal(old, new)
        assert after.draws_meta["cases"][name] == before.draws_meta["cases"][name]
    assert before.draws.keys() == after.draws.keys()
    for key, draws in before.draws.items():
        np.testing.assert_array_equal(after.draws[key], draws)
    # another config: the other generators' rows, per-image rows and draws are dropped, not merged
    evaluate(open_session(make_config(data, copy, bootstrap=RESAMPLES + 1), progress=False), ["noise"], progress=False)
    changed = load_run(copy)
    assert set(changed.per_image.generator) == {"real", "noise"} and {k[0] for k in changed.draws} == {"real", "noise"}
    assert set(changed.draws_meta["cases"]) == {"real", "noise"}
