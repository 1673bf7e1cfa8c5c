"""Figures of the reader study (matplotlib, written as PNG).

- :func:`likert_figure`: diverging stacked bars, one panel per criterion, one bar per source;
  scores 1-2 extend left of zero, 4-5 right, 3 straddles zero.
- :func:`reader_figure`: each reader's mean per source with its interval, one panel per criterion.
- :func:`auc_figure`: visual Turing test, per generator: each reader's AUC (points) and the
  reader-averaged AUC with its Obuchowski-Rockette CI; 0.5 = indistinguishable from real.
- :func:`roc_figure`: visual Turing test, one panel per generator: each reader's empirical ROC
  curve of the 10-level call x confidence score.

Text from the study (reader names) is drawn literally: ``$`` is escaped so it never starts mathtext.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

SCORES = [1, 2, 3, 4, 5]
AVERAGE = "reader average"
COLOURS = ["#b2182b", "#ef8a62", "#d9d9d9", "#67a9cf", "#2166ac"]


def literal(text: object) -> str:
    """``text`` as matplotlib draws it literally (no mathtext)."""
    return str(text).replace("$", r"\$")


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
            ax.errorbar(rows["mean"], y, xerr=np.nan_to_num(err), fmt="o", capsize=3, label=literal(reader))
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


def auc_figure(table: pd.DataFrame, generators: list[str], path: Path) -> Path:
    """Reader AUCs as points and the reader average with its CI, one column per generator."""
    fig, ax = plt.subplots(figsize=(1.4 * len(generators) + 2.5, 3.8))
    readers = sorted(set(table["reader"]) - {AVERAGE})
    offsets = dict(zip(readers, np.linspace(-0.18, 0.18, len(readers)) if len(readers) > 1 else [0.0]))
    markers = "osD^v<>ph*"
    for x, generator in enumerate(generators):
        rows = table[table["generator"] == generator]
        for k, reader in enumerate(readers):
            mine = rows[rows["reader"] == reader]
            if not mine.empty:
                ax.plot(x + offsets[reader], mine["auc"].iloc[0], markers[k % len(markers)], color="0.45", alpha=0.8,
                        label=literal(reader) if x == 0 else None)  # fmt: skip
        average = rows[rows["reader"] == AVERAGE].dropna(subset=["auc"])
        if not average.empty:
            a = average.iloc[0]
            ax.errorbar(x + 0.32, a["auc"], yerr=[[a["auc"] - a["ci_low"]], [a["ci_high"] - a["auc"]]], fmt="s",
                        color="#b2182b", capsize=4, label="reader average (95% CI)" if x == 0 else None)  # fmt: skip
    ax.axhline(0.5, color="black", linestyle="--", linewidth=0.8)
    ax.set_xticks(range(len(generators)), [literal(g) for g in generators])
    ax.set_xlim(-0.6, len(generators) - 0.3)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("AUC: generated vs real")
    ax.set_title("Real or generated? (0.5 = indistinguishable)")
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False, fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path


def roc_points(truth: np.ndarray, rating: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Empirical ROC: false- and true-positive rates at every threshold, from (0, 0) to (1, 1)."""
    thresholds = np.unique(rating)[::-1]
    pos, neg = rating[truth], rating[~truth]
    tpr = [0.0] + [float((pos >= t).mean()) for t in thresholds]
    fpr = [0.0] + [float((neg >= t).mean()) for t in thresholds]
    return np.array(fpr), np.array(tpr)


def roc_figure(reads: dict[str, pd.DataFrame], path: Path) -> Path:
    """One panel per generator; a curve per reader (reads: reader, truth, rating)."""
    fig, axes = plt.subplots(1, len(reads), figsize=(3.3 * len(reads) + 1.2, 3.6), squeeze=False)
    for ax, (generator, rows) in zip(axes[0], reads.items()):
        for reader, mine in rows.groupby("reader"):
            truth = mine["truth"].to_numpy(bool)
            if truth.all() or not truth.any():
                continue
            fpr, tpr = roc_points(truth, mine["rating"].to_numpy(float))
            ax.plot(fpr, tpr, drawstyle="default", marker=".", label=literal(reader))
        ax.plot([0, 1], [0, 1], color="black", linestyle="--", linewidth=0.8)
        ax.set_aspect("equal")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("real called generated (FPR)")
        ax.set_title(literal(generator))
    axes[0, 0].set_ylabel("generated called generated (TPR)")
    axes[0, -1].legend(title="reader", loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False, fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path
