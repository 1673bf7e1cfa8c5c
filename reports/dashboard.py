"""What the dashboard (``xreal-bench dashboard``, :mod:`~xreal_bench.reports.dashboard_app`) shows, as pure functions.

The page reads run directories named on its command line (``streamlit run dashboard_app.py -- RUN_DIR...``)
or, when started without them (tests), in :data:`RUNS_ENV`; never anything the browser sends. Metric
names come from the metric table: a result row's metric is an entry (``fid``, ``dice_heart``) or a
per-class row (``<prefix>/<label>``). Rows are per (generator, run): the cross-run merge rules
(comparability, seed combination, rank intervals) are those of ``xreal-bench leaderboard``.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.colors import to_rgb

from xreal_bench.labels import CHEXPERT_LABELS
from xreal_bench.metrics import table as metric_table
from xreal_bench.reports import palette
from xreal_bench.reports.grid import gray_pixels
from xreal_bench.reports.ranks import rank_text
from xreal_bench.reports.runs import REFERENCE, Run
from xreal_bench.reports.table_model import MISSING, Estimate, value_text
from xreal_bench.subgroups import is_pathology_subset, ordered, parse_subset
from xreal_bench.types import BoxSet, CaseFacts

APP_SCRIPT = Path(__file__).with_name("dashboard_app.py")
RUNS_ENV = "XREAL_BENCH_DASHBOARD_RUNS"  # run directories, os.pathsep-separated (used when no arguments are given)
OVERALL = "all"
MERGE_NOTE = (
    "Rows are per (generator, run). The merged leaderboard below follows `xreal-bench leaderboard`: comparable runs "
    "only (others in their own section), runs differing only in the seed combined, ranks with bootstrap intervals."
)
#: Anatomy label -> RGB: the report's sample-grid colours (:data:`xreal_bench.reports.palette.ANATOMY_COLOURS`).
ANATOMY_COLOURS = {label: tuple(round(255 * c) for c in to_rgb(colour)) for label, colour in palette.ANATOMY_COLOURS.items()}
ANATOMY_LEGEND = "left lung blue, right lung green, heart orange, aorta yellow (patient's sides), as in the report's sample grid"


def run_dirs_from(argv: Sequence[str], environ: Mapping[str, str]) -> list[Path]:
    """The run directories: the script's arguments when ``streamlit run`` passed any, else :data:`RUNS_ENV`."""
    if argv and Path(argv[0]).resolve() == APP_SCRIPT.resolve() and len(argv) > 1:
        return [Path(a) for a in argv[1:]]
    return [Path(p) for p in environ.get(RUNS_ENV, "").split(os.pathsep) if p]


def dashboard_command(run_dirs: Sequence[Path], *, port: int, address: str) -> list[str]:
    """The ``streamlit run`` command line that serves the dashboard over ``run_dirs`` (absolute paths)."""
    return [
        sys.executable, "-m", "streamlit", "run", str(APP_SCRIPT),
        "--server.address", address,
        "--server.port", str(port),
        "--server.headless", "true",
        "--browser.gatherUsageStats", "false",
        "--server.fileWatcherType", "none",
        "--global.developmentMode", "false",
        "--client.toolbarMode", "minimal",
        "--",
        *(str(Path(d).resolve()) for d in run_dirs),
    ]  # fmt: skip


def run_names(runs: Sequence[Run]) -> list[str]:
    """One distinct name per run: its label (``<folder> (<date>)``), with its run id where labels repeat."""
    labels = [run.label for run in runs]
    names = [f"{run.label} [{run.run_id}]" if labels.count(run.label) > 1 else run.label for run in runs]
    return [f"{name} #{k + 1}" if names.count(name) > 1 else name for k, name in enumerate(names)]


def metric_label(name: str) -> str:
    """How a result row's metric is shown: ``FID ↓``, ``AUC Edema ↑``."""
    entry = metric_table.row_metric(name)
    prefix, sep, label = name.partition("/")
    return f"{prefix.upper()} {label} {entry.arrow}" if sep else f"{entry.display} {entry.arrow}"


def metric_order(name: str) -> tuple[int, int, str]:
    """Table order: the entry's position, then per-class rows by label (CheXpert order first)."""
    entries = [m.name for m in metric_table.rows()]
    entry = metric_table.row_metric(name)
    _, sep, label = name.partition("/")
    label_rank = CHEXPERT_LABELS.index(label) if label in CHEXPERT_LABELS else len(CHEXPERT_LABELS)
    return entries.index(entry.name), (label_rank if sep else -1), label


def known_metric(name: str) -> bool:
    try:
        metric_table.row_metric(name)
    except KeyError:
        return False
    return True


