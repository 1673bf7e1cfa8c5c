"""The evaluation engine end to end with toy evaluators whose outputs can be recomputed by hand:
numbers vs independent computations, one evaluator call per image, the cached real side."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.linalg
import torch
from mimic_tree import write_mimic_tree
from pytorch_msssim import ms_ssim
from toy_evaluators import CALLS, register, toy_features, toy_masks, unregister

from xreal_bench.cli import main
from xreal_bench.config import config_from_dict
from xreal_bench.evaluation import evaluate
from xreal_bench.imaging import dequantize, load_grayscale, load_standard, save_png
from xreal_bench.pipeline import generate, open_session
from xreal_bench.results import COLUMNS
from xreal_bench.rundir import GeneratorDir


@pytest.fixture(scope="module", autouse=True)
def toy_evaluators():
    """Register the toy evaluators for this module only."""
    register()
    yield
    unregister()


def make_config(data: Path, out: Path, **metrics):
    return config_from_dict(
        {
            "dataset": {"kind": "mimic", "root": str(data), "views": ["AP", "PA", "UNKNOWN"]},
            "conditioning": {"anatomy": "none"},
            "generators": {"real": {}, "shuffled": {}, "noise": {}},
            "metrics": {
                "features": "toy-features",
                "domain_features": "toy-features",
                "segmenter": "toy-segmenter",
                "classifier": "toy-classifier",
                "thresholds": "calibrated",
                "enabled": ["fid", "fid_xrv", "kid", "ms_ssim", "ms_ssim_diversity", "dice", "f1_macro", "auc_macro"],
                "bootstrap": 50,
                "min_subset_n": 3,
                "kid_subset_size": 8,
                "num_workers": 0,
                **metrics,
            },
            "run": {"out": str(out), "samples_per_condition": 2, "batch_size": 4, "resolution": 192},
        }
    )


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mimic_eval")
    write_mimic_tree(root, n_random=14, seed=5)
    return root


@pytest.fixture(scope="module")
def run(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    cfg = make_config(data, out)
    session = open_session(cfg, progress=False)
    generate(session, progress=False)
    CALLS.clear()
    rows = evaluate(session, progress=False)
    return cfg, session, rows, Counter(CALLS)


def frame(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "results.csv").fillna({"note": "", "evaluator": ""})


def value(df: pd.DataFrame, generator: str, metric: str, subset: str = "all") -> pd.Series:
    rows = df[(df.generator == generator) & (df.metric == metric) & (df.subset == subset)]
    assert len(rows) == 1, f"{generator}/{metric}/{subset}: {len(rows)} rows"
    return rows.iloc[0]


def real_pixels(session, case_id: str) -> np.ndarray:
    case = next(c for c in session.scan.cases if c.case_id == case_id)
    return dequantize(load_standard(case.image_path, 192))


def test_each_image_goes_through_each_evaluator_once(run):
    cfg, session, _, calls = run
    n_real = len(session.scan.cases)
    n_generated = sum(len(GeneratorDir(cfg.run.out, g).ok_entries()) for g in ("shuffled", "noise"))
    assert calls["toy-features"] == n_real + n_generated  # one extractor serves fid, kid and fid_xrv
    assert calls["toy-segmenter"] == calls["toy-classifier"] == n_real + n_generated


def test_results_files_and_provenance(run):
    cfg, session, _, _ = run
    out = Path(cfg.run.out)
    df = frame(out)
    assert list(df.columns) == COLUMNS
    assert set(df.generator) == {"real", "shuffled", "noise"}
    prov = json.loads((out / "results.json").read_text())
    assert prov["config_hash"] == cfg.hash()
    assert prov["dataset"]["fingerprint"] == session.scan.fingerprint
    assert prov["evaluators"]["features"]["weights_sha256"] == "toy"
    assert prov["thresholds"]["policy"] == "calibrated"
    assert prov["environment"]["packages"]["torch"] == torch.__version__.split("+")[0] or prov["environment"]["packages"]["torch"]
    noise = prov["coverage"]["sources"]["noise"]
    n = len(session.scan.cases)
    assert (noise["planned"], noise["evaluated"], noise["failed"], noise["missing"]) == (2 * n, 2 * n, 0, 0)
    assert (noise["covered_cases"], noise["coverage"], noise["samples_scored"]) == (n, 1.0, [0, 1])
    assert prov["coverage"]["sources"]["real"]["evaluated"] == n and "cases it covers" in prov["coverage"]["rule"]
    assert (df.failed == 0).all() and (df.missing == 0).all()


def test_fid_matches_an_independent_computation(run):
    cfg, session, _, _ = run
    df = frame(Path(cfg.run.out))
    real = np.stack(
        [toy_features(torch.from_numpy(real_pixels(session, c.case_id))[None, None]).numpy()[0] for c in session.scan.cases]
    )
    gdir = GeneratorDir(cfg.run.out, "shuffled")
    gen = np.stack(
        [toy_features(torch.from_numpy(load_grayscale(gdir.root / e.file))[None, None]).numpy()[0] for e in gdir.ok_entries()]
    )
    mu1, mu2 = real.astype(np.float64).mean(0), gen.astype(np.float64).mean(0)
    s1, s2 = np.cov(real.astype(np.float64), rowvar=False), np.cov(gen.astype(np.float64), rowvar=False)
    expected = float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real))
    row = value(df, "shuffled", "fid")
    assert row["value"] == pytest.approx(expected, rel=1e-6)
    assert row["n"] == len(gen) and row["evaluator"] == "toy-features"
    assert df[(df.generator == "real") & df.metric.isin(["fid", "fid_xrv", "kid"])].empty  # no distance to itself


def test_paired_ms_ssim_and_dice_match_direct_computation(run):
    cfg, session, _, _ = run
    df = frame(Path(cfg.run.out))
    gdir = GeneratorDir(cfg.run.out, "noise")
    values, dice_heart = [], []
    for e in gdir.ok_entries():
        gen = torch.from_numpy(load_grayscale(gdir.root / e.file))[None, None].double()
        real = torch.from_numpy(real_pixels(session, e.case_id))[None, None].double()
        values.append(float(ms_ssim(real, gen, data_range=1.0)))
        p, r = toy_masks(gen.float())[0, 2].numpy(), toy_masks(real.float())[0, 2].numpy()
        if p.sum() + r.sum():
            dice_heart.append(2 * (p & r).sum() / (p.sum() + r.sum()))
    assert value(df, "noise", "ms_ssim")["value"] == pytest.approx(np.mean(values), rel=1e-6)
    assert value(df, "noise", "dice_heart")["value"] == pytest.approx(np.mean(dice_heart), rel=1e-9)
    row = value(df, "noise", "ms_ssim")
    assert row["ci_low"] <= row["value"] <= row["ci_high"]
    assert value(df, "real", "ms_ssim")["value"] == 1.0 and value(df, "real", "dice_lungs")["value"] == 1.0


def test_dice_against_the_input_anatomy_maps(data, tmp_path):
    """``dice_reference = "input"``: masks of generated images are scored against the conditioning's
    anatomy maps (prepared before any evaluation pass), not against the real image's masks."""
    from xreal_bench.labels import ANATOMY_CLASSES
    from xreal_bench.metrics.dice import dice_per_structure, label_map_to_masks

    cfg = make_config(data, tmp_path / "run", enabled=["dice"], dice_reference="input")
    cfg.generators = {"noise": cfg.generators["noise"]}
    cfg.conditioning.anatomy, cfg.conditioning.anatomy_dir, cfg.conditioning.resolution = "folder", str(tmp_path / "maps"), 192
    session = open_session(cfg, progress=False)
    maps = {}
    for i, case in enumerate(session.scan.cases):
        m = np.zeros((192, 192), np.uint8)
        m[40:150, 20 + i : 90] = ANATOMY_CLASSES["right_lung"]
        m[40:150, 100 : 170 - i] = ANATOMY_CLASSES["left_lung"]
        m[100:160, 70 : 120 + 2 * i] = ANATOMY_CLASSES["heart"]
        maps[case.case_id] = m
        save_png(tmp_path / "maps" / f"{case.case_id}.png", m)
    generate(session, progress=False)
    evaluate(session, progress=False)
    df = frame(Path(cfg.run.out))
    gdir = GeneratorDir(cfg.run.out, "noise")
    scores = []
    for e in gdir.ok_entries():
        pred = toy_masks(torch.from_numpy(load_grayscale(gdir.root / e.file))[None, None]).numpy()
        scores.append(dice_per_structure(pred, label_map_to_masks(maps[e.case_id])))
    for metric, key in (("dice", "dice"), ("dice_heart", "heart"), ("dice_lungs", "lungs")):
        values = np.array([s[key][0] for s in scores])
        assert value(df, "noise", metric)["value"] == pytest.approx(np.nanmean(values), rel=1e-9)


