"""The generation harness: batched, resumable, sharded runs of one generator.

For each ``(case, sample_index)`` the harness builds a :class:`Condition` whose seed is
:func:`xreal_bench.rundir.seed_for` (run seed, generator, case, sample), calls the generator
on batches, checks its :class:`~xreal_bench.generators.GeneratorOutput` (type, one image per
condition), normalises each image through :func:`to_run_image`, writes the PNG atomically
and appends one manifest line with the image's notes. Images are therefore identical whatever
the batch size, ordering, resume point or number of ranks.

Resume rule: an item is done when its latest manifest line says ``ok`` and its PNG decodes;
everything else (no line, failed, missing or corrupt file) is generated again — provided the
folder's ``identity.json`` matches the config (:mod:`xreal_bench.identity`); otherwise the run
is refused before any image.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from xreal_bench import distributed
from xreal_bench.data.training import training_loader
from xreal_bench.distributed import DistInfo
from xreal_bench.errors import UserFacingError
from xreal_bench.generators.base import Generator, GeneratorContext, GeneratorOutput
from xreal_bench.generators.registry import generator_class
from xreal_bench.identity import check_generation_dir, write_identity
from xreal_bench.imaging import PLAIN, Geometry, ImageDecodeError, load_grayscale, save_png, standardize
from xreal_bench.names import RESERVED_GENERATOR_NAMES, InvalidNameError, check_name
from xreal_bench.rundir import GeneratorDir, ManifestEntry, append_line, condition_summary, seed_for
from xreal_bench.types import INPUT_KINDS, Case

if TYPE_CHECKING:
    from xreal_bench.conditioning import PreparedCases
    from xreal_bench.config import BenchConfig, GeneratorConfig
    from xreal_bench.weights import WeightsManager

#: Tolerance on the [0, 1] output range before an output counts as out of range.
RANGE_TOLERANCE = 1e-3


class OutputError(ValueError):
    """A generator output that must not be written (wrong type, dtype, shape or range, NaN)."""


def to_run_image(output: object, resolution: int, bits: int = 8, geometry: Geometry = PLAIN) -> np.ndarray:
    """The one output normalisation: any generator output → the run's integer image.

    Accepts a numpy array or torch tensor of floating point values in [0, 1], ``H x W`` or
    ``1 x H x W``, at least 8 px a side. Everything else is an :class:`OutputError` naming what
    it is: another type (str, None, list, dict, ...), an integer, bool or complex dtype (whether
    integers mean 0..1 or 0..255 is ambiguous, so they are refused rather than guessed), another
    shape (RGB, 1-D, batched), NaN/inf, values outside [0, 1] beyond a 1e-3 tolerance (which is
    clipped). Then applies the intensity rule, squares, resizes (antialiased bicubic) and rounds
    exactly like real images (:func:`xreal_bench.imaging.standardize` with the run's ``geometry``).
    """
    arr = output_array(output)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2 or min(arr.shape) < 8:
        raise OutputError(f"wrong output shape {tuple(arr.shape)}; expected H x W or 1 x H x W, at least 8 px a side")
    if not np.isfinite(arr).all():
        raise OutputError(f"output contains {int((~np.isfinite(arr)).sum())} NaN/inf values")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < -RANGE_TOLERANCE or hi > 1 + RANGE_TOLERANCE:
        raise OutputError(f"output values outside [0, 1] (min {lo:.4g}, max {hi:.4g})")
    return standardize(arr, resolution, bits, geometry)


def output_array(output: object) -> np.ndarray:
    """A floating point numpy array or torch tensor as float32 numpy; :class:`OutputError` for anything else."""
    import torch

    expected = "expected floating point values in [0, 1] (integer and bool images are refused: their scale is ambiguous)"
    if isinstance(output, torch.Tensor):
        if not output.is_floating_point():
            raise OutputError(f"output tensor has dtype {str(output.dtype).removeprefix('torch.')}; {expected}")
        try:
            return output.detach().float().cpu().numpy()
        except (RuntimeError, NotImplementedError) as exc:
            raise OutputError(f"output tensor cannot be read ({exc})") from None
    if not isinstance(output, np.ndarray):
        raise OutputError(f"output is {type(output).__name__}; expected a numpy array or torch tensor (H x W or 1 x H x W)")
    if output.dtype.kind != "f":
        raise OutputError(f"output has dtype {output.dtype}; {expected}")
    with np.errstate(over="ignore"):  # a float64 beyond float32's range becomes inf, refused as such
        return output.astype(np.float32, copy=False)


def image_is_valid(path) -> bool:
    try:
        load_grayscale(path)
        return True
    except ImageDecodeError:
        return False


def plan_items(cases: Sequence[Case], samples_per_condition: int) -> list[tuple[Case, int]]:
    """Every ``(case, sample_index)`` in a fixed order (case_id, then sample index)."""
    return [(c, k) for c in sorted(cases, key=lambda c: c.case_id) for k in range(samples_per_condition)]


@dataclass
class GenerationSummary:
    generator: str
    planned: int = 0
    skipped: int = 0
    generated: int = 0
    failed: int = 0
    errors: Counter = field(default_factory=Counter)
    seconds: float = 0.0

    def merge(self, other: GenerationSummary) -> GenerationSummary:
        return GenerationSummary(
            self.generator,
            planned=self.planned + other.planned,
            skipped=self.skipped + other.skipped,
            generated=self.generated + other.generated,
            failed=self.failed + other.failed,
            errors=self.errors + other.errors,
            seconds=max(self.seconds, other.seconds),
        )

    def describe(self) -> str:
        text = (
            f"{self.generator}: {self.generated} generated, {self.skipped} already done, "
            f"{self.failed} failed of {self.planned} in {self.seconds:.1f}s"
        )
        for message, count in self.errors.most_common(5):
            text += f"\n    {count} x {message}"
        return text


def make_logger(gdir: GeneratorDir, info: DistInfo) -> logging.Logger:
    logger = logging.getLogger(f"xreal_bench.generate.{gdir.generator}.{info.rank}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    gdir.root.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(gdir.log)
    handler.setFormatter(logging.Formatter(f"%(asctime)s rank{info.rank} %(levelname)s %(message)s"))
    logger.addHandler(handler)
    return logger


def check_inputs(name: str, cls: type[Generator], available: Collection[str]) -> None:
    """Refuse a generator whose declared inputs this dataset/config cannot supply."""
    missing = sorted(set(cls.inputs) - set(available))
    if missing:
        what = "; ".join(f"{m} ({INPUT_KINDS.get(m, m)})" for m in missing)
        hint = ""
        if "anatomy" in missing:
            hint = (
                " Set conditioning.anatomy = 'pspnet' (needs weights xrv-pspnet) or 'folder' with "
                "conditioning.anatomy_dir pointing at precomputed label maps."
            )
        raise UserFacingError(f"generator {name!r} ({cls.type_name}) needs inputs this run cannot supply: {what}.{hint}")


def check_generation_target(name: str, type_name: str) -> str:
    """A name generated into: the name rule, and ``real`` only for the ``real`` generator (whose
    folder holds the real test images the reader study shows)."""
    check_name(name, what="generator name")
    if name in RESERVED_GENERATOR_NAMES and type_name != name:
        raise InvalidNameError(
            f"generator name {name!r} is reserved for the real test images (type {name!r}); "
            f"a generator of type {type_name!r} needs another name"
        )
    return name


def check_before_generation(
    cfg: BenchConfig, chosen: Mapping[str, GeneratorConfig], *, weights: WeightsManager | None, overwrite: bool
) -> None:
    """Every problem with the chosen generators' folders at once, before any work: an invalid or
    reserved name, a recorded identity that differs from the config (without ``overwrite``), a
    folder that ``overwrite`` may not delete."""
    problems = []
    for name, gcfg in chosen.items():
        try:
            check_generation_target(name, gcfg.type)
            if overwrite:
                GeneratorDir(cfg.run.out, name).check_removable()
            else:
                check_generation_dir(cfg, name, gcfg, weights=weights)
        except UserFacingError as exc:
            problems.append(str(exc))
    if problems:
        raise UserFacingError("\n".join(problems))


def on_main(info: DistInfo, work: Callable[[], object]) -> None:
    """Run ``work`` on rank 0 only; a :class:`UserFacingError` there is raised on every rank
    (the other ranks wait for rank 0 here, as at a barrier)."""
    error: UserFacingError | None = None
    if info.is_main:
        try:
            work()
        except UserFacingError as exc:
            error = exc
    problem = distributed.gather_objects(None if error is None else str(error))[0]
    if error is not None:
        raise error
    if problem is not None:
        raise UserFacingError(problem)


def open_generator_dir(
    cfg: BenchConfig, name: str, gcfg: GeneratorConfig, *, weights: WeightsManager | None, overwrite: bool
) -> GeneratorDir:
    """Rank 0, before generating ``name``: delete its folder (``overwrite``, only one the suite
    made), check or write its ``identity.json``, clear temp files, merge rank parts."""
    gdir = GeneratorDir(cfg.run.out, name)
    if overwrite:
        gdir.remove()
    identity = check_generation_dir(cfg, name, gcfg, weights=weights)
    if identity is not None:
        write_identity(gdir, identity)
    gdir.images.mkdir(parents=True, exist_ok=True)
    for stale in gdir.images.glob(".*.tmp"):
        stale.unlink(missing_ok=True)
    if any(gdir.root.glob("manifest.rank*.jsonl")):
        gdir.consolidate()
    return gdir


def batched(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def run_generator(
    cfg: BenchConfig,
    name: str,
    gcfg: GeneratorConfig,
    *,
    cases: Sequence[Case],
    prepared: PreparedCases,
    info: DistInfo = DistInfo(),
    device: str = "cpu",
    weights: WeightsManager | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> GenerationSummary:
    """Generate (or resume) every image of generator ``name``; returns this run's summary.

    ``prepared`` holds the case facts of (at least) this rank's cases, prepared before any
    generation (:func:`xreal_bench.conditioning.prepare_case_facts`); nothing is prepared here.
    A folder made with another generation identity is refused (:mod:`xreal_bench.identity`)
    unless ``overwrite`` deletes it first.
    """
    cls = generator_class(gcfg.type)
    check_inputs(name, cls, prepared.available)
    check_generation_target(name, gcfg.type)
    on_main(info, lambda: open_generator_dir(cfg, name, gcfg, weights=weights, overwrite=overwrite))
    gdir = GeneratorDir(cfg.run.out, name)

    log = make_logger(gdir, info)
    items = distributed.shard(plan_items(cases, cfg.run.samples_per_condition), info)
    existing = gdir.entries()
    todo = [
        (case, k)
        for case, k in items
        if not (
            (entry := existing.get((case.case_id, k))) is not None
            and entry.status == "ok"
            and image_is_valid(gdir.image_path(case.case_id, k))
        )
    ]
    summary = GenerationSummary(name, planned=len(items), skipped=len(items) - len(todo))
    log.info("start: %d planned on this rank, %d already done, %d to generate", len(items), summary.skipped, len(todo))
    manifest = gdir.manifest if info.world == 1 else gdir.root / f"manifest.rank{info.rank}.jsonl"
    started = time.perf_counter()
    if todo:
        context = GeneratorContext(
            cases=cases,
            dataset_kind=cfg.dataset.kind,
            resolution=cfg.run.resolution,
            square=cfg.dataset.square,
            intensity=cfg.dataset.intensity,
            device=device,
            precision=cfg.run.precision,
            weights=weights,
            log=log,
            training_cases=training_loader(cfg),
        )
        generator = cls(name, gcfg.options, context)
        batch_size = gcfg.batch_size or cfg.run.batch_size
        bar = tqdm(total=len(todo), desc=name, unit="img", disable=not (progress and info.is_main), dynamic_ncols=True)

        def record(entry: ManifestEntry) -> None:
            append_line(manifest, entry)
            bar.update(1)
            if entry.status == "ok":
                summary.generated += 1
            else:
                summary.failed += 1
                summary.errors[entry.error] += 1
                log.error("%s sample %d failed: %s", entry.case_id, entry.sample_index, entry.error)

        writer = Writer(record, max_pending=4 * batch_size)
        try:
            for batch in batched(todo, batch_size):
                generate_batch(generator, batch, cfg=cfg, prepared=prepared, info=info, gdir=gdir, writer=writer)
        finally:
            writer.close()
            bar.close()
    summary.seconds = time.perf_counter() - started
    log.info("done: %s", summary.describe().replace("\n", " |"))
    distributed.barrier()
    if info.is_main:
        gdir.consolidate()
    return summary


class Writer:
    """Encodes and writes images on background threads while the generator computes the next
    batch. Manifest lines are appended by the calling thread (``record``), each only after its
    image is on disk; ``close`` waits for every pending write, also on Ctrl-C."""

    def __init__(self, record: Callable[[ManifestEntry], None], *, threads: int = 2, max_pending: int = 64):
        self.record, self.max_pending = record, max_pending
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="xreal-bench-writer")
        self.pending: deque[Future] = deque()

    def add(self, entry: ManifestEntry) -> None:
        self.record(entry)

    def submit(self, fn: Callable[..., ManifestEntry], *args, **kwargs) -> None:
        self.pending.append(self.pool.submit(fn, *args, **kwargs))
        self.drain(block=len(self.pending) > self.max_pending)

    def drain(self, block: bool = False) -> None:
        while self.pending and (block or self.pending[0].done()):
            self.record(self.pending.popleft().result())
            block = block and len(self.pending) > self.max_pending

    def close(self) -> None:
        try:
            while self.pending:
                self.record(self.pending.popleft().result())
        finally:
            self.pool.shutdown(wait=True)


def generate_batch(generator: Generator, batch, *, cfg, prepared, info: DistInfo, gdir: GeneratorDir, writer: Writer) -> None:
    """Build the batch's conditions (from what ``generator`` reads only), generate them and hand every result to ``writer``."""
    conditions = []
    for case, k in batch:
        seed = seed_for(cfg.run.seed, generator.name, case.case_id, k)
        try:
            conditions.append(prepared.build(case, k, seed, reads=generator.inputs))
        except Exception as exc:  # noqa: BLE001 - a bad case must not stop the run
            writer.add(failure(exc, name=generator.name, info=info, case_id=case.case_id, sample_index=k, seed=seed))
    if conditions:
        run_conditions(generator, conditions, cfg=cfg, info=info, gdir=gdir, writer=writer)


def run_conditions(generator: Generator, conditions, *, cfg, info: DistInfo, gdir: GeneratorDir, writer: Writer) -> None:
    """Call the generator and check its output; if that fails, retry sample by sample to isolate the failures."""
    started = time.perf_counter()
    try:
        output = GeneratorOutput.from_result(generator.generate(conditions))
        if len(output.images) != len(conditions):
            raise OutputError(f"generator returned {len(output.images)} images for {len(conditions)} conditions")
    except Exception as exc:  # noqa: BLE001 - recorded in the manifest, the run goes on
        if len(conditions) > 1:
            for c in conditions:
                run_conditions(generator, [c], cfg=cfg, info=info, gdir=gdir, writer=writer)
            return
        c = conditions[0]
        writer.add(
            failure(exc, name=generator.name, info=info, case_id=c.case_id, sample_index=c.sample_index, seed=c.seed, condition=c)
        )
        return
    per_image = (time.perf_counter() - started) / len(conditions)
    notes = output.notes or [()] * len(conditions)
    inputs = output.inputs or [{}] * len(conditions)
    for c, image, n, used in zip(conditions, output.images, notes, inputs):
        writer.submit(
            write_output, c, image, cfg=cfg, name=generator.name, info=info, gdir=gdir, seconds=per_image, notes=n, inputs=used
        )


def write_output(
    condition,
    image,
    *,
    cfg,
    name: str,
    info: DistInfo,
    gdir: GeneratorDir,
    seconds: float,
    notes: tuple[str, ...] = (),
    inputs: Mapping[str, Any] | None = None,
) -> ManifestEntry:
    """Normalise and write one image atomically; an invalid image becomes a failed entry.

    Runs on a writer thread: any exception from the output (its type, shape, dtype, values,
    notes) is this sample's failed entry, never the run's end. Only an ``OSError`` writing the
    file (disk full, read-only folder) propagates: that is the machine's fault, not the
    generator's, and the run stops with the images written so far kept for a resume.
    ``notes`` are the generator's own remarks on this sample (e.g. a clipped box, a prompt
    truncated, no pathology to draw); they are stored with the condition summary, and ``inputs``
    (the model inputs the generator actually used: exact prompt, truncation, ...) under its
    ``inputs`` key.
    """
    try:
        pixels = to_run_image(image, cfg.run.resolution, cfg.run.bit_depth, cfg.dataset.geometry)
        summary = condition_summary(condition)
        summary["notes"] += [str(note) for note in notes]
        if inputs:
            summary["inputs"] = json.loads(json.dumps(dict(inputs)))
    except Exception as exc:  # noqa: BLE001 - a bad output is this sample's recorded failure
        return failure(
            exc,
            name=name,
            info=info,
            case_id=condition.case_id,
            sample_index=condition.sample_index,
            seed=condition.seed,
            condition=condition,
        )
    path = gdir.image_path(condition.case_id, condition.sample_index)
    save_png(path, pixels)
    return ManifestEntry(
        generator=name,
        case_id=condition.case_id,
        sample_index=condition.sample_index,
        seed=condition.seed,
        status="ok",
        file=str(path.relative_to(gdir.root)),
        seconds=round(seconds, 6),
        rank=info.rank,
        time=now(),
        condition=summary,
    )


def failure(
    exc: BaseException, *, name: str, info: DistInfo, case_id: str, sample_index: int, seed: int, condition=None
) -> ManifestEntry:
    """The failed manifest entry of one sample: the error's type and first line (``condition`` when it was built)."""
    message = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"[:300]
    return ManifestEntry(
        generator=name,
        case_id=case_id,
        sample_index=sample_index,
        seed=seed,
        status="failed",
        error=message,
        rank=info.rank,
        time=now(),
        condition=condition_summary(condition) if condition is not None else {},
    )


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
