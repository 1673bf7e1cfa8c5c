"""The run directory contract.

::

    <out>/cases.jsonl                                        the run's case facts (:mod:`xreal_bench.cases`)
    <out>/<generator>/images/<case_id>_<sample_index>.png   8-bit (or 16-bit) grayscale PNG
    <out>/<generator>/manifest.jsonl                         one JSON line per finished sample
    <out>/<generator>/manifest.rank<k>.jsonl                 per-rank parts while a torchrun job runs
    <out>/<generator>/generate.log                           the harness log
    <out>/<generator>/identity.json                          what made the folder (:mod:`xreal_bench.identity`)

A manifest line (:class:`ManifestEntry`) records ``generator, case_id, sample_index, seed,
status`` ("ok" or "failed"), ``file`` (relative to the generator folder), ``error``,
``seconds`` (generation time per image), ``rank``, ``time`` (UTC, ISO 8601) and ``condition``
(labels' positives, prompt, report excerpt, boxes, mask source, view), a summary kept for
traceability: later stages read case facts from ``cases.jsonl``, never from a manifest. Readers
take the last line per ``(case_id, sample_index)``; a torn last line (killed writer) is ignored.

A generator folder's name follows :data:`xreal_bench.names.NAME_RULE`, so it is always one
direct child of the run directory; :meth:`GeneratorDir.remove` (``--overwrite``) deletes only
such a child that the suite itself made.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from xreal_bench.atomic import file_operation, write_text_atomic
from xreal_bench.errors import UserFacingError
from xreal_bench.names import check_name, inside, is_valid_name

#: The file recording what made a generator folder (:mod:`xreal_bench.identity`).
IDENTITY_FILE = "identity.json"


def seed_for(run_seed: int, generator: str, case_id: str, sample_index: int) -> int:
    """Per-image seed: a pure function of the run seed and the image identity (63-bit)."""
    key = f"{run_seed}|{generator}|{case_id}|{sample_index}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "little") & ((1 << 63) - 1)


def image_name(case_id: str, sample_index: int) -> str:
    return f"{case_id}_{sample_index}.png"


@dataclass(frozen=True, kw_only=True)
class ManifestEntry:
    generator: str
    case_id: str
    sample_index: int
    seed: int
    status: str  # "ok" | "failed"
    file: str | None = None
    error: str | None = None
    seconds: float = 0.0
    rank: int = 0
    time: str = ""
    condition: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, int]:
        return (self.case_id, self.sample_index)


class GeneratorDir:
    """One generator's folder inside a run directory (``generator`` must be a valid name)."""

    def __init__(self, out: str | Path, generator: str):
        self.generator = check_name(generator, what="generator folder name")
        self.out = Path(out)
        self.root = self.out / generator
        self.images = self.root / "images"
        self.manifest = self.root / "manifest.jsonl"
        self.log = self.root / "generate.log"
        self.identity = self.root / IDENTITY_FILE

    def image_path(self, case_id: str, sample_index: int) -> Path:
        return self.images / image_name(case_id, sample_index)

    def manifest_files(self) -> list[Path]:
        parts = sorted(self.root.glob("manifest.rank*.jsonl"))
        return ([self.manifest] if self.manifest.exists() else []) + parts

    def entries(self) -> dict[tuple[str, int], ManifestEntry]:
        """The latest manifest entry per (case_id, sample_index), over the manifest and rank parts."""
        latest: dict[tuple[str, int], ManifestEntry] = {}
        for path in self.manifest_files():
            for entry in read_manifest(path):
                latest[entry.key] = entry
        return latest

    def ok_entries(self) -> list[ManifestEntry]:
        """Finished images, sorted by (case_id, sample_index)."""
        return sorted((e for e in self.entries().values() if e.status == "ok"), key=lambda e: e.key)

    def has_content(self) -> bool:
        """Whether the folder holds a manifest or images (anything a run or import made)."""
        return bool(self.manifest_files()) or (self.images.is_dir() and any(self.images.iterdir()))

    def made_by_suite(self) -> bool:
        """Whether the suite made this folder: it has our ``identity.json``, or a manifest whose
        first line is one of our entries for this generator (a folder of an older version)."""
        if self.identity.is_file() and not self.identity.is_symlink():
            return True
        if not self.manifest.is_file() or self.manifest.is_symlink():
            return False
        try:
            first = next(read_manifest(self.manifest), None)
        except (OSError, UnicodeDecodeError):
            return False
        return first is not None and first.generator == self.generator

    def remove(self) -> bool:
        """Delete the folder for ``--overwrite``; False if there is none.

        Refused (:class:`~xreal_bench.errors.UserFacingError`) unless the folder is a real
        directory (not a symbolic link), resolves to a direct child of the resolved run directory,
        and was made by the suite (:meth:`made_by_suite`). Links inside are removed, never followed.
        """
        self.check_removable()
        if not self.root.exists():
            return False
        shutil.rmtree(self.root)
        return True

    def check_removable(self) -> None:
        """Raise the refusal :meth:`remove` would raise, deleting nothing."""
        if not self.root.exists() and not self.root.is_symlink():
            return
        how = "move or delete it yourself, or choose another generator name or run.out"
        if self.root.is_symlink():
            raise UserFacingError(
                f"--overwrite: {self.root} is a symbolic link (to {os.readlink(self.root)}); not deleted: {how}"
            )
        run = self.out.resolve()
        target = self.root.resolve()
        if not (inside(run, target) and target.parent == run and target != run):
            raise UserFacingError(
                f"--overwrite: {self.root} resolves to {target}, not a folder directly inside the run {run}; not deleted"
            )
        if not self.root.is_dir():
            raise UserFacingError(f"--overwrite: {self.root} is not a folder; not deleted: {how}")
        if not self.made_by_suite():
            raise UserFacingError(
                f"--overwrite: {self.root} was not made by xreal-bench (no {IDENTITY_FILE} and no manifest.jsonl of "
                f"generator {self.generator!r}); not deleted: {how}"
            )

    def consolidate(self) -> int:
        """Merge rank parts into ``manifest.jsonl`` (deduplicated, sorted) atomically; return lines."""
        entries = sorted(self.entries().values(), key=lambda e: e.key)
        write_text_atomic(self.manifest, "".join(manifest_line(e) for e in entries))
        for part in self.root.glob("manifest.rank*.jsonl"):
            part.unlink(missing_ok=True)
        return len(entries)