def metric_choices(runs: Sequence[Run]) -> list[str]:
    """Headline metrics and per-class rows present in any run, in table order (rows the table does not know are left out)."""
    headline = {m.name for m in metric_table.headline()}
    prefixes = metric_table.per_class_prefixes()
    present = {str(m) for run in runs for m in run.frame["metric"].unique()}
    chosen = [m for m in present if known_metric(m) and (m in headline or m.startswith(prefixes))]
    return sorted(chosen, key=metric_order)


def default_metrics(choices: Sequence[str]) -> list[str]:
    """Table I's columns among ``choices`` (all headline choices when none of them is there)."""
    main = [m.name for m in metric_table.main_table() if m.name in choices]
    return main or [m for m in choices if "/" not in m]


def rank_metric(metrics: Sequence[str]) -> str | None:
    """The metric the leaderboard is sorted by: the table's ranking metric when chosen, else the first chosen."""
    ranking = metric_table.ranking().name
    return ranking if ranking in metrics else (metrics[0] if metrics else None)


def subset_choices(runs: Sequence[Run]) -> list[str]:
    """``all``, every pathology subset present (CheXpert order first), then every subgroup and fairness gap
    (``sex:female``, ..., ``sex:gap``; attribute order, age bands by age)."""
    subsets = {str(s) for run in runs for s in run.frame["subset"].unique()} - {OVERALL}
    pathologies = sorted((s for s in subsets if is_pathology_subset(s)), key=pathology_order)
    groups = [s.subset for s in ordered(g for g in map(parse_subset, subsets) if g is not None)]
    return [OVERALL, *pathologies, *groups]


def pathology_order(label: str) -> tuple[int, str]:
    return (CHEXPERT_LABELS.index(label) if label in CHEXPERT_LABELS else len(CHEXPERT_LABELS), label)


def generator_choices(runs: Sequence[Run]) -> list[str]:
    """Every source of any run, ``real`` first, then by name."""
    names = {g for run in runs for g in run.generators}
    return ([REFERENCE] if REFERENCE in names else []) + sorted(names - {REFERENCE})


def leaderboard_rows(
    runs: Sequence[Run], *, metrics: Sequence[str], generators: Sequence[str], subset: str, names: Sequence[str] | None = None
) -> pd.DataFrame:
    """One row per (generator, run) that has results: ``generator``, ``run``, ``group``, then per metric ``m``
    the columns ``m``, ``m ci_low``, ``m ci_high``, ``m n`` (NaN where the run has no such row at ``subset``).

    Sorted with ``real`` first, then by :func:`rank_metric` (best first, missing last), generator, run order."""
    names = list(names or run_names(runs))
    records = []
    for order, (run, run_name) in enumerate(zip(runs, names, strict=True)):
        frame = run.frame[run.frame["subset"] == subset]
        for generator in [g for g in generators if g in set(run.frame["generator"])]:
            rows = frame[frame["generator"] == generator].drop_duplicates("metric").set_index("metric")
            record: dict[str, object] = {"generator": generator, "run": run_name, "group": run.group(generator)}
            record["_order"] = order
            for m in metrics:
                found = m in rows.index
                for column, suffix in (("value", ""), ("ci_low", " ci_low"), ("ci_high", " ci_high"), ("n", " n")):
                    record[m + suffix] = float(rows.at[m, column]) if found else math.nan
            records.append(record)
    columns = ["generator", "run", "group", *(m + s for m in metrics for s in ("", " ci_low", " ci_high", " n"))]
    board = pd.DataFrame(records, columns=[*columns, "_order"])
    by = rank_metric(metrics)
    sign = -1.0 if by is not None and not metric_table.row_metric(by).lower_is_better else 1.0
    keys = board[by].map(lambda v: math.inf if math.isnan(v) else sign * v) if by else pd.Series(0.0, index=board.index)
    board = board.assign(_real=board["generator"] != REFERENCE, _key=keys)
    board = board.sort_values(["_real", "_key", "generator", "_order"], kind="stable")
    return board[columns].reset_index(drop=True)


def ci_label(runs: Sequence[Run]) -> str:
    """``95 % CI``: the runs' bootstrap confidence (each level named when runs differ)."""
    levels = sorted({float(run.provenance.get("bootstrap", {}).get("confidence", 0.95)) for run in runs})
    return " or ".join(f"{100 * level:g} %" for level in levels) + " CI"


def value_with_ci(value: float, low: float, high: float, decimals: int) -> str:
    return value_text(Estimate(value=value, low=low, high=high), decimals=decimals, ci="brackets")


def count_with_unit(n: float, metric: str) -> str:
    return MISSING if math.isnan(n) else f"{int(n)} {metric_table.row_metric(metric).n_unit}"


