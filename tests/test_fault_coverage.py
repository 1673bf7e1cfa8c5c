"""A generator that fails on a deterministic fraction of cases: the counts in every table, every
metric on the covered cases only (recomputed here from the images), the † marker below
``metrics.min_coverage`` and not above it, ``--strict`` and the warning without it."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F
from mimic_tree import write_mimic_tree
from pytorch_msssim import ms_ssim
from sklearn.metrics import f1_score, roc_auc_score
from toy_evaluators import ToyClassifier, toy_masks
from toy_evaluators import register as register_toys
from toy_evaluators import unregister as unregister_toys

from xreal_bench.cli import main
from xreal_bench.config import load_config
from xreal_bench.data.dataset import load_dataset
from xreal_bench.generators.base import Generator
from xreal_bench.generators.registry import register_generator
from xreal_bench.imaging import dequantize, load_standard
from xreal_bench.labels import label_index
from xreal_bench.metrics.bootstrap import bootstrap_statistic
from xreal_bench.metrics.evaluators.base import FeatureExtractor
from xreal_bench.metrics.evaluators.registry import register_evaluator
from xreal_bench.registry import EVALUATORS
from xreal_bench.rundir import GeneratorDir

RESOLUTION, SAMPLES, SEED, BOOTSTRAP_SEED = 192, 2, 3, 4
KID_SUBSETS, KID_SIZE, FID_RESAMPLES = 4, 6, 20


def digest(case_id: str) -> int:
    return int(hashlib.sha256(case_id.encode()).hexdigest(), 16)


def fate(case_id: str) -> str:
    """``fail``: no sample of the case is made; ``half``: sample 1 fails; ``ok``: both are made."""
    return ("fail", "half", "ok")[digest(case_id) % 3]


@register_generator
class PartlyFailing(Generator):
    """Raises for the samples :func:`fate` rules out (the harness isolates them one by one)."""

    type_name = "test-partly-failing"
    inputs = frozenset()

    def generate(self, conditions):
        images = []
        for c in conditions:
            if fate(c.case_id) == "fail" or (fate(c.case_id) == "half" and c.sample_index == 1):
                raise RuntimeError(f"no image for {c.case_id}")
            level = 0.3 + 0.4 * (digest(c.case_id) % 101) / 100
            noise = np.random.default_rng(c.seed % 2**32).standard_normal((48, 48))
            images.append(np.clip(level + 0.12 * noise, 0, 1).astype(np.float32))
        return images


def small_features(images: torch.Tensor) -> torch.Tensor:
    """8-d features (2x2 mean pool and its square): far fewer dimensions than images, so covariances are regular."""
    pooled = F.adaptive_avg_pool2d(images, 2).flatten(1)
    return torch.cat([pooled, pooled**2], dim=1).float()


class SmallFeatures(FeatureExtractor):
    name, dim, weights_hash, preprocessing = "coverage-features", 8, "none", "2x2 average pool and its square"
    device = torch.device("cpu")

    def forward(self, images):
        return small_features(images)


@pytest.fixture(scope="module", autouse=True)
def evaluators():
    register_toys()
    register_evaluator("feature", SmallFeatures.name, lambda *, weights, device: SmallFeatures(), replace=True)
    yield
    EVALUATORS["feature"].unregister(SmallFeatures.name)
    unregister_toys()


CONFIG = """
[dataset]
kind = "mimic"
root = "{data}"
views = ["AP", "PA", "UNKNOWN"]
[conditioning]
anatomy = "none"
[generators.partial]
type = "test-partly-failing"
[generators.noise]
[metrics]
features = "coverage-features"
domain_features = "coverage-features"
segmenter = "toy-segmenter"
classifier = "toy-classifier"
thresholds = "calibrated"
enabled = ["fid", "fid_xrv", "kid", "ms_ssim", "ms_ssim_diversity", "dice", "f1_macro", "auc_macro"]
bootstrap = 30
fid_bootstrap = {fid_resamples}
kid_subsets = {kid_subsets}
kid_subset_size = {kid_size}
min_subset_n = 3
num_workers = 0
bootstrap_seed = {bootstrap_seed}
[run]
out = "{out}"
seed = {seed}
samples_per_condition = {samples}
batch_size = 4
resolution = {resolution}
[report]
formats = ["md", "csv", "tex"]
"""


@dataclass
class Call:
    status: int
    err: str


@dataclass
class Run:
    config: Path
    out: Path
    case_ids: list[str]
    deleted: tuple[str, int]  # an ok image whose file is removed after generation: missing
    garbled: tuple[str, int]  # an ok image overwritten with bytes no decoder reads: failed (undecodable)
    generate: Call
    evaluate: Call
    files: dict[str, str]  # report files of the plain evaluate, by path relative to the run


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Run:
    root = tmp_path_factory.mktemp("coverage")
    write_mimic_tree(root / "data", n_random=8, seed=11)
    config = root / "bench.toml"
    out = root / "run"
    config.write_text(
        CONFIG.format(
            data=root / "data",
            out=out,
            seed=SEED,
            bootstrap_seed=BOOTSTRAP_SEED,
            samples=SAMPLES,
            resolution=RESOLUTION,
            fid_resamples=FID_RESAMPLES,
            kid_subsets=KID_SUBSETS,
            kid_size=KID_SIZE,
        )
    )
    case_ids = sorted(c.case_id for c in load_dataset(load_config(config), progress=False).cases)
    return Run(config, out, case_ids, ("", 0), ("", 0), Call(0, ""), Call(0, ""), {})


@pytest.fixture(scope="module")
def evaluated(run: Run, capsys_module) -> Run:
    """generate --strict, then damage two ok images, then a plain evaluate; report files kept."""
    capture = capsys_module
    run.generate = capture("generate", "--config", str(run.config), "--quiet", "--strict")
    ok_cases = [c for c in run.case_ids if fate(c) == "ok"]
    assert len(ok_cases) >= 2, ok_cases
    gdir = GeneratorDir(run.out, "partial")
    run.deleted, run.garbled = (ok_cases[0], 0), (ok_cases[1], 1)
    gdir.image_path(*run.deleted).unlink()
    gdir.image_path(*run.garbled).write_bytes(b"\x89PNG\r\n\x1a\n but not an image")
    run.evaluate = capture("evaluate", "--config", str(run.config), "--quiet")
    for path in sorted(run.out.rglob("*")):
        if path.suffix in (".md", ".csv", ".tex", ".json") and "partial" not in path.parts and "noise" not in path.parts:
            run.files[path.relative_to(run.out).as_posix()] = path.read_text()
    return run


@pytest.fixture(scope="module")
def capsys_module():
    """A module-scoped stand-in for capsys: runs the CLI and returns its status and stderr."""
    import contextlib
    import io

    def capture(*args: str) -> Call:
        err, stdout = io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(stdout):
            status = main(list(args))
        return Call(status, err.getvalue())

    return capture


@dataclass(frozen=True)
class Expected:
    cases: int
    planned: int
    manifest_failed: int
    failed: int
    missing: int
    evaluated: int
    covered: list[str]
    scored: list[tuple[str, int]]  # (case_id, sample) of every evaluated image, sorted


def expected(run: Run) -> Expected:
    made = [(c, k) for c in run.case_ids for k in range(SAMPLES) if fate(c) == "ok" or (fate(c) == "half" and k == 0)]
    manifest_failed = len(run.case_ids) * SAMPLES - len(made)
    scored = sorted(set(made) - {run.deleted, run.garbled})
    return Expected(
        cases=len(run.case_ids),
        planned=len(run.case_ids) * SAMPLES,
        manifest_failed=manifest_failed,
        failed=manifest_failed + 1,
        missing=1,
        evaluated=len(scored),
        covered=sorted({c for c, _ in scored}),
        scored=scored,
    )


def results(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "results.csv").fillna({"note": "", "evaluator": ""})


def value(df: pd.DataFrame, generator: str, metric: str) -> pd.Series:
    rows = df[(df.generator == generator) & (df.metric == metric) & (df.subset == "all")]
    assert len(rows) == 1, (generator, metric)
    return rows.iloc[0]


def test_counts_in_results_csv_and_json(evaluated):
    e = expected(evaluated)
    assert 0 < len(e.covered) < e.cases  # the fixture's fraction of failing cases is neither none nor all
    df = results(evaluated.out)
    partial = df[df.generator == "partial"]
    assert len(partial) > 10 and (partial.failed == e.failed).all() and (partial.missing == e.missing).all()
    assert (df[df.generator.isin(["noise", "real"])][["failed", "missing"]] == 0).all().all()
    assert value(df, "partial", "fid")["n"] == e.evaluated  # images
    assert value(df, "partial", "ms_ssim")["n"] == len(e.covered)  # cases
    record = json.loads(evaluated.files["results.json"])["coverage"]
    assert record["min_coverage"] == 0.95 and "cases it covers" in record["rule"]
    p = record["sources"]["partial"]
    assert (p["planned"], p["manifest_failed"], p["undecodable"], p["failed"]) == (e.planned, e.manifest_failed, 1, e.failed)
    assert (p["missing"], p["evaluated"], p["ok"]) == (1, e.evaluated, e.evaluated + 1)
    assert p["covered_cases"] == len(e.covered) and p["coverage"] == pytest.approx(len(e.covered) / e.cases)
    assert p["uncovered_cases"] == sorted(set(evaluated.case_ids) - set(e.covered)) and p["below_min_coverage"] is True
    undecodable = json.loads(evaluated.files["results.json"])["undecodable"]
    assert list(undecodable) == ["partial"] and len(undecodable["partial"]) == 1
    assert undecodable["partial"][0].startswith(str(GeneratorDir(evaluated.out, "partial").image_path(*evaluated.garbled)))
    uncovered_errors = {f"RuntimeError: no image for {c}": 2 for c in p["uncovered_cases"]}
    assert len(p["failure_reasons"]) == 10 and p["failure_reasons"].items() <= {**uncovered_errors}.items() | {
        (f"RuntimeError: no image for {c}", 1) for c in evaluated.case_ids if fate(c) == "half"
    }
    noise, real = record["sources"]["noise"], record["sources"]["real"]
    assert (noise["evaluated"], noise["failed"], noise["missing"], noise["coverage"]) == (e.planned, 0, 0, 1.0)
    assert (real["planned"], real["evaluated"], real["failed"], real["coverage"]) == (e.cases, e.cases, 0, 1.0)


def test_leaderboard_and_tables_mark_the_low_coverage_generator(evaluated):
    e = expected(evaluated)
    files = evaluated.files
    coverage = f"{len(e.covered) / e.cases:.3f}"
    board = files["leaderboard.md"]
    assert f"| partial† | {e.evaluated} | {e.failed} | 1 | {coverage} |" in board
    assert f"| noise | {e.planned} | 0 | 0 | 1.000 |" in board and f"| real | {e.cases} | 0 | 0 | 1.000 |" in board
    assert f"† coverage below metrics.min_coverage = 0.95: partial ({len(e.covered)} of {e.cases} cases" in board
    csv = pd.read_csv(evaluated.out / "leaderboard.csv").fillna({"coverage_note": ""}).set_index("generator")
    assert (csv.loc["partial", "n"], csv.loc["partial", "failed"], csv.loc["partial", "missing"]) == (e.evaluated, e.failed, 1)
    assert csv.loc["partial", "coverage_note"].startswith("† coverage") and csv.loc["noise", "coverage_note"] == ""
    assert "| partial† | " in files["report/table_main.md"]
    assert "| noise | " in files["report/table_main.md"] and "noise†" not in files["report/table_main.md"]
    assert (
        f"† coverage below metrics.min\\_coverage = 0.95: partial \\({len(e.covered)} of {e.cases} cases"
        in files["report/table_main.md"]
    )
    tex = files["report/table_main.tex"]
    assert "partial$^\\dagger$ &" in tex and "noise &" in tex and "\n$^\\dagger$ coverage below" in tex
    assert f"partial {e.failed} / 1 of {e.planned}" in tex
    main_csv = pd.read_csv(evaluated.out / "report" / "table_main.csv")
    assert set(main_csv[main_csv.generator == "partial"].below_min_coverage) == {True}
    assert set(main_csv[main_csv.generator != "partial"].below_min_coverage) == {False}
    pathology = [k for k in files if k.startswith("report/table_pathology_") and k.endswith(".md")]
    assert pathology
    for name in pathology:
        header = next(line for line in files[name].splitlines() if line.startswith("| Pathology |"))
        assert " partial† |" in header and " noise |" in header
    assert (evaluated.out / "report" / "figures" / "metrics_bars.png").stat().st_size > 0


def test_no_marker_above_min_coverage_and_strict_exit(evaluated, capsys_module):
    """``--strict`` fails on the failures whatever the coverage; the marker follows metrics.min_coverage."""
    e = expected(evaluated)
    call = capsys_module(
        "evaluate",
        "--config",
        str(evaluated.config),
        "--quiet",
        "--strict",
        "--set",
        "metrics.min_coverage=0.5",
        "--set",
        "report.figures=false",
    )
    assert call.status == 3
    strict = [line for line in call.err.splitlines() if line.startswith("strict: ")]
    assert len(strict) == 1 and strict[0].startswith(f"strict: partial: {e.failed} failed ({e.manifest_failed} at generation")
    assert f"{e.missing} missing of {e.planned} planned images" in strict[0] and "below" not in strict[0]
    out = evaluated.out
    assert "†" not in (out / "leaderboard.md").read_text() and "dagger" not in (out / "report" / "table_main.tex").read_text()
    assert json.loads((out / "results.json").read_text())["coverage"]["sources"]["partial"]["below_min_coverage"] is False


def test_warning_without_strict_and_strict_generate(evaluated):
    e = expected(evaluated)
    assert evaluated.evaluate.status == 0
    warnings = [line for line in evaluated.evaluate.err.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and warnings[0].startswith("warning: partial: ")
    assert f"on {len(e.covered)} of {e.cases} cases" in warnings[0] and "below metrics.min_coverage = 0.95" in warnings[0]
    assert evaluated.generate.status == 3
    strict = [line for line in evaluated.generate.err.splitlines() if line.startswith("strict: ")]
    assert strict == [
        f"strict: partial: {e.manifest_failed} failed ({e.manifest_failed} at generation, 0 undecodable), 0 missing of "
        f"{e.planned} planned images; scored {e.planned - e.manifest_failed} on {len([c for c in evaluated.case_ids if fate(c) != 'fail'])} "
        f"of {e.cases} cases (coverage {sum(fate(c) != 'fail' for c in evaluated.case_ids) / e.cases:.3f}, "
        "below metrics.min_coverage = 0.95)"
    ]


# ---- every metric recomputed here, on the covered cases only ------------------------------------------


def pixels(path: Path) -> torch.Tensor:
    return torch.from_numpy(dequantize(load_standard(path, RESOLUTION)))[None, None]


@pytest.fixture(scope="module")
def images(evaluated):
    cases = {c.case_id: c for c in load_dataset(load_config(evaluated.config), progress=False).cases}
    gdir = GeneratorDir(evaluated.out, "partial")
    e = expected(evaluated)
    gen = torch.cat([pixels(gdir.image_path(c, k)) for c, k in e.scored])
    real = {c: pixels(cases[c].image_path) for c in evaluated.case_ids}
    return e, cases, gen, real


def frechet(a: np.ndarray, b: np.ndarray) -> float:
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real))


def test_fid_and_kid_use_the_covered_real_cases(evaluated, images):
    e, _, gen, real = images
    df = results(evaluated.out)
    g = small_features(gen).double().numpy()
    r_covered = torch.cat([small_features(real[c]) for c in e.covered]).double().numpy()
    r_all = torch.cat([small_features(real[c]) for c in evaluated.case_ids]).double().numpy()
    for metric in ("fid", "fid_xrv"):
        row = value(df, "partial", metric)
        assert row["value"] == pytest.approx(frechet(r_covered, g), rel=1e-6)
        assert f"real side: the {len(e.covered)} covered of {e.cases} real cases" in row["note"]
    assert abs(frechet(r_all, g) / frechet(r_covered, g) - 1) > 1e-3  # all real cases would give another number
    assert value(df, "noise", "fid")["note"].count("real side") == 0
    # KID: torch-fidelity's unbiased MMD² with its subset draws (RandomState(seed): real rows, then generated rows).
    rng, m, values = np.random.RandomState(BOOTSTRAP_SEED), min(KID_SIZE, len(r_covered), len(g)), []
    for _ in range(KID_SUBSETS):
        x, y = r_covered[rng.choice(len(r_covered), m, replace=False)], g[rng.choice(len(g), m, replace=False)]
        k = [(u @ v.T / x.shape[1] + 1) ** 3 for u, v in ((x, x), (x, y), (y, y))]
        values.append((k[0].sum() - np.trace(k[0]) + k[2].sum() - np.trace(k[2])) / (m * (m - 1)) - 2 * k[1].sum() / m**2)
    assert value(df, "partial", "kid")["value"] == pytest.approx(float(np.mean(values)), rel=1e-6)


def test_fid_point_estimate_and_ci_rest_on_the_same_cases(evaluated, images):
    """The bootstrap CI, recomputed over the covered cases (each drawn case's real features once per draw), is the
    row's CI, and its full-sample statistic is the row's point estimate."""
    e, _, gen, real = images
    row = value(results(evaluated.out), "partial", "fid")
    g = small_features(gen).double().numpy()
    case_of = np.array([c for c, _ in e.scored])
    first = np.array([i == 0 or case_of[i] != case_of[i - 1] for i in range(len(case_of))])
    real_of = {c: small_features(real[c]).double().numpy()[0] for c in e.covered}

    def statistic(sel: np.ndarray) -> float:
        return frechet(np.stack([real_of[case_of[j]] for j in sel if first[j]]), g[sel])

    ci = bootstrap_statistic(len(g), statistic, FID_RESAMPLES, 0.95, BOOTSTRAP_SEED, groups=case_of, bias_corrected=True)
    assert ci.estimate == pytest.approx(row["value"], rel=1e-6)
    assert (row["ci_low"], row["ci_high"]) == (pytest.approx(max(ci.low, 0.0), rel=1e-6), pytest.approx(ci.high, rel=1e-6))


def test_pixel_and_classifier_metrics_use_the_covered_cases(evaluated, images):
    e, cases, gen, real = images
    df = results(evaluated.out)
    paired = torch.cat([real[c] for c, _ in e.scored])
    ssim = [float(ms_ssim(paired[i : i + 1].double(), gen[i : i + 1].double(), data_range=1.0)) for i in range(len(gen))]
    assert value(df, "partial", "ms_ssim")["value"] == pytest.approx(np.mean(ssim), rel=1e-6)
    p, r = toy_masks(gen)[:, 2].numpy(), toy_masks(paired)[:, 2].numpy()
    sums = p.sum(axis=(1, 2)) + r.sum(axis=(1, 2))
    heart = [2 * (a & b).sum() / s for a, b, s in zip(p, r, sums) if s]
    assert value(df, "partial", "dice_heart")["value"] == pytest.approx(np.mean(heart), rel=1e-9)
    scores = ToyClassifier()(gen).double().numpy()
    labels = np.array([[cases[c].labels[label_index(n)] for n in ToyClassifier.labels] for c, _ in e.scored], dtype=float)
    auc, f1 = [], []
    for j, name in enumerate(ToyClassifier.labels):
        keep = labels[:, j] >= 0
        y, s = labels[keep, j].astype(int), scores[keep, j]
        if len(set(y)) == 2:
            auc.append(roc_auc_score(y, s))
        if y.sum():
            f1.append(f1_score(y, s >= ToyClassifier.calibrated_thresholds[name], zero_division=0.0))
    assert auc and f1
    assert value(df, "partial", "auc_macro")["value"] == pytest.approx(np.mean(auc), rel=1e-9)
    assert value(df, "partial", "f1_macro")["value"] == pytest.approx(np.mean(f1), rel=1e-9)
    assert value(df, "partial", "auc_macro")["n"] == len(e.covered)


def test_only_planned_samples_are_scored(evaluated, capsys_module, tmp_path):
    """samples_per_condition = 1 with two samples on disk: sample 0 only, no diversity row, the rest counted as ignored."""
    out = tmp_path / "run"
    shutil.copytree(evaluated.out / "noise", out / "noise")
    call = capsys_module(
        "evaluate",
        "--config",
        str(evaluated.config),
        "--quiet",
        "--out",
        str(out),
        "--set",
        "run.samples_per_condition=1",
        "--set",
        "report.figures=false",
    )
    n = len(evaluated.case_ids)
    assert call.status == 0 and f"noise: 0 failed, 0 missing of {n} planned images" in call.err
    assert f"{n} manifest entries outside the plan ignored" in call.err
    df = results(out)
    assert df[df.metric == "ms_ssim_diversity"].empty and value(df, "noise", "fid")["n"] == n
    noise = json.loads((out / "results.json").read_text())["coverage"]["sources"]["noise"]
    assert (noise["samples_per_condition"], noise["samples_scored"], noise["evaluated"], noise["ignored"]) == (1, [0], n, n)
