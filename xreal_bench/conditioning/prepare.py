"""Before generation: check that the needed inputs can be supplied and prepare every case's facts.

:func:`prepare_case_facts` runs once per run, before any image is generated. It raises if an
input the generators read cannot be supplied, finds (or segments) every anatomy map it needs and
computes each case's pathology boxes, giving a read-only :class:`PreparedCases` whose ``build``
turns a sample into its Condition through the pure :func:`~xreal_bench.conditioning.builder.build_condition`.

- anatomy maps and boxes of the synthetic demo set default to its ground truth
  (``<root>/anatomy/<dicom_id>.png``, ``<root>/ms-cxr-boxes.csv``) when
  ``anatomy_dir``/``boxes_csv`` are empty;
- pathology boxes: the box CSV's boxes for the case if it has any, else ``box_fallback``
  (see :mod:`xreal_bench.conditioning.boxes`). The ``random`` fallback draws each sample's boxes
  from :func:`conditioning_rng` ``(run.seed, case_id, sample_index)``, never from the generation
  seed, so every generator sees the same boxes for a sample.
- boxes are computed when a generator that runs reads ``pathology`` (an input that cannot be
  supplied is an error), and otherwise when ``want_boxes`` asks for them and they can be supplied
  (the run writes them to ``cases.jsonl`` for the reader study's ``show_box``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

import numpy as np

from xreal_bench.conditioning.anatomy import AnatomyMaps, AnatomySource, FolderAnatomy, Segmenter, SegmenterAnatomy
from xreal_bench.conditioning.boxes import anatomy_rule_boxes, csv_boxes, random_boxes, read_box_csv
from xreal_bench.conditioning.builder import ConditionSettings, build_condition
from xreal_bench.config import BenchConfig
from xreal_bench.errors import UserFacingError
from xreal_bench.types import INPUT_KINDS, BoxSet, Case, CaseFacts, Condition

if TYPE_CHECKING:
    from xreal_bench.data.mimic import DatasetScan
    from xreal_bench.weights import WeightsManager

NO_POSITIVE_NOTE = "no positive pathology; no box"


class ConditioningError(UserFacingError):
    """An input a generator needs cannot be supplied for this dataset and config."""


def conditioning_rng(run_seed: int, case_id: str, sample_index: int) -> np.random.Generator:
    """The conditioning's own random stream for one sample (independent of the generator)."""
    key = f"{run_seed}|conditioning|{case_id}|{sample_index}".encode()
    return np.random.default_rng(int.from_bytes(hashlib.sha256(key).digest()[:8], "little"))


def input_paths(cfg: BenchConfig) -> tuple[str, str]:
    """``(anatomy_dir, boxes_csv)``: the configured ones; for the synthetic demo set, empty
    values mean the ground truth it writes (``<root>/anatomy``, ``<root>/ms-cxr-boxes.csv``)."""
    cc = cfg.conditioning
    if cfg.dataset.kind != "synthetic":
        return cc.anatomy_dir, cc.boxes_csv
    from xreal_bench.demo.synthetic import ANATOMY_DIR, BOXES_CSV

    root = Path(cfg.dataset.root)
    return cc.anatomy_dir or str(root / ANATOMY_DIR), cc.boxes_csv or str(root / BOXES_CSV)


def default_segmenter_factory(weights: WeightsManager, device: str, left_lung: str = "patient-left") -> Callable[[], Segmenter]:
    """Factory for torchxrayvision's PSPNet, looked up in the evaluator registry and built only when maps are missing."""

    def factory() -> Segmenter:
        import torch

        from xreal_bench.registry import EVALUATORS

        build = EVALUATORS["segmenter"].get("xrv-pspnet")
        return build(weights=weights, device=torch.device(device), pspnet_left_lung=left_lung)

    return factory


def anatomy_configured(cfg: BenchConfig) -> bool:
    return cfg.conditioning.anatomy == "pspnet" or (cfg.conditioning.anatomy == "folder" and bool(input_paths(cfg)[0]))


