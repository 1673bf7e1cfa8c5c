"""Coverage: what a generator was planned to produce, what it produced, what could be scored.

The plan of a run is every case of the scanned split times ``run.samples_per_condition``.
Evaluation scores planned images only (manifest entries of a case in the scan with
``sample_index < samples_per_condition``); entries outside the plan are ignored and counted.

Each planned image is exactly one of

- **evaluated**: an ok manifest entry whose file decoded, paired with its decoded real case;
- **failed**: a failed manifest entry (the generator raised or returned no valid image), or an
  ok entry whose file could not be decoded at evaluation (``undecodable``);
- **missing**: no manifest entry, or an ok entry whose file is gone;
- **no_reference**: its case's real image could not be decoded, so there is nothing to pair it with.

``coverage`` is the share of the cases with at least one evaluated image; a source below
``metrics.min_coverage`` is marked in every report. :data:`COVERAGE_RULE` says how metrics treat
the cases a generator does not cover.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from xreal_bench.names import inside
from xreal_bench.rundir import GeneratorDir, ManifestEntry

COVERAGE_RULE = (
    "Every metric of a generator is computed on the cases it covers (cases with at least one evaluated image), "
    "real side included: FID and KID compare its features with the real features of those cases only (the exactly "
    "merged streaming statistics of all real cases when it covers every case), for the point estimate and the CI alike; "
    "paired MS-SSIM and Dice pair each image with its own case; F1 and AUC use those cases' labels. Failed and missing "
    "images are never imputed: they are counted (failed, missing, coverage) next to every number."
)
#: How many distinct generation errors a coverage record keeps (the most common).
REASONS_KEPT = 10


@dataclass(frozen=True)
class Plan:
    """The images a run asks for: every case id times samples ``0 .. samples - 1``."""

    case_ids: frozenset[str]
    samples: int

    @classmethod
    def of(cls, case_ids: Iterable[str], samples: int) -> Plan:
        return cls(frozenset(case_ids), samples)

    @property
    def size(self) -> int:
        return len(self.case_ids) * self.samples

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, tuple) or len(key) != 2:
            return False
        case_id, sample_index = key
        return case_id in self.case_ids and isinstance(sample_index, int) and 0 <= sample_index < self.samples


@dataclass(frozen=True)
class Selection:
    """A generator folder's manifest entries sorted against the plan."""

    scorable: list[ManifestEntry]  # planned, ok, file present inside the folder (sorted by key)
    failed: list[ManifestEntry]  # planned, failed at generation
    missing: int  # planned without an entry, or ok with no file
    ignored: int  # entries outside the plan (other cases, sample_index >= samples_per_condition)


def select_planned(gdir: GeneratorDir, plan: Plan) -> Selection:
    """The planned entries of ``gdir`` (latest line per image) and what the plan lacks or does not ask for."""
    entries = gdir.entries()
    planned = {key: e for key, e in entries.items() if key in plan}
    scorable = sorted((e for e in planned.values() if e.status == "ok" and has_file(gdir, e)), key=lambda e: e.key)
    failed = sorted((e for e in planned.values() if e.status != "ok"), key=lambda e: e.key)
    return Selection(scorable, failed, plan.size - len(scorable) - len(failed), len(entries) - len(planned))


def has_file(gdir: GeneratorDir, entry: ManifestEntry) -> bool:
    return bool(entry.file) and inside(gdir.root, gdir.root / str(entry.file)) and (gdir.root / str(entry.file)).is_file()


@dataclass(frozen=True, kw_only=True)
class Coverage:
    """The counts of one source (a generator, or the real images) that every report shows."""

    planned: int
    ok: int  # planned images with an ok manifest entry and a file (evaluated + undecodable + no_reference)
    manifest_failed: int
    undecodable: int
    missing: int
    no_reference: int
    evaluated: int
    cases: int
    covered_cases: int
    samples_per_condition: int
    samples_scored: tuple[int, ...]  # sample indices of the evaluated images
    ignored: int
    min_coverage: float
    # The most common generation errors (undecodable files are listed under results.json "undecodable").
    failure_reasons: dict[str, int] = field(default_factory=dict)
    uncovered_cases: tuple[str, ...] = ()

    @property
    def failed(self) -> int:
        return self.manifest_failed + self.undecodable

    @property
    def coverage(self) -> float:
        return self.covered_cases / self.cases if self.cases else 0.0

    @property
    def below_min_coverage(self) -> bool:
        return self.coverage < self.min_coverage

    @property
    def lossy(self) -> bool:
        """Some planned image was not scored (failed, missing, or without its real case)."""
        return self.evaluated < self.planned

    def describe(self, name: str) -> str:
        """One line: what was lost and what the numbers rest on."""
        failed = f"{self.failed} failed"
        if self.failed:
            failed += f" ({self.manifest_failed} at generation, {self.undecodable} undecodable)"
        text = f"{name}: {failed}, {self.missing} missing"
        if self.no_reference:
            text += f", {self.no_reference} without a decodable real image"
        text += (
            f" of {self.planned} planned images; scored {self.evaluated} on {self.covered_cases} of {self.cases} cases "
            f"(coverage {self.coverage:.3f}"
        )
        if self.below_min_coverage:
            text += f", below metrics.min_coverage = {self.min_coverage:g}"
        return text + ")"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(failed=self.failed, coverage=round(self.coverage, 6), below_min_coverage=self.below_min_coverage)
        data["samples_scored"], data["uncovered_cases"] = list(self.samples_scored), list(self.uncovered_cases)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Coverage:
        values = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        values["samples_scored"] = tuple(values.get("samples_scored", ()))
        values["uncovered_cases"] = tuple(values.get("uncovered_cases", ()))
        return cls(**values)


def coverage_of(
    plan: Plan,
    *,
    selection: Selection | None,
    scored: Sequence[tuple[str, int]],
    undecodable: Sequence[str],
    no_reference: int,
    min_coverage: float,
) -> Coverage:
    """The coverage record of one source from its selection (None: the real images) and what was scored."""
    reasons = Counter(str(e.error or "failed") for e in selection.failed) if selection else Counter()
    covered = {case_id for case_id, _ in scored}
    manifest_failed = len(selection.failed) if selection else 0
    missing = selection.missing if selection else 0
    return Coverage(
        planned=plan.size,
        ok=plan.size - manifest_failed - missing,
        manifest_failed=manifest_failed,
        undecodable=len(undecodable),
        missing=missing,
        no_reference=no_reference,
        evaluated=len(scored),
        cases=len(plan.case_ids),
        covered_cases=len(covered),
        samples_per_condition=plan.samples,
        samples_scored=tuple(sorted({k for _, k in scored})),
        ignored=selection.ignored if selection else 0,
        min_coverage=min_coverage,
        failure_reasons=dict(reasons.most_common(REASONS_KEPT)),
        uncovered_cases=tuple(sorted(plan.case_ids - covered)),
    )


def manifest_coverage(gdir: GeneratorDir, plan: Plan, min_coverage: float) -> Coverage:
    """Coverage from the manifest and the files alone (after generation, before any decoding)."""
    selection = select_planned(gdir, plan)
    scored = [e.key for e in selection.scorable]
    return coverage_of(plan, selection=selection, scored=scored, undecodable=(), no_reference=0, min_coverage=min_coverage)


def strict_problems(coverage: Mapping[str, Coverage]) -> list[str]:
    """One line per source with a failed, missing or unpaired image (``--strict`` fails on any)."""
    return [f"strict: {c.describe(name)}" for name, c in coverage.items() if c.lossy]
