"""Preflight: every reason a run would stop, checked before any work and reported at once.

:func:`xreal_bench.pipeline.open_session` calls :func:`preflight` after the dataset scan and
before any anatomy map, image, evaluator pass or threshold fit, for the stages the command will
run. It collects every problem — the device; the weights of each selected generator (only those
its options need, :meth:`Generator.required_artifacts`) and of each evaluator the enabled metrics
need; the inputs the data cannot supply (and the anatomy maps behind them); the threshold split;
the output folders and their free space — and :meth:`PreflightReport.raise_if_any` raises one
:class:`PreflightError` listing them all, numbered. The stages keep their own checks as guards;
where they can meet the same problem they use the same words.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from xreal_bench import distributed
from xreal_bench.distributed import DistInfo
from xreal_bench.errors import UserFacingError
from xreal_bench.rundir import GeneratorDir, generator_dirs

if TYPE_CHECKING:
    from xreal_bench.config import BenchConfig, GeneratorConfig
    from xreal_bench.data.mimic import DatasetScan
    from xreal_bench.registry import Registry
    from xreal_bench.weights import Artifact, WeightsManager

Stage = Literal["generate", "evaluate"]
STAGES: tuple[Stage, ...] = ("generate", "evaluate")
REFERENCE = "real"  # the real images' row; never a generator folder to evaluate
#: Room for results, leaderboard, tables and figures.
REPORT_BYTES = 32 << 20


class PreflightError(UserFacingError):
    """One or more problems found before any work; the message lists every one."""


@dataclass
class PreflightReport:
    problems: list[str] = field(default_factory=list)

    def add(self, problem: str | None) -> None:
        if problem and problem not in self.problems:
            self.problems.append(problem)

    def raise_if_any(self) -> None:
        """Raise one :class:`PreflightError` numbering every problem (continuation lines indented)."""
        if not self.problems:
            return
        lines = [f"{len(self.problems)} problem(s) found before any work (nothing was generated or evaluated):"]
        for i, problem in enumerate(self.problems, 1):
            first, *rest = problem.splitlines()
            lines += [f"{i}. {first}", *(f"   {line}" for line in rest)]
        raise PreflightError("\n".join(lines))


@dataclass
class NeededWeights:
    """Artifacts to check, each with who needs it (one message per artifact, however many users)."""

    users: dict[str, tuple[Artifact, list[str]]] = field(default_factory=dict)

    def add(self, artifact: Artifact, user: str) -> None:
        users = self.users.setdefault(artifact.name, (artifact, []))[1]
        if user not in users:
            users.append(user)

    def problems(self, weights: WeightsManager) -> list[str]:
        out = []
        for artifact, users in self.users.values():
            missing = weights.missing_files(artifact)
            if missing:
                out.append(f"{weights.missing_message(artifact, missing)}\n  needed by: {'; '.join(users)}")
        return out


def preflight(
    cfg: BenchConfig,
    scan: DatasetScan | None,
    *,
    weights: WeightsManager,
    stages: Collection[Stage],
    generators: Mapping[str, GeneratorConfig],
    evaluated: Sequence[str] | None = None,
    overwrite: bool = False,
    info: DistInfo = DistInfo(),
) -> PreflightReport:
    """Every problem that would stop ``stages`` (generating ``generators``; evaluating the run's
    folders, or only ``evaluated``); ``scan`` is ``None`` when the dataset could not be read
    (the caller reports why) and the checks that need its cases are skipped."""
    report = PreflightReport()
    report.add(distributed.device_problem(cfg.run.device, info))
    if scan is not None and not scan.cases:
        report.add(no_cases_message(cfg, scan))
    cases = scan if scan is not None and scan.cases else None
    needed = NeededWeights()
    threshold_images = 0
    if "generate" in stages:
        for problem in generator_problems(cfg, cases, generators, needed):
            report.add(problem)
    if "evaluate" in stages:
        if "generate" not in stages:
            report.add(evaluated_problem(cfg, evaluated))
        for problem in evaluator_problems(cfg, cases, needed):
            report.add(problem)
        threshold, threshold_images = threshold_problem(cfg, scan)
        report.add(threshold)
    for problem in needed.problems(weights):
        report.add(problem)
    for problem in folder_problems(
        cfg, stages=stages, generators=generators, evaluated=evaluated, weights=weights, overwrite=overwrite
    ):
        report.add(problem)
    if cases is not None:
        maps = needed.users.get("xrv-pspnet", (None, []))[1]
        segmented = any(user.startswith("conditioning.anatomy") for user in maps)
        for problem in output_problems(cfg, cases, stages, generators, threshold_images, segmented_maps=segmented):
            report.add(problem)
    return report


def folder_problems(
    cfg: BenchConfig,
    *,
    stages: Collection[Stage],
    generators: Mapping[str, GeneratorConfig],
    evaluated: Sequence[str] | None,
    weights: WeightsManager,
    overwrite: bool,
) -> list[str]:
    """Generator folders the stages would refuse: a generated folder whose recorded identity differs
    from the config (or that ``overwrite`` may not delete), and every other folder to be scored
    whose images were made under other settings (:mod:`xreal_bench.identity`)."""
    from xreal_bench.harness import check_before_generation
    from xreal_bench.identity import check_generator_dir

    checks = []
    if "generate" in stages:
        checks += [
            functools.partial(check_before_generation, cfg, {name: gcfg}, weights=weights, overwrite=overwrite)
            for name, gcfg in generators.items()
        ]
    if "evaluate" in stages:
        checks += [
            functools.partial(check_generator_dir, cfg, gdir, weights=weights)
            for gdir in generator_dirs(cfg.out)
            if gdir.generator != REFERENCE and gdir.generator not in generators and (not evaluated or gdir.generator in evaluated)
        ]
    problems = []
    for check in checks:
        try:
            check()
        except UserFacingError as exc:
            problems.append(str(exc))
    return problems


def gathered(report: PreflightReport) -> PreflightReport:
    """Every rank's problems (in rank order, without repeats), so all ranks stop together."""
    merged = PreflightReport()
    for part in distributed.gather_objects(report.problems):
        for problem in part:
            merged.add(problem)
    return merged


