"""Runs merged into one leaderboard: which runs are comparable, and one board row per (generator, run).

Two runs are comparable when they agree in every kind of :data:`KINDS` (:func:`comparison_facts`
says where each comes from in ``results.json`` / ``cases.jsonl``). Runs that are not are refused
with every difference named, or (``allow_mixed``) put in separate sections, each run in the first
section whose first run it matches.

Seed merging: runs whose recorded config is equal except ``run.seed`` (and the locations
:data:`LOCATION_KEYS`) and whose folders of a generator have equal identities except ``run.seed``,
with distinct seeds, are combined per generator into one row: value = the mean of the runs'
values, ``<metric>_spread`` = their SD (ddof 1), CI = the percentile interval of the runs' draws
averaged per resample index (draw *b* of each seed's run, over the first ``min(B)`` resamples),
i.e. the bootstrap distribution of the mean over seeds with each seed's cases resampled.
``real`` is shown once per section, from the section's first run.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from xreal_bench.errors import UserFacingError
from xreal_bench.metrics import table as metric_table
from xreal_bench.reports.coverage import counts
from xreal_bench.reports.ranks import add_ranks
from xreal_bench.reports.runs import REFERENCE, Run

DATASET, CASES, WEIGHTS, PREPROCESSING, RESOLUTION, LABELS, THRESHOLDS = (
    "dataset fingerprint",
    "case set",
    "evaluator weights",
    "preprocessing",
    "resolution",
    "label policy",
    "threshold policy",
)
#: Every kind of difference that makes two runs' numbers not comparable, in the order they are named.
KINDS = (DATASET, CASES, WEIGHTS, PREPROCESSING, RESOLUTION, LABELS, THRESHOLDS)
NOT_RECORDED = "not recorded"
#: Config keys that say where files are, not what was computed (the dataset's content is its fingerprint).
LOCATION_KEYS = ("run.out", "dataset.root", "dataset.reports_root", "conditioning.cache_dir", "metrics.cache_dir")
SEED_KEY = "run.seed"
#: Threshold policies fitted on a split of real images (the split then matters).
FITTED_THRESHOLDS = ("youden", "f1")
ENTRY_SEPARATOR = " · "

Facts = dict[str, dict[str, str]]  # kind -> {what: value}


@dataclass(frozen=True)
class Difference:
    """Runs ``first`` and ``second`` (their paths) differ in ``kind``: ``what`` is ``first_value`` vs ``second_value``."""

    kind: str
    what: str
    first: str
    second: str
    first_value: str
    second_value: str

    def message(self) -> str:
        what = f"{self.what} " if self.what else ""
        return (
            f"runs {self.first} and {self.second} differ in {self.kind}: "
            f"{what}{short(self.first_value)} vs {short(self.second_value)}"
        )


@dataclass(frozen=True)
class Section:
    """Comparable runs and their board; ``differences`` from the first section's first run (none for it)."""

    title: str
    runs: tuple[Run, ...]
    board: pd.DataFrame
    differences: tuple[Difference, ...] = ()
    draws: Mapping[str, Mapping[str, np.ndarray]] = field(default_factory=dict)  # entry -> metric -> draws


@dataclass(frozen=True)
class Merged:
    sections: tuple[Section, ...]
    rank_metric: str

    @property
    def runs(self) -> tuple[Run, ...]:
        return tuple(r for s in self.sections for r in s.runs)

    @property
    def demo(self) -> bool:
        return any(r.demo for r in self.runs)

    @property
    def metrics(self) -> tuple[metric_table.Metric, ...]:
        """Headline metrics with a column in any section, in table order."""
        present = {c for s in self.sections for c in s.board.columns}
        return tuple(m for m in metric_table.headline() if m.name in present)


def short(value: str) -> str:
    """A sha256 as its first 12 hex digits and an ellipsis; other values as they are."""
    is_digest = len(value) == 64 and all(c in "0123456789abcdef" for c in value)
    return f"{value[:12]}…" if is_digest else value


def text(value: Any) -> str:
    if value is None:
        return NOT_RECORDED
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def case_set_digest(run: Run) -> str:
    """sha256 of the run's case ids (``cases.jsonl``), sorted, one per line."""
    ids = sorted(run.cases)
    return hashlib.sha256("\n".join(ids).encode()).hexdigest() if ids else NOT_RECORDED


