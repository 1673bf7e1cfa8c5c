"""FID against clinical metrics: rank correlations over generators with bootstrap CIs, and the scatter figure.

The paper's argument — FID does not track clinical realism — as numbers: for each pair (distance metric,
clinical metric) :func:`rank_correlations` gives Spearman's ρ and Kendall's τ-b over the generators (one value
each, real images excluded) and percentile CIs from resampling the *generators* with replacement (seeded).
With a lower-is-better distance and higher-is-better clinical metrics, agreement shows as ρ, τ < 0.

:func:`scatter_figure` draws one panel per pair from plain data (:class:`Panel`), rows = distances,
columns = clinical metrics; points carry the source's colour and marker (:mod:`xreal_bench.reports.palette`)
and both CIs as error bars, named in one legend under the panels.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from scipy.stats import rankdata

from xreal_bench.reports.palette import SourceStyle

FEW_GENERATORS = "fewer than 3 generators"
PANEL_IN = 2.3  # panel width and height, inches
SMALL_PT = 7.0  # correlations, legend and note
CHAR_EM = 0.6  # average character width of the sans-serif font, in ems
NO_VARIATION = "no variation in one of the metrics"


@dataclass(frozen=True)
class RankCorrelation:
    """Spearman's ρ and Kendall's τ-b of ``n`` generators with percentile bootstrap CIs (NaN with ``note`` when undefined)."""

    n: int
    spearman: float
    spearman_low: float
    spearman_high: float
    kendall: float
    kendall_low: float
    kendall_high: float
    note: str = ""


def pearson_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row of ``a`` with the same row of ``b`` (NaN for a constant row)."""
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    scale = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(scale > 0, (a * b).sum(axis=1) / scale, np.nan)


def spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's ρ per row: Pearson's r of the average ranks (ties share their mean rank)."""
    return pearson_rows(rankdata(x, axis=1), rankdata(y, axis=1))


def kendall_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall's τ-b per row: (concordant − discordant) / sqrt(pairs untied in x · pairs untied in y)."""
    i, j = np.triu_indices(x.shape[1], k=1)
    sx, sy = np.sign(x[:, i] - x[:, j]), np.sign(y[:, i] - y[:, j])
    scale = np.sqrt((sx != 0).sum(axis=1) * (sy != 0).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(scale > 0, (sx * sy).sum(axis=1) / scale, np.nan)


def percentile_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if not len(finite):
        return math.nan, math.nan
    tail = 50 * (1 - confidence)
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)


def rank_correlations(
    x: Sequence[float], y: Sequence[float], *, resamples: int = 2000, seed: int = 0, confidence: float = 0.95
) -> RankCorrelation:
    """ρ and τ-b of the pairs ``(x[i], y[i])`` (pairs with a NaN left out) and their bootstrap CIs.

    Resample *b* draws ``n`` generator positions with replacement:
    ``np.random.default_rng(seed).integers(0, n, size=(resamples, n))``; a resample whose statistic is
    undefined (one metric constant in it) is left out of the percentiles.
    """
    xs, ys = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    keep = np.isfinite(xs) & np.isfinite(ys)
    xs, ys = xs[keep], ys[keep]
    n = len(xs)
    if n < 3:
        return RankCorrelation(n, *(math.nan,) * 6, note=FEW_GENERATORS)
    spearman = float(spearman_rows(xs[None], ys[None])[0])
    kendall = float(kendall_rows(xs[None], ys[None])[0])
    picks = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    s_low, s_high = percentile_interval(spearman_rows(xs[picks], ys[picks]), confidence)
    k_low, k_high = percentile_interval(kendall_rows(xs[picks], ys[picks]), confidence)
    note = NO_VARIATION if math.isnan(spearman) else ""
    return RankCorrelation(n, spearman, s_low, s_high, kendall, k_low, k_high, note)


@dataclass(frozen=True)
class Point:
    """One generator in a panel: its value on each axis with the CI (NaN: none)."""

    label: str
    style: SourceStyle
    x: float
    x_low: float
    x_high: float
    y: float
    y_low: float
    y_high: float


