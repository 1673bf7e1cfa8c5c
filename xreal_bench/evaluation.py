"""``xreal-bench evaluate``: the real side once (cached), each generator's images once, metrics,
results files with provenance, the per-image values and the bootstrap draws behind the rows
(:mod:`xreal_bench.results`). The real test images are always the ``real`` reference row."""

from __future__ import annotations

import json
import sys
import time
import zipfile
from collections.abc import Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import pandas as pd

from xreal_bench.coverage import COVERAGE_RULE, Coverage, Plan, coverage_of, select_planned
from xreal_bench.errors import UserFacingError
from xreal_bench.identity import ABSENT, check_generator_dirs, read_identity
from xreal_bench.imaging import resize_label_map
from xreal_bench.labels import label_index
from xreal_bench.metrics import table
from xreal_bench.metrics.agreement import encoder_agreement
from xreal_bench.metrics.classification import Thresholds, fit_thresholds
from xreal_bench.metrics.context import ResultRow, ScoringSettings, evaluated_labels
from xreal_bench.metrics.dice import label_map_to_masks
from xreal_bench.metrics.engine import (
    ImageItem,
    Preprocessing,
    SourceOutputs,
    evaluate_generated,
    evaluate_real,
    real_fingerprint,
)
from xreal_bench.metrics.scoring import per_image_frame, score
from xreal_bench.metrics.suite import Suite, build_suite
from xreal_bench.preflight import evaluated_problem, threshold_split_problem
from xreal_bench.results import (
    DRAW_KEY_SEPARATOR,
    DRAWS_FILE,
    DRAWS_META,
    PER_IMAGE_FILE,
    case_set_hash,
    demographics_counts,
    environment,
    new_run_id,
    read_results,
    write_draws,
    write_per_image,
    write_results,
)
from xreal_bench.rundir import GeneratorDir, generator_dirs
from xreal_bench.weights import UNVERIFIED, VERIFIED, WeightsManager

if TYPE_CHECKING:
    from xreal_bench.pipeline import Session

REFERENCE = "real"


class BesidePass(Protocol):
    """Per-image values computed beside the evaluation pass into ``SourceOutputs.extra`` (the
    memorization audit, lesion-in-box adherence): the real side first, then each generator."""

    #: Its section of ``results.json``.
    key: str

    def annotate(self, source: str, outputs: SourceOutputs, items: Sequence[ImageItem]) -> None: ...

    def provenance(self) -> dict: ...

    def write(self, out: Path, *, kept: set[str]) -> None:
        """Its files in the run folder (rank 0), keeping what earlier files hold for ``kept``: the generators
        whose earlier results ``evaluate --generators`` kept."""


def beside_pass(session: Session, suite: Suite, progress: bool) -> list[BesidePass]:
    """The computations beside the pass that the enabled metrics need (set up before any pass)."""
    from xreal_bench.lesion_audit import lesion_audit
    from xreal_bench.memorization_audit import memorization_audit

    found = [memorization_audit(session, suite, progress), lesion_audit(session, suite, progress)]
    return [hook for hook in found if hook is not None]


def cache_root(session: Session) -> Path:
    return Path(session.cfg.metrics.cache_dir or Path(session.cfg.run.out) / ".cache")


def settings(session: Session) -> ScoringSettings:
    m = session.cfg.metrics
    return ScoringSettings(
        enabled=m.enabled,
        bootstrap=m.bootstrap,
        fid_bootstrap=m.fid_bootstrap,
        confidence=m.confidence,
        seed=session.cfg.metrics.bootstrap_seed,
        subsets=m.subsets,
        min_subset_n=m.min_subset_n,
        kid_subsets=m.kid_subsets,
        kid_subset_size=m.kid_subset_size,
        label_set=m.label_set,
        f1_zero_division=float(m.f1_zero_division),
        embedding=m.embedding,
        prdc_k=m.prdc_k,
        subgroups=m.subgroups,
        age_edges=tuple(m.age_edges),
    )


def real_items(cases) -> list[ImageItem]:
    return [ImageItem(c.case_id, 0, c.image_path) for c in cases]


def pass_real(session: Session, suite: Suite, scan, progress: bool) -> SourceOutputs:
    m = session.cfg.metrics
    prep = preprocessing(session)
    fingerprint = real_fingerprint(scan.fingerprint, prep, suite)
    return evaluate_real(
        real_items(scan.cases),
        suite=suite,
        prep=prep,
        cache_dir=cache_root(session) / "real" / fingerprint[:16],
        info=session.info,
        batch_size=m.batch_size,
        workers=m.num_workers,
        progress=progress,
    )