def test_classification_rows_and_thresholds(run):
    cfg, _, _, _ = run
    df = frame(Path(cfg.run.out))
    auc = df[(df.generator == "real") & df.metric.str.startswith("auc/")]
    assert set(auc.metric) <= {"auc/Cardiomegaly", "auc/Edema", "auc/Pneumonia"}
    assert value(df, "real", "auc_macro")["value"] == pytest.approx(auc["value"].mean())
    assert "thresholds: calibrated" in value(df, "noise", "f1_macro")["note"]


def test_auc_alone_needs_no_thresholds(run, data, tmp_path):
    """AUC without F1: no thresholds (not even a 'youden' fit on another split), the same AUC rows."""
    _, _, full_rows, _ = run
    cfg = make_config(data, tmp_path, enabled=["auc_macro"], thresholds="youden")
    session = open_session(cfg, progress=False)
    generate(session, progress=False)
    rows = evaluate(session, progress=False)
    assert {r.metric.partition("/")[0] for r in rows} == {"auc_macro", "auc"}
    assert json.loads((tmp_path / "results.json").read_text())["thresholds"] == {}

    def by_key(rows):
        return {(r.generator, r.metric): (r.value, r.ci_low, r.ci_high, r.n, r.note) for r in rows if r.metric.startswith("auc")}

    assert by_key(rows) == by_key(full_rows) and len(by_key(rows)) > 3


