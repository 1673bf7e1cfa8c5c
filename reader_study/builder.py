"""Build a self-contained study folder from run directories.

::

    STUDY_DIR/study.json      non-secret settings (title, counts, criteria names, flags)
    STUDY_DIR/study.sqlite    the key, assignments, accounts (hashed tokens), responses, audit
    STUDY_DIR/images/<id>.png every image re-encoded alike, under an opaque random id

Every study image goes through the one imaging path (:mod:`xreal_bench.imaging`): decoded,
centre-squared, optionally brought down to the smallest native resolution of all study images
(``match_resolution``: a 256-px generator and a 2048-px radiograph then carry the same detail),
resized to ``image_size`` and written as an 8-bit grayscale PNG with the same encoder settings
and no metadata, so nothing in a file tells its source.

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
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from xreal_bench.cases import read_cases
from xreal_bench.config import StudyConfig
from xreal_bench.errors import UserFacingError
from xreal_bench.imaging import (
    ImageDecodeError,
    load_grayscale,
    quantize,
    save_png,
    to_square,
)
from xreal_bench.names import check_name
from xreal_bench.reader_study import design
from xreal_bench.reader_study.criteria import rating_criteria, turing_criteria
from xreal_bench.reader_study.layout import IMAGES, STUDY_DB, STUDY_JSON
from xreal_bench.reader_study.storage import Storage, StorageError
from xreal_bench.rundir import GeneratorDir, generator_dirs
from xreal_bench.types import CaseFacts

REAL = "real"
ADMIN = "admin"


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

    @property
    def serve_command(self) -> str:
        return f"xreal-bench study serve {self.study_dir}"


@dataclass
class Design:
    """The item lists a reader's assignment is built from (stored in the database's meta)."""

    seed: int
    n_sources: int
    rating: list[list[str]]  # rating[case index][source index] -> item id
    duplicates: list[tuple[str, str]]  # (original item, planted duplicate item)
    calibration: list[str]
    turing: list[tuple[str, int]]  # (item id, case index)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @staticmethod
    def from_json(text: str) -> Design:
        data = json.loads(text)
        data["duplicates"] = [tuple(p) for p in data["duplicates"]]
        data["turing"] = [tuple(p) for p in data["turing"]]
        return Design(**data)

    def sequence(self, reader_index: int) -> list[str]:
        """Reader ``reader_index``'s item order: calibration, ratings (+ duplicates), Turing test."""
        rng = np.random.default_rng([self.seed, 1, reader_index])
        n_cases = len(self.rating)
        ratings = [self.rating[k][s] for k, s in design.rating_order(n_cases, self.n_sources, reader_index, rng)]
        ratings = design.plant_duplicates(ratings, self.duplicates, rng, min_gap=max(1, len(ratings) // 3))
        turing = [item for item, _ in design.shuffle_apart(self.turing, key=lambda pair: pair[1], rng=rng)]
        return [*self.calibration, *ratings, *turing]


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


def encode(path: Path, native: int, size: int, out: Path) -> str:
    """Re-encode one run image into the study format; return the file's sha256."""
    try:
        pixels = load_grayscale(path)
    except ImageDecodeError as exc:
        raise UserFacingError(str(exc)) from None
    if native < size:
        pixels = to_square(pixels, native)
    save_png(out, quantize(to_square(pixels, size), 8))
    return hashlib.sha256(out.read_bytes()).hexdigest()


def new_id(taken: set[str]) -> str:
    while (value := secrets.token_hex(8)) in taken:
        pass
    taken.add(value)
    return value


@dataclass(frozen=True)
class Selection:
    """What goes into a study: sources (real first), study cases, calibration (source, case) pairs."""

    sources: list[str]
    cases: list[str]
    calibration: list[tuple[str, str]]
    strata: dict[str, str]

    def images(self) -> list[tuple[str, str]]:
        return [(s, c) for c in self.cases for s in self.sources] + self.calibration


def select(
    images: dict[str, dict[str, SourceImage]], facts: dict[str, CaseFacts], settings: StudyConfig, rng: np.random.Generator
) -> Selection:
    """Seeded, pathology-stratified study cases, then calibration cases from the rest."""
    sources = list(images)  # real first, then generators in the given order
    eligible = eligible_cases(images, facts)
    if len(eligible) < settings.n_cases + settings.calibration_items:
        counts = ", ".join(f"{s}: {len(images[s])}" for s in sources)
        raise UserFacingError(
            f"only {len(eligible)} cases have an image from every source ({counts}); the study needs "
            f"{settings.n_cases} cases + {settings.calibration_items} calibration cases. Lower --n-cases/--calibration "
            "or choose fewer generators"
        )
    strata = {c: design.primary_pathology(list(facts[c].case.positives)) for c in eligible}
    cases = design.select_cases(strata, settings.n_cases, rng)
    rest = {c: s for c, s in strata.items() if c not in set(cases)}
    calibration_cases = design.select_cases(rest, settings.calibration_items, rng)
    calibration = [(sources[i % len(sources)], c) for i, c in zip(rng.permutation(len(calibration_cases)), calibration_cases)]
    return Selection(sources, cases, calibration, {c: strata[c] for c in [*cases, *calibration_cases]})


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
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.creating-", dir=out.parent))
    try:
        storage = Storage.create(work / STUDY_DB)
        with storage.write() as conn:
            write_cases(conn, images, facts, chosen)
            native = write_images(conn, work, images, chosen, settings)
            write_criteria(conn, settings)
            plan = write_items(conn, chosen, settings, rng)
            readers = [add_reader_in(conn, storage, plan, name, base_url) for name in settings.readers]
            _, admin_token = storage.add_account(conn, ADMIN, "admin")
        storage.close()
        items_per_reader = len(plan.sequence(0))
        write_study_json(work, settings, plan, items_per_reader=items_per_reader, native=native)
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.replace(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    admin = ReaderLink(ADMIN, admin_token, link_for(base_url, admin_token))
    return StudyCreated(out, readers, admin, items_per_reader, len(chosen.cases), len(chosen.sources))


def write_images(conn: sqlite3.Connection, work: Path, images, chosen: Selection, settings: StudyConfig) -> int:
    """Re-encode every study image under a random id; return the intermediate size used."""
    needed = chosen.images()
    native = standard_size([images[s][c].path for s, c in needed], settings.image_size, settings.match_resolution)
    (work / IMAGES).mkdir()
    taken: set[str] = set()
    for s, c in tqdm(needed, desc="study images", unit="img"):
        src = images[s][c]
        image_id = new_id(taken)
        digest = encode(src.path, native, settings.image_size, work / IMAGES / f"{image_id}.png")
        conn.execute(
            "INSERT INTO images VALUES (?, ?, ?, ?, ?, ?)", (image_id, s, c, src.sample_index, str(src.path.resolve()), digest)
        )
    return native


def write_cases(conn: sqlite3.Connection, images, facts: dict[str, CaseFacts], chosen: Selection) -> None:
    """Each case's label, boxes and view from the run's case facts (shared by all sources). Boxes
    that differ per sample (random fallback) are those of the lowest sample index a generator shows."""
    calibration = {c for _, c in chosen.calibration}
    for c, stratum in chosen.strata.items():
        case = facts[c]
        boxes = []
        if case.has_boxes:
            sample = min(images[s][c].sample_index for s in chosen.sources if s != REAL)
            boxes = [asdict(b) for b in case.boxes_for(sample).boxes]
        conn.execute(
            "INSERT INTO cases VALUES (?, ?, ?, ?, ?, ?)",
            (c, "calibration" if c in calibration else "study", stratum, json.dumps(list(case.case.positives)),
             json.dumps(boxes), case.case.view),
        )  # fmt: skip


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
    """Rating items (one per case x source), planted duplicates, calibration and Turing items."""
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
    turing = []
    if settings.turing_test:
        turing = [(add(sources[j], cases[k], "turing"), k) for k, j in design.turing_pairs(len(cases), len(sources) - 1, rng)]
    plan = Design(settings.seed, len(sources), rating, duplicates, calibration, turing)
    conn.executemany(
        "INSERT INTO meta VALUES (?, ?)",
        [("design", plan.to_json()), ("sources", json.dumps(sources)), ("created_at", str(time.time()))],
    )
    return plan


def write_study_json(work: Path, settings: StudyConfig, plan: Design, *, items_per_reader: int, native: int) -> None:
    """Non-secret settings the app and the analysis read (no source names, no case ids)."""
    info = {
        "format": 1,
        "title": settings.title,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "n_cases": len(plan.rating),
        "n_sources": plan.n_sources,
        "calibration_items": len(plan.calibration),
        "duplicates": len(plan.duplicates),
        "turing_test": settings.turing_test,
        "items_per_reader": items_per_reader,
        "criteria": list(settings.criteria),
        "allow_back": settings.allow_back,
        "show_box": settings.show_box,
        "image_size": settings.image_size,
        "intermediate_size": native,
        "bootstrap": settings.bootstrap,
        "seed": settings.seed,
    }
    (work / STUDY_JSON).write_text(json.dumps(info, indent=2) + "\n")


def add_reader_in(conn: sqlite3.Connection, storage: Storage, plan: Design, name: str, base_url: str) -> ReaderLink:
    """Create a reader account with its own balanced item order (inside ``conn``'s transaction)."""
    check_name(name, what="reader name")
    index = conn.execute("SELECT COUNT(*) FROM readers WHERE role = 'reader'").fetchone()[0]
    try:
        reader_id, token = storage.add_account(conn, name, "reader")
    except StorageError as exc:
        raise UserFacingError(str(exc)) from None
    conn.executemany(
        "INSERT INTO assignments VALUES (?, ?, ?)",
        [(reader_id, position, item) for position, item in enumerate(plan.sequence(index), start=1)],
    )
    return ReaderLink(name, token, link_for(base_url, token))


def add_reader(study_dir: Path, name: str, base_url: str = "http://localhost:8501") -> ReaderLink:
    """Add a reader to an existing study; the returned token is shown once and stored hashed."""
    db = Path(study_dir) / STUDY_DB
    if not db.is_file():
        raise UserFacingError(f"{db} not found; is {study_dir} a study folder made by `xreal-bench study create`?")
    with Storage(db) as storage, storage.write() as conn:
        plan = Design.from_json(storage.required_meta("design"))
        return add_reader_in(conn, storage, plan, name, base_url)
