"""Report figures (matplotlib figures without pyplot state), each written as PNG (dpi 200) and PDF.

:func:`write_figures` writes into ``<out>/figures/``:

- ``metrics_bars``: one panel per metric; one bar per source with its bootstrap CI, labelled
  ``<generator>`` (``<generator> (<run label>)`` when several runs are shown); each source has an Okabe-Ito
  colour and a hatch of its own, real images are plain grey (:mod:`xreal_bench.reports.palette`).
- ``pathology_<metric>``: heatmaps of sources x pathologies — per pathology subset for the metrics with a
  per-pathology table (FID, MS-SSIM, Dice), per class for the per-class metrics (F1, AUC); colormap cividis
  (lighter = better), each number in the text colour with the higher WCAG contrast on its cell.
- ``fid_vs_clinical``: each distance metric of Table I against each clinical metric of Table I (and the reader
  study's anatomy and pathology realism when ``reader_scores`` is given), with the rank correlations of
  :mod:`xreal_bench.reports.scatter`; the same numbers in ``<out>/fid_vs_clinical.csv``.
- ``likert``: the reader study's Likert bars when ``study_dir/analysis/responses.csv`` exists.

Fonts are at least :data:`MIN_FONT_PT` points at the saved size, layouts are constrained (no overlapping
labels: :func:`overlapping_texts` finds any), and a source below ``metrics.min_coverage`` carries † with the
explanation under the figure.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import combinations
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.ticker import MaxNLocator

from xreal_bench.atomic import write_atomic, write_text_atomic
from xreal_bench.errors import UserFacingError
from xreal_bench.labels import CHEXPERT_LABELS
from xreal_bench.metrics import table as metric_table
from xreal_bench.reports.coverage import label as coverage_label
from xreal_bench.reports.coverage import mark_footnote
from xreal_bench.reports.options import ReportOptions
from xreal_bench.reports.palette import HEATMAP_CMAP, SourceStyle, source_styles, text_colour
from xreal_bench.reports.runs import GROUPS, REFERENCE, Run
from xreal_bench.reports.scatter import Panel, Point, error_bars, rank_correlations, scatter_figure
from xreal_bench.subgroups import is_pathology_subset
from xreal_bench.tables import to_csv

DPI = 200
FORMATS = ("png", "pdf")
MIN_FONT_PT = 7.0
STYLE = {
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "figure.titlesize": 8,
    "hatch.linewidth": 0.6,
    "pdf.fonttype": 42,  # TrueType in the PDF: text stays text
    "svg.fonttype": "none",
}
#: No creation date or software version in the files: the same figure gives the same bytes.
METADATA: dict[str, dict[str, None]] = {"pdf": {"CreationDate": None}, "png": {"Software": None}}
CORRELATION_RESAMPLES = 2000
CORRELATION_SEED = 0
#: The reader study's criteria shown against FID, with their axis titles.
READER_CRITERIA = {"anatomy_realism": "Reader anatomy ↑", "pathology_realism": "Reader pathology ↑"}
READER_COLUMNS = ("generator", "criterion", "mean", "ci_low", "ci_high")
CLINICAL_FAMILIES = ("anatomy", "pathology", "fidelity")
DEMO_NOTE = "DEMO evaluators on synthetic data: not comparable with published numbers."
SCATTER_COLUMNS = (
    "distance",
    "clinical",
    "n_generators",
    "spearman",
    "spearman_low",
    "spearman_high",
    "kendall",
    "kendall_low",
    "kendall_high",
    "note",
)


@dataclass(frozen=True)
class Entry:
    """One source of one run as the figures show it."""

    run: Run
    generator: str
    label: str
    style: SourceStyle

    def row(self, metric: str, subset: str = "all") -> tuple[float, float, float]:
        """(value, ci_low, ci_high) of a results row; NaNs when the run has none."""
        frame = self.run.frame
        rows = frame[(frame.generator == self.generator) & (frame.metric == metric) & (frame.subset == subset)]
        if rows.empty:
            return math.nan, math.nan, math.nan
        first = rows.iloc[0]
        return float(first["value"]), float(first["ci_low"]), float(first["ci_high"])


def literal(text: object) -> str:
    """``text`` as matplotlib draws it literally (``$`` never starts mathtext)."""
    return str(text).replace("$", r"\$")


def entries(runs: Sequence[Run]) -> list[Entry]:
    """Every source of every run: Table I groups in order (real images first), then by name, then in run order."""
    several = len(runs) > 1
    found = []
    for r, run in enumerate(runs):
        for g in run.generators:
            group = GROUPS.index(run.group(g))
            name = coverage_label(g, run.coverage) + (f" ({run.label})" if several else "")
            found.append(((group, g != REFERENCE, g, r), run, g, literal(name)))
    found.sort(key=lambda item: item[0])
    styles = source_styles([g == REFERENCE for _, _, g, _ in found])
    return [Entry(run, g, name, style) for (_, run, g, name), style in zip(found, styles)]


def footnote(runs: Sequence[Run], entries_shown: Sequence[Entry]) -> str:
    """What goes under a figure: the demo warning, and why sources carry †."""
    shown = {(id(e.run), e.generator) for e in entries_shown}
    notes = [DEMO_NOTE] if any(run.demo for run in runs) else []
    for run in runs:
        marked = {g: c for g, c in run.coverage.items() if (id(run), g) in shown}
        if text := mark_footnote(marked):
            notes.append(text)
    return " ".join(dict.fromkeys(notes))


def wrapped(text: str, width_in: float, font_pt: float = MIN_FONT_PT) -> str:
    """``text`` wrapped to lines that fit ``width_in`` inches at ``font_pt`` (about 0.6 em per character)."""
    width = max(20, int(width_in * 72 / (0.6 * font_pt)))
    return "\n".join(textwrap.wrap(text, width=width, break_long_words=False))


def add_footnote(fig: Figure, text: str) -> None:
    if text:
        fig.supxlabel(literal(wrapped(text, fig.get_figwidth())), fontsize=MIN_FONT_PT, ha="center")


@matplotlib.rc_context(STYLE)
def metrics_bars_figure(shown: Sequence[Entry], runs: Sequence[Run]) -> Figure | None:
    """One panel per metric row any source has (table order, parts before their metric), a horizontal bar per source
    (sources named once per row of panels, first source on top); None without a metric."""
    present = {m for run in runs for m in run.frame.loc[run.frame.subset == "all", "metric"]}
    metrics = [m for m in metric_table.rows() if m.name in present]
    if not metrics or not shown:
        return None
    cols = min(4, len(metrics))
    rows = math.ceil(len(metrics) / cols)
    panel_width, panel_height = 2.0, 0.9 + 0.2 * len(shown)
    label_width = 0.3 + 0.065 * max(len(e.label) for e in shown)
    fig = Figure(figsize=(label_width + panel_width * cols, rows * panel_height + 0.3), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False, sharey=True)
    y = np.arange(len(shown))
    for k, (ax, metric) in enumerate(zip(axes.flat, metrics)):
        values, low, high = (np.array(column) for column in zip(*(e.row(metric.name) for e in shown)))
        for i, entry in enumerate(shown):
            s = entry.style
            ax.barh(
                i,
                values[i],
                height=0.72,
                color=s.colour,
                hatch=s.hatch or None,
                hatchcolor=s.hatch_colour,
                edgecolor="black",
                linewidth=0.6,
            )
        ax.errorbar(values, y, xerr=error_bars(values, low, high), fmt="none", ecolor="black", elinewidth=0.8, capsize=2)
        for missing in np.flatnonzero(np.isnan(values)):
            ax.text(0.02, missing, "n/a", transform=ax.get_yaxis_transform(), ha="left", va="center", fontsize=MIN_FONT_PT)
        ax.set_title(f"{metric.display} {metric.arrow}")
        ax.xaxis.set_major_locator(MaxNLocator(nbins=4))
        evaluators = sorted(
            {str(v) for run in runs for v in run.frame.loc[run.frame.metric == metric.name, "evaluator"].dropna() if str(v)}
        )
        if evaluators:
            ax.set_xlabel(literal(wrapped("evaluator: " + ", ".join(evaluators), panel_width)), fontsize=MIN_FONT_PT)
        ax.grid(True, axis="x", linewidth=0.4, color="#DDDDDD")
        ax.set_axisbelow(True)
        if k % cols:
            ax.tick_params(labelleft=False)
    axes[0, 0].set_yticks(y, [e.label for e in shown])
    axes[0, 0].set_ylim(len(shown) - 0.5, -0.5)  # first source on top
    for ax in axes.flat[len(metrics) :]:
        ax.set_axis_off()
    add_footnote(fig, footnote(runs, shown))
    return fig


def pathology_columns(names: Iterable[str]) -> list[str]:
    """Pathology names in CheXpert order, any others after them by name."""
    names = set(names)
    return [n for n in CHEXPERT_LABELS if n in names] + sorted(names - set(CHEXPERT_LABELS))


def pathology_values(shown: Sequence[Entry], metric: metric_table.Metric) -> pd.DataFrame:
    """Sources (labels) x pathologies: per-subset rows for a per-pathology metric, per-class rows for F1/AUC."""
    records: dict[str, dict[str, float]] = {}
    for entry in shown:
        frame = entry.run.frame[entry.run.frame.generator == entry.generator]
        if metric.per_class:
            prefix = f"{metric.per_class}/"
            rows = frame[frame.metric.str.startswith(prefix) & (frame.subset == "all")]
            cells = {m[len(prefix) :]: float(v) for m, v in zip(rows.metric, rows.value)}
        else:
            rows = frame[(frame.metric == metric.name) & frame.subset.map(is_pathology_subset).astype(bool)]
            cells = {str(s): float(v) for s, v in zip(rows.subset, rows.value)}
        if cells:
            records[entry.label] = cells
    if not records:
        return pd.DataFrame()
    table = pd.DataFrame.from_dict(records, orient="index")
    return table[pathology_columns(table.columns)]


def heatmap_metrics() -> list[metric_table.Metric]:
    """Metrics with a heatmap: those with a per-pathology table, then the per-class ones."""
    return [*metric_table.pathology_tables(), *(m for m in metric_table.METRICS if m.per_class)]


def cell_text(value: float) -> str:
    if math.isnan(value):
        return "–"
    magnitude = abs(value)
    return f"{value:.0f}" if magnitude >= 100 else f"{value:.1f}" if magnitude >= 10 else f"{value:.2f}"


@matplotlib.rc_context(STYLE)
def heatmap_figure(shown: Sequence[Entry], metric: metric_table.Metric, runs: Sequence[Run]) -> Figure | None:
    """Sources x pathologies of ``metric``; lighter = better in either direction; None without values."""
    table = pathology_values(shown, metric)
    if table.empty:
        return None
    values = table.to_numpy(dtype=float)
    n_rows, n_cols = values.shape
    label_width = 0.065 * max(len(str(i)) for i in table.index)
    fig = Figure(figsize=(1.6 + label_width + 0.5 * n_cols, 1.6 + 0.3 * n_rows), layout="constrained")
    ax = fig.subplots()
    cmap = matplotlib.colormaps[HEATMAP_CMAP + ("_r" if metric.lower_is_better else "")].with_extremes(bad="#FFFFFF")
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, aspect="auto")
    ax.set_xticks(range(n_cols), [literal(c) for c in table.columns], rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(n_rows), list(table.index))
    for (i, j), v in np.ndenumerate(values):
        colour = "#000000" if math.isnan(v) else text_colour(image.cmap(image.norm(v)))
        ax.text(j, i, cell_text(v), ha="center", va="center", fontsize=MIN_FONT_PT, color=colour)
    ax.tick_params(length=0)
    fig.colorbar(image, ax=ax, label=f"{metric.display} {metric.arrow} (lighter = better)")
    if metric.per_class:
        ax.set_title(f"{metric.display.removesuffix(' (macro)')} per class (all cases)")
    else:
        ax.set_title(f"{metric.display} per pathology (cases positive for it)")
    add_footnote(fig, footnote(runs, shown))
    return fig


def distance_metrics() -> list[metric_table.Metric]:
    return [m for m in metric_table.main_table() if m.family == "distribution"]


def clinical_metrics() -> list[metric_table.Metric]:
    clinical = [m for m in metric_table.main_table() if m.family in CLINICAL_FAMILIES]
    return sorted(clinical, key=lambda m: CLINICAL_FAMILIES.index(m.family))


def check_reader_scores(scores: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in READER_COLUMNS if c not in scores.columns]
    if missing:
        raise UserFacingError(f"reader scores lack column(s) {', '.join(missing)} (expected {', '.join(READER_COLUMNS)})")
    return scores


def reader_row(scores: pd.DataFrame, entry: Entry, criterion: str) -> tuple[float, float, float]:
    """The entry's reader score: matched on generator (and on ``run_id`` when the scores have that column)."""
    rows = scores[(scores.generator == entry.generator) & (scores.criterion == criterion)]
    if "run_id" in scores.columns:
        rows = rows[rows.run_id == entry.run.run_id]
    if rows.empty:
        return math.nan, math.nan, math.nan
    first = rows.iloc[0]
    return float(first["mean"]), float(first["ci_low"]), float(first["ci_high"])


