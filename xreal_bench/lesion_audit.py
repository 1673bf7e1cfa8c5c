"""Lesion-in-box adherence: does the classifier's evidence for a case's boxed finding lie in the box?

Targets come from the run's ``cases.jsonl`` (:func:`xreal_bench.cases.read_cases`): only boxes whose
source is ``boxes_csv`` count — annotated lesions, where the real image shows the finding there too
(the anatomy rule and random fallbacks only say where a finding could be). A box's label must be one
of the classifier's labels, else the box is skipped and counted. A case with boxes of several usable
labels is scored on the first label in CheXpert order (the other labels' boxes are skipped and
counted); several boxes of that label are scored as their union.

Per image of a boxed case, from the classifier's Grad-CAM map of that label
(:meth:`~xreal_bench.metrics.evaluators.base.Classifier.evidence_maps`: gradient of the pre-sigmoid
logit at its last convolutional feature map) and the measures of :mod:`xreal_bench.metrics.gradcam`:
the metric's value is the share of evidence energy inside the box, its parts the pointing game and
the laterality share (lungs from the conditioning's anatomy maps of the case; NaN without anatomy).
Images of cases without a target get NaN (excluded from the means and counted). The real images are
scored first, as the reference row, then each generator's images.

Cost: the one extra decode and forward/backward pass of the suite, bounded by the boxed cases — only
their images are decoded again (real images as the evaluation pass decodes them, generated ones as
stored) and sent through the classifier with gradients; with several ranks each takes every
``world``-th boxed image and the values are gathered.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm import tqdm

from xreal_bench import distributed
from xreal_bench.cases import read_cases
from xreal_bench.conditioning.prepare import anatomy_source
from xreal_bench.evaluation import REFERENCE, preprocessing
from xreal_bench.imaging import ImageDecodeError, dequantize, resize_label_map
from xreal_bench.labels import ANATOMY_CLASSES, CHEXPERT_LABELS
from xreal_bench.metrics import table
from xreal_bench.metrics.evaluators.base import NoEvidenceMapsError, no_evidence_message
from xreal_bench.metrics.gradcam import in_box_share, laterality_share, pointing_hit

if TYPE_CHECKING:
    from xreal_bench.conditioning.anatomy import AnatomyMaps
    from xreal_bench.evaluation import BesidePass
    from xreal_bench.metrics.engine import ImageItem, Preprocessing, SourceOutputs
    from xreal_bench.metrics.evaluators.base import Classifier
    from xreal_bench.metrics.suite import Suite
    from xreal_bench.pipeline import Session
    from xreal_bench.types import Box, BoxSet, CaseFacts

#: The only box source scored: annotated lesions.
ANNOTATED = "boxes_csv"
GRADIENT_TARGET = "pre-sigmoid logit of the box's label"
NO_BOXES = (
    "cases.jsonl holds no pathology boxes (no box source, or generated before this metric was enabled); "
    "set [conditioning].boxes_csv and re-run `xreal-bench generate` (finished images are kept) to write them"
)
POINTING, LATERALITY = table.LESION.parts


@dataclass(frozen=True)
class LesionTarget:
    """What a boxed case is scored on: the label (its classifier column) and its boxes."""

    label: str
    column: int
    boxes: tuple[Box, ...]

    def mask(self, size: int) -> np.ndarray:
        """The union of the boxes as a bool ``[size, size]`` mask of the working image."""
        mask = np.zeros((size, size), dtype=bool)
        for box in self.boxes:
            x0, y0, x1, y1 = box.clipped().pixels(size)
            mask[y0:y1, x0:x1] = True
        return mask


def choose_target(box_set: BoxSet, labels: Sequence[str]) -> tuple[LesionTarget | None, list[str]]:
    """The case's target among its annotated boxes and why each other box is skipped."""
    skipped = [f"label {b.label!r} is not a classifier label" for b in box_set.boxes if b.label not in labels]
    usable = [b for b in box_set.boxes if b.label in labels]
    if not usable:
        return None, skipped
    label = min((b.label for b in usable), key=CHEXPERT_LABELS.index)
    skipped += [f"label {b.label!r}: the case is scored on a label first in CheXpert order" for b in usable if b.label != label]
    return LesionTarget(label, list(labels).index(label), tuple(b for b in usable if b.label == label)), skipped


@dataclass(frozen=True)
class TargetPlan:
    """The evaluated cases' targets, the boxes left out (by reason) and the cases without a target (by box source)."""

    targets: dict[str, LesionTarget]
    skipped: dict[str, int]
    unscored: dict[str, int]


def lesion_targets(facts: Mapping[str, CaseFacts], case_ids: Sequence[str], labels: Sequence[str]) -> TargetPlan:
    """The targets of ``case_ids`` for a classifier of ``labels``."""
    targets: dict[str, LesionTarget] = {}
    skipped: Counter[str] = Counter()
    unscored: Counter[str] = Counter()
    for case_id in case_ids:
        found = facts.get(case_id)
        box_set = found.boxes if found is not None else None
        if box_set is None or box_set.source != ANNOTATED:
            source = box_set.source if box_set is not None else "random" if found and found.sample_boxes else "none"
            unscored[source] += 1
            continue
        target, reasons = choose_target(box_set, labels)
        skipped.update(reasons)
        if target is None:
            unscored["boxes_csv without a classifier label"] += 1
        else:
            targets[case_id] = target
    return TargetPlan(targets, dict(skipped), dict(unscored))


def image_values(cam: np.ndarray, box: np.ndarray, lungs: tuple[np.ndarray, np.ndarray] | None) -> tuple[float, float, float]:
    """``(in-box share, pointing hit, laterality share)`` of one Grad-CAM map."""
    laterality = laterality_share(cam, box, *lungs) if lungs is not None else float("nan")
    return in_box_share(cam, box), pointing_hit(cam, box), laterality


