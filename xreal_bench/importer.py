"""Adopt images generated elsewhere into a run directory, so they can be evaluated without a
generator wrapper.

File names map to case ids: ``<case_id>.<ext>`` is sample 0 and ``<case_id>_<k>.<ext>`` is
sample ``k`` (MIMIC dicom_ids contain no underscores). PNG, JPEG, TIFF and BMP are read,
8- or 16-bit; each image goes through :func:`xreal_bench.harness.to_run_image`, exactly like
a wrapped generator's output. Nothing is guessed:

- hidden files, files of other types and file names outside the name rule are skipped and
  counted by reason; names that match no case are listed;
- several files mapping to one ``(case, sample)`` (``c1.png`` and ``c1.jpg``) refuse the whole
  import with the list of colliding files, before anything is written;
- the folder records an ``identity.json`` of type ``imported`` (source folder, resolution, bit
  depth, square mode, intensity rule); importing into a folder of another identity is refused.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from xreal_bench.errors import UserFacingError
from xreal_bench.harness import OutputError, now, to_run_image
from xreal_bench.identity import check_import_dir, import_identity, write_identity
from xreal_bench.imaging import Geometry, ImageDecodeError, load_grayscale, save_png
from xreal_bench.names import check_generator_name, inside, is_valid_name
from xreal_bench.rundir import GeneratorDir, ManifestEntry, append_line
from xreal_bench.types import Case

EXTENSIONS = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}
SAMPLE_SUFFIX = re.compile(r"^(?P<case>.+)_(?P<k>\d+)$")
HIDDEN, INVALID_NAME, NO_EXTENSION = "hidden", "invalid name", "no extension"


class ImportRefused(UserFacingError):
    """An import that would be ambiguous or land in the wrong place; nothing was written."""


@dataclass
class ImportReport:
    imported: int = 0
    unmatched: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    skipped: dict[str, list[str]] = field(default_factory=dict)  # reason (".txt", "hidden", ...) -> files

    def describe(self, name: str) -> str:
        text = f"{name}: imported {self.imported} image(s)"
        if self.skipped:
            ranked = sorted(self.skipped.items(), key=lambda item: (-len(item[1]), item[0]))
            text += "; skipped: " + ", ".join(f"{len(files)} {reason}" for reason, files in ranked)
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


def skip_reason(relative: Path) -> str | None:
    """Why a file of the source folder is not an image to import (None: it is a candidate)."""
    if any(part.startswith(".") for part in relative.parts):
        return HIDDEN
    if relative.suffix.lower() not in EXTENSIONS:
        return relative.suffix.lower() or NO_EXTENSION
    if not is_valid_name(relative.stem):
        return INVALID_NAME
    return None


def plan_import(source: Path, known: set[str], report: ImportReport) -> dict[tuple[str, int], Path]:
    """``(case_id, sample_index) -> file`` for every importable file; skipped and unmatched files
    go to ``report``; several files for one key refuse the import, naming them all."""
    candidates: dict[tuple[str, int], list[Path]] = defaultdict(list)
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        relative = path.relative_to(source)
        reason = skip_reason(relative)
        if reason is not None:
            report.skipped.setdefault(reason, []).append(str(relative))
            continue
        match = match_case(path.stem, known)
        if match is None:
            report.unmatched.append(str(relative))
        else:
            candidates[match].append(path)
    collisions = {key: files for key, files in candidates.items() if len(files) > 1}
    if collisions:
        lines = [
            f"  {case_id} sample {k}: {', '.join(str(f.relative_to(source)) for f in files)}"
            for (case_id, k), files in sorted(collisions.items())
        ]
        raise ImportRefused(
            f"{sum(map(len, collisions.values()))} files in {source} map to {len(collisions)} image(s) "
            "(<case_id>.<ext> is sample 0, <case_id>_<k>.<ext> sample k); nothing was imported:\n"
            + "\n".join(lines)
            + "\nKeep one file per image (rename or remove the others) and import again."
        )
    return {key: files[0] for key, files in sorted(candidates.items())}


def import_folder(
    source: Path,
    *,
    out: Path,
    name: str,
    cases: Sequence[Case],
    resolution: int,
    bits: int,
    geometry: Geometry,
    overwrite: bool = False,
    progress: bool = True,
) -> ImportReport:
    """Copy every matching image of ``source`` (recursively) into ``out/<name>``.

    Everything is checked before the first file is written: the name (``real`` is refused),
    the folders (``source`` must not overlap the target), collisions, and the target folder's
    identity (``overwrite`` deletes a folder the suite made instead).
    """
    check_generator_name(name, what="--generator")
    source = Path(source)
    if not source.is_dir():
        raise FileNotFoundError(f"import folder not found: {source}")
    gdir = GeneratorDir(out, name)
    if inside(gdir.root, source) or inside(source, gdir.root):
        raise ImportRefused(f"import folder {source} and the target folder {gdir.root} overlap; import from another folder")
    by_id = {c.case_id: c for c in cases}
    report = ImportReport()
    planned = plan_import(source, set(by_id), report)
    identity = import_identity(name, source, resolution=resolution, bit_depth=bits, geometry=geometry)
    if overwrite:
        gdir.check_removable()
    else:
        check_import_dir(gdir, identity)
    if not planned:
        return report
    if overwrite:
        gdir.remove()
    if not gdir.identity.is_file():
        write_identity(gdir, identity)
    for (case_id, k), path in tqdm(planned.items(), desc=f"import {name}", unit="img", disable=not progress):
        try:
            pixels = to_run_image(load_grayscale(path), resolution, bits, geometry)
        except (ImageDecodeError, OutputError) as exc:
            report.unreadable.append(f"{path.relative_to(source)} ({exc})")
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
