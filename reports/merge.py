"""Runs merged into one leaderboard: which runs are comparable, and one board row per (generator, run).

Two runs are comparable when they agree in every kind of :data:`KINDS` (:func:`comparison_facts`
says where each comes from in ``results.json`` / ``cases.jsonl``). Runs that are not are refused
with every difference named, or (``allow_mixed``) put in separate sections, each run in the first
section whose first run it matches. A dataset fingerprint or case set that neither run records is
a difference too ("not recorded in either run"): nothing says the runs agree.

Seed merging: runs whose recorded config is equal except ``run.seed`` (and the locations
:data:`LOCATION_KEYS`) and whose folders of a generator have equal identities except ``run.seed``,
with distinct seeds, are combined per generator into one row: value = the mean of the runs'
values, ``<metric>_spread`` = their SD (ddof 1). Its CI pools the runs' bootstrap draws only when
every run drew the same resamples: the same bootstrap seed (``bootstrap.npz`` ``__meta__.seed``),
the same covered cases for the generator (``__meta__.cases``) and the same number of resamples.
Then resample *b* picks the same cases in every run, and the runs' draws averaged per resample
index are the paired bootstrap distribution of the mean over seeds; the CI is its percentile
interval. Otherwise the row has no CI and ``ci_note`` says why.
``real`` is shown once per section, from the section's first run.

Entries (a row's name, the key of its ranks and draws) are ``<generator> · <folder> (<date>)``;
where two rows would share one, the run id is added, and where that still collides, the run's
position among the runs given. A row whose run is below ``metrics.min_coverage`` for its generator
(summed over the runs of a seed row) is marked (``below_min_coverage``, ``coverage_note``) and not
ranked.
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
from xreal_bench.reports.ranks import DrawsKey, add_ranks
from xreal_bench.reports.runs import REFERENCE, Run

DATASET, CASES, WEIGHTS, PREPROCESSING, RESOLUTION, LABELS, THRESHOLDS, STATISTICS = (
    "dataset fingerprint",
    "case set",
    "evaluator weights",
    "preprocessing",
    "resolution",
    "label policy",
    "threshold policy",
    "statistics",
)
#: Every kind of difference that makes two runs' numbers not comparable, in the order they are named.
KINDS = (DATASET, CASES, WEIGHTS, PREPROCESSING, RESOLUTION, LABELS, THRESHOLDS, STATISTICS)
#: Kinds whose absence from both runs is a difference: without them nothing says the runs scored the same images.
MUST_BE_RECORDED = (DATASET, CASES)
#: Settings that change how numbers are computed (images per case, zero-division, bootstrap, subsets, subgroups, marks).
STATISTICS_KEYS = (
    "run.samples_per_condition",
    "metrics.dice_reference",
    "metrics.f1_zero_division",
    "metrics.kid_subsets",
    "metrics.kid_subset_size",
    "metrics.confidence",
    "metrics.bootstrap",
    "metrics.fid_bootstrap",
    "metrics.bootstrap_seed",
    "metrics.min_subset_n",
    "metrics.subsets",
    "metrics.subgroups",
    "metrics.age_edges",
    "metrics.min_coverage",
)
NOT_RECORDED = "not recorded"
NOT_RANKED_BELOW_COVERAGE = "below metrics.min_coverage: not ranked"
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
        if self.first_value == self.second_value == NOT_RECORDED:
            return f"runs {self.first} and {self.second} differ in {self.kind}: {what}not recorded in either run"
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
    sources: Mapping[str, tuple[Run, ...]] = field(default_factory=dict)  # entry -> the runs behind its row

    @property
    def confidence(self) -> float:
        """The CI level of the section's runs (comparable runs agree on ``metrics.confidence``)."""
        return confidence(self.runs[0])


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


def setting(config: Mapping[str, Any], key: str) -> str:
    """The recorded value of a dotted config key (``metrics.confidence``) as text."""
    section, _, name = key.partition(".")
    values = config.get(section, {})
    return text(values.get(name) if isinstance(values, Mapping) else None)


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
        LABELS: {
            "dataset.labeler": text(dataset.get("labeler")),
            "dataset.label_policy": text(dataset.get("label_policy")),
            "metrics.label_set": text(metrics.get("label_set")),
        },
        THRESHOLDS: thresholds,
        STATISTICS: {key: setting(config, key) for key in STATISTICS_KEYS},
    }


