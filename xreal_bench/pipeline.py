"""The stages behind ``xreal-bench generate / evaluate / run / demo``, wired from a config."""

from __future__ import annotations

import functools
import sys
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from xreal_bench import distributed
from xreal_bench.config import BenchConfig
from xreal_bench.distributed import DistInfo
from xreal_bench.errors import UserFacingError
from xreal_bench.harness import GenerationSummary, check_before_generation, check_inputs, on_main, plan_items, run_generator
from xreal_bench.types import Case
from xreal_bench.weights import WeightsManager

if TYPE_CHECKING:
    from xreal_bench.conditioning import PreparedCases
    from xreal_bench.data.mimic import DatasetScan
    from xreal_bench.preflight import Stage


@dataclass
class Session:
    """What every stage of one invocation shares: config, dataset, ranks, device, weights."""

    cfg: BenchConfig
    scan: DatasetScan
    info: DistInfo
    device: str
    weights: WeightsManager


def open_session(
    cfg: BenchConfig,
    progress: bool = True,
    *,
    stages: Collection[Stage] = (),
    generators: Sequence[str] | None = None,
    overwrite: bool = False,
) -> Session:
    """Scan the dataset and set up ranks, device and weights for ``stages`` (of ``generate``,
    ``evaluate``; ``generators``: the ``--generators`` names; ``overwrite``: generation replaces
    their folders). Everything those stages need is
    checked first (:mod:`xreal_bench.preflight`): every problem is reported in one error, before
    any anatomy map, image or evaluation pass. With no ``stages`` nothing is checked ahead."""
    from xreal_bench.preflight import gathered, no_cases_message, preflight

    info = distributed.init_distributed()
    chosen = select_generators(cfg, generators) if "generate" in stages else {}
    weights = WeightsManager(cfg.weights.dir or None)
    scan, scan_error = scan_dataset(cfg, progress) if info.is_main else (None, None)
    distributed.barrier()  # rank 0 may have written the synthetic data set
    if not info.is_main:
        scan, scan_error = scan_dataset(cfg, False)
    if stages:
        evaluated = None if "generate" in stages else generators
        report = preflight(
            cfg, scan, weights=weights, stages=stages, generators=chosen, evaluated=evaluated, overwrite=overwrite, info=info
        )
        if scan_error is not None:
            report.problems.insert(0, str(scan_error))
        gathered(report).raise_if_any()
    if scan_error is not None:
        raise scan_error
    assert scan is not None
    if not scan.cases:
        raise UserFacingError(no_cases_message(cfg, scan))
    device = distributed.resolve_device(cfg.run.device, info)
    return Session(cfg, scan, info, device, weights)


def scan_dataset(cfg: BenchConfig, progress: bool) -> tuple[DatasetScan | None, UserFacingError | None]:
    """The dataset scan, or the error that stopped it (reported with the other problems)."""
    from xreal_bench.data.dataset import load_dataset

    try:
        return load_dataset(cfg, progress=progress), None
    except UserFacingError as exc:
        return None, exc


def select_generators(cfg: BenchConfig, names: Sequence[str] | None) -> dict:
    enabled = cfg.enabled_generators()
    if not names:
        if not enabled:
            raise UserFacingError(f"{cfg.source}: no enabled [generators.<name>] tables to run")
        return enabled
    unknown = [n for n in names if n not in cfg.generators]
    if unknown:
        raise UserFacingError(
            f"unknown generator(s) {', '.join(unknown)} in --generators; configured: {', '.join(cfg.generators) or 'none'}"
        )
    return {n: cfg.generators[n] for n in names}


def generate(
    session: Session, names: Sequence[str] | None = None, *, overwrite: bool = False, progress: bool = True
) -> list[GenerationSummary]:
    """Check every selected generator's folder (name, recorded identity, or that ``overwrite`` may
    delete it), prepare the case facts (writing ``cases.jsonl``), then run (or resume) every
    selected generator; print a summary per generator on rank 0."""
    chosen = select_generators(session.cfg, names)
    on_main(
        session.info,
        lambda: check_before_generation(session.cfg, chosen, weights=session.weights, overwrite=overwrite),
    )
    prepared = prepare_generation(session, chosen, progress=progress)
    summaries = []
    for name, gcfg in chosen.items():
        local = run_generator(
            session.cfg,
            name,
            gcfg,
            cases=session.scan.cases,
            prepared=prepared,
            info=session.info,
            device=session.device,
            weights=session.weights,
            overwrite=overwrite,
            progress=progress,
        )
        merged = functools.reduce(GenerationSummary.merge, distributed.gather_objects(local))
        summaries.append(merged)
        if session.info.is_main:
            print(merged.describe(), file=sys.stderr if merged.failed else sys.stdout)
    return summaries


def prepare_generation(session: Session, chosen: dict, *, progress: bool = True) -> PreparedCases:
    """Before any generation: refuse a chosen generator whose inputs cannot be supplied, prepare
    the facts of this rank's cases for the union of what the chosen generators read, and write
    ``<run.out>/cases.jsonl`` (rank 0, every case; :mod:`xreal_bench.cases`).

    Boxes are computed when a chosen generator reads ``pathology``, else when an enabled one does,
    ``[study].show_box`` is on or lesion-in-box adherence is enabled, and they can be supplied.
    """
    from xreal_bench.cases import write_cases
    from xreal_bench.conditioning import available_inputs, prepare_case_facts
    from xreal_bench.generators.registry import generator_class
    from xreal_bench.preflight import boxes_wanted

    cfg, info = session.cfg, session.info
    classes = {name: generator_class(gcfg.type) for name, gcfg in chosen.items()}
    available = available_inputs(cfg, session.scan)
    for name, cls in classes.items():
        check_inputs(name, cls, available)
    reads = frozenset().union(*(cls.inputs for cls in classes.values()))
    enabled_reads = frozenset().union(*(generator_class(g.type).inputs for g in cfg.enabled_generators().values()))
    prepared = prepare_case_facts(
        cfg,
        session.scan,
        reads=reads,
        want_boxes=boxes_wanted(cfg, enabled_reads),
        cases=rank_cases(session.scan.cases, cfg.run.samples_per_condition, info),
        weights=session.weights,
        device=session.device,
        progress=progress and info.is_main,
    )
    parts = distributed.gather_objects(list(prepared.facts.values()))
    if info.is_main:  # a case whose samples are spread over ranks was prepared on each of them
        write_cases(cfg.out, {f.case_id: f for part in parts for f in part}.values())
    distributed.barrier()
    return prepared


def rank_cases(cases: Sequence[Case], samples_per_condition: int, info: DistInfo) -> list[Case]:
    """The cases of which this rank generates at least one sample (the harness's sharding)."""
    items = distributed.shard(plan_items(cases, samples_per_condition), info)
    return list({case.case_id: case for case, _ in items}.values())
