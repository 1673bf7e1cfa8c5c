"""The paper tables of one or more comparable runs, each in Markdown, LaTeX (booktabs) and tidy CSV:

- ``table_main``: XReal's Table I — rows grouped by model type (reference; text-to-image; text +
  spatial control), columns MS-SSIM, FID, FID-XRV, Dice, F1, AUC (those in the data, in the metric
  table's order) plus the radiologists' Anatomy and Pathology scores when an analysed reader study
  of these runs exists (:mod:`xreal_bench.reports.study_scores`);
- ``table_pathology_<metric>``: pathologies × sources, for per-class metrics (F1, AUC) and for
  metrics with per-pathology subsets (FID, MS-SSIM, Dice), with the overall value as the last row;
- ``table_dice_organs``, ``table_memorization_rate``, ``table_lesion_in_box``: sources × a metric's parts and itself
  (Dice per structure; nearest-neighbour similarity, aligned SSIM and rate; evidence in box, pointing, laterality);
- ``table_distribution``: sources × the distribution and diversity metrics (Fréchet distance per encoder,
  KID, CMMD, precision/recall/density/coverage, MS-SSIM diversity, Vendi), when one beyond Table I's is there;
- ``table_subgroups``: every metric with subgroup rows by sex, age band and race, with the fairness gaps
  (:mod:`xreal_bench.reports.subgroups`).

Best in bold, second underlined, real images excluded, ties by overlapping CIs
(:func:`xreal_bench.reports.table_model.marks`). Footnotes give the CI convention, the marking
rule, ``n`` with its unit and the evaluator (name and weights sha256 prefix) per column, the demo
warning, coverage marks and, for several runs, which run is which. A source present in several
runs is shown once per run as ``<generator> (<run label>)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import pandas as pd

from xreal_bench.atomic import write_text_atomic
from xreal_bench.coverage import Coverage
from xreal_bench.labels import CHEXPERT_LABELS
from xreal_bench.metrics import table as metric_table
from xreal_bench.reports.coverage import loss_footnote, mark_text
from xreal_bench.reports.latex import latex_table
from xreal_bench.reports.leaderboard import NO_COVERAGE, generator_order
from xreal_bench.reports.options import ReportOptions
from xreal_bench.reports.runs import GROUPS, REFERENCE, Run
from xreal_bench.reports.study_scores import READER_COLUMNS, ReaderScores, reader_scores
from xreal_bench.reports.subgroups import have_demographics, subgroups_by_row
from xreal_bench.reports.table_model import (
    ARROWS,
    DAGGER,
    MISSING,
    REFERENCE_LABEL,
    Cell,
    Column,
    Data,
    Estimate,
    Note,
    PaperTable,
    Row,
    Source,
    Symbol,
    csv_table,
    markdown_table,
    with_marks,
)
from xreal_bench.subgroups import GAP, is_pathology_subset
from xreal_bench.tables import latex_text

OVERALL = "all"
OVERALL_GROUP = "Overall"
GAP_LABEL = "gap (max - min)"
NO_SUBGROUP_ROWS = (
    "No per-subgroup table: the cases have demographics but the runs no subgroup rows (metrics.subgroups = false, "
    "or evaluated before subgroups were scored: run `xreal-bench evaluate` again)."
)
PIXELS = "computed from pixels (no network)"
DEMO_NOTE = (
    "DEMO evaluators (demo:): small networks trained on synthetic phantoms, scored on synthetic data. These numbers "
    "are NOT Inception-FID or torchxrayvision scores and are not comparable with published results."
)


# -- what the runs hold -----------------------------------------------------------------------
class Results:
    """Every run's results rows as estimates, keyed by (generator, metric row, subset)."""

    def __init__(self, runs: Sequence[Run]):
        self.runs = list(runs)
        self.rows: dict[Path, dict[tuple[str, str, str], Estimate]] = {run.path: estimates(run.frame) for run in runs}

    def get(self, source: Source, metric: str, subset: str = OVERALL) -> Estimate | None:
        return self.rows[source.run.path].get((source.generator, metric, subset))

    def keys(self) -> set[tuple[str, str, str]]:
        return {key for rows in self.rows.values() for key in rows}