def read_manifest(path: Path) -> Iterator[ManifestEntry]:
    """Parse a manifest file, skipping a torn (incomplete) line left by a killed writer."""
    with open(path) as f:
        for line in f:
            if not line.endswith("\n"):
                break
            try:
                yield ManifestEntry(**json.loads(line))
            except (ValueError, TypeError):
                continue


def manifest_line(entry: ManifestEntry) -> str:
    return json.dumps(asdict(entry), sort_keys=True) + "\n"


def append_line(path: Path, entry: ManifestEntry) -> None:
    """Append one manifest line with a single ``write`` on an O_APPEND descriptor.

    No fsync: a line lost in a power failure only means its image is generated again (resume
    trusts a line only together with a decodable image, which was fsynced before its rename).
    """
    data = manifest_line(entry).encode()
    with file_operation("create folder", path.parent, stand_ins=(path.parent,)):
        path.parent.mkdir(parents=True, exist_ok=True)
    with file_operation("append to", path, stand_ins=(path,)):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)


def generator_dirs(out: str | Path) -> list[GeneratorDir]:
    """Every generator folder in a run directory (a validly named folder with a manifest), sorted by name."""
    out = Path(out)
    if not out.is_dir():
        return []
    return [
        GeneratorDir(out, p.name)
        for p in sorted(out.iterdir())
        if is_valid_name(p.name) and p.is_dir() and any(p.glob("manifest*.jsonl"))
    ]


def condition_summary(condition) -> dict[str, Any]:
    """The JSON summary of a :class:`~xreal_bench.types.Condition` stored in manifest lines.

    Keys: ``positives`` (list of pathology names), ``prompt``, ``report`` (first 300
    characters), ``boxes`` (list of ``{label, x0, y0, x1, y1}`` in image fractions),
    ``mask_source``, ``view``, ``notes``.
    """
    return {
        "positives": list(condition.positives),
        "prompt": condition.prompt,
        "report": condition.report[:300],
        "boxes": [asdict(b) for b in condition.boxes],
        "mask_source": condition.mask_source,
        "view": condition.view,
        "notes": list(condition.notes),
    }
