"""Cases -> Conditions: labels, prompt, report text, anatomy map, pathology boxes and mask.

Use: ``builder.prepare(needs)`` once with the union of the inputs every enabled generator
declares (it raises before any generation if one cannot be supplied, and segments or checks
every anatomy map up front), then ``builder.build(case, sample_index, seed)`` per sample.

- prompt: ``[conditioning].prompt_separator`` joining the case's positive pathologies;
- report: IMPRESSION, else FINDINGS (``report_section = "findings"``: the reverse);
- anatomy maps and boxes of the synthetic demo set default to its ground truth
  (``<root>/anatomy/<dicom_id>.png``, ``<root>/ms-cxr-boxes.csv``) when
  ``anatomy_dir``/``boxes_csv`` are empty;
- pathology boxes: the box CSV's boxes for the case if it has any, else ``box_fallback``
  (see :mod:`xreal_bench.conditioning.boxes`); the conditioning's own randomness is seeded
  from ``(run.seed, case_id, sample_index)``, never from the generation seed, so every
  generator sees the same boxes for a sample.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from xreal_bench.generators.base import INPUT_KINDS
from xreal_bench.conditioning.anatomy import AnatomySource, FolderAnatomy, Segmenter, SegmenterAnatomy
from xreal_bench.conditioning.boxes import (
    BoxTable,
    anatomy_rule_boxes,
    boxes_mask,
    csv_boxes,
    random_boxes,
    read_box_csv,
)
from xreal_bench.config import BenchConfig
from xreal_bench.errors import UserFacingError
from xreal_bench.types import Box, Case, Condition

if TYPE_CHECKING:
    from xreal_bench.data.mimic import DatasetScan
    from xreal_bench.weights import WeightsManager



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
    """Factory for torchxrayvision's PSPNet (``xreal_bench.metrics.evaluators``), built only when maps are missing."""

    def factory() -> Segmenter:
        from xreal_bench.metrics.evaluators import build_segmenter

        return build_segmenter("xrv-pspnet", weights=weights, device=device, pspnet_left_lung=left_lung)

    return factory


