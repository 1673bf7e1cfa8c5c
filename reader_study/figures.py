"""Figures of the reader study (matplotlib, written as PNG).

- :func:`likert_figure`: diverging stacked bars, one panel per criterion, one bar per source;
  scores 1-2 extend left of zero, 4-5 right, 3 straddles zero.
- :func:`reader_figure`: each reader's mean per source with its interval, one panel per criterion.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

SCORES = [1, 2, 3, 4, 5]
COLOURS = ["#b2182b", "#ef8a62", "#d9d9d9", "#67a9cf", "#2166ac"]


def likert_shares(ratings: pd.DataFrame, sources: list[str], criterion: str) -> np.ndarray:
    """``sources x 5`` percentages of each score (rows sum to 100, or 0 without ratings)."""
    rows = ratings[ratings["criterion"] == criterion]
    counts = pd.crosstab(rows["source"], rows["score"]).reindex(index=sources, columns=SCORES, fill_value=0).to_numpy(float)
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts * 100, totals, out=np.zeros_like(counts), where=totals > 0)


def likert_figure(ratings: pd.DataFrame, sources: list[str], criteria: list[str], path: Path) -> Path:
    fig, axes = plt.subplots(
        len(criteria), 1, figsize=(8, 0.55 * len(sources) * len(criteria) + 1.2 * len(criteria)), squeeze=False
    )
    for ax, criterion in zip(axes[:, 0], criteria):
        shares = likert_shares(ratings, sources, criterion)
        left = -(shares[:, 0] + shares[:, 1] + shares[:, 2] / 2)
        y = np.arange(len(sources))
        for k, score in enumerate(SCORES):
            ax.barh(y, shares[:, k], left=left, color=COLOURS[k], edgecolor="white", label=str(score))
            left = left + shares[:, k]
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_yticks(y, sources)
        ax.invert_yaxis()
        ax.set_xlim(-100, 100)
        ax.set_xlabel("% of ratings")
        ax.set_title(criterion.replace("_", " "))
    axes[0, 0].legend(title="score", ncol=5, loc="lower center", bbox_to_anchor=(0.5, 1.15), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path


def reader_figure(per_reader: pd.DataFrame, sources: list[str], criteria: list[str], path: Path) -> Path:
    readers = sorted(per_reader["reader"].unique())
    fig, axes = plt.subplots(
        1, len(criteria), figsize=(3.2 * len(criteria) + 1, 0.5 * len(sources) + 1.8), sharey=True, squeeze=False
    )
    offsets = np.linspace(-0.25, 0.25, len(readers)) if len(readers) > 1 else [0.0]
    for ax, criterion in zip(axes[0], criteria):
        for offset, reader in zip(offsets, readers):
            rows = (
                per_reader[(per_reader["criterion"] == criterion) & (per_reader["reader"] == reader)]
                .set_index("source")
                .reindex(sources)
            )
            y = np.arange(len(sources)) + offset
            err = np.vstack([rows["mean"] - rows["ci_low"], rows["ci_high"] - rows["mean"]]).clip(min=0)
            ax.errorbar(rows["mean"], y, xerr=np.nan_to_num(err), fmt="o", capsize=3, label=reader)
        ax.set_yticks(np.arange(len(sources)), sources)
        ax.set_xlim(0.8, 5.2)
        ax.set_xticks(SCORES)
        ax.set_title(criterion.replace("_", " "))
        ax.grid(axis="x", alpha=0.3)
    axes[0, 0].invert_yaxis()
    axes[0, -1].legend(title="reader", loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path
