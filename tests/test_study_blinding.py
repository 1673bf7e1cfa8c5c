"""Blinding by design: what an observer who knows the design can infer from order, what a script can
infer from the files (one re-encoding chain, same-content control), and near-duplicates reported."""

from __future__ import annotations

import io
import json
import sqlite3
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from scipy.stats import binomtest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from xreal_bench.config import StudyConfig
from xreal_bench.demo.study import sample_study, write_sample_run
from xreal_bench.imaging import dequantize, load_grayscale, quantize, to_square
from xreal_bench.reader_study import create_study, design
from xreal_bench.reader_study.similarity import MAX_MEAN_DIFFERENCE

N_CASES, N_SOURCES, READERS = 8, 4, 1000


# -- order: an observer who knows the design ---------------------------------------------------
def old_table(reader: int, rng: np.random.Generator) -> list[list[int]]:
    """The design before per-reader randomisation: one Williams square for everyone, 'real' = symbol 0,
    case k on row (k + reader index)."""
    square = design.balanced_latin_square(N_SOURCES)
    return [[square[(k + reader) % len(square)][j] for j in range(N_SOURCES)] for k in range(N_CASES)]


def new_table(reader: int, rng: np.random.Generator) -> list[list[int]]:
    return design.source_table(N_CASES, N_SOURCES, rng).sources


def shared_mapping_table(reader: int, rng: np.random.Generator) -> list[list[int]]:
    """A random source -> symbol mapping per reader but one square row per case (no balanced swaps)."""
    return design.source_table(N_CASES, N_SOURCES, rng).sources


def observed(row: list[int]) -> tuple[tuple[int, ...], int]:
    """What the observer sees of one case (source 0 = real, source 1 = the generator it cannot
    recognise, sources 2.. recognised): the rounds, i.e. the order, of the recognised sources; and
    the truth to guess: is real the later of the two images left?"""
    round_of = {source: j for j, source in enumerate(row)}
    return tuple(round_of[s] for s in range(2, len(row))), int(round_of[0] > round_of[1])


def observer_accuracy(make_table, *, recognised_case: bool) -> binomtest:
    """An observer with the design's code learns, from 1000 simulated readers, which of the two
    unknown images is real given everything it sees, then guesses for 1000 other readers (one case
    each, so the guesses are independent). With ``recognised_case`` it also knows, for each reader,
    every source of case 0 (one case told apart by eye) and guesses case 1."""
    seen: dict[tuple, Counter] = defaultdict(Counter)
    for reader in range(READERS):
        table = make_table(reader, np.random.default_rng([1, reader]))
        for k in range(1 if recognised_case else 0, N_CASES):
            known, later = observed(table[k])
            seen[(tuple(table[0]), known) if recognised_case else known][later] += 1
    hits = 0
    for reader in range(READERS):
        table = make_table(reader, np.random.default_rng([2, reader]))
        known, later = observed(table[1 if recognised_case else 0])
        counts = seen[(tuple(table[0]), known) if recognised_case else known]
        hits += int(counts[1] > counts[0]) == later
    return binomtest(hits, READERS)


def test_observer_who_knows_the_design_and_all_but_one_generator_places_real_at_chance():
    old = observer_accuracy(old_table, recognised_case=False)
    assert old.statistic == 1.0  # old design: real is symbol 0, the recognised sources fix the row
    new = observer_accuracy(new_table, recognised_case=False)
    low, high = new.proportion_ci(0.99)
    assert low < 0.5 < high, new.statistic


def test_one_case_told_apart_by_eye_does_not_give_away_the_others(monkeypatch):
    assert observer_accuracy(old_table, recognised_case=True).statistic == 1.0
    with monkeypatch.context() as patch:  # a per-reader mapping alone: one case reveals the mapping
        patch.setattr(design, "SWAPS_PER_CELL", 0)
        assert observer_accuracy(shared_mapping_table, recognised_case=True).statistic >= 0.95
    new = observer_accuracy(new_table, recognised_case=True)
    # What is left is the price of exact per-round balance: with 2 cases per round and source, knowing
    # where real stood in one case says a little about the other real images (0.59 measured, 0.54 at 12 cases).
    assert new.statistic < 0.65, new.statistic