class ConditionBuilder:
    def __init__(
        self,
        cfg: BenchConfig,
        scan: DatasetScan,
        weights: WeightsManager | None = None,
        segmenter_factory: Callable[[], Segmenter] | None = None,
        device: str = "cpu",
        progress: bool = True,
    ):
        from xreal_bench.weights import WeightsManager

        self.cfg = cfg
        self.scan = scan
        self.progress = progress
        self.weights = weights or WeightsManager(cfg.weights.dir or None)
        cc = cfg.conditioning
        self.resolution = cc.resolution
        self.square = cfg.dataset.square
        self.anatomy_dir, self.boxes_csv = input_paths(cfg)
        self.anatomy: AnatomySource | None = None
        if cc.anatomy == "folder" and self.anatomy_dir:
            self.anatomy = FolderAnatomy(Path(self.anatomy_dir), self.resolution, self.square)
        elif cc.anatomy == "pspnet":
            factory = segmenter_factory or default_segmenter_factory(self.weights, device, cfg.metrics.pspnet_left_lung)
            cache = Path(cc.cache_dir) if cc.cache_dir else cfg.out / ".cache"
            self.anatomy = SegmenterAnatomy(factory, cache, self.resolution, self.square, cfg.metrics.batch_size)
        self.needs: set[str] | None = None
        self.box_table: BoxTable | None = None
        self.csv: dict[str, tuple[tuple[Box, ...], tuple[str, ...]]] = {}  # case_id -> CSV boxes, notes
        self.csv_checked: set[str] = set()  # case_ids looked up in the box CSV

    # ------------------------------------------------------------ what can be supplied

    def unavailable(self) -> dict[str, str]:
        """Input kind -> why this dataset + config cannot supply it."""
        cc = self.cfg.conditioning
        why: dict[str, str] = {}
        if not any(c.findings or c.impression for c in self.scan.cases):
            where = self.cfg.dataset.reports_root or f"{self.scan.root}/files"
            why["text"] = (
                f"no case has FINDINGS/IMPRESSION text (reports looked for as files/p../p<subject>/s<study>.txt "
                f"under {where}; set [dataset].reports_root to the MIMIC-CXR reports tree)"
            )
        if self.anatomy is None:
            why["anatomy"] = (
                "[conditioning].anatomy = 'none'"
                if cc.anatomy == "none"
                else "[conditioning].anatomy = 'folder' but anatomy_dir is empty"
            ) + "; set anatomy = 'folder' with anatomy_dir = <folder of <case_id>.png maps>, or anatomy = 'pspnet'"
        if not self.boxes_csv and (cc.box_fallback == "none" or self.anatomy is None):
            reason = "box_fallback = 'none'" if cc.box_fallback == "none" else f"box_fallback = {cc.box_fallback!r} needs anatomy maps"
            why["pathology"] = f"no [conditioning].boxes_csv and {reason}"
        return why

    def available_inputs(self) -> set[str]:
        """The input kinds (of ``xreal_bench.generators.base.INPUT_KINDS``) this dataset + config can supply."""
        return set(INPUT_KINDS) - set(self.unavailable())

    # ------------------------------------------------------------ before generation

    def prepare(self, needs: set[str], cases: Sequence[Case] | None = None) -> None:
        """Check every needed input can be supplied and precompute anatomy maps and CSV boxes
        for ``cases`` (default: every case of the scan; a shard may pass only its own).
        Repeated calls (one per generator) only do the work not done yet."""
        needs = set(needs)
        unknown = needs - set(INPUT_KINDS)
        if unknown:
            raise ValueError(f"unknown input kind(s) {sorted(unknown)}; known: {', '.join(INPUT_KINDS)}")
        why = self.unavailable()
        lacking = sorted(needs & set(why))
        if lacking:
            raise ConditioningError(
                "the enabled generators need inputs this dataset/config cannot supply:\n"
                + "\n".join(f"  {kind}: {why[kind]}" for kind in lacking)
            )
        cases = self.scan.cases if cases is None else list(cases)
        cc = self.cfg.conditioning
        need_anatomy = "anatomy" in needs
        if "pathology" in needs:
            if self.boxes_csv:
                self.box_table = self.box_table or read_box_csv(self.boxes_csv, cc.boxes_format)
                for c in cases:
                    if c.case_id in self.box_table.boxes and c.case_id not in self.csv_checked:
                        raws = self.box_table.boxes[c.case_id]
                        self.csv[c.case_id] = csv_boxes(raws, c.image_path, self.scan.image_sizes.get(c.case_id), self.square)
                    self.csv_checked.add(c.case_id)
            uncovered = sum(c.case_id not in self.csv for c in cases)
            if uncovered and cc.box_fallback != "none":
                if self.anatomy is None:
                    raise ConditioningError(
                        f"{uncovered} of {len(cases)} cases have no box in {self.boxes_csv} and box_fallback = "
                        f"{cc.box_fallback!r} needs anatomy maps, but {self.unavailable()['anatomy']}; "
                        "or set box_fallback = 'none'"
                    )
                need_anatomy = True
        if need_anatomy:
            self.anatomy.prepare(cases, self.progress)
        self.needs = needs

    # ------------------------------------------------------------ per sample

    def report_text(self, case: Case) -> str:
        order = (case.impression, case.findings)
        if self.cfg.conditioning.report_section == "findings":
            order = order[::-1]
        return next((text for text in order if text), "")

    def build(self, case: Case, sample_index: int, seed: int) -> Condition:
        """The Condition of one sample; ``seed`` is its generation seed (recorded, not used here)."""
        if self.needs is None:
            raise RuntimeError("ConditionBuilder.prepare(needs) must run before build()")
        notes: list[str] = []
        report = self.report_text(case)
        if "text" in self.needs and not report:
            notes.append("no FINDINGS/IMPRESSION text for this case; report is empty")
        anatomy = None
        if self.anatomy is not None and self.anatomy.paths:
            anatomy = self.anatomy.load(case.case_id).copy()
        boxes: tuple[Box, ...] = ()
        mask = None
        source = "none"
        if "pathology" in self.needs:
            boxes, source, box_notes = self.pathology_boxes(case, sample_index, anatomy, report)
            notes.extend(box_notes)
            mask = boxes_mask(boxes, self.resolution)
        return Condition(
            case_id=case.case_id,
            sample_index=sample_index,
            seed=seed,
            labels=case.labels,
            prompt=self.cfg.conditioning.prompt_separator.join(case.positives),
            report=report,
            image_path=case.image_path,
            view=case.view,
            anatomy=anatomy,
            pathology_mask=mask,
            boxes=boxes,
            mask_source=source,
            notes=tuple(notes),
        )

    def pathology_boxes(
        self, case: Case, sample_index: int, anatomy: np.ndarray | None, report: str
    ) -> tuple[tuple[Box, ...], str, tuple[str, ...]]:
        if case.case_id in self.csv:
            boxes, notes = self.csv[case.case_id]
            return boxes, "boxes_csv", notes
        fallback = self.cfg.conditioning.box_fallback
        if fallback == "none":
            return (), "none", ()
        if not case.positives:
            return (), "none", ("no positive pathology; no box",)
        if fallback == "anatomy":
            text = " ".join(t for t in (case.findings, case.impression) if t)
            boxes, notes = anatomy_rule_boxes(case.positives, anatomy, text)
            return boxes, "anatomy_rule", notes
        rng = conditioning_rng(self.cfg.run.seed, case.case_id, sample_index)
        boxes, notes = random_boxes(case.positives, anatomy, rng)
        return boxes, "random", notes
