"""Build a self-contained study folder from run directories.

::

    STUDY_DIR/study.json      non-secret settings (title, counts, criteria names, flags)
    STUDY_DIR/study.sqlite    the key, assignments, accounts (hashed tokens), responses, audit
    STUDY_DIR/images/<id>.png every image re-encoded alike, under an opaque random id

Every study image, real ones included, goes through one re-encoding chain (:func:`encode`):
decoded (:mod:`xreal_bench.imaging`), centre-squared and resampled to the common intermediate
size (the smallest native side over all study images with ``match_resolution``, else
``image_size``), quantised to 8 bits there, resampled to ``image_size``, quantised again and
written as a grayscale PNG with fixed encoder settings and no metadata. A 256-px generator and a
2048-px radiograph then carry the same detail and the same 8-bit rounding, so nothing in a file
tells its source. Byte-identical or near-identical images across sources are reported
(:mod:`xreal_bench.reader_study.similarity`).

The study's cases, calibration cases, held-out real-or-generated cases and planted duplicates
follow the public ``[study] seed``; every reader's order follows the reader's own seed, drawn
from the OS and kept in ``reader_design`` (:meth:`Design.reader`, :mod:`.design`).

The folder is built under a temporary name and renamed into place at the end: a failed build
leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import sqlite3
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from xreal_bench.cases import read_cases
from xreal_bench.config import StudyConfig
from xreal_bench.errors import UserFacingError
from xreal_bench.imaging import (
    ImageDecodeError,
    dequantize,
    load_grayscale,
    quantize,
    save_png,
    to_square,
)
from xreal_bench.names import check_name
from xreal_bench.reader_study import design
from xreal_bench.reader_study.criteria import rating_criteria, turing_criteria
from xreal_bench.reader_study.layout import IMAGES, RUNS_META, STUDY_DB, STUDY_JSON
from xreal_bench.reader_study.similarity import NearDuplicate, StudyImage, near_duplicates, study_image, warning_text
from xreal_bench.reader_study.storage import Storage, StorageError
from xreal_bench.rundir import GeneratorDir, generator_dirs
from xreal_bench.types import CaseFacts

REAL = "real"
ADMIN = "admin"
READER_SEED_BITS = 64


@dataclass(frozen=True)
class SourceImage:
    """One run image a study may use (the lowest sample index of its case) and the run it is from."""

    source: str
    case_id: str
    sample_index: int
    path: Path
    run: Path


@dataclass(frozen=True)
class ReaderLink:
    name: str
    token: str
    link: str


@dataclass(frozen=True)
class StudyCreated:
    study_dir: Path
    readers: list[ReaderLink]
    admin: ReaderLink
    items_per_reader: int
    n_cases: int
    n_sources: int
    turing_items: int = 0
    min_case_gap: int = 0
    near_duplicates: list[NearDuplicate] = field(default_factory=list)

    @property
    def serve_command(self) -> str:
        return f"xreal-bench study serve {self.study_dir}"


@dataclass(frozen=True)
class ReaderOrder:
    """One reader's item order and the record it is re-derived from (``reader_design.design``)."""

    items: list[str]
    record: dict[str, Any]


@dataclass
class Design:
    """The study's item lists (the database's meta ``design``); each reader's order comes from
    these and the reader's own seed (:meth:`reader`)."""

    seed: int  # the public [study] seed the item lists were drawn with
    n_sources: int
    rating: list[list[str]]  # rating[case index][source index] -> item id
    duplicates: list[tuple[str, str]]  # (original item, planted duplicate item)
    calibration: list[str]
    turing: list[str]  # the held-out real-or-generated items, one per case
    min_case_gap: int = 0  # as configured (0 = automatic, see design.case_gap)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @staticmethod
    def from_json(text: str) -> Design:
        data = json.loads(text)
        data["duplicates"] = [tuple(p) for p in data["duplicates"]]
        # studies made before the held-out block stored (item, case index) pairs
        data["turing"] = [p[0] if isinstance(p, list) else p for p in data["turing"]]
        return Design(**data)

    @property
    def gap(self) -> int:
        """The least distance between two images of one case in every reader's order."""
        return design.case_gap(self.min_case_gap, len(self.rating))

    @property
    def items_per_reader(self) -> int:
        return len(self.calibration) + len(self.rating) * self.n_sources + len(self.duplicates) + len(self.turing)

    def reader(self, seed: int) -> ReaderOrder:
        """A reader's order from the reader's seed: calibration, ratings (+ duplicates), then the
        real-or-generated block, each in its own random order (see :mod:`.design`)."""
        rng = np.random.default_rng(seed)
        n_cases = len(self.rating)
        table = design.source_table(n_cases, self.n_sources, rng)
        rounds = design.round_orders(n_cases, self.n_sources, self.gap, rng)
        case_of = {item: k for k, row in enumerate(self.rating) for item in row}
        case_of.update({duplicate: case_of[original] for original, duplicate in self.duplicates})
        ratings = [self.rating[k][table.sources[k][j]] for j, order in enumerate(rounds) for k in order]
        ratings = design.plant_duplicates(ratings, self.duplicates, rng, gap=self.gap, key=case_of.__getitem__)
        calibration = [int(i) for i in rng.permutation(len(self.calibration))]
        turing = [int(i) for i in rng.permutation(len(self.turing))]
        record = {
            "symbols": table.symbols,
            "start_rows": table.start_rows,
            "sources": table.sources,
            "rounds": rounds,
            "calibration": calibration,
            "turing": turing,
            "min_case_gap": self.gap,
            "achieved_gap": design.smallest_gap([case_of[item] for item in ratings]),
        }
        items = [*(self.calibration[i] for i in calibration), *ratings, *(self.turing[i] for i in turing)]
        return ReaderOrder(items, record)