Lookup = Callable[[Entry], tuple[float, float, float]]


def metric_lookup(metric: str) -> Lookup:
    def lookup(entry: Entry) -> tuple[float, float, float]:
        return entry.row(metric)

    return lookup


def reader_lookup(scores: pd.DataFrame, criterion: str) -> Lookup:
    def lookup(entry: Entry) -> tuple[float, float, float]:
        return reader_row(scores, entry, criterion)

    return lookup


def scatter_panels(shown: Sequence[Entry], reader_scores: pd.DataFrame | None) -> list[Panel]:
    """Each (distance, clinical) pair both present for at least one generator; real images left out."""
    generated = [e for e in shown if e.generator != REFERENCE]
    clinical: list[tuple[str, str, Lookup]] = [
        (m.name, f"{m.display} {m.arrow}", metric_lookup(m.name)) for m in clinical_metrics()
    ]
    if reader_scores is not None:
        scores = check_reader_scores(reader_scores)
        clinical += [
            (criterion, title, reader_lookup(scores, criterion))
            for criterion, title in READER_CRITERIA.items()
            if (scores.criterion == criterion).any()
        ]
    panels = []
    for distance in distance_metrics():
        xs = {e.label: e.row(distance.name) for e in generated}
        for name, title, lookup in clinical:
            ys = {e.label: lookup(e) for e in generated}
            points = tuple(Point(e.label, e.style, *xs[e.label], *ys[e.label]) for e in generated)
            usable = [p for p in points if not (math.isnan(p.x) or math.isnan(p.y))]
            if not usable:
                continue
            gx, gy = per_generator_means(generated, points)
            correlation = rank_correlations(gx, gy, resamples=CORRELATION_RESAMPLES, seed=CORRELATION_SEED)
            panels.append(Panel(distance.name, name, f"{distance.display} {distance.arrow}", title, points, correlation))
    return panels


