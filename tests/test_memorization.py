"""The memorization audit: exact neighbour search against brute force, the aligned SSIM re-check on
constructed shifts, the training subsample, and a tiny synthetic run end to end (memorizer ≫ others,
cache reuse and its key, the pairs CSV and grid, a missing training split)."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.ndimage import gaussian_filter

from xreal_bench import memorization_audit as audit_module
from xreal_bench.config import config_from_dict
from xreal_bench.data.training import load_training_set, subsample_training
from xreal_bench.errors import UserFacingError
from xreal_bench.evaluation import evaluate
from xreal_bench.generators.base import GeneratorContext
from xreal_bench.generators.reference import MemorizerGenerator, first_pathology
from xreal_bench.memorization_audit import PAIRS_COLUMNS, PAIRS_FILE, memorization_audit
from xreal_bench.metrics import table
from xreal_bench.metrics.neighbours import Exclusion, faiss_available, nearest
from xreal_bench.metrics.pixel_recheck import aligned_ssim
from xreal_bench.metrics.suite import build_suite
from xreal_bench.pipeline import generate, open_session
from xreal_bench.reports.figures import drawn_texts
from xreal_bench.reports.memorization_grid import memorization_figure
from xreal_bench.reports.runs import load_run
from xreal_bench.types import Case

SIMILARITY, SSIM = (part.key for part in table.MEMORIZATION.parts)


def brute_force(queries: np.ndarray, train: np.ndarray, k: int, excluded: np.ndarray | None = None):
    """Float64 cosine similarities, top k by (similarity desc, index asc)."""
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    t = train / np.linalg.norm(train, axis=1, keepdims=True)
    sims = q.astype(np.float64) @ t.T.astype(np.float64)
    if excluded is not None:
        sims = np.where(excluded, -np.inf, sims)
    index = np.array([np.lexsort((np.arange(len(row)), -row))[:k] for row in sims])
    return np.take_along_axis(sims, index, axis=1), index


@pytest.mark.parametrize("chunk", [1, 7, 64, 500])
def test_search_equals_brute_force_with_ties_and_uneven_chunks(chunk):
    rng = np.random.default_rng(chunk)
    # ±1 vectors of one norm: every similarity is an exact multiple of 1/16, so ties abound and compare exactly
    train = rng.choice([-1.0, 1.0], size=(203, 16)).astype(np.float32)
    queries = rng.choice([-1.0, 1.0], size=(37, 16)).astype(np.float32)
    found = nearest(queries, train, k=6, chunk=chunk, query_block=10, backend="torch")
    sims, index = brute_force(queries, train, 6)
    assert (found.index == index).all()
    np.testing.assert_array_equal(found.similarity, sims.astype(np.float32))
    assert found.backend == "torch"


def test_search_excludes_the_same_group_and_marks_missing_neighbours():
    rng = np.random.default_rng(1)
    train, queries = rng.normal(size=(50, 8)), rng.normal(size=(9, 8))
    groups_q, groups_t = rng.integers(0, 4, 9), rng.integers(0, 4, 50)
    found = nearest(queries, train, k=3, chunk=11, exclude=Exclusion(groups_q, groups_t), backend="torch")
    sims, index = brute_force(queries, train, 3, groups_q[:, None] == groups_t[None, :])
    assert (found.index == index).all()
    np.testing.assert_allclose(found.similarity, sims, atol=1e-6)
    assert all(groups_t[i] != g for row, g in zip(found.index, groups_q) for i in row)
    # more neighbours asked for than the training set has: index -1, similarity NaN
    few = nearest(queries[:2], train[:2], k=4, backend="torch")
    assert (few.index[:, 2:] == -1).all() and np.isnan(few.similarity[:, 2:]).all()


@pytest.mark.skipif(not faiss_available(), reason="faiss is optional and not installed")
def test_faiss_and_torch_agree():
    rng = np.random.default_rng(2)
    train, queries = rng.normal(size=(300, 32)).astype(np.float32), rng.normal(size=(40, 32)).astype(np.float32)
    groups = Exclusion(rng.integers(0, 20, 40), rng.integers(0, 20, 300))
    for exclude in (None, groups):
        a = nearest(queries, train, k=5, chunk=70, backend="faiss", exclude=exclude)
        b = nearest(queries, train, k=5, chunk=70, backend="torch", exclude=exclude)
        assert a.backend == "faiss" and (a.index == b.index).all()
        np.testing.assert_allclose(a.similarity, b.similarity, atol=1e-5)


def test_aligned_ssim_finds_a_known_translation():
    rng = np.random.default_rng(3)
    canvas = gaussian_filter(rng.random((120, 120)), 2)
    canvas = (canvas - canvas.min()) / (canvas.max() - canvas.min())
    image = canvas[10:74, 12:76]
    # a training image cropped 4 rows lower and 3 columns further left: image[y, x] == reference[y - 4, x + 3]
    moved = canvas[14:78, 9:73]
    unrelated = rng.random((64, 64))
    checks = aligned_ssim(image, [moved, unrelated])
    assert checks[0].shift == (4, -3) and checks[0].ssim == pytest.approx(1.0, abs=1e-9)
    assert checks[1].ssim < 0.1
    assert aligned_ssim(image, [image])[0].shift == (0, 0)
    # beyond the searched range (1/8 of 64 = 8 px) the shift is clipped and SSIM drops below 1
    far = aligned_ssim(image, [canvas[10:74, 22:86]])[0]
    assert abs(far.shift[1]) <= 8 and far.ssim < 0.99


def test_training_subsample_is_seeded_and_sorted():
    cases = [
        Case(case_id=f"c{i:02d}", image_path=Path(f"{i}.jpg"), subject_id=str(i), study_id=str(i), view="AP", labels=(0,) * 14)
        for i in range(30)
    ]
    a = subsample_training(list(reversed(cases)), 10, 7)
    assert [c.case_id for c in a] == sorted(c.case_id for c in a) and len(a) == 10
    assert a == subsample_training(cases, 10, 7) and a != subsample_training(cases, 10, 8)
    assert len(subsample_training(cases, 0, 7)) == 30 == len(subsample_training(cases, 99, 7))


def make_config(root: Path, **metrics):
    return config_from_dict(
        {
            "dataset": {"kind": "synthetic", "root": str(root / "data"), "synthetic": {"n_subjects": 16, "image_size": 64}},
            "conditioning": {"anatomy": "none"},
            "generators": {"memorizer": {}, "shuffled": {}, "noise": {}},
            "metrics": {
                "evaluators": "demo",
                "enabled": [table.MEMORIZATION.name],
                "embedding": "features",  # demo-classifier-features (present before the demo encoders land)
                "bootstrap": 20,
                "num_workers": 0,
                **metrics,
            },
            "run": {"out": str(root / "out"), "samples_per_condition": 1, "resolution": 176, "batch_size": 8},
        }
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("memorization")
    cfg = make_config(root)
    session = open_session(cfg, progress=False, stages=("generate", "evaluate"))
    generate(session, progress=False)
    rows = evaluate(session, progress=False)
    values = {(r.generator, r.metric): r for r in rows if r.subset == "all"}
    return root, cfg, session, values


def test_memorizer_is_flagged_and_the_others_are_not(run):
    root, cfg, session, values = run
    rate = {g: values[(g, table.MEMORIZATION.name)].value for g in ("real", "memorizer", "shuffled", "noise")}
    assert rate["memorizer"] == 1.0
    assert values[("memorizer", SIMILARITY)].value == pytest.approx(1.0, abs=1e-5)
    assert values[("memorizer", SSIM)].value == pytest.approx(1.0, abs=1e-6)
    assert rate["noise"] == 0.0
    # the real row is scored on its null (different patients): at most one of its 8 images lies above
    # the 0.999 quantile; shuffled images are real test images, so they score as the null does
    assert rate["real"] <= 1 / 8 and rate["shuffled"] <= 2 / 8 and rate["memorizer"] > rate["real"]
    assert values[("noise", SSIM)].value < 0.5 < values[("memorizer", SSIM)].value
    provenance = json.loads((Path(cfg.run.out) / "results.json").read_text())["memorization"]
    training = load_training_set(cfg)
    assert provenance["train_images"] == len(training.cases) == provenance["train_available"]
    assert provenance["train_fingerprint"] == training.fingerprint
    assert provenance["null_n"] == 8 and provenance["top_k"] == 5 and provenance["quantile_method"] == "linear"
    assert provenance["embedding"] == {"role": "features", "evaluator": "demo:demo-classifier-features"}
    frame = pd.read_csv(Path(cfg.run.out) / "per_image.csv")
    real = frame[frame.generator == "real"][SIMILARITY].to_numpy()
    assert provenance["threshold"] == pytest.approx(float(np.quantile(real, 0.999)))


def test_pairs_csv_holds_the_closest_pairs(run):
    root, cfg, session, values = run
    pairs = pd.read_csv(Path(cfg.run.out) / PAIRS_FILE, dtype={"case_id": str, "train_case_id": str})
    assert tuple(pairs.columns) == PAIRS_COLUMNS
    assert sorted(set(pairs.generator)) == ["memorizer", "noise", "shuffled"]
    training = {c.case_id: c for c in load_training_set(cfg).cases}
    memorizer = pairs[pairs.generator == "memorizer"]
    assert len(memorizer) == 8 and memorizer.memorized.all()
    generator = MemorizerGenerator("memorizer", None, GeneratorContext(training_cases=lambda: tuple(training.values())))
    cases = {c.case_id: c for c in session.scan.cases}
    manifest = [json.loads(line) for line in (Path(cfg.run.out) / "memorizer" / "manifest.jsonl").read_text().splitlines()]
    donors = {
        m["case_id"]: generator.donor(type("C", (), {"labels": cases[m["case_id"]].labels, "seed": m["seed"]})).case_id
        for m in manifest
    }
    for pair in memorizer.itertuples():
        assert pair.train_case_id == donors[pair.case_id]  # the nearest training image is the one it copied
        assert Path(session.scan.root) / pair.train_image == training[pair.train_case_id].image_path  # dataset-relative
        assert pair.ssim == pytest.approx(1.0, abs=1e-6)
    for _, group in pairs.groupby("generator"):
        assert list(group.similarity) == sorted(group.similarity, reverse=True)


def test_memorizer_donor_shares_the_first_pathology(run):
    root, cfg, session, values = run
    training = load_training_set(cfg).cases
    generator = MemorizerGenerator("memorizer", None, GeneratorContext(training_cases=lambda: training))
    for case in session.scan.cases:
        condition = type("C", (), {"labels": case.labels, "seed": 11})
        donor = generator.donor(condition)
        wanted = first_pathology(case.labels)
        if any(first_pathology(c.labels) == wanted for c in training):
            assert first_pathology(donor.labels) == wanted
        assert generator.donor(condition) is donor
    with pytest.raises(UserFacingError, match="needs the training cases"):
        MemorizerGenerator("memorizer", None, GeneratorContext())


def test_training_cache_is_reused_and_keyed_by_the_subsample(run, monkeypatch):
    root, cfg, session, values = run
    suite = build_suite(cfg.metrics, session.weights, session.device)
    features = sorted((Path(cfg.run.out) / ".cache" / "train").glob("*/features.npy"))
    assert len(features) == 1
    before = features[0].stat().st_mtime_ns

    def refuse(*args, **kwargs):
        raise AssertionError("training features recomputed")

    with monkeypatch.context() as patched:
        patched.setattr(audit_module, "evaluate_real", refuse)
        again = memorization_audit(session, suite, False)
    assert again is not None and again.train.cache_dir == features[0].parent and features[0].stat().st_mtime_ns == before
    assert isinstance(again.train.features, np.memmap)
    np.testing.assert_allclose(np.linalg.norm(again.train.features, axis=1), 1.0, rtol=1e-5)
    smaller = open_session(make_config(root, memorization_train_n=5), progress=False)
    subsampled = memorization_audit(smaller, suite, False)
    assert subsampled is not None and len(subsampled.train.case_ids) == 5
    assert subsampled.train.cache_dir != again.train.cache_dir
    assert set(subsampled.train.case_ids) <= set(again.train.case_ids)


def test_grid_draws_pairs_and_a_grey_cell_for_a_missing_training_file(run, tmp_path):
    root, cfg, session, values = run
    out = Path(cfg.run.out)
    copy = tmp_path / "run"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns(".cache"))
    pairs = pd.read_csv(copy / PAIRS_FILE, dtype=str)
    pairs.loc[pairs.generator == "memorizer", "train_image"] = str(tmp_path / "gone.jpg")
    pairs.to_csv(copy / PAIRS_FILE, index=False)
    fig = memorization_figure([load_run(copy)])
    assert fig is not None
    texts = [t.get_text() for t in drawn_texts(fig)]
    assert texts.count("not found") == 3  # the memorizer's three rows
    assert sum("similarity 1.000" in t for t in texts) == 3
    (copy / PAIRS_FILE).unlink()
    assert memorization_figure([load_run(copy)]) is None


def test_missing_training_split_is_a_clear_error(tmp_path, run):
    root, cfg, session, values = run
    data = tmp_path / "data"
    shutil.copytree(root / "data", data)
    split = data / "mimic-cxr-2.0.0-split.csv.gz"
    frame = pd.read_csv(split, dtype=str)
    frame.loc[frame.split == "train", "split"] = "validate"
    with gzip.open(split, "wt") as f:
        frame.to_csv(f, index=False)
    other = config_from_dict({"dataset": {"kind": "mimic", "root": str(data)}, "run": {"out": str(tmp_path / "out")}})
    with pytest.raises(UserFacingError, match=r"memorization audit: the training split \(dataset.train_split = 'train'\)"):
        load_training_set(other)


def test_alignment_equals_brute_force_correlation_over_every_shift():
    """The FFT search picks the shift a direct Pearson correlation over each overlap picks (non-square, every shift)."""
    from xreal_bench.metrics.pixel_recheck import best_shifts, overlap

    rng = np.random.default_rng(3)
    for _ in range(5):
        image, references, limit = torch.tensor(rng.random((20, 17))), torch.tensor(rng.random((3, 20, 17))), 4
        for reference, found in zip(references, best_shifts(image, references, limit), strict=True):
            scores = {
                (dy, dx): np.corrcoef(*(part.flatten().numpy() for part in overlap(image, reference, (dy, dx))))[0, 1]
                for dy in range(-limit, limit + 1)
                for dx in range(-limit, limit + 1)
            }
            assert found == max(scores, key=lambda s: (scores[s], -list(scores).index(s)))


def test_a_subsample_reads_only_its_drawn_training_files(run, monkeypatch):
    """memorization_train_n = 5: five rows are drawn before the file check, so only five files are read."""
    root, cfg, session, values = run
    from xreal_bench.data import mimic

    read: list[int] = []
    check = mimic.check_images
    monkeypatch.setattr(mimic, "check_images", lambda paths, progress: read.append(len(paths)) or check(paths, progress))
    training = load_training_set(make_config(root, memorization_train_n=5))
    everything = load_training_set(cfg)
    assert read[0] == 5 and read[1] == len(everything.cases) > 5
    assert len(training.cases) == 5 and {c.case_id for c in training.cases} <= {c.case_id for c in everything.cases}
    assert training.cases == load_training_set(make_config(root, memorization_train_n=5)).cases  # seeded


def test_the_report_never_opens_a_training_path_outside_the_dataset_root(tmp_path):
    from types import SimpleNamespace

    from PIL import Image

    from xreal_bench.reports.memorization_grid import training_pixels

    root, outside = tmp_path / "data", tmp_path / "secret.png"
    (root / "files").mkdir(parents=True)
    for path in (root / "files" / "a.png", outside):
        Image.fromarray(np.full((32, 32), 128, dtype=np.uint8)).save(path)
    run = SimpleNamespace(provenance={"dataset": {"root": str(root)}, "config": {"run": {"resolution": 32}}})
    assert training_pixels(run, "files/a.png") is not None  # type: ignore[arg-type]
    assert training_pixels(run, "../secret.png") is None and training_pixels(run, str(outside)) is None  # type: ignore[arg-type]


def test_the_evaluated_split_is_refused_as_the_training_split(run):
    root, cfg, session, values = run
    same = open_session(make_config(root), progress=False)
    same.cfg.dataset.train_split = same.cfg.dataset.split
    with pytest.raises(UserFacingError, match="is the evaluated split"):
        memorization_audit(same, build_suite(cfg.metrics, session.weights, session.device), False)


def test_evaluating_one_generator_keeps_the_others_pairs(run):
    """`evaluate --generators noise` rewrites noise's pairs and keeps the memorizer's and shuffled's (last: it
    re-evaluates the module's run)."""
    root, cfg, session, values = run
    before = pd.read_csv(Path(cfg.run.out) / PAIRS_FILE, dtype={"case_id": str, "train_case_id": str})
    evaluate(session, ["noise"], progress=False)
    after = pd.read_csv(Path(cfg.run.out) / PAIRS_FILE, dtype={"case_id": str, "train_case_id": str})
    assert sorted(set(after.generator)) == ["memorizer", "noise", "shuffled"] and len(after) == len(before)
    for generator in ("memorizer", "shuffled"):
        pd.testing.assert_frame_equal(
            before[before.generator == generator].reset_index(drop=True),
            after[after.generator == generator].reset_index(drop=True),
        )