def test_diversity_only_with_several_samples_and_subsets_have_n(run):
    cfg, _, _, _ = run
    df = frame(Path(cfg.run.out))
    div = value(df, "noise", "ms_ssim_diversity")
    assert div["note"] == "lower = more diverse" and 0 < div["value"] < 1
    subsets = df[(df.generator == "noise") & (df.subset != "all")]
    assert len(subsets) and (subsets["n"] >= 3).all()


def test_real_side_is_cached_and_invalidated(run, data):
    cfg, session, rows, _ = run
    CALLS.clear()
    evaluate(session, ["noise"], progress=False)
    n_noise = len(GeneratorDir(cfg.run.out, "noise").ok_entries())
    assert CALLS["toy-features"] == n_noise  # real side read from the cache
    assert set(frame(Path(cfg.run.out)).generator) == {"real", "shuffled", "noise"}  # other rows kept
    # A changed real image changes the fingerprint: the real side is computed again.
    changed = make_config(data, Path(cfg.run.out), bootstrap=20)
    changed_session = open_session(changed, progress=False)
    changed_session.scan.fingerprint = "something else"
    CALLS.clear()
    evaluate(changed_session, ["noise"], progress=False)
    assert CALLS["toy-features"] == n_noise + len(session.scan.cases)


def test_evaluate_cli_bad_generator_and_missing_weights(run, capsys):
    cfg, _, _, _ = run
    config = Path(cfg.run.out) / "cfg.toml"
    config.write_text(
        f'[dataset]\nkind = "mimic"\nroot = "{cfg.dataset.root}"\n[conditioning]\nanatomy = "none"\n[run]\nout = "{cfg.run.out}"\nresolution = 192\n'
    )
    assert main(["evaluate", "--config", str(config), "--generators", "dalle"]) == 2
    assert "no generated images for dalle" in capsys.readouterr().err
    # The standard evaluators' weights are absent: one clear message, before any work.
    assert main(["evaluate", "--config", str(config), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "missing weights 'xrv-densenet-mimic_ch'" in err and "xreal-bench weights fetch xrv-densenet-mimic_ch" in err
    assert "Traceback" not in err


TORCHRUN_SCRIPT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    import toy_evaluators
    toy_evaluators.register()
    from xreal_bench.cli import main
    sys.exit(main(["evaluate", "--config", {config!r}, "--quiet"]))
    """
)


def test_two_gloo_ranks_give_the_single_process_results(run, tmp_path):
    """Shards by case, all-reduced float64 statistics, gathered per-image outputs: same numbers."""
    cfg, _, _, _ = run
    config = tmp_path / "bench.toml"
    config.write_text(
        textwrap.dedent(
            f"""
            [dataset]
            kind = "mimic"
            root = "{cfg.dataset.root}"
            views = ["AP", "PA", "UNKNOWN"]
            [conditioning]
            anatomy = "none"
            [metrics]
            features = "toy-features"
            domain_features = "toy-features"
            segmenter = "toy-segmenter"
            classifier = "toy-classifier"
            thresholds = "calibrated"
            enabled = {json.dumps(list(cfg.metrics.enabled))}
            bootstrap = 50
            min_subset_n = 3
            kid_subset_size = 8
            num_workers = 0
            cache_dir = "{tmp_path / "cache"}"
            [run]
            out = "{cfg.run.out}"
            samples_per_condition = 2
            resolution = 192
            """
        )
    )
    script = tmp_path / "evaluate.py"
    script.write_text(TORCHRUN_SCRIPT.format(tests=str(Path(__file__).parent), config=str(config)))
    session = open_session(
        make_config(Path(cfg.dataset.root), Path(cfg.run.out), cache_dir=str(tmp_path / "single-cache")), progress=False
    )
    evaluate(session, progress=False)
    single = frame(Path(cfg.run.out))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node=2",
        "--master-addr=127.0.0.1",
        f"--master-port={port}",
        str(script),
    ]
    result = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    sharded = frame(Path(cfg.run.out))
    key = ["generator", "metric", "subset"]
    merged = single.merge(sharded, on=key, suffixes=("_1", "_2"))
    assert len(merged) == len(single) == len(sharded)
    np.testing.assert_allclose(merged["value_1"], merged["value_2"], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(merged["ci_low_1"], merged["ci_low_2"], rtol=1e-9, atol=1e-12)
    assert (merged["n_1"] == merged["n_2"]).all()
    assert json.loads((Path(cfg.run.out) / "results.json").read_text())["environment"]["world_size"] == 2