def per_generator_means(entries: Sequence[Entry], points: Sequence[Point]) -> tuple[list[float], list[float]]:
    """One (x, y) per generator: the mean over its runs (a model repeated over seeds is one model, not several)."""
    by_generator: dict[str, list[Point]] = {}
    for entry, point in zip(entries, points, strict=True):
        by_generator.setdefault(entry.generator, []).append(point)

    def mean(values: list[float]) -> float:
        finite = [v for v in values if not math.isnan(v)]
        return sum(finite) / len(finite) if finite else math.nan

    xs = [mean([p.x for p in ps]) for ps in by_generator.values()]
    ys = [mean([p.y for p in ps]) for ps in by_generator.values()]
    return xs, ys


def scatter_note(level: str) -> str:
    return (
        f"One point per generator and run (real images left out), error bars: {level} CIs. ρ: Spearman, τ: Kendall τ-b "
        "over the generators (a generator in several runs counts once, at the mean of its runs), [95 % bootstrap CI: "
        f"generators resampled with replacement, {CORRELATION_RESAMPLES} resamples, seed {CORRELATION_SEED}]. A "
        "lower-is-better distance that tracks a higher-is-better clinical metric gives ρ < 0."
    )


def correlation_table(panels: Sequence[Panel]) -> pd.DataFrame:
    records = []
    for p in panels:
        c = p.correlation
        records.append(
            (
                p.distance,
                p.clinical,
                c.n,
                c.spearman,
                c.spearman_low,
                c.spearman_high,
                c.kendall,
                c.kendall_low,
                c.kendall_high,
                c.note,
            )
        )
    return pd.DataFrame.from_records(records, columns=list(SCATTER_COLUMNS))