def preprocessing(session: Session) -> Preprocessing:
    cfg = session.cfg
    return Preprocessing(cfg.run.resolution, cfg.run.bit_depth, cfg.dataset.geometry)


def real_cache_dir(session: Session, suite: Suite) -> Path:
    return cache_root(session) / "real" / real_fingerprint(session.scan.fingerprint, preprocessing(session), suite)[:16]


def thresholds_for(session: Session, suite: Suite, progress: bool) -> tuple[Thresholds | None, dict]:
    """Decision thresholds under ``metrics.thresholds``; fitted only on real images of another split."""
    m = session.cfg.metrics
    if suite.classifier is None or not table.needs_thresholds(m.enabled):
        return None, {}
    names = evaluated_labels(m.label_set, suite.classifier.labels)
    if m.thresholds in ("calibrated", "fixed"):
        t = fit_thresholds(
            None, None, names, m.thresholds, calibrated=suite.classifier.calibrated_thresholds, fixed=m.fixed_threshold
        )
        return t, {"policy": t.policy, "source": t.source, "values": t.values, "unfitted": t.unfitted}
    if (problem := threshold_split_problem(session.cfg)) is not None:  # preflight reports it before any work
        raise UserFacingError(problem)
    from xreal_bench.data.dataset import load_dataset

    scan = load_dataset(session.cfg, split=m.threshold_split, progress=progress and session.info.is_main)
    if not scan.cases:
        raise UserFacingError(f"no real images in split {m.threshold_split!r} to fit {m.thresholds} thresholds on")
    only_classifier = Suite(suite.name, classifier=suite.classifier)
    real = pass_real(session, only_classifier, scan, progress)
    cases = {c.case_id: c for c in scan.cases}
    columns = [suite.classifier.labels.index(n) for n in names]
    labels = np.array([[cases[k[0]].labels[label_index(n)] for n in names] for k in real.keys], dtype=np.float64)
    source = f"real images, {m.threshold_split} split, n={len(real.keys)}"
    if real.scores is None:
        raise UserFacingError(f"no classifier scores for the {m.threshold_split!r} split to fit {m.thresholds} thresholds on")
    t = fit_thresholds(real.scores[:, columns], labels, names, m.thresholds, source=source)
    return t, {"policy": t.policy, "source": t.source, "values": t.values, "unfitted": t.unfitted}


def input_masks(session: Session, progress: bool = True):
    """Reference masks from the conditioning's anatomy maps (``metrics.dice_reference = 'input'``),
    every map found or made now, before any evaluation pass."""
    from xreal_bench.conditioning import anatomy_maps

    size = session.cfg.run.resolution
    maps = anatomy_maps(session.cfg, session.scan, weights=session.weights, device=session.device, progress=progress)

    def masks(case_id: str) -> np.ndarray:
        return label_map_to_masks(resize_label_map(maps.load(case_id), size))[0]

    return masks