def link_for(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/?token={token}"


def collect_sources(run_dirs: list[Path], generators: list[str]) -> dict[str, dict[str, SourceImage]]:
    """``source -> case_id -> image`` for ``real`` and the chosen generators, over all run dirs."""
    found: dict[str, tuple[Path, GeneratorDir]] = {}
    for run in dict.fromkeys(Path(r).resolve() for r in run_dirs):  # the same run named twice counts once
        if not run.is_dir():
            raise UserFacingError(f"run directory {run} not found")
        dirs = generator_dirs(run)
        if not dirs:
            raise UserFacingError(
                f"{run}: no generator folders with a manifest.jsonl (expected {run}/<generator>/manifest.jsonl); "
                "run `xreal-bench run` or `xreal-bench demo` first"
            )
        for gdir in dirs:
            if gdir.generator in found:
                if gdir.generator == REAL:
                    print(f"note: using real images from {found[REAL][0]}, ignoring {gdir.root}")
                    continue
                raise UserFacingError(
                    f"generator {gdir.generator!r} is in two run directories ({found[gdir.generator][0]} and {run}); "
                    "pass each generator's run once"
                )
            found[gdir.generator] = (run, gdir)
    if REAL not in found:
        raise UserFacingError(
            f"no 'real' folder in {', '.join(map(str, run_dirs))}; the study needs the real images of the cases "
            "(the run writes them to <out>/real when it evaluates)"
        )
    available = sorted(name for name in found if name != REAL)
    chosen = generators or available
    missing = [g for g in chosen if g not in found or g == REAL]
    if missing:
        raise UserFacingError(f"generator(s) {missing} not found; available: {', '.join(available) or 'none'}")
    if not chosen:
        raise UserFacingError(f"only real images in {', '.join(map(str, run_dirs))}; the study needs at least one generator")
    result: dict[str, dict[str, SourceImage]] = {}
    for name in [REAL, *chosen]:
        gdir = found[name][1]
        per_case: dict[str, SourceImage] = {}
        for entry in gdir.ok_entries():  # sorted by (case_id, sample_index): first is the lowest
            if entry.case_id in per_case or not entry.file:
                continue
            per_case[entry.case_id] = SourceImage(name, entry.case_id, entry.sample_index, gdir.root / entry.file, found[name][0])
        if not per_case:
            raise UserFacingError(f"{gdir.manifest}: no finished ('ok') images")
        result[name] = per_case
    return result


def case_facts(images: dict[str, dict[str, SourceImage]], show_box: bool) -> dict[str, CaseFacts]:
    """The case facts (labels, view, boxes) of the run the real images come from: its ``cases.jsonl``."""
    run = next(iter(images[REAL].values())).run
    facts = read_cases(run)
    if show_box and not any(f.has_boxes for f in facts.values()):
        print(f"note: show_box is on but {run}/cases.jsonl holds no pathology boxes (this config supplies none)")
    return facts


def eligible_cases(images: dict[str, dict[str, SourceImage]], facts: dict[str, CaseFacts]) -> list[str]:
    """Cases with an image from every source and facts in the run's ``cases.jsonl``."""
    common = set.intersection(*(set(per_case) for per_case in images.values())) & set(facts)
    return sorted(common)


def standard_size(paths: list[Path], image_size: int, match_resolution: bool) -> int:
    """The intermediate square size every image passes through (see the module docstring)."""
    if not match_resolution:
        return image_size
    smallest = image_size
    for path in paths:
        try:
            with Image.open(path) as img:
                smallest = min(smallest, *img.size)
        except (OSError, ValueError) as exc:
            raise UserFacingError(f"{path}: cannot read image ({exc})") from None
    return smallest


def reencode(pixels: np.ndarray, intermediate: int, size: int) -> np.ndarray:
    """The study's one chain after decoding: square and resample to ``intermediate``, quantise to
    8 bits, resample to ``size``, quantise to 8 bits (every step runs for every image)."""
    common = quantize(to_square(pixels, intermediate), 8)
    return quantize(to_square(dequantize(common), size), 8)


def encode(path: Path, intermediate: int, size: int, out: Path) -> tuple[str, np.ndarray]:
    """Re-encode one run image into the study format; return the file's sha256 and its pixels."""
    try:
        pixels = reencode(load_grayscale(path), intermediate, size)
    except ImageDecodeError as exc:
        raise UserFacingError(str(exc)) from None
    save_png(out, pixels)
    return hashlib.sha256(out.read_bytes()).hexdigest(), pixels


def new_id(taken: set[str]) -> str:
    while (value := secrets.token_hex(8)) in taken:
        pass
    taken.add(value)
    return value


@dataclass(frozen=True)
class Selection:
    """What goes into a study: sources (real first), rating cases, calibration and held-out
    real-or-generated ``(source, case)`` images, and every chosen case's stratum."""

    sources: list[str]
    cases: list[str]
    calibration: list[tuple[str, str]]
    turing: list[tuple[str, str]]
    strata: dict[str, str]

    def images(self) -> list[tuple[str, str]]:
        return [(s, c) for c in self.cases for s in self.sources] + self.calibration + self.turing


def select(
    images: dict[str, dict[str, SourceImage]], facts: dict[str, CaseFacts], settings: StudyConfig, rng: np.random.Generator
) -> Selection:
    """Seeded, pathology-stratified rating cases, then calibration cases and the held-out
    real-or-generated cases from the rest (no case serves two roles)."""
    sources = list(images)  # real first, then generators in the given order
    eligible = eligible_cases(images, facts)
    n_turing = settings.turing_cases if settings.turing_test else 0
    if len(eligible) < settings.n_cases + settings.calibration_items + n_turing:
        counts = ", ".join(f"{s}: {len(images[s])}" for s in sources)
        block = f" + {n_turing} real-or-generated cases (held out: none of them is rated)" if n_turing else ""
        raise UserFacingError(
            f"only {len(eligible)} cases have an image from every source ({counts}); the study needs "
            f"{settings.n_cases} cases + {settings.calibration_items} calibration cases{block}. Lower --n-cases/--calibration"
            f"{'/--turing-cases' if n_turing else ''} or choose fewer generators"
        )
    strata = {c: design.primary_pathology(list(facts[c].case.positives)) for c in eligible}
    cases = design.select_cases(strata, settings.n_cases, rng)
    rest = {c: s for c, s in strata.items() if c not in set(cases)}
    calibration_cases = design.select_cases(rest, settings.calibration_items, rng)
    calibration = [(sources[i % len(sources)], c) for i, c in zip(rng.permutation(len(calibration_cases)), calibration_cases)]
    rest = {c: s for c, s in rest.items() if c not in set(calibration_cases)}
    turing_cases = design.select_cases(rest, n_turing, rng)
    turing_sources = design.turing_sources(n_turing, len(sources) - 1, settings.turing_real_fraction, rng) if n_turing else []
    turing = [(sources[j], c) for j, c in zip(turing_sources, turing_cases, strict=True)]
    chosen_cases = [*cases, *calibration_cases, *turing_cases]
    return Selection(sources, cases, calibration, turing, {c: strata[c] for c in chosen_cases})


def run_record(run_dir: Path) -> dict:
    """What identifies a run the study's images came from (meta ``runs``): reports match a study to its runs by it."""
    from xreal_bench.results import read_provenance

    provenance = read_provenance(run_dir)
    return {
        "path": str(run_dir.resolve()),
        "run_id": provenance.get("run_id"),
        "config_hash": provenance.get("config_hash"),
        "dataset_fingerprint": provenance.get("dataset", {}).get("fingerprint"),
    }


def create_study(
    run_dirs: list[Path], out: Path, settings: StudyConfig, *, base_url: str = "http://localhost:8501"
) -> StudyCreated:
    """Build a study folder at ``out`` from ``run_dirs`` (see the module docstring)."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserFacingError(f"{out} already exists and is not empty; choose another --out or remove it")
    if ADMIN in settings.readers:
        raise UserFacingError(f"{ADMIN!r} is the study organiser's account; choose another reader name")
    images = collect_sources([Path(r) for r in run_dirs], settings.generators)
    facts = case_facts(images, settings.show_box)
    rng = np.random.default_rng([settings.seed, 0])
    chosen = select(images, facts, settings, rng)
    if settings.min_case_gap > len(chosen.cases):
        print(
            f"note: min_case_gap {settings.min_case_gap} is more than {len(chosen.cases)} cases allow "
            f"(a case's images are one round of {len(chosen.cases)} items apart at most); using {len(chosen.cases)}"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.creating-", dir=out.parent))
    try:
        storage = Storage.create(work / STUDY_DB)
        with storage.write() as conn:
            write_cases(conn, images, facts, chosen)
            native, similar = write_images(conn, work, images, chosen, settings)
            write_criteria(conn, settings)
            plan = write_items(conn, chosen, settings, rng)
            conn.execute("INSERT INTO meta VALUES (?, ?)", ("near_duplicates", json.dumps([p.to_dict() for p in similar])))
            conn.execute("INSERT INTO meta VALUES (?, ?)", (RUNS_META, json.dumps([run_record(Path(r)) for r in run_dirs])))
            readers = [add_reader_in(conn, storage, plan, name, base_url) for name in settings.readers]
            _, admin_token = storage.add_account(conn, ADMIN, "admin")
        storage.close()
        write_study_json(work, settings, plan, chosen, native=native, near_duplicates=len(similar))
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.replace(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    if similar:
        print(warning_text(similar))
    admin = ReaderLink(ADMIN, admin_token, link_for(base_url, admin_token))
    return StudyCreated(
        out, readers, admin, plan.items_per_reader, len(chosen.cases), len(chosen.sources),
        turing_items=len(plan.turing), min_case_gap=plan.gap, near_duplicates=similar,
    )  # fmt: skip


def write_images(
    conn: sqlite3.Connection, work: Path, images, chosen: Selection, settings: StudyConfig
) -> tuple[int, list[NearDuplicate]]:
    """Re-encode every study image under a random id; return the intermediate size used and the
    near-identical pairs across sources."""
    needed = chosen.images()
    native = standard_size([images[s][c].path for s, c in needed], settings.image_size, settings.match_resolution)
    (work / IMAGES).mkdir()
    taken: set[str] = set()
    encoded: list[StudyImage] = []
    for s, c in tqdm(needed, desc="study images", unit="img"):
        src = images[s][c]
        image_id = new_id(taken)
        digest, pixels = encode(src.path, native, settings.image_size, work / IMAGES / f"{image_id}.png")
        encoded.append(study_image(s, c, digest, pixels))
        conn.execute(
            "INSERT INTO images VALUES (?, ?, ?, ?, ?, ?)", (image_id, s, c, src.sample_index, str(src.path.resolve()), digest)
        )
    return native, near_duplicates(encoded)


def write_cases(conn: sqlite3.Connection, images, facts: dict[str, CaseFacts], chosen: Selection) -> None:
    """Each case's label, boxes and view from the run's case facts (shared by all sources). Boxes
    that differ per sample (random fallback) are those of the lowest sample index a generator shows."""
    role = {c: "calibration" for _, c in chosen.calibration} | {c: "turing" for _, c in chosen.turing}
    for c, stratum in chosen.strata.items():
        case = facts[c]
        boxes = []
        if case.has_boxes:
            sample = min(images[s][c].sample_index for s in chosen.sources if s != REAL)
            boxes = [asdict(b) for b in case.boxes_for(sample).boxes]
        conn.execute(
            "INSERT INTO cases VALUES (?, ?, ?, ?, ?, ?)",
            (c, role.get(c, "study"), stratum, json.dumps(list(case.case.positives)), json.dumps(boxes), case.case.view),
        )


def write_criteria(conn: sqlite3.Connection, settings: StudyConfig) -> None:
    blocks = {
        "rating": rating_criteria(settings.criteria, settings.criterion_questions, settings.criterion_anchors),
        "turing": turing_criteria() if settings.turing_test else [],
    }
    for block, criteria in blocks.items():
        for position, criterion in enumerate(criteria):
            conn.execute(
                "INSERT INTO criteria VALUES (?, ?, ?, ?)", (block, position, criterion.name, json.dumps(criterion.to_dict()))
            )


def write_items(conn: sqlite3.Connection, chosen: Selection, settings: StudyConfig, rng: np.random.Generator) -> Design:
    """Rating items (one per case x source), planted duplicates, calibration and held-out items."""
    image_of = {(s, c): i for i, s, c in conn.execute("SELECT image_id, source, case_id FROM images")}
    taken: set[str] = set()

    def add(source: str, case: str, block: str, duplicate_of: str | None = None) -> str:
        item = new_id(taken)
        conn.execute("INSERT INTO items VALUES (?, ?, ?, ?)", (item, image_of[(source, case)], block, duplicate_of))
        return item

    sources, cases = chosen.sources, chosen.cases
    rating = [[add(s, c, "rating") for s in sources] for c in cases]
    flat = [(k, j) for k in range(len(cases)) for j in range(len(sources))]
    chosen_dups = design.choose_duplicates(
        [j for _, j in flat], design.duplicate_count(len(flat), settings.duplicate_fraction), rng
    )
    duplicates = [(rating[k][j], add(sources[j], cases[k], "rating", rating[k][j])) for k, j in (flat[i] for i in chosen_dups)]
    calibration = [add(s, c, "calibration") for s, c in chosen.calibration]
    turing = [add(s, c, "turing") for s, c in chosen.turing]
    plan = Design(settings.seed, len(sources), rating, duplicates, calibration, turing, settings.min_case_gap)
    conn.executemany(
        "INSERT INTO meta VALUES (?, ?)",
        [("design", plan.to_json()), ("sources", json.dumps(sources)), ("created_at", str(time.time()))],
    )
    return plan


def write_study_json(
    work: Path, settings: StudyConfig, plan: Design, chosen: Selection, *, native: int, near_duplicates: int
) -> None:
    """Non-secret settings the app and the analysis read (no source names, no case ids)."""
    real_share = sum(s == REAL for s, _ in chosen.turing) / len(chosen.turing) if chosen.turing else None
    info = {
        "format": 1,
        "title": settings.title,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "n_cases": len(plan.rating),
        "n_sources": plan.n_sources,
        "calibration_items": len(plan.calibration),
        "calibration_feedback": settings.calibration_feedback,
        "duplicates": len(plan.duplicates),
        "turing_test": settings.turing_test,
        "turing_items": len(plan.turing),
        "turing_real_fraction": real_share,
        "turing_show_label": settings.turing_show_label,
        "turing_show_prevalence": settings.turing_show_prevalence,
        "items_per_reader": plan.items_per_reader,
        "min_case_gap": plan.gap,
        "criteria": list(settings.criteria),
        "allow_back": settings.allow_back,
        "show_box": settings.show_box,
        "image_size": settings.image_size,
        "intermediate_size": native,
        "near_duplicates": near_duplicates,
        "bootstrap": settings.bootstrap,
        "seed": settings.seed,
    }
    (work / STUDY_JSON).write_text(json.dumps(info, indent=2) + "\n")


def add_reader_in(conn: sqlite3.Connection, storage: Storage, plan: Design, name: str, base_url: str) -> ReaderLink:
    """Create a reader account with its own random, balanced item order (inside ``conn``'s
    transaction); the reader's seed comes from the OS and is kept in ``reader_design``."""
    check_name(name, what="reader name")
    try:
        reader_id, token = storage.add_account(conn, name, "reader")
    except StorageError as exc:
        raise UserFacingError(str(exc)) from None
    seed = secrets.randbits(READER_SEED_BITS)
    order = plan.reader(seed)
    conn.executemany(
        "INSERT INTO assignments VALUES (?, ?, ?)",
        [(reader_id, position, item) for position, item in enumerate(order.items, start=1)],
    )
    conn.execute("INSERT INTO reader_design VALUES (?, ?, ?)", (reader_id, str(seed), json.dumps(order.record)))
    return ReaderLink(name, token, link_for(base_url, token))


def add_reader(study_dir: Path, name: str, base_url: str = "http://localhost:8501") -> ReaderLink:
    """Add a reader to an existing study; the returned token is shown once and stored hashed."""
    db = Path(study_dir) / STUDY_DB
    if not db.is_file():
        raise UserFacingError(f"{db} not found; is {study_dir} a study folder made by `xreal-bench study create`?")
    with Storage(db) as storage, storage.write() as conn:
        plan = Design.from_json(storage.required_meta("design"))
        return add_reader_in(conn, storage, plan, name, base_url)
