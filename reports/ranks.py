"""Rank intervals from the bootstrap draws, ties where they overlap, and the rank plot.

Per resample *b*, the generators (the reference excluded) are ranked on the ranking metric
(rank 1 = best; equal values share the lower rank); a generator's rank interval is the
``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of its ranks (taken at rank values,
so the bounds are whole ranks), its point rank comes from the point estimates. Draws are matched by
resample index over the shortest set; resamples where any draw is NaN are left out. A generator
without draws keeps its point value in every resample (so the others are still ranked against
it) and gets no interval, with a note. Entries given as ``unranked`` (with the reason) are left out.

Pairing: ranking per resample index compares entries on the same resample only when their runs
drew the same resamples (:class:`DrawsKey`: the same bootstrap seed and covered cases). Entries
whose keys differ were resampled independently; they are still ranked per resample, and each
gets a note naming the entries it is not paired with: its interval ignores the correlation
between them and is conservative (wider than a paired one).

Ties: in point-rank order, a generator whose interval overlaps the interval of any generator of
the current group joins it, so entries linked by a chain of overlapping intervals share a label
even where the first and the last do not overlap; groups of two or more are labelled ``T1``,
``T2``, ...
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy.stats import rankdata  # noqa: E402

from xreal_bench.atomic import atomic_path  # noqa: E402
from xreal_bench.metrics import table as metric_table  # noqa: E402

RANK_COLUMNS = ("rank", "rank_low", "rank_high", "tie", "rank_note")
#: Okabe & Ito's colour-blind-safe blue and orange; black points read in grayscale print.
POINT_COLOUR, BAND_COLOURS = "#000000", ("#E69F00", "#56B4E9")
NOT_PAIRED = "draws not paired with"


@dataclass(frozen=True)
class DrawsKey:
    """Which resamples an entry's draws come from: the bootstrap seed and the hash of the covered cases (None: not
    recorded), and the run they come from (one run resamples every generator with one seed, recorded or not)."""

    seed: object
    cases: object
    run: str = ""

    def mismatch(self, other: DrawsKey) -> list[str]:
        """What makes the two sets of draws unpaired, e.g. ``["different bootstrap seed"]`` (empty: paired)."""
        one_run_seed = bool(self.run) and self.run == other.run and self.seed is None and other.seed is None
        found = [] if one_run_seed else component("bootstrap seed", self.seed, other.seed)
        return found + component("covered cases", self.cases, other.cases)


def component(what: str, mine: object, theirs: object) -> list[str]:
    """``["unrecorded <what>"]`` or ``["different <what>"]`` when the two values do not show equal resamples."""
    if mine is None or theirs is None:
        return [f"unrecorded {what}"]
    return [f"different {what}"] if str(mine) != str(theirs) else []


def pairing_notes(keys: Mapping[str, DrawsKey]) -> dict[str, str]:
    """Per entry whose draws are not paired with some others': ``draws not paired with <entries>: <why>; interval
    conservative``."""
    found = {}
    for entry, key in keys.items():
        others = {other: key.mismatch(theirs) for other, theirs in keys.items() if other != entry}
        unpaired = {other: why for other, why in others.items() if why}
        if unpaired:
            reasons = list(dict.fromkeys(reason for why in unpaired.values() for reason in why))
            found[entry] = f"{NOT_PAIRED} {', '.join(unpaired)}: {' and '.join(reasons)}; interval conservative"
    return found


def rank_intervals(
    points: Mapping[str, float],
    draws: Mapping[str, np.ndarray | None],
    *,
    lower_is_better: bool,
    confidence: float = 0.95,
    metric_name: str = "the ranking metric",
    pairing: Mapping[str, DrawsKey] | None = None,
    unranked: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Rank, rank interval, tie label and note per entry of ``points`` (entry -> point estimate); ``pairing``: each
    entry's :class:`DrawsKey` (none: all paired); ``unranked``: entries not to rank -> why."""
    entries = list(points)
    unranked = unranked or {}
    table = pd.DataFrame(index=pd.Index(entries, name="entry"), columns=list(RANK_COLUMNS), dtype=object)
    table[["rank", "rank_low", "rank_high"]] = math.nan
    table[["tie", "rank_note"]] = ""
    sign = 1.0 if lower_is_better else -1.0
    ranked = [e for e in entries if math.isfinite(points[e]) and e not in unranked]
    for e in entries:
        if e in unranked:
            table.loc[e, "rank_note"] = unranked[e]
        elif e not in ranked:
            table.loc[e, "rank_note"] = f"no value of {metric_name}: not ranked"
    if not ranked:
        return table
    table.loc[ranked, "rank"] = rankdata([sign * points[e] for e in ranked], method="min").astype(float)
    sampled = {e: np.asarray(d, np.float64) for e in ranked if (d := draws.get(e)) is not None and len(d) > 0}
    for e in ranked:
        if e not in sampled:
            table.loc[e, "rank_note"] = f"no bootstrap draws of {metric_name}: rank interval not available"
    if sampled:
        length = min(len(d) for d in sampled.values())
        columns = [sign * sampled[e][:length] if e in sampled else np.full(length, sign * points[e]) for e in ranked]
        matrix = np.column_stack(columns)
        matrix = matrix[~np.isnan(matrix).any(axis=1)]
        if len(matrix):
            ranks = rankdata(matrix, axis=1, method="min")
            alpha = (1 - confidence) / 2
            for k, e in enumerate(ranked):
                if e in sampled:
                    table.loc[e, "rank_low"] = float(np.quantile(ranks[:, k], alpha, method="lower"))
                    table.loc[e, "rank_high"] = float(np.quantile(ranks[:, k], 1 - alpha, method="higher"))
            if pairing is not None:
                for e, note in pairing_notes({e: pairing[e] for e in sampled}).items():
                    table.loc[e, "rank_note"] = note
        else:
            for e in sampled:
                table.loc[e, "rank_note"] = f"every bootstrap resample of {metric_name} has a NaN: rank interval not available"
    label_ties(table)
    return table