def evaluate(session: Session, names: Sequence[str] | None = None, progress: bool = True) -> list[ResultRow]:
    """Evaluate the real side and every (or the named) generator folder of the run; write results.

    Only planned images are scored (:mod:`xreal_bench.coverage`): each case of the scan times
    ``run.samples_per_condition``; other manifest entries are ignored and counted. Each source's
    coverage goes to ``results.json``, its failed and missing counts onto each of its rows, and
    a warning naming it to stderr when any planned image was not scored.
    """
    cfg, info = session.cfg, session.info
    out = Path(cfg.run.out)
    started = time.perf_counter()
    dirs = [d for d in generator_dirs(out) if d.generator != REFERENCE]
    if (problem := evaluated_problem(cfg, names)) is not None:  # preflight reports it before any work
        raise UserFacingError(problem)
    if names:
        dirs = [d for d in dirs if d.generator in names]
    check_generator_dirs(cfg, dirs, weights=session.weights)  # images made as this config says, before any pass
    suite = build_suite(cfg.metrics, session.weights, session.device)
    reference_masks = None
    if cfg.metrics.dice_reference == "input" and suite.segmenter:
        reference_masks = input_masks(session, progress and info.is_main)
    plan = Plan.of((c.case_id for c in session.scan.cases), cfg.run.samples_per_condition)
    min_coverage = cfg.metrics.min_coverage
    timings: dict[str, float] = {}
    hooks = beside_pass(session, suite, progress)
    t0 = time.perf_counter()
    real = pass_real(session, suite, session.scan, progress)
    for hook in hooks:
        hook.annotate(REFERENCE, real, real_items(c for c in session.scan.cases if c.case_id in set(real.case_ids)))
    timings["real"] = time.perf_counter() - t0
    thresholds, threshold_info = thresholds_for(session, suite, progress)
    cases = {c.case_id: c for c in session.scan.cases}
    score_source = partial(score, real=real, cases=cases, suite=suite, settings=settings(session), thresholds=thresholds)
    real_plan = Plan.of(plan.case_ids, 1)
    coverage = {
        REFERENCE: coverage_of(
            real_plan, selection=None, scored=real.keys, undecodable=real.failed, no_reference=0, min_coverage=min_coverage
        )
    }
    rows = with_counts(score_source(REFERENCE, real), coverage[REFERENCE])
    images = partial(
        per_image_frame, enabled=cfg.metrics.enabled, classifier_labels=suite.classifier.labels if suite.classifier else ()
    )
    per_image = [images(REFERENCE, real)]
    covered = {REFERENCE: case_set_hash(real.case_ids)}
    passes = table.pixel_passes(cfg.metrics.enabled)
    failures: dict[str, list[str]] = {REFERENCE: real.failed}
    demographics: dict[str, dict] = {}  # per generator: its scored images prompted with fallback demographics
    paired = set(real.case_ids)  # cases whose real image decoded: generated images are scored against them
    for gdir in dirs:
        t0 = time.perf_counter()
        selection = select_planned(gdir, plan)
        items = [ImageItem(e.case_id, e.sample_index, gdir.root / str(e.file)) for e in selection.scorable if e.case_id in paired]
        gen = evaluate_generated(
            items,
            suite=suite,
            prep=preprocessing(session),
            real_dir=real_cache_dir(session, suite),
            info=info,
            name=gdir.generator,
            batch_size=cfg.metrics.batch_size,
            workers=cfg.metrics.num_workers,
            ms_ssim="paired" in passes,
            diversity="diversity" in passes,
            reference_masks=reference_masks,
            progress=progress,
        )
        for hook in hooks:
            hook.annotate(gdir.generator, gen, items)
        coverage[gdir.generator] = coverage_of(
            plan,
            selection=selection,
            scored=gen.keys,
            undecodable=gen.failed,
            no_reference=len(selection.scorable) - len(items),
            min_coverage=min_coverage,
        )
        rows += with_counts(score_source(gdir.generator, gen), coverage[gdir.generator])
        per_image.append(images(gdir.generator, gen))
        covered[gdir.generator] = case_set_hash(gen.case_ids)
        scored = set(gen.keys)
        demographics[gdir.generator] = demographics_counts(e for e in selection.scorable if e.key in scored)
        timings[gdir.generator] = time.perf_counter() - t0
        failures[gdir.generator] = gen.failed
    if info.is_main:
        for name, c in coverage.items():
            if c.lossy or c.ignored:
                print(f"warning: {c.describe(name)}" + ignored_note(c), file=sys.stderr)
        run_id = new_run_id()
        provenance = {
            "run_id": run_id,
            "command": sys.argv,
            "config_source": cfg.source,
            "config_hash": cfg.hash(),
            "config": cfg.to_dict(),
            "dataset": {
                "kind": cfg.dataset.kind,
                "root": str(session.scan.root),
                "split": cfg.dataset.split,
                "fingerprint": session.scan.fingerprint,
                "cases": len(session.scan.cases),
                "missing": len(session.scan.missing),
                "corrupt": len(session.scan.corrupt),
                "notes": list(session.scan.notes),
            },
            "evaluators": {"suite": suite.name, **suite.describe()},
            "generators": {
                gdir.generator: {**generator_provenance(gdir, session.weights), "demographics": demographics[gdir.generator]}
                for gdir in dirs
            },
            "demo_evaluators": suite.name == "demo",
            "thresholds": threshold_info,
            "seeds": {"run": cfg.run.seed, "bootstrap": cfg.metrics.bootstrap_seed},
            "bootstrap": {
                "resamples": cfg.metrics.bootstrap,
                "fid_resamples": cfg.metrics.fid_bootstrap,
                "confidence": cfg.metrics.confidence,
            },
            "environment": environment(session.device, info.world),
            "coverage": {
                "rule": COVERAGE_RULE,
                "min_coverage": min_coverage,
                "cases": len(plan.case_ids),
                "samples_per_condition": plan.samples,
                "sources": {name: c.to_dict() for name, c in coverage.items()},
            },
            "undecodable": {k: v for k, v in failures.items() if v},
            "timings_s": {**{k: round(v, 3) for k, v in timings.items()}, "total": round(time.perf_counter() - started, 3)},
            **{hook.key: hook.provenance() for hook in hooks},
        }
        images_frame = pd.concat(per_image, ignore_index=True)
        if names:
            rows, provenance, images_frame, covered = keep_other_generators(
                out, rows, provenance, {d.generator for d in dirs}, images_frame, covered
            )
        provenance["encoder_agreement"] = encoder_agreement(rows, confidence=cfg.metrics.confidence)  # every generator kept
        write_per_image(out, images_frame)
        kept = {r.generator for r in rows} - {d.generator for d in dirs} - {REFERENCE}
        for hook in hooks:
            hook.write(out, kept=kept)
        m = cfg.metrics
        write_draws(out, rows, run_id=run_id, seed=m.bootstrap_seed, confidence=m.confidence, cases=covered)
        write_results(out, rows, provenance)
    return rows


