"""Figures from ``results.csv`` (matplotlib, Agg backend): headline metrics with CIs, and a
per-pathology heatmap per metric. A source below ``metrics.min_coverage`` carries † in its
label, explained under the figure."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from xreal_bench.coverage import Coverage  # noqa: E402
from xreal_bench.metrics import table as metric_table  # noqa: E402
from xreal_bench.reports.coverage import label, mark_footnote  # noqa: E402
from xreal_bench.reports.leaderboard import NO_COVERAGE, generator_order  # noqa: E402
from xreal_bench.reports.tables import per_pathology  # noqa: E402


def footnote(fig, coverage: Mapping[str, Coverage]) -> None:
    """The † explanation under the figure (nothing when no source is marked)."""
    if text := mark_footnote(coverage):
        fig.text(0.01, 0.005, text, fontsize=6, ha="left", va="bottom", wrap=True)
        fig.subplots_adjust(bottom=max(fig.subplotpars.bottom, 0.12))


def headline_figure(frame: pd.DataFrame, path: Path, coverage: Mapping[str, Coverage] = NO_COVERAGE) -> Path | None:
    """One panel per headline metric: a bar per generator with its bootstrap CI."""
    overall = frame[frame.subset == "all"]
    metrics = [m for m in metric_table.headline() if m.name in set(overall.metric)]
    if not metrics:
        return None
    order = generator_order(overall, coverage)
    cols = min(4, len(metrics))
    rows = math.ceil(len(metrics) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), squeeze=False)
    colors = plt.get_cmap("tab10")(np.arange(len(order)) % 10)
    for ax, metric in zip(axes.flat, metrics):
        data = overall[overall.metric == metric.name].set_index("generator").reindex(order)
        values = data["value"].to_numpy(dtype=float)
        # clipped at 0: a bootstrap interval need not contain the point estimate (FID's is biased upwards)
        low = np.clip(np.nan_to_num(values - data["ci_low"].to_numpy(dtype=float), nan=0.0), 0.0, None)
        high = np.clip(np.nan_to_num(data["ci_high"].to_numpy(dtype=float) - values, nan=0.0), 0.0, None)
        ax.bar(range(len(order)), values, color=colors, yerr=[low, high], capsize=3)
        ax.set_xticks(range(len(order)), [label(g, coverage) for g in order], rotation=45, ha="right", fontsize=8)
        evaluator = ", ".join(sorted(set(data["evaluator"].dropna())))
        ax.set_title(f"{metric.display} {metric.arrow}", fontsize=10)
        ax.set_xlabel(evaluator, fontsize=7)
    for ax in axes.flat[len(metrics) :]:
        ax.axis("off")
    fig.tight_layout()
    footnote(fig, coverage)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path


def pathology_heatmap(
    frame: pd.DataFrame, metric: metric_table.Metric, path: Path, coverage: Mapping[str, Coverage] = NO_COVERAGE
) -> Path | None:
    table = per_pathology(frame, metric.name, coverage)
    if table.empty:
        return None
    fig, ax = plt.subplots(figsize=(max(4.0, 1.0 + 0.9 * table.shape[1]), max(2.5, 0.8 + 0.45 * table.shape[0])))
    cmap = "viridis_r" if metric.lower_is_better else "viridis"
    image = ax.imshow(table.to_numpy(dtype=float), cmap=cmap, aspect="auto")
    ax.set_xticks(range(table.shape[1]), table.columns, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(table.shape[0]), [label(str(g), coverage) for g in table.index], fontsize=8)
    for (i, j), v in np.ndenumerate(table.to_numpy(dtype=float)):
        if not math.isnan(v):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="white")
    fig.colorbar(image, ax=ax, label=f"{metric.display} {metric.arrow}")
    ax.set_title(f"{metric.display} per pathology", fontsize=10)
    fig.tight_layout()
    footnote(fig, {g: c for g, c in coverage.items() if g in table.index})
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path


def write_figures(out: Path, frame: pd.DataFrame, coverage: Mapping[str, Coverage] = NO_COVERAGE) -> list[Path]:
    folder = out / "figures"
    written = [headline_figure(frame, folder / "headline.png", coverage)]
    written += [
        pathology_heatmap(frame, m, folder / f"per_pathology_{m.name}.png", coverage) for m in metric_table.pathology_tables()
    ]
    return [p for p in written if p is not None]