def table_entry(row_name: str) -> metric_table.Metric | None:
    """The metric table's entry behind a result row (None: a metric this version does not know)."""
    try:
        return metric_table.row_metric(row_name)
    except KeyError:
        return None


def estimates(frame: pd.DataFrame) -> dict[tuple[str, str, str], Estimate]:
    """results.csv rows as estimates; ``n``'s unit from the row's ``n_unit`` column when present, else the metric table."""
    out = {}
    has_unit = "n_unit" in frame.columns
    for row in frame.to_dict("records"):
        unit = row.get("n_unit") if has_unit else None
        if not isinstance(unit, str) or not unit:
            entry = table_entry(str(row["metric"]))
            unit = entry.n_unit if entry else ""
        out[(str(row["generator"]), str(row["metric"]), str(row["subset"]))] = Estimate(
            value=float(row["value"]), low=float(row["ci_low"]), high=float(row["ci_high"]), n=float(row["n"]), n_unit=unit
        )
    return out


def sources_of(runs: Sequence[Run]) -> list[Source]:
    """Every (run, generator), by Table I group, the real images first, then by name and run order."""
    counts: dict[str, int] = {}
    for run in runs:
        for g in run.generators:
            counts[g] = counts.get(g, 0) + 1
    found = []
    for k, run in enumerate(runs):
        for g in run.generators:
            name = REFERENCE_LABEL if g == REFERENCE else g
            label = f"{name} ({run.label})" if counts[g] > 1 else name
            found.append((Source(run=run, generator=g, label=label, group=run.group(g)), k))
    found.sort(key=lambda item: (GROUPS.index(item[0].group), not item[0].reference, item[0].generator, item[1]))
    return [source for source, _ in found]


# -- footnotes ----------------------------------------------------------------------------------
def confidence_text(runs: Sequence[Run]) -> str:
    levels = sorted({float(run.provenance.get("bootstrap", {}).get("confidence", 0.95)) for run in runs})
    return " / ".join(f"{100 * c:g} %" for c in levels)


def values_note(runs: Sequence[Run], options: ReportOptions) -> Note:
    level = confidence_text(runs)
    if options.ci == "pm":
        return (
            "Values: point estimate ",
            Symbol("±", "$\\pm$"),
            f" half the width of its {level} bootstrap CI over cases; ",
            Symbol(MISSING, "--"),
            ": not computed.",
        )
    return (f"Values: point estimate [{level} bootstrap CI over cases]; ", Symbol(MISSING, "--"), ": not computed.")


def marks_note(runs: Sequence[Run], compare: str) -> Note:
    within = "column" if compare == "columns" else "row"
    marked = any(c.below_min_coverage for run in runs for c in run.coverage.values())
    unranked: Note = (
        ("the real images and models below metrics.min_coverage (", DAGGER, ") are") if marked else ("the real images are",)
    )
    return (
        f"Per {within}: bold best, underlined second (",
        *unranked,
        " not ranked; ",
        ARROWS["higher"],
        " higher is better, ",
        ARROWS["lower"],
        f" lower is better). Ties: every model whose {confidence_text(runs)} CI overlaps the best's CI is bold too; "
        "second is the best of the rest and every model whose CI overlaps it; without CIs only equal values tie.",
    )


def span_text(values: Iterable[float]) -> str:
    found = sorted({int(v) for v in values if math.isfinite(v)})
    if not found:
        return ""
    return str(found[0]) if len(found) == 1 else f"{found[0]} to {found[-1]}"