@matplotlib.rc_context(STYLE)
def fid_vs_clinical_figure(panels: Sequence[Panel], *, notes: str = "", level: str = "95 %") -> Figure | None:
    """The scatter of ``panels`` with the method note (``level``: the runs' CI level; ``notes``: demo warning,
    coverage marks) on top."""
    return scatter_figure(panels, note=" ".join(filter(None, [scatter_note(level), notes]))) if panels else None


def save(fig: Figure, folder: Path, stem: str, formats: Sequence[str] = FORMATS) -> list[Path]:
    """``folder/<stem>.<format>`` for each format, written atomically; PDFs without a creation date (reproducible)."""
    paths = []
    with matplotlib.rc_context(STYLE):
        for fmt in formats:
            path = folder / f"{stem}.{fmt}"
            write_atomic(path, partial(fig.savefig, format=fmt, dpi=DPI, metadata=METADATA[fmt]))
            paths.append(path)
    return paths


def drawn_texts(fig: Figure) -> list[Text]:
    """The visible, non-empty texts a draw of ``fig`` shows (tick labels only for ticks inside the view)."""
    tick_labels: set[int] = set()
    drawn: list[Text] = []
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            shown = ax.get_visible() and ax.axison and axis.get_visible()
            low, high = sorted(axis.get_view_interval())
            slack = (high - low) * 1e-9
            for tick in (*axis.get_major_ticks(), *axis.get_minor_ticks()):
                loc = tick.get_loc()
                inside = shown and loc is not None and low - slack <= loc <= high + slack
                for text in (tick.label1, tick.label2):
                    tick_labels.add(id(text))
                    if inside and text.get_visible() and text.get_text().strip():
                        drawn.append(text)
    others = [t for t in fig.findobj(Text) if id(t) not in tick_labels and t.get_visible() and t.get_text().strip()]
    return drawn + others