class LesionAudit:
    """The :class:`~xreal_bench.evaluation.BesidePass` of lesion-in-box adherence (see the module docstring)."""

    key = "lesion"

    def __init__(
        self,
        classifier: Classifier,
        plan: TargetPlan,
        *,
        prep: Preprocessing,
        anatomy: AnatomyMaps | None,
        info: distributed.DistInfo,
        batch_size: int,
        evaluator: str,
        anatomy_note: str,
        progress: bool = False,
    ):
        self.classifier, self.plan, self.targets, self.prep = classifier, plan, plan.targets, prep
        self.info, self.batch_size, self.evaluator, self.progress = info, max(1, batch_size), evaluator, progress
        self.anatomy, self.anatomy_note = anatomy, anatomy_note
        self.images: dict[str, dict[str, int]] = {}

    def annotate(self, source: str, outputs: SourceOutputs, items: Sequence[ImageItem]) -> None:
        paths = {(i.case_id, i.sample_index): i.path for i in items}
        prep = self.prep if source == REFERENCE else self.prep.stored()
        rows = [i for i, key in enumerate(outputs.keys) if key[0] in self.targets and key in paths]
        mine = distributed.shard(rows, self.info)
        found: dict[int, tuple[float, float, float]] = {}
        undecodable = 0
        batches = range(0, len(mine), self.batch_size)
        for start in tqdm(batches, disable=not self.progress, desc=f"lesion-in-box ({source})", unit="batch"):
            batch, pixels = [], []
            for row in mine[start : start + self.batch_size]:
                try:
                    pixels.append(dequantize(prep.load(paths[outputs.keys[row]])))
                    batch.append(row)
                except ImageDecodeError:
                    undecodable += 1
            if batch:
                found.update(self.score(batch, pixels, outputs.keys))
        values = np.full((3, len(outputs.keys)), np.nan, dtype=np.float64)
        gathered = distributed.gather_objects((found, undecodable))
        for part, _ in gathered:
            for row, triple in part.items():
                values[:, row] = triple
        for entry, column in zip((table.LESION, POINTING, LATERALITY), values):
            outputs.extra[entry.key] = column
        self.images[source] = {"boxed": len(rows), "undecodable": sum(lost for _, lost in gathered)}

    def score(self, rows: list[int], pixels: list[np.ndarray], keys: Sequence[tuple[str, int]]):
        """Grad-CAM of each image's target label, then its three values (row -> values)."""
        targets = [self.targets[keys[row][0]] for row in rows]
        images = torch.from_numpy(np.stack(pixels))[:, None]
        cams = self.classifier.evidence_maps(images, [t.column for t in targets]).numpy()
        size = images.shape[-1]
        return {
            row: image_values(cam, target.mask(size), self.lungs(keys[row][0], size))
            for row, cam, target in zip(rows, cams, targets)
        }

    def lungs(self, case_id: str, size: int) -> tuple[np.ndarray, np.ndarray] | None:
        """The case's (patient's left, right) lung masks at ``size`` (left lung: on the image's right)."""
        if self.anatomy is None:
            return None
        labels = resize_label_map(self.anatomy.load(case_id), size)
        return labels == ANATOMY_CLASSES["left_lung"], labels == ANATOMY_CLASSES["right_lung"]

    def provenance(self) -> dict:
        return {
            "classifier": self.evaluator,
            "method": "Grad-CAM (Selvaraju et al. 2017), bilinearly upsampled to the image",
            "layer": self.classifier.evidence_layer,
            "gradient_target": GRADIENT_TARGET,
            "box_source": ANNOTATED,
            "boxed_cases": len(self.targets),
            "labels": dict(sorted(Counter(t.label for t in self.targets.values()).items())),
            "unscored_cases": self.plan.unscored,
            "skipped_boxes": self.plan.skipped,
            "laterality": self.anatomy_note,
            "images": self.images,
        }

    def write(self, out: Path, *, kept: set[str]) -> None:
        """Everything is in ``results.json`` and ``per_image.csv``: no file of its own."""


def lesion_audit(session: Session, suite: Suite, progress: bool) -> BesidePass | None:
    """The lesion-in-box pass when ``lesion_in_box`` is enabled and the suite has a classifier, else None."""
    classifier = suite.classifier
    if table.LESION.name not in session.cfg.metrics.enabled or classifier is None:
        return None
    if not classifier.evidence_layer:
        raise NoEvidenceMapsError(f"{table.LESION.name}: {no_evidence_message(classifier.name)}")
    cfg = session.cfg
    evaluated = [c.case_id for c in session.scan.cases]
    facts = read_cases(cfg.run.out)
    if session.info.is_main and not any(f.has_boxes for f in facts.values()):
        print(f"warning: {table.LESION.name}: {NO_BOXES}", file=sys.stderr)
    plan = lesion_targets(facts, evaluated, classifier.labels)
    source = anatomy_source(cfg, weights=session.weights, device=session.device)
    anatomy, note = None, "no anatomy maps ([conditioning].anatomy = 'none'): laterality is NaN"
    if source is not None:
        boxed = [c for c in session.scan.cases if c.case_id in plan.targets]
        anatomy = source.maps(boxed, progress and session.info.is_main)
        note = f"lungs from the conditioning's anatomy maps ([conditioning].anatomy = {cfg.conditioning.anatomy!r})"
    return LesionAudit(
        classifier,
        plan,
        prep=preprocessing(session),
        anatomy=anatomy,
        info=session.info,
        batch_size=cfg.metrics.batch_size,
        evaluator=suite.label(table.LESION.name),
        anatomy_note=note,
        progress=progress and session.info.is_main,
    )