def leaderboard_display(board: pd.DataFrame, *, metrics: Sequence[str], decimals: int = 3) -> pd.DataFrame:
    """The shown table: ``value [low, high]`` per metric with ``n`` and its unit beside it (all text)."""
    shown = board[["generator", "run", "group"]].copy()
    for m in metrics:
        label = metric_label(m)
        shown[label] = [
            value_with_ci(v, lo, hi, decimals) for v, lo, hi in zip(board[m], board[f"{m} ci_low"], board[f"{m} ci_high"])
        ]
        shown[f"n ({label})"] = [count_with_unit(n, m) for n in board[f"{m} n"]]
    return shown


def merged_sections(
    runs: Sequence[Run], *, metrics: Sequence[str], generators: Sequence[str], decimals: int = 3
) -> list[tuple[str, pd.DataFrame]]:
    """The merged leaderboard (``merge_runs`` with separate sections for runs that are not comparable), shown as text:
    entry, seeds, rank [interval] and tie group on the ranking metric, then ``value [low, high]`` per chosen metric."""
    from xreal_bench.reports.merge import merge_runs

    ranking = rank_metric(metrics)
    merged = merge_runs(runs, allow_mixed=True, rank_metric=ranking)
    shown = []
    for section in merged.sections:
        board = section.board[section.board["generator"].isin(generators)]
        table = pd.DataFrame({"entry": board["entry"], "seeds": board["seeds"]})
        table["rank"] = [rank_text(row) for row in board.to_dict("records")]
        table["tie"] = board["tie"]
        for column in ("failed", "missing", "coverage"):
            table[column] = board[column].map(lambda v: "–" if pd.isna(v) else f"{v:g}")
        for m in metrics:
            if m in board:
                cells = zip(board[m], board[f"{m}_ci_low"], board[f"{m}_ci_high"])
                table[metric_label(m)] = [value_with_ci(v, lo, hi, decimals) for v, lo, hi in cells]
        notes = [board[c].fillna("") for c in ("coverage_note", "rank_note", "ci_note") if c in board]
        table["note"] = ["; ".join(filter(None, parts)) for parts in zip(*notes)] if notes else ""
        shown.append((section.title, table.reset_index(drop=True)))
    return shown


def pathology_metrics(runs: Sequence[Run]) -> list[str]:
    """Metrics with per-pathology rows present: per-subset metrics with a pathology subset, per-class metrics with a class row."""
    found: set[str] = set()
    for run in runs:
        frame = run.frame
        for m in metric_table.rows():
            if m.per_subset and ((frame["metric"] == m.name) & frame["subset"].map(is_pathology_subset)).any():
                found.add(m.name)
            if m.per_class and frame["metric"].str.startswith(f"{m.per_class}/").any():
                found.add(m.name)
    return sorted(found, key=metric_order)


def pathology_rows(
    runs: Sequence[Run], *, metric: str, generators: Sequence[str], names: Sequence[str] | None = None
) -> pd.DataFrame:
    """Long table ``generator, run, pathology, value, ci_low, ci_high, n`` of ``metric``'s per-pathology rows
    (its pathology subsets, or its per-class rows ``<prefix>/<label>`` for a per-class metric), in the order of
    ``generators``, then of the runs."""
    entry = metric_table.row_metric(metric)
    names = list(names or run_names(runs))
    parts = []
    for run, run_name in zip(runs, names, strict=True):
        frame = run.frame[run.frame["generator"].isin(generators)]
        if entry.per_class:
            prefix = f"{entry.per_class}/"
            rows = frame[frame["metric"].str.startswith(prefix) & (frame["subset"] == OVERALL)]
            pathology = rows["metric"].str.slice(len(prefix))
        else:
            rows = frame[(frame["metric"] == entry.name) & frame["subset"].map(is_pathology_subset)]
            pathology = rows["subset"]
        parts.append(rows[["generator", "value", "ci_low", "ci_high", "n"]].assign(run=run_name, pathology=pathology))
    columns = ["generator", "run", "pathology", "value", "ci_low", "ci_high", "n"]
    if not parts:
        return pd.DataFrame(columns=columns)
    rows = pd.concat(parts, ignore_index=True)
    order = rows.assign(_g=rows["generator"].map(list(generators).index), _r=rows["run"].map(names.index))
    return order.sort_values(["_g", "_r"], kind="stable")[columns].reset_index(drop=True)


def series_name(generator: str, run: str, several_runs: bool) -> str:
    return f"{generator} · {run}" if several_runs else generator