def differences(first: Run, second: Run) -> list[Difference]:
    """Every fact in which ``second`` differs from ``first`` (a fact only one run records counts as a difference,
    and so does a fact of :data:`MUST_BE_RECORDED` that neither records)."""
    a, b = comparison_facts(first), comparison_facts(second)
    found = []
    for kind in KINDS:
        for what in dict.fromkeys([*a[kind], *b[kind]]):
            va, vb = a[kind].get(what, NOT_RECORDED), b[kind].get(what, NOT_RECORDED)
            if va != vb or (kind in MUST_BE_RECORDED and va == NOT_RECORDED):
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


def draws_key(run: Run, generator: str) -> DrawsKey:
    """Which resamples the run drew for ``generator``: its bootstrap seed and the hash of the cases it covers."""
    cases = run.draws_meta.get("cases")
    return DrawsKey(run.draws_meta.get("seed"), cases.get(generator) if isinstance(cases, Mapping) else None, str(run.path))


def pooling_problem(group: Sequence[Run], generator: str) -> str:
    """Why the group's draws are not paired resample by resample ("" when they are)."""
    keys = [draws_key(run, generator) for run in group]
    problems = []
    seeds = [k.seed for k in keys]
    if None in seeds:
        problems.append("a run does not record its bootstrap seed")
    elif len(set(map(str, seeds))) > 1:
        problems.append("the runs' bootstrap seeds differ (" + ", ".join(map(str, seeds)) + ")")
    cases = [k.cases for k in keys]
    if None in cases:
        problems.append("a run does not record the cases it covers")
    elif len(set(cases)) > 1:
        problems.append("the runs cover different cases")
    return "; ".join(problems)


def pooled_draws(group: Sequence[Run], generator: str, metric: str) -> tuple[np.ndarray | None, str]:
    """The runs' draws averaged per resample index when they are paired (see the module docstring), else None and why
    (None and "" when a run has no draws of ``metric``); one run's draws as they are."""
    draws = [run.draws_for(generator, metric) for run in group]
    if any(d is None or len(d) == 0 for d in draws):
        return None, ""
    if len(draws) == 1:
        return draws[0], ""
    if problem := pooling_problem(group, generator):
        return None, problem
    if len({len(d) for d in draws if d is not None}) > 1:
        return None, "the runs drew different numbers of resamples"
    return np.mean([d for d in draws if d is not None], axis=0), ""


def confidence(run: Run) -> float:
    return float(run.provenance.get("bootstrap", {}).get("confidence", run.draws_meta.get("confidence", 0.95)))


def entry_name(generator: str, group: Sequence[Run]) -> str:
    if generator == REFERENCE:
        return REFERENCE
    label = group[0].label
    if len(group) > 1:
        label += ", seeds " + ", ".join(str(r.seed) for r in group)
    return f"{generator}{ENTRY_SEPARATOR}{label}"


def coverage_columns(generator: str, group: Sequence[Run]) -> dict[str, Any]:
    """``n``, ``failed``, ``missing`` (summed over the group's runs), ``coverage`` (the lowest), the mark and why."""
    found = [(run, counts(run.frame, generator, run.coverage)) for run in group]
    notes = [f"{run.run_id}: {c.note}" if len(group) > 1 else c.note for run, c in found if c.marked]
    shares = [c.coverage for _, c in found if not math.isnan(c.coverage)]
    return {
        "n": sum(c.n for _, c in found),
        "failed": float(sum(c.failed for _, c in found)),
        "missing": float(sum(c.missing for _, c in found)),
        "coverage": min(shares) if len(shares) == len(found) else math.nan,
        "below_min_coverage": bool(notes),
        "coverage_note": "; ".join(notes),
    }