def unavailable_inputs(cfg: BenchConfig, scan: DatasetScan) -> dict[str, str]:
    """Input kind -> why this dataset + config cannot supply it."""
    cc = cfg.conditioning
    boxes_csv = input_paths(cfg)[1]
    why: dict[str, str] = {}
    if not any(c.findings or c.impression for c in scan.cases):
        where = cfg.dataset.reports_root or f"{scan.root}/files"
        why["text"] = (
            f"no case has FINDINGS/IMPRESSION text (reports looked for as files/p../p<subject>/s<study>.txt "
            f"under {where}; set [dataset].reports_root to the MIMIC-CXR reports tree)"
        )
    if not anatomy_configured(cfg):
        why["anatomy"] = (
            "[conditioning].anatomy = 'none'"
            if cc.anatomy == "none"
            else "[conditioning].anatomy = 'folder' but anatomy_dir is empty"
        ) + "; set anatomy = 'folder' with anatomy_dir = <folder of <case_id>.png maps>, or anatomy = 'pspnet'"
    if not boxes_csv and (cc.box_fallback == "none" or not anatomy_configured(cfg)):
        reason = (
            "box_fallback = 'none'" if cc.box_fallback == "none" else f"box_fallback = {cc.box_fallback!r} needs anatomy maps"
        )
        why["pathology"] = f"no [conditioning].boxes_csv and {reason}"
    return why


def available_inputs(cfg: BenchConfig, scan: DatasetScan) -> frozenset[str]:
    """The input kinds (of :data:`~xreal_bench.types.INPUT_KINDS`) this dataset + config can supply."""
    return frozenset(INPUT_KINDS) - set(unavailable_inputs(cfg, scan))


def anatomy_source(
    cfg: BenchConfig,
    *,
    weights: WeightsManager | None = None,
    segmenter_factory: Callable[[], Segmenter] | None = None,
    device: str = "cpu",
) -> AnatomySource | None:
    """Where the label maps come from under ``[conditioning]``; ``None`` when nowhere."""
    cc = cfg.conditioning
    if not anatomy_configured(cfg):
        return None
    if cc.anatomy == "folder":
        return FolderAnatomy(Path(input_paths(cfg)[0]), cc.resolution, cfg.dataset.geometry)
    variant = ""
    if segmenter_factory is None:
        from xreal_bench.weights import WeightsManager

        weights = weights or WeightsManager(cfg.weights.dir or None)
        segmenter_factory = default_segmenter_factory(weights, device, cfg.metrics.pspnet_left_lung)
        variant = f"left-{cfg.metrics.pspnet_left_lung}"
    cache = Path(cc.cache_dir) if cc.cache_dir else cfg.out / ".cache"
    return SegmenterAnatomy(
        segmenter_factory, cache, cc.resolution, cfg.dataset.geometry, cfg.metrics.batch_size, variant=variant
    )


def anatomy_maps(
    cfg: BenchConfig,
    scan: DatasetScan,
    *,
    weights: WeightsManager | None = None,
    segmenter_factory: Callable[[], Segmenter] | None = None,
    device: str = "cpu",
    progress: bool = True,
) -> AnatomyMaps:
    """Every scan case's anatomy map (e.g. Dice references); raises if maps cannot be supplied."""
    source = anatomy_source(cfg, weights=weights, segmenter_factory=segmenter_factory, device=device)
    if source is None:
        raise ConditioningError(f"anatomy maps cannot be supplied: {unavailable_inputs(cfg, scan)['anatomy']}")
    return source.maps(scan.cases, progress)


@dataclass(frozen=True, eq=False)
class PreparedCases:
    """Everything Conditions are built from, prepared before generation; read-only.

    ``facts``: case_id -> :class:`CaseFacts`; ``anatomy``: the prepared label maps (or ``None``);
    ``available``: the inputs this dataset + config can supply; ``reads``: those prepared.
    """

    facts: Mapping[str, CaseFacts]
    anatomy: AnatomyMaps | None
    settings: ConditionSettings
    available: frozenset[str]
    reads: frozenset[str]

    def build(self, case: Case, sample_index: int, seed: int, *, reads: Collection[str] | None = None) -> Condition:
        """The Condition of ``case``'s sample for a generator reading ``reads`` (default: every prepared input)."""
        reads = self.reads if reads is None else frozenset(reads)
        anatomy = self.anatomy.load(case.case_id) if "anatomy" in reads and self.anatomy is not None else None
        facts = self.facts.get(case.case_id)
        if facts is None:
            raise RuntimeError(f"no case facts prepared for case {case.case_id!r}")
        return build_condition(facts, sample_index=sample_index, seed=seed, reads=reads, anatomy=anatomy, settings=self.settings)