def test_built_study_gives_each_reader_own_mapping_and_balanced_rounds(tmp_path):
    created = sample_study(tmp_path, n_cases=8, readers=[f"r{i}" for i in range(6)], duplicate_fraction=0.0, turing_cases=2)
    con = sqlite3.connect(created.study_dir / "study.sqlite")
    sources = json.loads(con.execute("SELECT value FROM meta WHERE key = 'sources'").fetchone()[0])
    records = [json.loads(text) for (text,) in con.execute("SELECT design FROM reader_design")]
    orders = defaultdict(list)
    for reader, source, case in con.execute(
        """SELECT a.reader_id, m.source, m.case_id FROM assignments a JOIN items i USING (item_id)
           JOIN images m USING (image_id) WHERE i.block = 'rating' ORDER BY a.reader_id, a.position"""
    ):
        orders[reader].append((source, case))
    con.close()
    assert len(records) == 6 and len({json.dumps(r["symbols"]) for r in records}) > 1
    assert len({json.dumps(r["sources"]) for r in records}) == 6
    for order in orders.values():
        for j in range(len(sources)):  # 3 rounds of 8 cases: every case once, sources 3/3/2 (+-1)
            block = order[8 * j : 8 * j + 8]
            assert len({c for _, c in block}) == 8
            assert sorted(Counter(s for s, _ in block).values()) == [2, 3, 3]


# -- files: one re-encoding chain, same-content control --------------------------------------------
def radiograph(rng: np.random.Generator, size: int = 128) -> np.ndarray:
    """A smooth synthetic radiograph (lungs, a vertical gradient, faint texture) in [0, 1]."""
    y, x = np.mgrid[0:size, 0:size] / size
    width = rng.uniform(0.02, 0.05)
    lungs = sum(np.exp(-((x - cx - rng.normal(0, 0.03)) ** 2 + (y - 0.5) ** 2) / width) for cx in (0.32, 0.68))
    texture = ndimage.gaussian_filter(rng.normal(0, 1, (size, size)), 1.0) * 0.005
    return np.clip(rng.uniform(0.5, 0.7) - rng.uniform(0.2, 0.4) * lungs + rng.uniform(0.1, 0.3) * y + texture, 0, 1)


def file_features(data: bytes) -> list[float]:
    """File size, high-frequency energy (Laplacian variance, FFT share beyond a quarter of the
    spectrum's radius) and a 4-bin histogram."""
    pixels = np.asarray(Image.open(io.BytesIO(data)), dtype=np.float64) / 255
    power = np.abs(np.fft.fftshift(np.fft.fft2(pixels - pixels.mean()))) ** 2
    n = pixels.shape[0]
    yy, xx = np.mgrid[:n, :n] - n // 2
    high = power[np.hypot(yy, xx) > n / 4].sum() / power.sum()
    histogram = np.histogram(pixels, bins=4, range=(0, 1))[0] / pixels.size
    return [len(data), float(np.log(ndimage.laplace(pixels).var())), float(high), *histogram]


def png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def old_chain(path: Path, intermediate: int, size: int) -> bytes:
    """The chain before: the larger image squeezed to the intermediate size in float, no rounding there."""
    pixels = load_grayscale(path)
    if intermediate < size:
        pixels = to_square(pixels, intermediate)
    return png(quantize(to_square(pixels, size), 8))


def classifier_accuracy(features: list[list[float]], labels: list[int], cases: list[int]) -> binomtest:
    """Logistic regression on standardised features, 5-fold cross-validated with a case's two
    files always in the same fold."""
    model = make_pipeline(StandardScaler(), LogisticRegression(C=10.0, max_iter=2000))
    predicted = cross_val_predict(model, np.array(features), np.array(labels), groups=cases, cv=GroupKFold(5))
    return binomtest(int((predicted == np.array(labels)).sum()), len(labels))


@pytest.fixture(scope="module")
def control_study(tmp_path_factory):
    """20 real 128-px radiographs, and a 'control' generator that stores the same images brought down
    to its own 64 px (8-bit PNG); built into a study of 96 px."""
    root = tmp_path_factory.mktemp("control")
    rng = np.random.default_rng(7)
    reals = [radiograph(rng) for _ in range(20)]

    def draw(source: str, k: int) -> np.ndarray:
        stored = quantize(reals[k])
        return stored if source == "real" else quantize(to_square(dequantize(stored), 64))

    run = write_sample_run(root / "run", generators=("control",), n_cases=20, draw=draw)
    settings = StudyConfig(n_cases=20, turing_test=False, duplicate_fraction=0.0, image_size=96, readers=["r1"])
    return create_study([run], root / "study", settings)