def no_cases_message(cfg: BenchConfig, scan: DatasetScan) -> str:
    return (
        f"no cases to evaluate in {scan.root} (split {cfg.dataset.split!r}, views {cfg.dataset.views}); "
        f"missing files: {len(scan.missing)}, corrupt: {len(scan.corrupt)} — check `xreal-bench data summary`"
    )


def generator_problems(
    cfg: BenchConfig, scan: DatasetScan | None, generators: Mapping[str, GeneratorConfig], needed: NeededWeights
) -> list[str]:
    """Each generator's weights (into ``needed``), the inputs the data cannot supply, and the anatomy maps they read."""
    from xreal_bench.conditioning.prepare import available_inputs, unavailable_inputs
    from xreal_bench.generators.registry import generator_class
    from xreal_bench.harness import check_inputs

    problems: list[str] = []
    classes = {name: generator_class(gcfg.type) for name, gcfg in generators.items()}
    for name, cls in classes.items():
        for artifact in cls.required_artifacts(generators[name].options):
            needed.add(artifact, f"generator {name!r} ({cls.type_name})")
    if scan is None:
        return problems
    why = unavailable_inputs(cfg, scan)
    available = available_inputs(cfg, scan)
    for name, cls in classes.items():
        try:
            check_inputs(name, cls, available)
        except UserFacingError as exc:
            lacking = sorted(set(cls.inputs) & set(why))
            problems.append(f"{exc}\n" + "\n".join(f"  {kind}: {why[kind]}" for kind in lacking))
    reads = frozenset().union(*(cls.inputs for cls in classes.values())) - set(why)
    enabled_reads = frozenset().union(*(generator_class(g.type).inputs for g in cfg.enabled_generators().values()))
    want_boxes = boxes_wanted(cfg, enabled_reads)
    problem, needs_maps = boxes_need_maps(cfg, scan, reads, want_boxes)
    problems += [problem] if problem else []
    if "anatomy" in reads or needs_maps:
        problems += map_problems(cfg, scan, needed, "anatomy maps for the generators' conditions")
    return problems


def boxes_wanted(cfg: BenchConfig, enabled_reads: frozenset[str]) -> bool:
    """Whether ``cases.jsonl`` should hold pathology boxes: an enabled generator reads them, the reader
    study shows them, or a metric scores images against them (lesion-in-box adherence)."""
    from xreal_bench.metrics import table

    return "pathology" in enabled_reads or cfg.study.show_box or table.LESION.name in cfg.metrics.enabled


def boxes_need_maps(cfg: BenchConfig, scan: DatasetScan, reads: frozenset[str], want_boxes: bool) -> tuple[str | None, bool]:
    """``(problem with the boxes, whether the box fallback will need anatomy maps)``, by
    :func:`~xreal_bench.conditioning.prepare_case_facts`'s rule (for every case of the scan)."""
    from xreal_bench.conditioning.prepare import anatomy_configured, csv_box_sets, input_paths, unavailable_inputs

    why = unavailable_inputs(cfg, scan)
    if not ("pathology" in reads or (want_boxes and "pathology" not in why)):
        return None, False
    try:
        covered = csv_box_sets(cfg, scan, scan.cases)
    except UserFacingError as exc:
        return str(exc), False
    uncovered = sum(c.case_id not in covered for c in scan.cases)
    fallback = cfg.conditioning.box_fallback
    if not uncovered or fallback == "none":
        return None, False
    if anatomy_configured(cfg):
        return None, True
    if "pathology" not in reads:
        return None, False  # boxes wanted only for show_box: left out
    return (
        f"{uncovered} of {len(scan.cases)} cases have no box in {input_paths(cfg)[1]} and box_fallback = "
        f"{fallback!r} needs anatomy maps, but {why['anatomy']}; or set box_fallback = 'none'"
    ), False