def pathology_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Sources (rows: generator, or ``generator · run`` for several runs) × pathologies (columns, CheXpert order)."""
    several = rows["run"].nunique() > 1
    series = [series_name(g, r, several) for g, r in zip(rows["generator"], rows["run"])]
    wide = rows.assign(source=series).pivot_table(
        index="source", columns="pathology", values="value", aggfunc="first", sort=False, dropna=False
    )
    wide = wide.reindex(index=list(dict.fromkeys(series)), columns=sorted(wide.columns, key=pathology_order))
    wide.index.name, wide.columns.name = "source", None
    return wide


@dataclass(frozen=True)
class Panel:
    """One image of the sample grid: its pixels (None: not available) and caption."""

    title: str
    caption: str
    pixels: np.ndarray | None


def case_text(facts: CaseFacts) -> str:
    """``<case id> — <positive labels>`` (``no positive label`` when none)."""
    labels = ", ".join(facts.case.positives) or "no positive label"
    return f"{facts.case_id} — {labels}"


def colour_anatomy(label_map: np.ndarray) -> np.ndarray:
    """An anatomy label map as an RGB image (black background, :data:`ANATOMY_COLOURS`)."""
    rgb = np.zeros((*label_map.shape, 3), np.uint8)
    for label, colour in ANATOMY_COLOURS.items():
        rgb[label_map == label] = colour
    return rgb


def real_image_path(run: Run, case_id: str) -> Path | None:
    """The real image as the run scored it (its ``real`` folder), else the data set's file."""
    stored = run.image_path(REFERENCE, case_id)
    if stored is not None:
        return stored
    facts = run.cases.get(case_id)
    return Path(facts.case.image_path) if facts is not None else None


def grid_panels(run: Run, case_id: str, generators: Sequence[str]) -> list[Panel]:
    """The case's row of the sample grid: real image, anatomy map (when the run has one), each generator's sample 0."""
    panels = [Panel("real", f"real · {case_id}", gray_pixels(real_image_path(run, case_id)))]
    label_map = run.anatomy_map(case_id)
    if label_map is not None:
        panels.append(Panel("anatomy map", f"anatomy map · {case_id}", colour_anatomy(label_map)))
    for generator in generators:
        if generator != REFERENCE and generator in run.generators:
            pixels = gray_pixels(run.image_path(generator, case_id))
            panels.append(Panel(generator, f"{generator} · {case_id} · sample 0", pixels))
    return panels


def box_rows(facts: CaseFacts) -> pd.DataFrame:
    """The case's pathology boxes (fractions of the square image) with their source; sample 0's for per-sample boxes."""
    boxes = facts.boxes or (facts.sample_boxes[0] if facts.sample_boxes else BoxSet())
    records = [{"label": b.label, "x0": b.x0, "y0": b.y0, "x1": b.x1, "y1": b.y1, "source": boxes.source} for b in boxes.boxes]
    return pd.DataFrame(records, columns=["label", "x0", "y0", "x1", "y1", "source"])


def provenance_rows(run: Run) -> pd.DataFrame:
    """What produced the run's numbers: folder, run id, when, seed, config hash, dataset fingerprint, evaluators."""
    p = run.provenance
    dataset = p.get("dataset", {}) if isinstance(p.get("dataset"), dict) else {}
    records = [
        ("folder", str(run.path)),
        ("run id", run.run_id),
        ("written", run.written or MISSING),
        ("seed", MISSING if run.seed is None else str(run.seed)),
        ("config hash", str(p.get("config_hash", MISSING))),
        ("dataset fingerprint", str(dataset.get("fingerprint", MISSING))),
        ("dataset cases", str(dataset.get("cases", MISSING))),
    ]
    evaluators = p.get("evaluators", {}) if isinstance(p.get("evaluators"), dict) else {}
    for role, record in evaluators.items():
        if isinstance(record, dict):
            sha = str(record.get("weights_sha256", ""))[:16]
            records.append((f"evaluator: {role}", f"{record.get('name', MISSING)}" + (f" (sha256 {sha}…)" if sha else "")))
        else:
            records.append((f"evaluator: {role}", str(record)))
    return pd.DataFrame(records, columns=["field", "value"])


def fingerprint_difference(runs: Sequence[Run], names: Sequence[str]) -> str | None:
    """A warning when the runs were scored on different data sets (different dataset fingerprints); None otherwise."""
    prints = {name: str(run.provenance.get("dataset", {}).get("fingerprint", "")) for run, name in zip(runs, names, strict=True)}
    if len(set(prints.values())) <= 1:
        return None
    listed = "; ".join(f"{name}: {value[:12] or 'unknown'}" for name, value in prints.items())
    return f"These runs were scored on different data (dataset fingerprints {listed}): their numbers are not comparable."
