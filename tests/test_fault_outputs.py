"""Every kind of bad generator output is one recorded failure of the affected sample: the run
goes on, the other samples are written, and a resume retries the failed one without crashing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from xreal_bench.config import config_from_dict
from xreal_bench.generators.base import Generator
from xreal_bench.generators.registry import register_generator
from xreal_bench.harness import OutputError, run_generator, to_run_image
from xreal_bench.imaging import quantize, save_png
from xreal_bench.rundir import GeneratorDir
from xreal_bench.types import Case, Condition

BAD_CASE = "c2"
GOOD = np.full((32, 32), 0.5, dtype=np.float32)

#: kind -> (what the generator returns for the bad case's image, the recorded error)
BAD_IMAGES: dict[str, tuple[object, str]] = {
    "str": ("an image", "OutputError: output is str; expected a numpy array or torch tensor (H x W or 1 x H x W)"),
    "none": (None, "OutputError: output is NoneType; expected a numpy array or torch tensor (H x W or 1 x H x W)"),
    "dict": ({"image": GOOD}, "OutputError: output is dict; expected a numpy array or torch tensor (H x W or 1 x H x W)"),
    "nested-list": (GOOD.tolist(), "OutputError: output is list; expected a numpy array or torch tensor (H x W or 1 x H x W)"),
    "numpy-scalar": (np.float32(0.5), "OutputError: output is float32; expected a numpy array or torch tensor"),
    "rgb-chw": (np.zeros((3, 32, 32), np.float32), "OutputError: wrong output shape (3, 32, 32); expected H x W or 1 x H x W"),
    "rgb-hwc": (np.zeros((32, 32, 3), np.float32), "OutputError: wrong output shape (32, 32, 3)"),
    "one-d": (np.zeros(64, np.float32), "OutputError: wrong output shape (64,)"),
    "four-d": (np.zeros((1, 1, 32, 32), np.float32), "OutputError: wrong output shape (1, 1, 32, 32)"),
    "tiny": (np.zeros((4, 4), np.float32), "OutputError: wrong output shape (4, 4); expected H x W or 1 x H x W, at least 8 px"),
    "empty": (np.zeros((0, 32), np.float32), "OutputError: wrong output shape (0, 32)"),
    "complex": (GOOD.astype(np.complex64), "OutputError: output has dtype complex64; expected floating point values in [0, 1]"),
    "object": (np.array([[object()] * 8] * 8), "OutputError: output has dtype object; expected floating point"),
    "bool": (GOOD > 0, "OutputError: output has dtype bool; expected floating point values in [0, 1] (integer and bool"),
    "uint8": ((GOOD * 255).astype(np.uint8), "OutputError: output has dtype uint8; expected floating point"),
    "int-tensor": (torch.zeros(1, 32, 32, dtype=torch.int64), "OutputError: output tensor has dtype int64; expected floating"),
    "bool-tensor": (torch.zeros(32, 32, dtype=torch.bool), "OutputError: output tensor has dtype bool; expected floating"),
    "above-one": (np.full((32, 32), 2.0, np.float32), "OutputError: output values outside [0, 1] (min 2, max 2)"),
    "negative": (np.full((32, 32), -0.5, np.float32), "OutputError: output values outside [0, 1] (min -0.5, max -0.5)"),
    "nan": (np.full((32, 32), np.nan, np.float32), "OutputError: output contains 1024 NaN/inf values"),
    "inf-tensor": (torch.full((32, 32), float("inf")), "OutputError: output contains 1024 NaN/inf values"),
    "float64-overflow": (np.full((32, 32), 1e300), "OutputError: output contains 1024 NaN/inf values"),
}
#: kind -> (what generate() returns for a batch holding the bad case, the recorded error). The
#: harness retries such a batch sample by sample, so only the bad case's sample fails.
BAD_RESULTS: dict[str, tuple[object, str]] = {
    "raises": (RuntimeError("model exploded\nsecond line"), "RuntimeError: model exploded"),
    "returns-str": ("images", "TypeError: generate() returned str; expected a GeneratorOutput (or a list of images)"),
    "returns-none": (None, "TypeError: generate() returned NoneType; expected a GeneratorOutput"),
    "returns-dict": ({"images": [GOOD]}, "TypeError: generate() returned dict; expected a GeneratorOutput"),
    "too-few": ([], "OutputError: generator returned 0 images for 1 conditions"),
    "too-many": ("extra", "OutputError: generator returned 2 images for 1 conditions"),
    "zero-d-array": (np.array(0.5), "TypeError: iteration over a 0-d array"),
}
HEALED: set[str] = set()  # kinds whose generator behaves again (the resume after a fix)


@dataclass
class FaultOptions:
    kind: str = "str"


@register_generator
class FaultyOutputs(Generator):
    """Returns a good image for every case but ``BAD_CASE``, which gets the configured bad output."""

    type_name = "test-fault-outputs"
    inputs = frozenset()
    Options = FaultOptions

    def generate(self, conditions):
        kind = self.options.kind
        bad = any(c.case_id == BAD_CASE for c in conditions) and kind not in HEALED
        if bad and kind in BAD_RESULTS:
            result = BAD_RESULTS[kind][0]
            if isinstance(result, Exception):
                raise result
            if result == "extra":
                return [GOOD] * (len(conditions) + 1)
            return result
        return [BAD_IMAGES[kind][0] if bad and c.case_id == BAD_CASE else GOOD for c in conditions]


class Builder:
    available = frozenset()

    def build(self, case: Case, sample_index: int, seed: int, *, reads=None) -> Condition:
        return Condition(case.case_id, sample_index, seed, case.labels, "", "", case.image_path, case.view)


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> list[Case]:
    root = tmp_path_factory.mktemp("cases")
    out = []
    for i in range(4):
        save_png(root / f"c{i}.png", quantize(np.full((32, 32), 0.4, np.float32)))
        out.append(Case(f"c{i}", root / f"c{i}.png", "10000000", f"5000000{i}", "PA", (0,) * 14))
    return out


def generate(out: Path, kind: str, cases: list[Case]):
    cfg = config_from_dict(
        {
            "run": {"out": str(out), "resolution": 161, "batch_size": 4},
            "generators": {"g": {"type": "test-fault-outputs", "kind": kind}},
        }
    )
    return run_generator(cfg, "g", cfg.generators["g"], cases=cases, prepared=Builder(), progress=False)


@pytest.mark.parametrize("kind", [*BAD_IMAGES, *BAD_RESULTS])
def test_bad_output_is_one_recorded_failure_and_resume_retries_it(tmp_path, cases, kind):
    expected = {**BAD_IMAGES, **BAD_RESULTS}[kind][1]
    out = tmp_path / "run"
    first = generate(out, kind, cases)
    assert (first.generated, first.failed) == (3, 1)
    gdir = GeneratorDir(out, "g")
    lines = gdir.manifest.read_text().splitlines()
    assert len(lines) == 4  # exactly one line per sample
    entries = gdir.entries()
    bad = entries[(BAD_CASE, 0)]
    assert bad.status == "failed" and bad.file is None
    assert bad.error.startswith(expected), bad.error
    assert [e.status for k, e in sorted(entries.items()) if k[0] != BAD_CASE] == ["ok"] * 3
    assert sorted(p.name for p in gdir.images.glob("*.png")) == ["c0_0.png", "c1_0.png", "c3_0.png"]

    again = generate(out, kind, cases)  # the same fault: retried, recorded again, no crash
    assert (again.skipped, again.generated, again.failed) == (3, 0, 1)
    assert len(gdir.manifest.read_text().splitlines()) == 4
    assert gdir.entries()[(BAD_CASE, 0)].error.startswith(expected)

    HEALED.add(kind)
    try:
        healed = generate(out, kind, cases)
    finally:
        HEALED.discard(kind)
    assert (healed.skipped, healed.generated, healed.failed) == (3, 1, 0)
    assert gdir.entries()[(BAD_CASE, 0)].status == "ok" and gdir.image_path(BAD_CASE, 0).is_file()


def test_floats_of_every_width_are_accepted_and_agree():
    img = np.linspace(0, 1, 40 * 40).reshape(40, 40)
    reference = to_run_image(img.astype(np.float32), 64)
    assert reference.dtype == np.uint8 and reference.shape == (64, 64)
    for variant in (img, img.astype(np.float16), torch.from_numpy(img).to(torch.bfloat16)[None], torch.from_numpy(img)):
        assert np.abs(to_run_image(variant, 64).astype(int) - reference.astype(int)).max() <= 1


def test_only_output_errors_leave_to_run_image():
    """No ValueError/TypeError from numpy escapes: every refusal is an OutputError."""
    for value, _ in BAD_IMAGES.values():
        with pytest.raises(OutputError):
            to_run_image(value, 64)


def test_a_disk_error_while_writing_stops_the_run_instead_of_blaming_the_generator(tmp_path, cases, monkeypatch):
    import xreal_bench.harness as harness

    def full_disk(path, pixels):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(harness, "save_png", full_disk)
    with pytest.raises(OSError, match="No space left"):
        generate(tmp_path / "run", "str", cases)
    gdir = GeneratorDir(tmp_path / "run", "g")
    assert all(e.status != "ok" for e in gdir.entries().values())  # nothing claimed as written