def map_problems(cfg: BenchConfig, scan: DatasetScan, needed: NeededWeights, purpose: str) -> list[str]:
    """Whether every case's anatomy map can be had: PSPNet's weights (into ``needed``) or the map files."""
    from xreal_bench.conditioning.anatomy import FolderAnatomy
    from xreal_bench.conditioning.prepare import anatomy_source, unavailable_inputs
    from xreal_bench.registry import EVALUATORS

    if cfg.conditioning.anatomy == "pspnet":
        for artifact in evaluator_artifacts(EVALUATORS["segmenter"], "xrv-pspnet"):
            needed.add(artifact, f"conditioning.anatomy = 'pspnet' ({purpose})")
        return []
    source = anatomy_source(cfg)
    if source is None:
        return [f"anatomy maps cannot be supplied: {unavailable_inputs(cfg, scan)['anatomy']}"]
    if isinstance(source, FolderAnatomy):
        try:
            source.locate(scan.cases, progress=False)
        except UserFacingError as exc:
            return [str(exc)]
    return []


def evaluator_artifacts(registry: Registry, name: str) -> tuple[Artifact, ...]:
    """The artifacts the evaluator ``name`` will load: those it declares; for a factory bound to
    one weight set (``tag=``, as ``xrv-densenet-*``), only the artifacts named for that tag."""
    from xreal_bench.registry import declared

    factory = registry.get(name)
    artifacts = tuple(declared(factory, "artifacts"))
    tag = factory.keywords.get("tag") if isinstance(factory, functools.partial) else None
    chosen = tuple(a for a in artifacts if tag and a.name.endswith(f"-{tag}"))
    return chosen or artifacts


def evaluator_problems(cfg: BenchConfig, scan: DatasetScan | None, needed: NeededWeights) -> list[str]:
    """The weights of every evaluator the enabled metrics need (into ``needed``), resolved like
    :func:`~xreal_bench.metrics.suite.build_suite` without building a network; the reference
    anatomy maps of ``dice_reference = 'input'``."""
    from xreal_bench.metrics import table
    from xreal_bench.metrics.suite import chosen_evaluators, resolve_role
    from xreal_bench.registry import EVALUATORS, RegistryError

    m = cfg.metrics
    problems = []
    for role, (kind, name) in chosen_evaluators(m).items():
        metrics = ", ".join(x.name for x in table.enabled(m.enabled) if x.role and resolve_role(x.role, m) == role)
        try:
            artifacts = evaluator_artifacts(EVALUATORS[kind], name)
        except RegistryError as exc:
            problems.append(f"metrics ({role}): {exc}")
            continue
        except Exception as exc:  # noqa: BLE001 - a broken plugin is one problem among the others
            problems.append(f"{kind} evaluator {name!r} cannot be loaded ({type(exc).__name__}: {exc})")
            continue
        for artifact in artifacts:
            needed.add(artifact, f"{kind} evaluator {name!r} (metrics {metrics})")
    if m.dice_reference == "input" and "segmenter" in table.roles(m.enabled) and scan is not None:
        problems += map_problems(cfg, scan, needed, "reference masks of metrics.dice_reference = 'input'")
    return problems


def evaluated_problem(cfg: BenchConfig, names: Sequence[str] | None) -> str | None:
    """``--generators`` names without a generator folder in the run directory (evaluation only)."""
    known = {d.generator for d in generator_dirs(cfg.out)}
    missing = [n for n in names or () if n not in known and n != REFERENCE]
    if not missing:
        return None
    return f"no generated images for {', '.join(missing)} in {cfg.out}; generated: {', '.join(sorted(known)) or 'none'}"


def threshold_split_problem(cfg: BenchConfig) -> str | None:
    """Fitted thresholds (youden, f1) on the evaluated split itself."""
    m = cfg.metrics
    if m.thresholds not in ("youden", "f1") or m.threshold_split != cfg.dataset.split:
        return None
    return (
        f"metrics.threshold_split = {m.threshold_split!r} is the evaluated split (dataset.split): {m.thresholds} thresholds "
        f"must be fitted on another split; set metrics.threshold_split to another split or metrics.thresholds = 'calibrated'"
    )