def n_note(title: str, cells: Sequence[Cell], per: str = "generator") -> str:
    """``title: n = 128 images per generator (64 real)`` ("" when no cell has an ``n``)."""
    known = [c for c in cells if c.estimate is not None]
    generated = span_text(c.estimate.n for c in known if c.estimate and not c.source.reference)
    reference = span_text(c.estimate.n for c in known if c.estimate and c.source.reference)
    units = " / ".join(sorted({c.estimate.n_unit for c in known if c.estimate and c.estimate.n_unit}))
    if not generated and not reference:
        return ""
    text = f"{title}: n = {generated or reference} {units} per {per if generated else 'source'}"
    return text + (f" ({reference} real)" if generated and reference and reference != generated else "")


def evaluator_text(runs: Sequence[Run], metric: metric_table.Metric) -> list[str]:
    """Who computed ``metric``: the evaluator name and weights sha256 prefix from provenance (results.csv's name else)."""
    if metric.role is None:
        return [PIXELS]
    found = []
    for run in runs:
        record = run.provenance.get("evaluators", {}).get(metric.role)
        if isinstance(record, dict) and record.get("name"):
            digest = str(record.get("weights_sha256") or "")[:12]
            found.append(f"{metric.role} {record['name']}" + (f" (weights sha256 {digest}...)" if digest else ""))
        else:
            rows = run.frame[run.frame.metric.map(lambda m: getattr(table_entry(str(m)), "name", None)) == metric.name]
            found += [f"{metric.role} {e}" for e in sorted(set(rows["evaluator"].astype(str)))]
    return list(dict.fromkeys(found))


def column_note(runs: Sequence[Run], metric: metric_table.Metric, title: str, cells: Sequence[Cell]) -> Note:
    counted = n_note(title, cells)
    return (counted or f"{title}: n unknown", "; ", Data(", ".join(evaluator_text(runs, metric))), ".")


def run_notes(runs: Sequence[Run]) -> list[Note]:
    """The demo warning, coverage marks and losses per run, and (several runs) which run is which."""
    notes: list[Note] = []
    if any(run.demo for run in runs):
        notes.append((DEMO_NOTE,))
    for run in runs:
        prefix: Note = (Data(run.label), ": ") if len(runs) > 1 else ()
        if text := mark_text(run.coverage):
            notes.append((DAGGER, " ", *prefix, Data(text)))
        if text := loss_footnote(run.coverage):
            notes.append((*prefix, Data(text)))
    if len(runs) > 1:
        described = "; ".join(f"{run.label} = run {run.run_id}, seed {'?' if run.seed is None else run.seed}" for run in runs)
        notes.append(("Runs: ", Data(described), "."))
    return notes


# -- the tables ---------------------------------------------------------------------------------
def metric_column(metric: metric_table.Metric) -> Column:
    return Column(text=f"{metric.display} {metric.arrow}", latex=f"{metric.latex} {ARROWS[metric.direction].latex}")


def source_column(source: Source) -> Column:
    dagger = source.below_coverage
    return Column(
        text=source.label + (DAGGER.text if dagger else ""), latex=latex_text(source.label) + (DAGGER.latex if dagger else "")
    )


def present(results: Results, names: Iterable[str]) -> list[str]:
    keys = {(m, s) for _, m, s in results.keys()}
    return [name for name in names if (name, OVERALL) in keys]


def source_rows(
    results: Results, sources: Sequence[Source], metrics: Sequence[metric_table.Metric], reader: ReaderScores | None = None
) -> tuple[Row, ...]:
    rows = []
    for source in sources:
        cells = [Cell(source=source, metric=m.name, estimate=results.get(source, m.name), direction=m.direction) for m in metrics]
        for criterion in reader.criteria if reader else ():
            estimate = reader.get(source.run, source.generator, criterion) if reader else None
            cells.append(Cell(source=source, metric=criterion, estimate=estimate, direction="higher"))
        rows.append(Row(label=source.label, cells=tuple(cells), group=source.group, dagger=source.below_coverage))
    return tuple(rows)


