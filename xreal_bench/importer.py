"""Adopt images generated elsewhere into a run directory, so they can be evaluated without a
generator wrapper.

File names map to case ids: ``<case_id>.<ext>`` is sample 0 and ``<case_id>_<k>.<ext>`` is
sample ``k`` (MIMIC dicom_ids contain no underscores). PNG, JPEG, TIFF and BMP are read,
8- or 16-bit; each image goes through :func:`xreal_bench.harness.to_run_image`, exactly like
a wrapped generator's output. Files that match no case are listed, never guessed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from xreal_bench.harness import OutputError, now, to_run_image
from xreal_bench.imaging import ImageDecodeError, load_grayscale, save_png
from xreal_bench.rundir import GeneratorDir, ManifestEntry, append_line
from xreal_bench.types import Case

EXTENSIONS = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}
SAMPLE_SUFFIX = re.compile(r"^(?P<case>.+)_(?P<k>\d+)$")


@dataclass
class ImportReport:
    imported: int = 0
    unmatched: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)

    def describe(self, name: str) -> str:
        text = f"{name}: imported {self.imported} image(s)"
        if self.unmatched:
            text += f"; {len(self.unmatched)} file name(s) match no case, e.g. {', '.join(self.unmatched[:3])}"
        if self.unreadable:
            text += f"; {len(self.unreadable)} unreadable file(s), e.g. {', '.join(self.unreadable[:3])}"
        return text


def match_case(stem: str, known: set[str]) -> tuple[str, int] | None:
    """``(case_id, sample_index)`` for a file stem, or None if no case matches."""
    if stem in known:
        return stem, 0
    m = SAMPLE_SUFFIX.match(stem)
    if m and m["case"] in known:
        return m["case"], int(m["k"])
    return None


def import_folder(
    source: Path, *, out: Path, name: str, cases: Sequence[Case], resolution: int, bits: int, square: str, progress: bool = True
) -> ImportReport:
    """Copy every matching image of ``source`` (recursively) into ``out/<name>``."""
    if not source.is_dir():
        raise FileNotFoundError(f"import folder not found: {source}")
    by_id = {c.case_id: c for c in cases}
    gdir = GeneratorDir(out, name)
    report = ImportReport()
    known = set(by_id)
    files = sorted(p for p in source.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file())
    for path in tqdm(files, desc=f"import {name}", unit="img", disable=not progress):
        match = match_case(path.stem, known)
        if match is None:
            report.unmatched.append(path.name)
            continue
        case_id, k = match
        try:
            pixels = to_run_image(load_grayscale(path), resolution, bits, square)
        except (ImageDecodeError, OutputError) as exc:
            report.unreadable.append(f"{path.name} ({exc})")
            continue
        target = gdir.image_path(case_id, k)
        save_png(target, pixels)
        case = by_id[case_id]
        append_line(
            gdir.manifest,
            ManifestEntry(
                generator=name,
                case_id=case_id,
                sample_index=k,
                seed=-1,
                status="ok",
                file=str(target.relative_to(gdir.root)),
                time=now(),
                condition={"positives": list(case.positives), "view": case.view, "notes": [f"imported from {path}"]},
            ),
        )
        report.imported += 1
    if report.imported:
        gdir.consolidate()
    return report