def test_same_content_control_is_at_chance_after_the_chain_and_separable_before(control_study):
    con = sqlite3.connect(control_study.study_dir / "study.sqlite")
    rows = con.execute("SELECT image_id, source, case_id, origin FROM images ORDER BY case_id, source").fetchall()
    con.close()
    assert len(rows) == 40
    labels = [int(source == "control") for _, source, _, _ in rows]
    cases = [int(case[4:]) for _, _, case, _ in rows]
    new = [file_features((control_study.study_dir / "images" / f"{image_id}.png").read_bytes()) for image_id, *_ in rows]
    old = [file_features(old_chain(Path(origin), 64, 96)) for *_, origin in rows]
    before, after = classifier_accuracy(old, labels, cases), classifier_accuracy(new, labels, cases)
    assert before.proportion_ci(0.95).low > 0.5, before.statistic  # measured 1.0: rounding at 64 px only on one side
    low, high = after.proportion_ci(0.95)
    assert low < 0.5 < high, after.statistic  # measured 0.5: the chain leaves the two files identical


# -- near-duplicates ------------------------------------------------------------------------------
def test_identical_images_across_sources_are_reported(control_study, capsys):
    pairs = control_study.near_duplicates
    assert len(pairs) == 20 and all(p.identical and p.mean_difference == 0.0 for p in pairs)
    assert {(p.source_a, p.source_b) for p in pairs} <= {("real", "control"), ("control", "real")}
    assert all(p.case_a == p.case_b for p in pairs)
    info = json.loads((control_study.study_dir / "study.json").read_text())
    assert info["near_duplicates"] == 20
    con = sqlite3.connect(control_study.study_dir / "study.sqlite")
    stored = json.loads(con.execute("SELECT value FROM meta WHERE key = 'near_duplicates'").fetchone()[0])
    con.close()
    assert len(stored) == 20 and stored[0]["identical"] is True


def test_near_identical_pair_is_reported_and_warned(tmp_path, capsys):
    """Generator 'copycat' returns case 3's real image with +-1 grey-level noise on a few pixels (as
    a file of its own, not byte-identical); 'honest' draws its own images."""
    rng = np.random.default_rng(3)
    reals = [quantize(radiograph(rng, 64)) for _ in range(5)]
    noise = np.zeros((64, 64), dtype=np.int16)
    noise[::7, ::5] = 1

    def draw(source: str, k: int) -> np.ndarray:
        if source == "copycat" and k == 3:
            return (reals[3].astype(np.int16) + noise).clip(0, 255).astype(np.uint8)
        return reals[k] if source == "real" else quantize(radiograph(np.random.default_rng([9, k, len(source)]), 64))

    run = write_sample_run(tmp_path / "run", generators=("copycat", "honest"), n_cases=5, draw=draw)
    settings = StudyConfig(n_cases=5, turing_test=False, duplicate_fraction=0.0, image_size=64)
    created = create_study([run], tmp_path / "study", settings)
    (pair,) = created.near_duplicates
    assert {(pair.source_a, pair.case_a), (pair.source_b, pair.case_b)} == {("real", "case0003"), ("copycat", "case0003")}
    assert not pair.identical and 0 < pair.mean_difference < MAX_MEAN_DIFFERENCE
    out = capsys.readouterr().out
    assert "warning: 1 near-identical image pair(s) across sources" in out
    assert "/case0003 ~ " in out and "mean difference" in out
    assert json.loads((created.study_dir / "study.json").read_text())["near_duplicates"] == 1


def test_distinct_images_report_nothing(tmp_path, capsys):
    created = sample_study(tmp_path, n_cases=4, turing_cases=4)
    assert created.near_duplicates == []
    assert "near-identical" not in capsys.readouterr().out


def test_chain_rounds_every_image_at_the_intermediate_size():
    """A float image and its own 8-bit rendering at the intermediate size end as the same study pixels."""
    from xreal_bench.reader_study.builder import reencode

    image = radiograph(np.random.default_rng(1), 128)
    at_64 = dequantize(quantize(to_square(image, 64), 8))
    assert np.array_equal(reencode(image, 64, 96), reencode(at_64, 64, 96))
    assert not np.array_equal(quantize(to_square(to_square(image, 64), 96)), reencode(at_64, 64, 96))  # the old chain