def main_table(runs: Sequence[Run], options: ReportOptions, reader: ReaderScores | None = None) -> PaperTable | None:
    """Table I (None when the runs hold no main-table metric)."""
    results = Results(runs)
    wanted = {m.name: m for m in metric_table.main_table()}
    metrics = [wanted[name] for name in present(results, wanted)]
    if not metrics:
        return None
    sources = sources_of(runs)
    columns = [metric_column(m) for m in metrics]
    columns += [
        Column(text=f"{READER_COLUMNS[c]} ↑", latex=f"{READER_COLUMNS[c]} $\\uparrow$")
        for c in (reader.criteria if reader else ())
    ]
    rows = source_rows(results, sources, metrics, reader)
    notes = [values_note(runs, options), marks_note(runs, "columns")]
    notes += [column_note(runs, m, m.display, [r.cells[k] for r in rows]) for k, m in enumerate(metrics)]
    if reader:
        titles = " and ".join(READER_COLUMNS[c] for c in reader.criteria)
        cells = [r.cells[k] for r in rows for k in range(len(metrics), len(columns))]
        notes.append(
            (
                f"{titles}: radiologists' mean Likert score (1 = clearly artificial, 5 = indistinguishable from real) "
                f"with the study analysis's two-way (reader x case) bootstrap CI; {reader.readers} readers, "
                f"{reader.cases} cases; reader study ",
                Data(str(reader.study)),
                ".",
            )
        )
        notes.append((n_note(titles, cells) + ".",))
    caption = (
        f"Generated chest X-rays against the real test images: {', '.join(m.display for m in metrics)}"
        + (" and the radiologists' scores" if reader else "")
        + ", by model type."
    )
    if any(run.demo for run in runs):
        caption += " DEMO evaluators on synthetic data: not comparable with published numbers."
    table = PaperTable(
        name="table_main",
        caption=caption,
        corner="Model",
        columns=tuple(columns),
        rows=rows,
        notes=tuple(notes + run_notes(runs)),
    )
    return with_marks(table)


def filled(sources: Sequence[Source], rows: Sequence[Row]) -> tuple[tuple[Column, ...], tuple[Row, ...]]:
    """Source columns and rows without the sources that have no value in any row."""
    keep = [k for k in range(len(sources)) if any(r.cells[k].estimate is not None for r in rows)]
    columns = tuple(source_column(sources[k]) for k in keep)
    return columns, tuple(replace(r, cells=tuple(r.cells[k] for k in keep)) for r in rows)


def label_order(labels: Iterable[str]) -> list[str]:
    """CheXpert labels in their order, any others after them by name."""
    found = set(labels)
    return [x for x in CHEXPERT_LABELS if x in found] + sorted(found - set(CHEXPERT_LABELS))


def pathology_table(runs: Sequence[Run], options: ReportOptions, metric: metric_table.Metric) -> PaperTable | None:
    """Pathologies × sources: per-class rows (``f1/<label>``) or per-pathology subsets, then the overall value."""
    results = Results(runs)
    if metric.per_class:
        prefix = f"{metric.per_class}/"
        names = {m[len(prefix) :] for _, m, s in results.keys() if m.startswith(prefix) and s == OVERALL}
        lines = [(label, f"{prefix}{label}", OVERALL, "") for label in label_order(names)]
        overall = "Macro average"
    else:
        names = {s for _, m, s in results.keys() if m == metric.name and is_pathology_subset(s)}
        lines = [(label, metric.name, label, "") for label in label_order(names)]
        overall = "All cases"
    if not lines:
        return None
    lines.append((overall, metric.name, OVERALL, OVERALL_GROUP))
    sources = sources_of(runs)
    rows = tuple(
        Row(
            label=label,
            group=group,
            cells=tuple(
                Cell(source=s, metric=name, subset=subset, estimate=results.get(s, name, subset), direction=metric.direction)
                for s in sources
            ),
        )
        for label, name, subset, group in lines
    )
    what = "per class (one-vs-rest over all cases)" if metric.per_class else "per pathology (the cases positive for it)"
    units = " / ".join(sorted({c.estimate.n_unit for r in rows for c in r.cells if c.estimate and c.estimate.n_unit}))
    notes = [
        values_note(runs, options),
        marks_note(runs, "rows"),
        (
            f"{metric.display} {what}; n ({units}) of every cell is in the CSV table; ",
            Data(", ".join(evaluator_text(runs, metric))),
            ".",
        ),
    ]
    columns, rows = filled(sources, rows)
    table = PaperTable(
        name=f"table_pathology_{metric.name}",
        caption=f"{metric.display} {what} for each model.",
        corner="Pathology",
        columns=columns,
        rows=rows,
        notes=tuple(notes + run_notes(runs)),
        compare="rows",
    )
    return with_marks(table)