def generator_provenance(gdir: GeneratorDir, weights: WeightsManager) -> dict:
    """A folder's recorded identity (``identity.json``) and the status of each weights file it records:
    ``verified`` (matches a published hash), ``unverified (no published hash)``, or ``absent``."""
    identity = read_identity(gdir) or {}
    recorded = {k.removeprefix("weights."): v for k, v in identity.get("fields", {}).items() if k.startswith("weights.")}
    statuses = {}
    for name, digest in recorded.items():
        reference = weights.artifacts.get(name)
        if digest == ABSENT:
            statuses[name] = {"sha256": None, "status": ABSENT}
        else:
            known = reference is not None and reference.sha256 == digest
            statuses[name] = {"sha256": digest, "status": VERIFIED if known else UNVERIFIED}
    return {"identity": identity, "weights": statuses}


def with_counts(rows: list[ResultRow], coverage: Coverage) -> list[ResultRow]:
    """The source's failed and missing image counts on each of its rows."""
    return [replace(r, failed=coverage.failed, missing=coverage.missing) for r in rows]


def ignored_note(c: Coverage) -> str:
    return f"; {c.ignored} manifest entries outside the plan ignored" if c.ignored else ""


def keep_other_generators(
    out: Path, rows: list[ResultRow], provenance: dict, evaluated: set[str], images: pd.DataFrame, covered: dict[str, str]
):
    """With ``--generators``, keep the other generators' earlier rows (with their draws), per-image rows and
    covered-case hashes when they came from the same config and data (same config hash and dataset
    fingerprint); otherwise drop them."""
    try:
        previous = json.loads((out / "results.json").read_text())
        frame = read_results(out)
    except (OSError, ValueError, UserFacingError):
        return rows, provenance, images, covered
    same = (
        previous.get("config_hash") == provenance["config_hash"]
        and previous.get("dataset", {}).get("fingerprint") == provenance["dataset"]["fingerprint"]
    )
    if not same:
        print("earlier results come from another config or data set: they are replaced, not merged", file=sys.stderr)
        return rows, provenance, images, covered
    kept = frame[~frame.generator.isin(evaluated | {REFERENCE})]
    others = set(kept.generator)
    draws, earlier_cases = earlier_draws(out, others)
    rows = rows + [
        ResultRow(**record, draws=draws.get((record["generator"], record["metric"], record["subset"])))
        for record in kept.to_dict("records")
    ]
    covered = {**{k: v for k, v in earlier_cases.items() if k in others}, **covered}
    earlier_images = earlier_per_image(out, others)
    if earlier_images is not None:
        images = pd.concat([images, earlier_images], ignore_index=True)
    for key in ("timings_s", "undecodable", "generators"):
        provenance[key] = {**{k: v for k, v in previous.get(key, {}).items() if k in others}, **provenance[key]}
    sources = provenance["coverage"]["sources"]
    earlier = previous.get("coverage", {}).get("sources", {})
    provenance["coverage"]["sources"] = {**{k: v for k, v in earlier.items() if k in others}, **sources}
    return rows, provenance, images, covered


def earlier_draws(out: Path, generators: set[str]) -> tuple[dict[tuple[str, ...], np.ndarray], dict[str, str]]:
    """The earlier ``bootstrap.npz`` draws of ``generators`` and its covered-case hashes (empty when unreadable)."""
    try:
        with np.load(out / DRAWS_FILE, allow_pickle=False) as archive:
            cases = json.loads(str(archive[DRAWS_META])).get("cases", {})
            keys = [k for k in archive.files if k != DRAWS_META and k.split(DRAW_KEY_SEPARATOR)[0] in generators]
            return {tuple(k.split(DRAW_KEY_SEPARATOR)): np.asarray(archive[k], dtype=np.float64) for k in keys}, cases
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return {}, {}


def earlier_per_image(out: Path, generators: set[str]) -> pd.DataFrame | None:
    """The earlier ``per_image.csv`` rows of ``generators`` (None when there is no readable file)."""
    try:
        frame = pd.read_csv(out / PER_IMAGE_FILE, dtype={"generator": str, "case_id": str})
    except (OSError, ValueError):
        return None
    return frame[frame.generator.isin(generators)]
