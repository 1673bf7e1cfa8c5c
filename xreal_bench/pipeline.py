"""The stages behind ``xreal-bench generate / evaluate / run / demo``, wired from a config."""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass
from typing import Sequence

from xreal_bench import distributed
from xreal_bench.config import BenchConfig
from xreal_bench.distributed import DistInfo
from xreal_bench.errors import UserFacingError
from xreal_bench.harness import GenerationSummary, run_generator
from xreal_bench.weights import WeightsManager


@dataclass
class Session:
    """What every stage of one invocation shares: dataset, conditions, ranks, device."""

    cfg: BenchConfig
    scan: object  # xreal_bench.data.mimic.DatasetScan
    builder: object  # xreal_bench.conditioning.ConditionBuilder
    info: DistInfo
    device: str
    weights: WeightsManager


def open_session(cfg: BenchConfig, progress: bool = True) -> Session:
    from xreal_bench.conditioning import ConditionBuilder
    from xreal_bench.data.dataset import load_dataset

    info = distributed.init_distributed()
    device = distributed.resolve_device(cfg.run.device, info)
    weights = WeightsManager(cfg.weights.dir or None)
    if info.is_main:
        scan = load_dataset(cfg, progress=progress)
    distributed.barrier()  # rank 0 may have written the synthetic data set
    if not info.is_main:
        scan = load_dataset(cfg, progress=False)
    if not scan.cases:
        raise UserFacingError(
            f"no cases to evaluate in {scan.root} (split {cfg.dataset.split!r}, views {cfg.dataset.views}); "
            f"missing files: {len(scan.missing)}, corrupt: {len(scan.corrupt)} — check `xreal-bench data summary`"
        )
    builder = ConditionBuilder(cfg, scan, weights=weights, device=device)
    return Session(cfg, scan, builder, info, device, weights)


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
    """Run (or resume) every selected generator; print a summary per generator on rank 0."""
    chosen = select_generators(session.cfg, names)
    summaries = []
    for name, gcfg in chosen.items():
        local = run_generator(
            session.cfg,
            name,
            gcfg,
            cases=session.scan.cases,
            builder=session.builder,
            info=session.info,
            device=session.device,
            overwrite=overwrite,
            progress=progress,
        )
        merged = functools.reduce(GenerationSummary.merge, distributed.gather_objects(local))
        summaries.append(merged)
        if session.info.is_main:
            print(merged.describe(), file=sys.stderr if merged.failed else sys.stdout)
    return summaries