def comparison_facts(run: Run) -> Facts:
    """What two runs must share for their numbers to be comparable, by kind (values as text)."""
    provenance = run.provenance
    config = provenance.get("config", {})
    dataset, metrics, settings = config.get("dataset", {}), config.get("metrics", {}), config.get("run", {})
    evaluators = {role: r for role, r in provenance.get("evaluators", {}).items() if isinstance(r, dict)}
    thresholds = {"metrics.thresholds": text(metrics.get("thresholds"))}
    if metrics.get("thresholds") in FITTED_THRESHOLDS:
        thresholds["metrics.threshold_split"] = text(metrics.get("threshold_split"))
    if metrics.get("thresholds") == "fixed":
        thresholds["metrics.fixed_threshold"] = text(metrics.get("fixed_threshold"))
    recorded = provenance.get("thresholds")
    if isinstance(recorded, dict) and recorded:
        thresholds["threshold source"] = text(recorded.get("source"))
    return {
        DATASET: {"": text(provenance.get("dataset", {}).get("fingerprint"))},
        CASES: {"": case_set_digest(run)},
        WEIGHTS: {role: text(r.get("weights_sha256")) for role, r in sorted(evaluators.items())},
        PREPROCESSING: {
            **{f"{role} preprocessing": text(r.get("preprocessing")) for role, r in sorted(evaluators.items())},
            "run.bit_depth": text(settings.get("bit_depth")),
            "dataset.square": text(dataset.get("square")),
            "dataset.intensity": text(dataset.get("intensity")),
        },
        RESOLUTION: {"run.resolution": text(settings.get("resolution"))},
        LABELS: {"dataset.labeler": text(dataset.get("labeler")), "dataset.label_policy": text(dataset.get("label_policy"))},
        THRESHOLDS: thresholds,
    }


def differences(first: Run, second: Run) -> list[Difference]:
    """Every fact in which ``second`` differs from ``first`` (a fact only one run records counts as a difference)."""
    a, b = comparison_facts(first), comparison_facts(second)
    found = []
    for kind in KINDS:
        for what in dict.fromkeys([*a[kind], *b[kind]]):
            va, vb = a[kind].get(what, NOT_RECORDED), b[kind].get(what, NOT_RECORDED)
            if va != vb:
                found.append(Difference(kind, what, str(first.path), str(second.path), va, vb))
    return found


def comparability(runs: Sequence[Run]) -> list[Difference]:
    """The differences of each run from the first."""
    return [d for run in runs[1:] for d in differences(runs[0], run)]


def group_sections(runs: Sequence[Run]) -> list[list[Run]]:
    """Each run in the first group whose first run it matches, else a new group."""
    groups: list[list[Run]] = []
    for run in runs:
        home = next((g for g in groups if not differences(g[0], run)), None)
        if home is None:
            groups.append([run])
        else:
            home.append(run)
    return groups


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def seed_free_config(run: Run) -> str:
    config = flatten(run.provenance.get("config", {}))
    return json.dumps({k: v for k, v in config.items() if k not in (SEED_KEY, *LOCATION_KEYS)}, sort_keys=True, default=str)


def seed_free_identity(run: Run, generator: str) -> str:
    identity = dict(run.identity(generator))
    identity["fields"] = {k: v for k, v in identity.get("fields", {}).items() if k != SEED_KEY}
    return json.dumps(identity, sort_keys=True, default=str)


def seed_groups(runs: Sequence[Run], generator: str) -> list[list[Run]]:
    """The runs holding ``generator``, grouped: runs equal but for the seed (distinct seeds) share a group."""
    keyed: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        if generator in run.generators:
            keyed.setdefault((seed_free_config(run), seed_free_identity(run, generator)), []).append(run)
    groups = []
    for members in keyed.values():
        seeds = [r.seed for r in members]
        if len(members) > 1 and None not in seeds and len(set(seeds)) == len(seeds):
            groups.append(sorted(members, key=lambda r: r.seed or 0))
        else:
            groups += [[r] for r in members]
    return sorted(groups, key=lambda g: runs.index(g[0]))


def metric_row(run: Run, generator: str, metric: str) -> tuple[float, float, float]:
    rows = run.frame[(run.frame.generator == generator) & (run.frame.metric == metric) & (run.frame.subset == "all")]
    if rows.empty:
        return math.nan, math.nan, math.nan
    first = rows.iloc[0]
    return float(first["value"]), float(first["ci_low"]), float(first["ci_high"])


def pooled_draws(group: Sequence[Run], generator: str, metric: str) -> np.ndarray | None:
    """The draws of each run averaged per resample index (first ``min(B)``); None when a run has none."""
    draws = [run.draws_for(generator, metric) for run in group]
    if any(d is None or len(d) == 0 for d in draws):
        return None
    length = min(len(d) for d in draws if d is not None)
    return np.mean([d[:length] for d in draws if d is not None], axis=0)


def confidence(run: Run) -> float:
    return float(run.provenance.get("bootstrap", {}).get("confidence", run.draws_meta.get("confidence", 0.95)))


def entry_name(generator: str, group: Sequence[Run]) -> str:
    if generator == REFERENCE:
        return REFERENCE
    label = group[0].label
    if len(group) > 1:
        label += ", seeds " + ", ".join(str(r.seed) for r in group)
    return f"{generator}{ENTRY_SEPARATOR}{label}"