def columns_table(
    runs: Sequence[Run], options: ReportOptions, metrics: Sequence[metric_table.Metric], *, name: str, caption: str
) -> PaperTable:
    """Sources × ``metrics`` (those present), best / second per column, a footnote per column."""
    rows = source_rows(Results(runs), sources_of(runs), metrics)
    notes = [values_note(runs, options), marks_note(runs, "columns")]
    notes += [column_note(runs, m, m.display, [r.cells[k] for r in rows]) for k, m in enumerate(metrics)]
    table = PaperTable(
        name=name,
        caption=caption,
        corner="Model",
        columns=tuple(metric_column(m) for m in metrics),
        rows=rows,
        notes=tuple(notes + run_notes(runs)),
    )
    return with_marks(table)


def parts_table(runs: Sequence[Run], options: ReportOptions, metric: metric_table.Metric) -> PaperTable | None:
    """Sources × the metric's parts and the metric itself: ``table_dice_organs`` (Dice per structure), and
    ``table_<metric>`` for the memorization audit and lesion-in-box adherence."""
    wanted = {m.name: m for m in (*metric.parts, metric)}
    entries = [wanted[name] for name in present(Results(runs), wanted)]
    if not any(m in metric.parts for m in entries):
        return None
    if metric.family == "anatomy":
        name, caption = f"table_{metric.name}_organs", f"{metric.display} per anatomical structure for each model."
    else:
        name, caption = f"table_{metric.name}", f"{metric.display} and its components for each model."
    return columns_table(runs, options, entries, name=name, caption=caption)


#: Families of ``table_distribution``'s columns.
DISTRIBUTION_FAMILIES = ("distribution", "diversity")


def distribution_table(runs: Sequence[Run], options: ReportOptions) -> PaperTable | None:
    """Sources × the distribution and diversity metrics present (Fréchet distance per encoder, KID, CMMD,
    precision/recall/density/coverage, MS-SSIM diversity, Vendi); None unless one of them is not in Table I."""
    wanted = {m.name: m for m in metric_table.METRICS if m.family in DISTRIBUTION_FAMILIES}
    metrics = [wanted[name] for name in present(Results(runs), wanted)]
    if not any(m.family == "distribution" and not m.main_column for m in metrics):
        return None
    caption = f"Distribution and diversity of the generated images: {', '.join(m.display for m in metrics)}, for each model."
    return columns_table(runs, options, metrics, name="table_distribution", caption=caption)