def text_corners(text: Text, renderer) -> np.ndarray:
    """The four corners (pixels) of the text's drawn rectangle, rotated with it."""
    box = text.get_window_extent(renderer)
    angle = text.get_rotation() % 180
    if angle in (0.0, 90.0):
        return np.array([[box.x0, box.y0], [box.x1, box.y0], [box.x1, box.y1], [box.x0, box.y1]])
    text.set_rotation(0)
    plain = text.get_window_extent(renderer)
    text.set_rotation(angle)
    theta = math.radians(angle)
    along = np.array([math.cos(theta), math.sin(theta)]) * plain.width / 2
    across = np.array([-math.sin(theta), math.cos(theta)]) * plain.height / 2
    centre = np.array([(box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2])
    return np.array([centre - along - across, centre + along - across, centre + along + across, centre - along + across])


def polygons_overlap(a: np.ndarray, b: np.ndarray, tolerance: float) -> bool:
    """Whether two convex polygons overlap by more than ``tolerance`` along every separating axis."""
    for polygon in (a, b):
        edges = np.roll(polygon, -1, axis=0) - polygon
        for edge in edges:
            length = float(np.hypot(*edge))
            if length == 0:
                continue
            normal = np.array([-edge[1], edge[0]]) / length
            pa, pb = a @ normal, b @ normal
            if min(pa.max(), pb.max()) - max(pa.min(), pb.min()) <= tolerance:
                return False
    return True


def overlapping_texts(fig: Figure, *, tolerance_px: float = 0.5) -> list[tuple[Text, Text]]:
    """Pairs of texts that a draw of ``fig`` shows overlapping (their rotated rectangles intersect by more than
    ``tolerance_px``)."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()  # lays out constrained layouts as a save does
    renderer = canvas.get_renderer()
    texts = drawn_texts(fig)
    corners = [text_corners(t, renderer) for t in texts]
    low = np.array([c.min(axis=0) for c in corners]).reshape(-1, 2)
    high = np.array([c.max(axis=0) for c in corners]).reshape(-1, 2)
    clashes = []
    for i, j in combinations(range(len(texts)), 2):
        if (np.minimum(high[i], high[j]) - np.maximum(low[i], low[j]) > tolerance_px).all():  # bounding boxes first
            if polygons_overlap(corners[i], corners[j], tolerance_px):
                clashes.append((texts[i], texts[j]))
    return clashes


def likert_files(study_dir: Path, folder: Path) -> list[Path]:
    """The reader study's Likert figure (PNG and PDF) from ``study_dir/analysis/responses.csv`` (none without it)."""
    from xreal_bench.reader_study.analysis import rating_rows
    from xreal_bench.reader_study.figures import likert_figure

    file = Path(study_dir) / "analysis" / "responses.csv"
    if not file.is_file():
        return []
    try:
        tidy = pd.read_csv(file, dtype={"source": str, "criterion": str})
    except (OSError, ValueError) as exc:
        raise UserFacingError(f"{file}: unreadable ({exc}); run `xreal-bench study analyze {study_dir}` again") from None
    missing = {"source", "criterion", "score", "block", "duplicate"} - set(tidy.columns)
    if missing:
        raise UserFacingError(f"{file}: missing column(s) {', '.join(sorted(missing))}; run `xreal-bench study analyze` again")
    ratings = rating_rows(tidy.assign(duplicate=tidy["duplicate"].astype(str).str.lower() == "true"))
    if ratings.empty:
        return []
    names = sorted(set(ratings.source))
    sources = ([REFERENCE] if REFERENCE in names else []) + [s for s in names if s != REFERENCE]
    criteria = list(dict.fromkeys(ratings.criterion))
    return [likert_figure(ratings, sources, criteria, folder / f"likert.{fmt}") for fmt in FORMATS]


def write_figures(
    runs: Sequence[Run],
    out: Path,
    options: ReportOptions,
    *,
    reader_scores: pd.DataFrame | None = None,
    study_dir: Path | None = None,
) -> list[Path]:
    """Every figure of the report folder ``out`` (see the module docstring) and ``out/fid_vs_clinical.csv``.

    ``reader_scores``: one row per (generator, criterion) with columns ``generator``, ``criterion``
    (``anatomy_realism``, ``pathology_realism``; others are ignored), ``mean``, ``ci_low``, ``ci_high``, and
    optionally ``run_id`` to tell runs apart; ``study_dir``: an analysed reader study (for the Likert figure).
    """
    if not options.figures:
        return []
    folder = Path(out) / "figures"
    shown = entries(runs)
    written: list[Path] = []
    if (fig := metrics_bars_figure(shown, runs)) is not None:
        written += save(fig, folder, "metrics_bars")
    for metric in heatmap_metrics():
        if (fig := heatmap_figure(shown, metric, runs)) is not None:
            written += save(fig, folder, f"pathology_{metric.name}")
    panels = scatter_panels(shown, reader_scores)
    level = f"{100 * float(runs[0].provenance.get('bootstrap', {}).get('confidence', 0.95)):g} %"
    if (fig := fid_vs_clinical_figure(panels, notes=footnote(runs, shown), level=level)) is not None:
        written += save(fig, folder, "fid_vs_clinical")
        csv = Path(out) / "fid_vs_clinical.csv"
        write_text_atomic(csv, to_csv(correlation_table(panels)))
        written.append(csv)
    if study_dir is not None:
        written += likert_files(study_dir, folder)
    return written