def label_ties(table: pd.DataFrame) -> None:
    """``tie`` = ``T<k>`` for each group of two or more entries whose intervals overlap (chained, in point-rank order)."""
    with_interval = table[table["rank_low"].notna()].sort_values(["rank", "rank_low"], kind="stable")
    groups: list[list[str]] = []
    reach = -math.inf
    for entry, row in with_interval.iterrows():
        if groups and row["rank_low"] <= reach:
            groups[-1].append(str(entry))
            reach = max(reach, row["rank_high"])
        else:
            groups.append([str(entry)])
            reach = row["rank_high"]
    k = 0
    for members in groups:
        if len(members) > 1:
            k += 1
            table.loc[members, "tie"] = f"T{k}"


def add_ranks(
    board: pd.DataFrame,
    draws: Mapping[str, Mapping[str, np.ndarray]],
    metric: metric_table.Metric,
    *,
    reference: str,
    confidence: float = 0.95,
    pairing: Mapping[str, DrawsKey] | None = None,
    unranked: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """``board`` with :data:`RANK_COLUMNS` on ``metric`` (empty for the reference row); ``pairing`` and ``unranked`` as
    for :func:`rank_intervals`."""
    board = board.copy()
    ranked = board[board["generator"] != reference]
    values = ranked[metric.name] if metric.name in ranked else pd.Series(math.nan, index=ranked.index)
    points = {str(e): float(v) for e, v in zip(ranked["entry"], values)}
    entry_draws = {e: draws.get(e, {}).get(metric.name) for e in points}
    table = rank_intervals(
        points,
        entry_draws,
        lower_is_better=metric.lower_is_better,
        confidence=confidence,
        metric_name=metric.display,
        pairing=pairing,
        unranked=unranked,
    )
    for column in RANK_COLUMNS:
        blank: object = "" if column in ("tie", "rank_note") else math.nan
        board[column] = [table.loc[e, column] if e in table.index else blank for e in board["entry"]]
        if column not in ("tie", "rank_note"):
            board[column] = board[column].astype(float)
    return board


def rank_plot(board: pd.DataFrame, path: Path, *, title: str = "") -> list[Path]:
    """PNG and PDF beside ``path`` (its suffix replaced): each ranked entry's point rank with its interval
    (a hollow marker: no interval), shaded bands behind tied groups; nothing when no entry is ranked."""
    rows = board[board["rank"].notna()].sort_values(["rank", "entry"], kind="stable")
    if rows.empty:
        return []
    k = len(rows)
    fig, ax = plt.subplots(figsize=(7.0, 1.0 + 0.38 * k))
    y = np.arange(k)
    ties = [t for t in dict.fromkeys(rows["tie"]) if t]
    for n, tie in enumerate(ties):
        where = y[(rows["tie"] == tie).to_numpy()]
        ax.axhspan(where.min() - 0.4, where.max() + 0.4, color=BAND_COLOURS[n % 2], alpha=0.3, lw=0)
        ax.text(k + 0.6, where.mean(), tie, va="center", ha="right", fontsize=8)
    has = rows["rank_low"].notna().to_numpy()
    rank = rows["rank"].to_numpy(float)
    low = np.where(has, rank - rows["rank_low"].to_numpy(float), 0.0)
    high = np.where(has, rows["rank_high"].to_numpy(float) - rank, 0.0)
    ax.errorbar(rank[has], y[has], xerr=[low[has], high[has]], fmt="o", color=POINT_COLOUR, capsize=3, lw=1.2)
    xlabel = "rank (1 = best); bars: bootstrap rank interval; shaded: tied (overlapping intervals)"
    if (~has).any():
        ax.plot(rank[~has], y[~has], "o", mfc="white", mec=POINT_COLOUR)
        xlabel += "\nhollow: no rank interval (no bootstrap draws)"
    ax.set_yticks(y, [str(e) for e in rows["entry"]], fontsize=8)
    ax.set_ylim(k - 0.5, -0.5)  # rank 1 at the top
    ax.set_xlim(0.4, k + 0.7)
    ax.set_xticks(range(1, k + 1))
    ax.set_xlabel(xlabel, fontsize=8)
    ax.grid(axis="x", color="#cccccc", lw=0.5)
    ax.set_axisbelow(True)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    written = []
    for suffix in (".png", ".pdf"):
        target = path.with_suffix(suffix)
        with atomic_path(target) as tmp:
            fig.savefig(tmp, format=suffix[1:], dpi=150)
        written.append(target)
    plt.close(fig)
    return written


def rank_text(row: Mapping[str, object]) -> str:
    """``2 [1, 3]``, ``2`` without an interval, ``–`` unranked."""
    rank = row.get("rank")
    if not isinstance(rank, float | int) or math.isnan(rank):
        return "–"
    low, high = row.get("rank_low"), row.get("rank_high")
    if isinstance(low, float | int) and isinstance(high, float | int) and not (math.isnan(low) or math.isnan(high)):
        return f"{int(rank)} [{int(low)}, {int(high)}]"
    return str(int(rank))