def subgroup_table(runs: Sequence[Run], options: ReportOptions) -> PaperTable | str | None:
    """Every metric with subgroup rows: its subgroups and fairness gaps × sources, from the results rows; None without
    demographics, the reason when the cases have demographics but the runs no subgroup rows."""
    results = Results(runs)
    found = subgroups_by_row(results.keys())
    entries = [m for m in metric_table.rows() if m.name in found]
    if not entries:
        return NO_SUBGROUP_ROWS if have_demographics(runs) else None
    sources = sources_of(runs)
    rows = []
    for metric in entries:
        for subgroup in found[metric.name]:
            gap = subgroup.value == GAP
            cells = tuple(
                Cell(
                    source=s,
                    metric=metric.name,
                    subset=subgroup.subset,
                    estimate=results.get(s, metric.name, subgroup.subset),
                    direction="lower" if gap else metric.direction,
                )
                for s in sources
            )
            counts = {(c.estimate.n, c.estimate.n_unit) for c in cells if c.estimate is not None}
            label = GAP_LABEL if gap else subgroup.value
            if len(counts) == 1:
                [(n, unit)] = counts
                label += f" (n = {n:g}{' ' + unit if unit else ''})"
            rows.append(Row(label=label, cells=cells, group=f"{metric.display} by {subgroup.attribute}"))
    notes: list[Note] = [
        values_note(runs, options),
        (
            "Each metric computed by `evaluate` on the cases of each subgroup (sex, age band in years at the study, race "
            "as cases.jsonl records them; unknown: not recorded, never part of a gap); gap = largest minus smallest value "
            "over the attribute's known subgroups (lower is better), its CI from the subgroups' bootstrap draws index by "
            "index. n and its unit of every cell are in the CSV table.",
        ),
        marks_note(runs, "rows"),
    ]
    columns, kept = filled(sources, rows)
    table = PaperTable(
        name="table_subgroups",
        caption="Each metric by patient subgroup (sex, age band, race) with its fairness gap, for each model.",
        corner="Subgroup",
        columns=columns,
        rows=kept,
        notes=tuple(notes + run_notes(runs)),
        compare="rows",
    )
    return with_marks(table)


def paper_tables(runs: Sequence[Run], options: ReportOptions) -> list[PaperTable]:
    """Every table the runs hold data for, Table I first."""
    reader = reader_scores(runs, options.study)
    main = main_table(runs, options, reader)
    tables = [
        *(pathology_table(runs, options, m) for m in metric_table.METRICS if m.per_class),
        *(pathology_table(runs, options, m) for m in metric_table.pathology_tables()),
        *(parts_table(runs, options, m) for m in metric_table.METRICS if m.parts),
        distribution_table(runs, options),
    ]
    subgroups = subgroup_table(runs, options)
    if isinstance(subgroups, str) and main is not None:
        main = replace(main, notes=(*main.notes, (subgroups,)))
    elif isinstance(subgroups, PaperTable):
        tables.append(subgroups)
    return [t for t in [main, *tables] if isinstance(t, PaperTable)]


def render(table: PaperTable, ext: str, options: ReportOptions) -> str:
    if ext == "md":
        return markdown_table(table, decimals=options.decimals, ci=options.ci)
    if ext == "tex":
        return latex_table(
            table, decimals=options.decimals, ci=options.ci, label="tab:" + table.name.removeprefix("table_").replace("_", "-")
        )
    return csv_table(table)


def write_tables(runs: Sequence[Run], out: Path, options: ReportOptions) -> list[Path]:
    """Write every table of ``runs`` (comparable runs: one section) into ``out`` in ``options.formats``."""
    return write_table_files(paper_tables(runs, options), out, options)


def write_table_files(tables: Sequence[PaperTable], out: Path, options: ReportOptions) -> list[Path]:
    """Write built ``tables`` into ``out`` in ``options.formats``."""
    written = []
    for table in tables:
        for ext in options.formats:
            path = out / f"{table.name}.{ext}"
            write_text_atomic(path, render(table, ext, options))
            written.append(path)
    return written


def per_pathology(frame: pd.DataFrame, metric: str, coverage: Mapping[str, Coverage] = NO_COVERAGE) -> pd.DataFrame:
    """Generators × pathologies for one metric of one run's results (values), for the heatmaps."""
    sub = frame[(frame.metric == metric) & frame.subset.map(is_pathology_subset)]
    if sub.empty:
        return pd.DataFrame()
    table = sub.pivot(index="generator", columns="subset", values="value")
    return table.reindex([g for g in generator_order(frame, coverage) if g in table.index])
