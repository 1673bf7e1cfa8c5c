"""The generation harness: seeds, batching, resume, failures and output normalisation."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from xreal_bench.config import config_from_dict
from xreal_bench.errors import UserFacingError
from xreal_bench.generators.base import Generator, GeneratorOutput
from xreal_bench.generators.registry import register_generator
from xreal_bench.harness import OutputError, plan_items, run_generator, to_run_image
from xreal_bench.imaging import quantize, save_png, standardize
from xreal_bench.rundir import GeneratorDir, seed_for
from xreal_bench.types import Case, Condition

LABELS = (0,) * 14


class FakeBuilder:
    """Stands in for PreparedCases: image inputs only, one condition per (case, sample)."""

    def __init__(self, inputs=("image", "labels")):
        self.available = frozenset(inputs)
        self.built = []

    def build(self, case: Case, sample_index: int, seed: int, *, reads=None) -> Condition:
        self.built.append((case.case_id, sample_index))
        if case.case_id == "bad-condition":
            raise ValueError("cannot build this condition")
        return Condition(case.case_id, sample_index, seed, case.labels, "", "", case.image_path, case.view)


@register_generator
class SeededNoise(Generator):
    """Per-sample torch generator: output depends only on the condition's seed. Returns a plain list
    of images, as plugins may (the harness accepts it as an output without notes)."""

    type_name = "test-seeded-noise"
    inputs = frozenset()

    def generate(self, conditions):
        out = []
        for c in conditions:
            g = torch.Generator().manual_seed(c.seed)
            out.append(torch.rand(1, 64, 48, generator=g))  # non-square: the harness squares it
        return out


@register_generator
class Faulty(Generator):
    """Raises for one case, returns NaN for another, a wrong shape for a third."""

    type_name = "test-faulty"
    inputs = frozenset()

    def generate(self, conditions):
        out = []
        for c in conditions:
            if c.case_id == "case-raise":
                raise RuntimeError("boom on case-raise")
            if c.case_id == "case-nan":
                out.append(np.full((32, 32), np.nan, dtype=np.float32))
            elif c.case_id == "case-shape":
                out.append(np.zeros((3, 32, 32), dtype=np.float32))
            elif c.case_id == "case-range":
                out.append(np.full((32, 32), 2.0, dtype=np.float32))
            else:
                out.append(np.full((32, 32), 0.5, dtype=np.float32))
        return out


@register_generator
class BadOutput(Generator):
    """A declared output with notes for good cases; a wrong type, image count or note count for others."""

    type_name = "test-bad-output"
    inputs = frozenset()

    def generate(self, conditions):
        ids = {c.case_id for c in conditions}
        if "case-dict" in ids:
            return {"images": []}
        if "case-none" in ids:
            return None
        images = [np.full((32, 32), 0.5, dtype=np.float32) for _ in conditions]
        if "case-extra" in ids:
            return GeneratorOutput([*images, images[0]])
        if "case-notes" in ids:
            return GeneratorOutput(images, notes=[("one note too many",)] * (len(images) + 1))
        if "case-inputs" in ids:
            return GeneratorOutput(images, inputs=[{"prompt": object()} for _ in conditions])
        return GeneratorOutput(
            images,
            notes=[(f"drawn for {c.case_id}",) for c in conditions],
            inputs=[{"prompt": f"Edema {c.case_id}", "tokens_truncated": 3} for c in conditions],
        )


@register_generator
class NeedsAnatomy(Generator):
    type_name = "test-needs-anatomy"
    inputs = frozenset({"anatomy"})

    def generate(self, conditions):  # pragma: no cover - must never be called
        raise AssertionError("generation started although inputs were missing")


def make_cases(root: Path, ids) -> list[Case]:
    cases = []
    for i, case_id in enumerate(ids):
        path = root / f"{case_id}.png"
        rng = np.random.default_rng(i)
        save_png(path, quantize(rng.random((80, 70)).astype(np.float32)))
        cases.append(Case(case_id, path, "10000000", f"5000000{i}", "PA", LABELS))
    return cases


def make_cfg(out: Path, gen_type: str, **run):
    return config_from_dict(
        {
            "run": {"out": str(out), "resolution": 192, "seed": 7, **run},
            "generators": {"g": {"type": gen_type}},
        }
    )


def tree_hashes(out: Path, name: str = "g") -> dict[str, str]:
    images = GeneratorDir(out, name).images
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(images.glob("*.png"))}


def test_seed_is_pure_function_of_identity():
    a = seed_for(0, "xreal", "abc", 1)
    assert a == seed_for(0, "xreal", "abc", 1)
    assert (
        len(
            {
                a,
                seed_for(1, "xreal", "abc", 1),
                seed_for(0, "cheff", "abc", 1),
                seed_for(0, "xreal", "abd", 1),
                seed_for(0, "xreal", "abc", 2),
            }
        )
        == 5
    )
    assert 0 <= a < 2**63


def test_same_images_whatever_batch_size_and_order(tmp_path):
    cases = make_cases(tmp_path / "data", [f"c{i}" for i in range(7)])
    results = []
    for bs, order in [(1, cases), (3, cases[::-1]), (16, cases[2:] + cases[:2])]:
        out = tmp_path / f"run-bs{bs}"
        cfg = make_cfg(out, "test-seeded-noise", batch_size=bs, samples_per_condition=2)
        summary = run_generator(cfg, "g", cfg.generators["g"], cases=order, prepared=FakeBuilder(), progress=False)
        assert (summary.generated, summary.failed) == (14, 0)
        results.append(tree_hashes(out))
    assert len(results[0]) == 14
    assert results[0] == results[1] == results[2]


def test_resume_skips_done_and_regenerates_damaged(tmp_path):
    cases = make_cases(tmp_path / "data", [f"c{i}" for i in range(5)])
    out = tmp_path / "run"
    cfg = make_cfg(out, "test-seeded-noise", batch_size=2)
    run_generator(cfg, "g", cfg.generators["g"], cases=cases, prepared=FakeBuilder(), progress=False)
    reference = tree_hashes(out)
    gdir = GeneratorDir(out, "g")
    gdir.image_path("c1", 0).write_bytes(gdir.image_path("c1", 0).read_bytes()[:40])  # truncated
    gdir.image_path("c3", 0).unlink()  # missing
    (gdir.images / ".c4_0.png.abc.tmp").write_bytes(b"partial")  # left by a killed writer
    summary = run_generator(cfg, "g", cfg.generators["g"], cases=cases, prepared=FakeBuilder(), progress=False)
    assert (summary.skipped, summary.generated) == (3, 2)
    assert tree_hashes(out) == reference
    assert not list(gdir.images.glob(".*.tmp"))
    lines = gdir.manifest.read_text().splitlines()
    assert len(lines) == 5  # consolidated: one line per image, no duplicates
    overwrite = run_generator(cfg, "g", cfg.generators["g"], cases=cases, prepared=FakeBuilder(), overwrite=True, progress=False)
    assert (overwrite.skipped, overwrite.generated) == (0, 5)


def test_failures_are_recorded_and_never_written(tmp_path):
    ids = ["case-ok", "case-raise", "case-nan", "case-shape", "case-range", "bad-condition", "case-ok2"]
    cases = make_cases(tmp_path / "data", ids)
    out = tmp_path / "run"
    cfg = make_cfg(out, "test-faulty", batch_size=4)
    summary = run_generator(cfg, "g", cfg.generators["g"], cases=cases, prepared=FakeBuilder(), progress=False)
    assert (summary.generated, summary.failed) == (2, 5)
    entries = GeneratorDir(out, "g").entries()
    errors = {case: e.error for (case, _), e in entries.items() if e.status == "failed"}
    assert errors["case-raise"] == "RuntimeError: boom on case-raise"
    assert "NaN" in errors["case-nan"]
    assert "wrong output shape" in errors["case-shape"]
    assert "outside [0, 1]" in errors["case-range"]
    assert errors["bad-condition"] == "ValueError: cannot build this condition"
    assert sorted(p.name for p in GeneratorDir(out, "g").images.glob("*.png")) == ["case-ok2_0.png", "case-ok_0.png"]
    assert "5 failed" in summary.describe() and "boom on case-raise" in summary.describe()
    assert "case-raise sample 0 failed" in GeneratorDir(out, "g").log.read_text()


def test_notes_are_stored_and_wrong_outputs_are_recorded_failures(tmp_path):
    ids = ["case-ok", "case-dict", "case-none", "case-extra", "case-notes", "case-ok2", "case-inputs"]
    cases = make_cases(tmp_path / "data", ids)
    out = tmp_path / "run"
    cfg = make_cfg(out, "test-bad-output", batch_size=3)
    summary = run_generator(cfg, "g", cfg.generators["g"], cases=cases, prepared=FakeBuilder(), progress=False)
    assert (summary.generated, summary.failed) == (2, 5)
    entries = {case: e for (case, _), e in GeneratorDir(out, "g").entries().items()}
    assert entries["case-ok"].condition["notes"] == ["drawn for case-ok"]
    assert entries["case-ok"].condition["inputs"] == {"prompt": "Edema case-ok", "tokens_truncated": 3}
    assert entries["case-inputs"].error == "TypeError: Object of type object is not JSON serializable"
    assert entries["case-ok2"].condition["notes"] == ["drawn for case-ok2"]
    assert entries["case-dict"].error == "TypeError: generate() returned dict; expected a GeneratorOutput (or a list of images)"
    assert entries["case-none"].error.startswith("TypeError: generate() returned NoneType")
    assert entries["case-extra"].error == "OutputError: generator returned 2 images for 1 conditions"
    assert entries["case-notes"].error == "ValueError: GeneratorOutput has 2 notes for 1 images"
    assert sorted(p.name for p in GeneratorDir(out, "g").images.glob("*.png")) == ["case-ok2_0.png", "case-ok_0.png"]


def test_generator_output_accepts_plain_sequences_and_checks_notes():
    images = [np.zeros((8, 8), np.float32), np.ones((8, 8), np.float32)]
    for result in (images, tuple(images), torch.zeros(2, 1, 8, 8), np.zeros((2, 8, 8), np.float32)):
        output = GeneratorOutput.from_result(result)
        assert len(output.images) == 2 and output.notes == ()
    declared = GeneratorOutput(images, notes=[["a"], ()])
    assert GeneratorOutput.from_result(declared) is declared and declared.notes == (("a",), ())
    for wrong in (None, "images", {"images": images}, iter(images)):
        with pytest.raises(TypeError, match="expected a GeneratorOutput"):
            GeneratorOutput.from_result(wrong)
    with pytest.raises(ValueError, match="1 notes for 2 images"):
        GeneratorOutput(images, notes=[("a",)])
    with pytest.raises(TypeError, match="one tuple of strings per image"):
        GeneratorOutput(images, notes=["a", "b"])


def test_missing_inputs_refused_before_generation(tmp_path):
    cases = make_cases(tmp_path / "data", ["a", "b"])
    cfg = make_cfg(tmp_path / "run", "test-needs-anatomy")
    builder = FakeBuilder()
    with pytest.raises(UserFacingError, match="needs inputs this run cannot supply: anatomy"):
        run_generator(cfg, "g", cfg.generators["g"], cases=cases, prepared=builder, progress=False)
    assert builder.built == []


def test_output_normalisation_matches_real_image_path():
    rng = np.random.default_rng(0)
    img = rng.random((100, 80)).astype(np.float32)
    np.testing.assert_array_equal(to_run_image(torch.from_numpy(img)[None], 64), standardize(img, 64))
    assert to_run_image(img, 64, bits=16).dtype == np.uint16
    slightly_over = img.copy()
    slightly_over[0, 0] = 1.0005
    assert to_run_image(slightly_over, 64).max() <= 255
    for bad, message in [
        (np.zeros((2, 8, 8)), "wrong output shape"),
        (np.full((8, 8), np.inf), "NaN/inf"),
        (img * 2 - 1, "outside"),
    ]:
        with pytest.raises(OutputError, match=message):
            to_run_image(bad, 64)


def test_plan_is_ordered_by_case_then_sample(tmp_path):
    cases = make_cases(tmp_path, ["b", "a"])
    assert [(c.case_id, k) for c, k in plan_items(cases, 2)] == [("a", 0), ("a", 1), ("b", 0), ("b", 1)]