def board_row(generator: str, group: Sequence[Run], metrics: Sequence[str], spread: bool) -> tuple[dict, dict[str, np.ndarray]]:
    """One board row and its draws per metric (pooled over seeds for a combined group, when paired)."""
    first = group[0]
    record: dict[str, Any] = {
        "generator": generator,
        "entry": entry_name(generator, group),
        "run_id": ", ".join(r.run_id for r in group),
        "date": ", ".join(dict.fromkeys(r.date for r in group)),
        "seeds": ", ".join("" if r.seed is None else str(r.seed) for r in group),
        "group": first.group(generator),
        **coverage_columns(generator, group),
    }
    draws: dict[str, np.ndarray] = {}
    problems: list[str] = []
    for metric in metrics:
        values = np.array([metric_row(r, generator, metric) for r in group])
        pooled, problem = pooled_draws(group, generator, metric)
        if pooled is not None:
            draws[metric] = pooled
        if len(group) == 1:
            value, low, high = values[0]
        else:
            if problem and problem not in problems:
                problems.append(problem)
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
    record["ci_note"] = f"no seed-combined CI ({'; '.join(problems)})" if problems else ""
    return record, draws


def unique_entries(rows: Sequence[tuple[str, Sequence[Run]]], base: Sequence[str], position: Mapping[Run, int]) -> list[str]:
    """``base`` names made unique: a colliding name gets its runs' ids, one still colliding also their positions."""
    names = list(base)
    for extra in (
        lambda group: "run id " + ", ".join(r.run_id for r in group),
        lambda group: (
            "run id " + ", ".join(r.run_id for r in group) + ", RUN_DIR #" + ", #".join(str(position[r]) for r in group)
        ),
    ):
        taken = [names.count(name) > 1 for name in names]
        names = [f"{base[k]} [{extra(group)}]" if taken[k] else names[k] for k, (_, group) in enumerate(rows)]
    return names


def section_board(
    runs: Sequence[Run], rank_metric: metric_table.Metric, position: Mapping[Run, int]
) -> tuple[pd.DataFrame, dict[str, dict[str, np.ndarray]], dict[str, tuple[Run, ...]]]:
    """The section's board (ranked), each entry's draws and the runs behind each entry."""
    present = {m for r in runs for m in r.frame.loc[r.frame.subset == "all", "metric"]}
    metrics = [m.name for m in metric_table.headline() if m.name in present]
    generators = list(dict.fromkeys(g for r in runs for g in r.generators))
    groups = {g: seed_groups(runs, g) for g in generators if g != REFERENCE}
    if REFERENCE in generators:  # shown once, from the first run that has it
        groups[REFERENCE] = [[next(r for r in runs if REFERENCE in r.generators)]]
    spread = any(len(group) > 1 for g in groups.values() for group in g)
    rows = [(generator, group) for generator in generators for group in groups[generator]]
    built = [board_row(generator, group, metrics, spread) for generator, group in rows]
    entries = unique_entries(rows, [record["entry"] for record, _ in built], position)
    for (record, _), entry in zip(built, entries):
        record["entry"] = entry
    draws = {entry: entry_draws for entry, (_, entry_draws) in zip(entries, built)}
    sources = {entry: tuple(group) for entry, (_, group) in zip(entries, rows)}
    board = pd.DataFrame([record for record, _ in built])
    keys = {entry: draws_key(group[0], generator) for entry, (generator, group) in zip(entries, rows)}
    unranked = {entry: NOT_RANKED_BELOW_COVERAGE for entry, (record, _) in zip(entries, built) if record["below_min_coverage"]}
    board = add_ranks(
        board, draws, rank_metric, reference=REFERENCE, confidence=confidence(runs[0]), pairing=keys, unranked=unranked
    )
    return order_rows(board, rank_metric), draws, sources


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
    position = {run: k for k, run in enumerate(runs, 1)}
    sections = []
    for k, members in enumerate(groups, 1):
        board, draws, sources = section_board(members, ranking, position)
        found = tuple(differences(groups[0][0], members[0])) if k > 1 else ()
        title = "Comparable runs" if len(groups) == 1 else f"Section {k} of {len(groups)}"
        sections.append(Section(title, tuple(members), board, found, draws, sources))
    return Merged(tuple(sections), ranking.name)