def board_row(generator: str, group: Sequence[Run], metrics: Sequence[str], spread: bool) -> tuple[dict, dict[str, np.ndarray]]:
    """One board row and its draws per metric (pooled over seeds for a combined group)."""
    first = group[0]
    record: dict[str, Any] = {
        "generator": generator,
        "entry": entry_name(generator, group),
        "run_id": ", ".join(r.run_id for r in group),
        "date": ", ".join(dict.fromkeys(r.date for r in group)),
        "seeds": ", ".join("" if r.seed is None else str(r.seed) for r in group),
        "group": first.group(generator),
        "n": counts(first.frame, generator, first.coverage).n,
    }
    draws: dict[str, np.ndarray] = {}
    for metric in metrics:
        values = np.array([metric_row(r, generator, metric) for r in group])
        pooled = pooled_draws(group, generator, metric)
        if pooled is not None:
            draws[metric] = pooled
        if len(group) == 1:
            value, low, high = values[0]
        else:
            present = values[:, 0][~np.isnan(values[:, 0])]
            value = float(present.mean()) if len(present) else math.nan
            low = high = math.nan
            if pooled is not None and np.isfinite(pooled).any():
                alpha = 1 - confidence(first)
                low, high = np.nanpercentile(pooled, [100 * alpha / 2, 100 * (1 - alpha / 2)])
        record[metric], record[f"{metric}_ci_low"], record[f"{metric}_ci_high"] = value, low, high
        if spread:
            present = values[:, 0][~np.isnan(values[:, 0])]
            record[f"{metric}_spread"] = float(present.std(ddof=1)) if len(group) > 1 and len(present) > 1 else math.nan
    return record, draws


def section_board(runs: Sequence[Run], rank_metric: metric_table.Metric) -> tuple[pd.DataFrame, dict[str, dict[str, np.ndarray]]]:
    present = {m for r in runs for m in r.frame.loc[r.frame.subset == "all", "metric"]}
    metrics = [m.name for m in metric_table.headline() if m.name in present]
    generators = list(dict.fromkeys(g for r in runs for g in r.generators))
    groups = {g: seed_groups(runs, g) for g in generators if g != REFERENCE}
    if REFERENCE in generators:  # shown once, from the first run that has it
        groups[REFERENCE] = [[next(r for r in runs if REFERENCE in r.generators)]]
    spread = any(len(group) > 1 for g in groups.values() for group in g)
    records, draws = [], {}
    for generator in generators:
        for group in groups[generator]:
            record, entry_draws = board_row(generator, group, metrics, spread)
            records.append(record)
            draws[record["entry"]] = entry_draws
    board = pd.DataFrame(records)
    board = add_ranks(board, draws, rank_metric, reference=REFERENCE, confidence=confidence(runs[0]))
    return order_rows(board, rank_metric), draws


def order_rows(board: pd.DataFrame, rank_metric: metric_table.Metric) -> pd.DataFrame:
    """``real`` first, then best first on the ranking metric (no value last), then by entry."""
    sign = 1.0 if rank_metric.lower_is_better else -1.0
    values = board[rank_metric.name] if rank_metric.name in board else pd.Series(math.nan, index=board.index)
    key = pd.DataFrame(
        {"reference": board["generator"] != REFERENCE, "missing": values.isna(), "value": sign * values, "entry": board["entry"]}
    )
    order = key.sort_values(["reference", "missing", "value", "entry"], kind="stable").index
    return board.loc[order].reset_index(drop=True)


def refusal(found: Sequence[Difference]) -> UserFacingError:
    lines = "\n".join(f"  - {d.message()}" for d in found)
    return UserFacingError(
        f"the runs are not comparable ({len(found)} difference(s)); merge only comparable runs, "
        f"or pass --allow-mixed to show them in separate sections:\n{lines}"
    )


def merge_runs(runs: Sequence[Run], *, allow_mixed: bool = False, rank_metric: str | None = None) -> Merged:
    """One board per section of comparable runs; runs that are not comparable are refused unless ``allow_mixed``."""
    if not runs:
        raise UserFacingError("no runs to merge")
    ranking = metric_table.ranking() if rank_metric is None else metric_table.metric(rank_metric)
    groups = group_sections(runs)
    if len(groups) > 1 and not allow_mixed:
        raise refusal(comparability(runs))
    sections = []
    for k, members in enumerate(groups, 1):
        board, draws = section_board(members, ranking)
        found = tuple(differences(groups[0][0], members[0]))
        title = "Comparable runs" if len(groups) == 1 else f"Section {k} of {len(groups)}"
        sections.append(Section(title, tuple(members), board, found, draws))
    return Merged(tuple(sections), ranking.name)