def threshold_problem(cfg: BenchConfig, scan: DatasetScan | None) -> tuple[str | None, int]:
    """``(problem, images of the threshold split)`` when an enabled metric needs fitted thresholds:
    the split must differ from the evaluated one and hold images of the configured views."""
    from xreal_bench.data.mimic import DatasetError, locate_csvs, select_images
    from xreal_bench.metrics import table

    m = cfg.metrics
    if m.thresholds not in ("youden", "f1") or not table.needs_thresholds(m.enabled):
        return None, 0
    if (problem := threshold_split_problem(cfg)) is not None or scan is None:
        return problem, 0
    views = {v.strip().upper() for v in cfg.dataset.views}
    try:
        paths = locate_csvs(scan.root, cfg.dataset.labeler)
        rows = len(select_images(paths, m.threshold_split, views, []))  # notes of that split are not this run's
    except DatasetError as exc:
        return f"metrics.threshold_split = {m.threshold_split!r}: {exc}", 0
    if not rows:
        return (
            f"no real images in split {m.threshold_split!r} (views {', '.join(sorted(views))}) of {paths['split']} "
            f"to fit {m.thresholds} thresholds on; set metrics.threshold_split or metrics.thresholds = 'calibrated'"
        ), 0
    return None, rows


def png_bytes(resolution: int, bits: int) -> int:
    """A generous upper bound on one run image's PNG (stored, not compressed, plus headers) and its manifest line."""
    raw = resolution * (resolution * bits // 8 + 1)
    return raw + raw // 100 + 8192


def output_problems(
    cfg: BenchConfig,
    scan: DatasetScan,
    stages: Collection[Stage],
    generators: Mapping[str, GeneratorConfig],
    threshold_images: int,
    *,
    segmented_maps: bool,
) -> list[str]:
    """Folders that cannot be created or written, and file systems without room for what the run writes
    (``segmented_maps``: PSPNet makes the anatomy maps)."""
    run, n = cfg.run, len(scan.cases)
    out = cfg.out
    writes: list[tuple[Path, int, str]] = [(out, REPORT_BYTES + 4096 * n, "results and case facts")]
    if "generate" in stages:
        for name in generators:
            images = GeneratorDir(out, name).images
            present = sum(1 for _ in images.glob("*.png")) if images.is_dir() else 0
            todo = max(n * run.samples_per_condition - present, 0)
            size = todo * png_bytes(run.resolution, run.bit_depth)
            writes.append((out / name, size, f"{todo} {name} image(s) of {run.resolution} px at {run.bit_depth} bit"))
    if segmented_maps:
        cache = Path(cfg.conditioning.cache_dir) if cfg.conditioning.cache_dir else out / ".cache"
        writes.append((cache, n * png_bytes(cfg.conditioning.resolution, 8), f"anatomy maps of {n} case(s)"))
    if "evaluate" in stages:
        cache = Path(cfg.metrics.cache_dir) if cfg.metrics.cache_dir else out / ".cache"
        real = n + threshold_images
        per_case = png_bytes(run.resolution, run.bit_depth) + run.resolution**2 // 2 + 64 * 1024
        writes.append((cache, real * per_case, f"real-side cache of {real} image(s)"))
    problems = []
    room: dict[Path, list[tuple[int, str]]] = {}
    for folder, size, what in writes:
        problem, ancestor = writable_problem(folder)
        if problem is not None:
            problems.append(problem)
        elif ancestor is not None:
            room.setdefault(mount_of(ancestor), []).append((size, what))
    for mount, parts in room.items():
        need, free = sum(s for s, _ in parts), shutil.disk_usage(mount).free
        if need > free:
            detail = "; ".join(f"{what}: {human(size)}" for size, what in parts if size)
            problems.append(
                f"not enough free disk space on {mount}: this run writes up to {human(need)} ({detail}) and {human(free)} "
                "is free; free some space or set run.out (and metrics.cache_dir) to a larger disk"
            )
    return problems


def writable_problem(folder: Path) -> tuple[str | None, Path | None]:
    """``(problem, nearest existing folder)``: a folder the run will create or write into must be a
    folder (or creatable) and accept a new file; checked by creating and removing a probe file."""
    folder = Path(os.path.abspath(folder))
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        where = "it is" if existing == folder else f"cannot create it: {existing} is"
        return f"cannot use output folder {folder}: {where} a file, not a folder", None
    try:
        handle, probe = tempfile.mkstemp(dir=existing, prefix=".xreal-bench-probe-")
        os.close(handle)
        os.unlink(probe)
    except OSError as exc:
        operation = "writing a file into it" if existing == folder else f"creating it inside {existing}"
        return f"cannot use output folder {folder}: {operation} failed ({exc.strerror or exc})", None
    return None, existing


def mount_of(path: Path) -> Path:
    """The mount point holding ``path`` (one free-space budget per file system)."""
    path = path.resolve()
    while not os.path.ismount(path) and path != path.parent:
        path = path.parent
    return path


def human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"
