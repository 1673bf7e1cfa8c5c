"""A small synthetic run directory in the run-dir contract (``write_sample_run``: generator
folders and ``cases.jsonl``) and a study built from it (``sample_study``), for tests, benchmarks
and trying the reader study without generating images first."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from xreal_bench.cases import write_cases
from xreal_bench.imaging import quantize, save_png
from xreal_bench.labels import CHEXPERT_LABELS
from xreal_bench.rundir import (
    GeneratorDir,
    ManifestEntry,
    append_line,
    image_name,
    seed_for,
)
from xreal_bench.types import Box, BoxSet, Case, CaseFacts

PATHOLOGIES = ("Cardiomegaly", "Edema", "Pleural Effusion", "Pneumothorax")


def sample_image(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth grayscale blob image in [0, 1] (two dark 'lungs' in a bright 'thorax')."""
    y, x = np.mgrid[0:size, 0:size] / size
    img = 0.7 - 0.4 * (np.exp(-((x - 0.32) ** 2 + (y - 0.5) ** 2) / 0.03) + np.exp(-((x - 0.68) ** 2 + (y - 0.5) ** 2) / 0.03))
    return np.clip(img + rng.normal(0, 0.03, img.shape), 0, 1)


def write_sample_run(
    out: str | Path,
    *,
    generators: tuple[str, ...] = ("xreal", "cheff"),
    n_cases: int = 12,
    real_size: int = 128,
    generated_size: int = 64,
    seed: int = 0,
    draw: Callable[[str, int], np.ndarray] | None = None,
) -> Path:
    """Write ``real`` plus ``generators`` folders with one image per case and the run's
    ``cases.jsonl`` (each pathology with one box); return ``out``. ``draw(source, k)``, when
    given, supplies case ``k``'s stored pixels (uint8 or uint16) instead of a random blob image."""
    out = Path(out)
    rng = np.random.default_rng(seed)
    facts = [sample_facts(GeneratorDir(out, "real").image_path(f"case{k:04d}", 0), k) for k in range(n_cases)]
    write_cases(out, facts)
    for source in ("real", *generators):
        gdir = GeneratorDir(out, source)
        size = real_size if source == "real" else generated_size
        for k, case in enumerate(f.case for f in facts):
            case_id, positives = case.case_id, list(case.positives)
            pixels = quantize(sample_image(rng, size)) if draw is None else draw(source, k)
            save_png(gdir.image_path(case_id, 0), pixels)
            condition = {
                "positives": positives,
                "prompt": ", ".join(positives),
                "report": "",
                "boxes": [],
                "mask_source": "none",
                "view": case.view,
                "notes": [],
            }
            entry = ManifestEntry(
                generator=source, case_id=case_id, sample_index=0, seed=seed_for(seed, source, case_id, 0), status="ok",
                file=f"images/{image_name(case_id, 0)}", condition=condition,
            )  # fmt: skip
            append_line(gdir.manifest, entry)
    return out


def sample_facts(image_path: Path, k: int) -> CaseFacts:
    """Case ``k``: one of :data:`PATHOLOGIES` with one box (every fifth case has none)."""
    positives = () if k % 5 == 4 else (PATHOLOGIES[k % len(PATHOLOGIES)],)
    labels = tuple(int(name in positives) for name in CHEXPERT_LABELS)
    case = Case(f"case{k:04d}", image_path, f"1{k:07d}", f"5{k:07d}", "PA", labels)
    boxes = BoxSet("boxes_csv", tuple(Box(p, 0.2, 0.3, 0.5, 0.6) for p in positives)) if positives else BoxSet()
    return CaseFacts(case, boxes=boxes)


def sample_study(root: str | Path, n_run_cases: int | None = None, **settings):
    """A sample run under ``root/run`` and a study built from it at ``root/study``.

    ``settings`` are :class:`~xreal_bench.config.StudyConfig` fields (small images, 6 rating cases
    and 6 held-out real-or-generated cases by default). The run has ``n_run_cases`` cases, or more
    when the study needs more (rating + calibration + held-out cases).
    """
    from xreal_bench.config import StudyConfig
    from xreal_bench.reader_study.builder import create_study

    root = Path(root)
    config = StudyConfig(**{"image_size": 96, "n_cases": 6, "turing_cases": 6, **settings})
    config.validate()
    needed = config.n_cases + config.calibration_items + (config.turing_cases if config.turing_test else 0)
    run = write_sample_run(root / "run", n_cases=max(n_run_cases or 0, needed))
    return create_study([run], root / "study", config)
