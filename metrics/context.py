"""What a metric's compute function works with: one generator's :class:`ScoringContext`, and the
:class:`ResultRow` values it returns (one per generator, metric and subset).

Work shared by several metrics of a generator (the pathology subsets and demographic subgroups, the
one vectorised classification bootstrap behind F1 and AUC per subset, KID's case kernel sums) is
computed once per context, on first use.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from xreal_bench.labels import CHEXPERT_LABELS, NON_PATHOLOGY_LABELS, XREAL_LABELS, label_index
from xreal_bench.metrics.bootstrap import bootstrap_ci
from xreal_bench.metrics.classification import (
    ClassificationCI,
    ClassificationResult,
    Thresholds,
    bootstrap_classification,
    evaluate_classification,
)
from xreal_bench.metrics.fid import KID_KERNEL, CaseKernelSums, Kernel
from xreal_bench.subgroups import Subgroup, case_subgroups, ordered

if TYPE_CHECKING:
    from xreal_bench.metrics.engine import SourceOutputs
    from xreal_bench.metrics.suite import Suite
    from xreal_bench.metrics.table import Metric
    from xreal_bench.types import Case

PATHOLOGIES = tuple(n for n in CHEXPERT_LABELS if n not in NON_PATHOLOGY_LABELS)
#: Stand-in when no metric needs thresholds (AUC alone): every class's F1 is skipped, AUC is unaffected.
NO_THRESHOLDS = Thresholds({}, "none", "no enabled metric needs thresholds")

NO_CI = (float("nan"), float("nan"))
#: (``all``, a pathology or a subgroup such as ``sex:female``, indices into the generator's images)
Subset = tuple[str, np.ndarray]


@dataclass
class ResultRow:
    """One ``results.csv`` row; ``draws`` (the resampled statistics behind the CI) go to ``bootstrap.npz``."""

    generator: str
    metric: str
    value: float
    ci_low: float = float("nan")
    ci_high: float = float("nan")
    n: int = 0
    subset: str = "all"
    evaluator: str = ""
    note: str = ""
    failed: int = 0  # the generator's failed images (generation failures + undecodable files), on each of its rows
    missing: int = 0  # the generator's planned images with no file, on each of its rows
    n_unit: str = ""  # what ``n`` counts ("images" / "cases"; "" = as the metric table says)
    draws: np.ndarray | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class ScoringSettings:
    enabled: Sequence[str]
    bootstrap: int
    fid_bootstrap: int
    confidence: float
    seed: int
    subsets: bool
    min_subset_n: int
    kid_subsets: int
    kid_subset_size: int
    label_set: Sequence[str]
    f1_zero_division: float
    embedding: str = "dinov2"  # feature role of PRDC, Vendi and memorization (``metrics.embedding``)
    prdc_k: int = 5
    subgroups: bool = True  # rows per demographic subgroup when the cases have demographics
    age_edges: tuple[int, ...] = (0, 40, 60, 80)


@dataclass(frozen=True)
class Classification:
    """Per-class and macro F1/AUC of one generator, with CIs from one set of resamples (None: CIs off)."""

    result: ClassificationResult
    ci: ClassificationCI | None
    n_cases: int
    class_cases: dict[str, tuple[int, int]]  # label -> (cases labelled, positive cases)


def evaluated_labels(label_set: Sequence[str], classifier_labels: Sequence[str]) -> list[str]:
    """The labels F1/AUC average over: ``classifier`` (all it outputs), ``xreal`` (the paper's seven), or names."""
    wanted: list[str] = []
    for item in label_set:
        names = classifier_labels if item == "classifier" else XREAL_LABELS if item == "xreal" else [item]
        wanted += [n for n in names if n not in wanted]
    return [n for n in wanted if n in classifier_labels]


def count(unit: str, groups: np.ndarray) -> int:
    """``n`` of a row: its images, or its distinct cases."""
    return len(groups) if unit == "images" else len(set(groups))


@dataclass(frozen=True)
class ScoringContext:
    """One generator's evaluator outputs and what they are scored against."""

    generator: str
    gen: SourceOutputs
    real: SourceOutputs
    cases: dict[str, Case]
    suite: Suite
    settings: ScoringSettings
    thresholds: Thresholds | None

    @property
    def is_reference(self) -> bool:
        """Scoring the real images themselves (no distance to themselves)."""
        return self.gen is self.real

    @cached_property
    def groups(self) -> np.ndarray:
        """The case id of each generated image."""
        return np.asarray(self.gen.case_ids)

    @cached_property
    def case_position(self) -> dict[str, int]:
        """Position of each covered case in sorted order (the bootstrap's group positions)."""
        return {c: k for k, c in enumerate(sorted(set(self.groups)))}

    @cached_property
    def real_index(self) -> dict[str, int]:
        """Row of each case in the real outputs."""
        return {k[0]: i for i, k in enumerate(self.real.keys)}

    @cached_property
    def subsets(self) -> tuple[Subset, ...]:
        """``all``, then each pathology with at least ``min_subset_n`` positive cases (if subsets are on)."""
        out: list[Subset] = [("all", np.arange(len(self.gen.keys)))]
        if self.settings.subsets:
            labels = [self.cases[c].labels for c in self.gen.case_ids]
            positives = np.array([[case[label_index(p)] == 1 for p in PATHOLOGIES] for case in labels])
            for j, p in enumerate(PATHOLOGIES):
                idx = np.flatnonzero(positives[:, j])
                if len(set(self.groups[idx])) >= self.settings.min_subset_n:
                    out.append((p, idx))
        return tuple(out)

    @cached_property
    def subgroups(self) -> tuple[Subset, ...]:
        """Each demographic subgroup (:mod:`xreal_bench.subgroups`) with at least ``min_subset_n`` covered cases, in
        display order, ``unknown`` ones included; none when subgroups are off or no case carries demographics. An
        attribute no covered case knows has no subgroups."""
        if not self.settings.subgroups:
            return ()
        covered = {c: self.cases[c] for c in dict.fromkeys(self.gen.case_ids)}
        of_case = case_subgroups(covered, age_edges=self.settings.age_edges)
        if not of_case:
            return ()
        members: dict[Subgroup, list[int]] = {}
        for i, case_id in enumerate(self.gen.case_ids):
            for subgroup in of_case[case_id]:
                members.setdefault(subgroup, []).append(i)
        known = {s.attribute for s in members if s.known}
        out: list[Subset] = []
        for subgroup in ordered(members):
            idx = np.asarray(members[subgroup], dtype=np.int64)
            if subgroup.attribute in known and len(set(self.groups[idx])) >= self.settings.min_subset_n:
                out.append((subgroup.subset, idx))
        return tuple(out)

    def resamples(self, metric: Metric) -> int:
        """Bootstrap resamples of the metric's CI (0: no CI)."""
        return getattr(self.settings, metric.ci) if metric.ci else 0

    def row(
        self,
        metric: Metric,
        value: float,
        *,
        n: int,
        subset: str = "all",
        note: str = "",
        ci: tuple[float, float] = NO_CI,
        draws: np.ndarray | None = None,
    ) -> ResultRow:
        """A row of ``metric`` for this generator, labelled with the evaluator behind it and the unit of ``n``."""
        label = self.suite.label(metric.name, embedding=self.settings.embedding)
        return ResultRow(self.generator, metric.name, value, *ci, n, subset, label, note, n_unit=metric.n_unit, draws=draws)

    def mean_row(self, metric: Metric, values, groups, *, subset: str = "all", note: str = "") -> ResultRow | None:
        """Mean of per-image (or per-case) values, NaN excluded and counted, with a grouped bootstrap CI."""
        values = np.asarray(values, dtype=np.float64)
        keep = ~np.isnan(values)
        if not keep.any():
            return None
        excluded = int((~keep).sum())
        if excluded:
            why = f" ({metric.undefined})" if metric.undefined else ""
            note = "; ".join(filter(None, [note, f"{excluded} undefined{why} excluded"]))
        v, g = values[keep], np.asarray(groups)[keep]
        n, resamples = count(metric.n_unit, g), self.resamples(metric)
        if not resamples:
            return self.row(metric, float(v.mean()), subset=subset, n=n, note=note)
        ci = bootstrap_ci(v, resamples, self.settings.confidence, self.settings.seed, groups=g)
        return self.row(metric, ci.estimate, subset=subset, n=n, note=note, ci=(ci.low, ci.high), draws=ci.draws)

    def classification(self, subset: Subset) -> Classification | None:
        """F1 and AUC of the classifier on the evaluated labels over the subset's images (None without a classifier or
        scores), computed once per subset."""
        name, idx = subset
        if name not in self._classification:
            self._classification[name] = self.classify(idx)
        return self._classification[name]

    @cached_property
    def _classification(self) -> dict[str, Classification | None]:
        return {}

    def classify(self, idx: np.ndarray) -> Classification | None:
        classifier, s = self.suite.classifier, self.settings
        if classifier is None or self.gen.scores is None:
            return None
        names = evaluated_labels(s.label_set, classifier.labels)
        groups = self.groups[idx]
        columns = np.array([classifier.labels.index(n) for n in names], dtype=np.int64)
        scores = self.gen.scores[np.ix_(idx, columns)]
        labels = np.array([[self.cases[c].labels[label_index(n)] for n in names] for c in groups], dtype=np.float64)
        labels = labels.reshape(len(idx), len(names))
        thresholds = self.thresholds or NO_THRESHOLDS
        result = evaluate_classification(scores, labels, names, thresholds, s.f1_zero_division)
        ci = None
        if s.bootstrap:
            ci = bootstrap_classification(
                scores, labels, names, thresholds, s.bootstrap, s.confidence, s.seed, groups, s.f1_zero_division
            )
        labelled = ~np.isnan(labels) & (labels != -1)
        class_cases = {
            name: (len(set(groups[labelled[:, j]])), len(set(groups[labels[:, j] == 1]))) for j, name in enumerate(names)
        }
        return Classification(result, ci, len(set(groups)), class_cases)

    def kernel_sums(self, role: str, kernel: Kernel = KID_KERNEL) -> CaseKernelSums:
        """A kernel's (KID's by default) block sums over the cases this generator covers, in sorted order (real side:
        each case's real features once); a pathology subset takes its cases' rows and columns."""
        if (role, kernel) not in self._kernel_sums:
            position = self.case_position
            with_real = [c for c in position if c in self.real_index]
            self._kernel_sums[role, kernel] = CaseKernelSums.of(
                self.gen.features[role],
                np.array([position[c] for c in self.groups], dtype=np.int64),
                self.real.features[role][np.array([self.real_index[c] for c in with_real], dtype=np.int64)],
                np.array([position[c] for c in with_real], dtype=np.int64),
                len(position),
                kernel,
            )
        return self._kernel_sums[role, kernel]

    @cached_property
    def _kernel_sums(self) -> dict[tuple[str, Kernel], CaseKernelSums]:
        return {}

    @cached_property
    def memo(self) -> dict:
        """Work shared by several metrics of this generator, keyed by the module computing it."""
        return {}