@dataclass(frozen=True)
class Panel:
    """One (distance, clinical) pair: axis titles, the points and their correlation."""

    distance: str
    clinical: str
    x_title: str
    y_title: str
    points: tuple[Point, ...]
    correlation: RankCorrelation


def signed(value: float) -> str:
    return f"{value:.2f}".replace("-", "\u2212")


def correlation_text(c: RankCorrelation) -> str:
    """Two title lines: ``ρ = −0.40 [−1.00, 0.80]`` and ``τ = …`` (or why they are undefined)."""
    if math.isnan(c.spearman):
        return f"ρ, τ undefined:\n{c.note} (n = {c.n})"
    return (
        f"ρ = {signed(c.spearman)} [{signed(c.spearman_low)}, {signed(c.spearman_high)}]\n"
        f"τ = {signed(c.kendall)} [{signed(c.kendall_low)}, {signed(c.kendall_high)}]  n = {c.n}"
    )


def error_bars(values: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """``2 x n`` error-bar lengths below and above ``values``: 0 where the CI is unknown, clipped at 0 (a bootstrap
    interval need not contain the point estimate: FID's is biased upwards)."""
    below = np.clip(np.nan_to_num(values - low, nan=0.0), 0.0, None)
    above = np.clip(np.nan_to_num(high - values, nan=0.0), 0.0, None)
    return np.vstack([below, above])


def draw_panel(ax, panel: Panel) -> None:
    for point in panel.points:
        if math.isnan(point.x) or math.isnan(point.y):
            continue
        xerr = error_bars(np.array([point.x]), np.array([point.x_low]), np.array([point.x_high]))
        yerr = error_bars(np.array([point.y]), np.array([point.y_low]), np.array([point.y_high]))
        ax.errorbar([point.x], [point.y], xerr=xerr, yerr=yerr, fmt="none", ecolor="#555555", elinewidth=0.8, capsize=2, zorder=1)
        ax.plot(
            [point.x],
            [point.y],
            linestyle="none",
            marker=point.style.marker,
            markersize=6,
            markerfacecolor=point.style.colour,
            markeredgecolor="black",
            markeredgewidth=0.6,
            zorder=2,
        )
    ax.set_xlabel(panel.x_title)
    ax.set_ylabel(panel.y_title)
    ax.set_title(correlation_text(panel.correlation), fontsize=SMALL_PT)
    ax.grid(True, linewidth=0.4, color="#DDDDDD")
    ax.margins(0.12)


def scatter_figure(panels: Sequence[Panel], *, note: str) -> Figure:
    """Rows = distance metrics, columns = clinical metrics (in first-seen order); one legend for all points."""
    distances = list(dict.fromkeys(p.distance for p in panels))
    clinical = list(dict.fromkeys(p.clinical for p in panels))
    width = max(PANEL_IN * len(clinical), 2 * PANEL_IN)
    fig = Figure(figsize=(width, PANEL_IN * len(distances) + 0.9), layout="constrained")
    axes = fig.subplots(len(distances), len(clinical), squeeze=False)
    placed = {(p.distance, p.clinical): p for p in panels}
    for r, distance in enumerate(distances):
        for c, name in enumerate(clinical):
            panel = placed.get((distance, name))
            if panel is None:
                axes[r, c].set_axis_off()
            else:
                draw_panel(axes[r, c], panel)
    seen: dict[str, SourceStyle] = {}
    for panel in panels:
        for point in panel.points:
            seen.setdefault(point.label, point.style)
    handles = [
        Line2D([], [], linestyle="none", marker=s.marker, markerfacecolor=s.colour, markeredgecolor="black", label=label)
        for label, s in seen.items()
    ]
    if handles:
        entry_in = (max(len(label) for label in seen) * CHAR_EM * SMALL_PT + 36) / 72  # marker, gaps, text
        fig.legend(handles=handles, loc="outside lower center", ncol=max(1, min(len(handles), int(0.95 * width / entry_in))))
    chars = int(width * 72 / (CHAR_EM * SMALL_PT))
    fig.suptitle("\n".join(textwrap.wrap(note, width=chars, break_long_words=False)), fontsize=SMALL_PT)
    return fig