def prepare_case_facts(
    cfg: BenchConfig,
    scan: DatasetScan,
    *,
    reads: Collection[str],
    want_boxes: bool = False,
    cases: Sequence[Case] | None = None,
    weights: WeightsManager | None = None,
    segmenter_factory: Callable[[], Segmenter] | None = None,
    device: str = "cpu",
    progress: bool = True,
) -> PreparedCases:
    """Check that ``reads`` (the union of the inputs the generators to run read) can be supplied,
    then prepare the facts of ``cases`` (default: every case of the scan; a rank may pass only
    its own): anatomy maps when read or needed for fallback boxes, and the boxes (see the module
    docstring for when)."""
    reads = frozenset(reads)
    unknown = reads - set(INPUT_KINDS)
    if unknown:
        raise ValueError(f"unknown input kind(s) {sorted(unknown)}; known: {', '.join(INPUT_KINDS)}")
    why = unavailable_inputs(cfg, scan)
    lacking = sorted(reads & set(why))
    if lacking:
        raise ConditioningError(
            "the enabled generators need inputs this dataset/config cannot supply:\n"
            + "\n".join(f"  {kind}: {why[kind]}" for kind in lacking)
        )
    cases = list(scan.cases if cases is None else cases)
    cc = cfg.conditioning
    source = anatomy_source(cfg, weights=weights, segmenter_factory=segmenter_factory, device=device)
    with_boxes = "pathology" in reads or (want_boxes and "pathology" not in why)
    csv = csv_box_sets(cfg, scan, cases) if with_boxes else {}
    uncovered = sum(c.case_id not in csv for c in cases)
    need_anatomy = "anatomy" in reads
    if with_boxes and uncovered and cc.box_fallback != "none":
        if source is None and "pathology" in reads:
            raise ConditioningError(
                f"{uncovered} of {len(cases)} cases have no box in {input_paths(cfg)[1]} and box_fallback = "
                f"{cc.box_fallback!r} needs anatomy maps, but {why['anatomy']}; or set box_fallback = 'none'"
            )
        with_boxes = source is not None  # wanted only for show_box: left out when they cannot all be supplied
        need_anatomy = need_anatomy or with_boxes
    maps = source.maps(cases, progress) if need_anatomy and source is not None else None
    facts = {
        c.case_id: case_facts(c, csv=csv.get(c.case_id), cfg=cfg, anatomy=maps) if with_boxes else CaseFacts(c) for c in cases
    }
    return PreparedCases(
        facts=MappingProxyType(facts),
        anatomy=maps,
        settings=ConditionSettings.from_config(cfg),
        available=available_inputs(cfg, scan),
        reads=reads,
    )


def csv_box_sets(cfg: BenchConfig, scan: DatasetScan, cases: Sequence[Case]) -> dict[str, BoxSet]:
    """case_id -> its boxes from the box CSV, for the cases the CSV has boxes for."""
    boxes_csv = input_paths(cfg)[1]
    if not boxes_csv:
        return {}
    table = read_box_csv(boxes_csv, cfg.conditioning.boxes_format)
    sets = {}
    for c in cases:
        if c.case_id in table.boxes:
            boxes, notes = csv_boxes(table.boxes[c.case_id], c.image_path, scan.image_sizes.get(c.case_id), cfg.dataset.square)
            sets[c.case_id] = BoxSet("boxes_csv", boxes, notes)
    return sets


def case_facts(case: Case, *, csv: BoxSet | None, cfg: BenchConfig, anatomy: AnatomyMaps | None) -> CaseFacts:
    """The case with its boxes: the CSV's if any, else ``box_fallback``'s (per sample for ``random``)."""
    fallback = cfg.conditioning.box_fallback
    if csv is not None:
        return CaseFacts(case, boxes=csv)
    if fallback == "none":
        return CaseFacts(case, boxes=BoxSet())
    if not case.positives:
        return CaseFacts(case, boxes=BoxSet(notes=(NO_POSITIVE_NOTE,)))
    if anatomy is None:
        raise RuntimeError(f"box_fallback = {fallback!r} needs the anatomy maps, which were not prepared")
    label_map = anatomy.load(case.case_id)
    if fallback == "anatomy":
        text = " ".join(t for t in (case.findings, case.impression) if t)
        return CaseFacts(case, boxes=BoxSet("anatomy_rule", *anatomy_rule_boxes(case.positives, label_map, text)))
    samples = tuple(
        BoxSet("random", *random_boxes(case.positives, label_map, conditioning_rng(cfg.run.seed, case.case_id, k)))
        for k in range(cfg.run.samples_per_condition)
    )
    return CaseFacts(case, sample_boxes=samples)
