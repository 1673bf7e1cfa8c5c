"""The leaderboard: one row per generator, one column per headline metric, direction arrows, n.

``leaderboard.csv`` holds plain values (plus ``<metric>_ci_low``/``_ci_high``); ``leaderboard.md``
shows ``value [low, high]`` and a footnote naming the evaluator of every metric, so demo
numbers are never mistaken for Inception-FID or torchxrayvision numbers.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from xreal_bench.atomic import write_text_atomic
from xreal_bench.metrics import table as metric_table

REFERENCE = "real"


def fmt(value: float, decimals: int) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{decimals}f}"


def cell(row: pd.Series | None, decimals: int) -> str:
    if row is None:
        return "–"
    text = fmt(row["value"], decimals)
    if not (math.isnan(row["ci_low"]) or math.isnan(row["ci_high"])):
        text += f" [{fmt(row['ci_low'], decimals)}, {fmt(row['ci_high'], decimals)}]"
    return text


def generator_order(frame: pd.DataFrame) -> list[str]:
    """The reference row first, then generators best first by the ranking metric (FID) if present, else by name."""
    names = sorted(set(frame["generator"]) - {REFERENCE})
    ranking = metric_table.ranking()
    values = frame[(frame.metric == ranking.name) & (frame.subset == "all")].set_index("generator")["value"]
    sign = 1 if ranking.lower_is_better else -1
    names.sort(key=lambda g: (sign * values.get(g, sign * math.inf), g))
    return ([REFERENCE] if REFERENCE in set(frame["generator"]) else []) + names


def leaderboard(frame: pd.DataFrame) -> pd.DataFrame:
    """Wide table: generator, n, then each present headline metric with its CI columns."""
    overall = frame[frame.subset == "all"]
    metrics = [m.name for m in metric_table.headline() if m.name in set(overall.metric)]
    records = []
    for g in generator_order(overall):
        rows = overall[overall.generator == g].set_index("metric")
        record = {"generator": g, "n": int(rows["n"].max()) if len(rows) else 0}
        for m in metrics:
            r = rows.loc[m] if m in rows.index else None
            record[m] = r["value"] if r is not None else math.nan
            record[f"{m}_ci_low"] = r["ci_low"] if r is not None else math.nan
            record[f"{m}_ci_high"] = r["ci_high"] if r is not None else math.nan
        records.append(record)
    return pd.DataFrame(records)


def evaluator_notes(frame: pd.DataFrame) -> list[str]:
    overall = frame[frame.subset == "all"]
    notes = []
    for m in metric_table.headline():
        evaluators = sorted(set(overall[overall.metric == m.name]["evaluator"]))
        if evaluators:
            notes.append(f"`{m.name}`: {', '.join(evaluators)}")
    return notes


def markdown(frame: pd.DataFrame, decimals: int = 3) -> str:
    board = leaderboard(frame)
    overall = frame[frame.subset == "all"]
    metrics = [m for m in metric_table.headline() if m.name in board.columns]
    header = ["generator", "n", *(f"{m.name} {m.arrow}" for m in metrics)]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * len(metrics)) + "|"]
    for _, rec in board.iterrows():
        rows = overall[overall.generator == rec["generator"]].set_index("metric")
        cells = [str(rec["generator"]), str(rec["n"])]
        cells += [cell(rows.loc[m.name] if m.name in rows.index else None, decimals) for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    demo = overall["evaluator"].str.startswith("demo:").any()
    lines += [
        "",
        "Values: point estimate [95 % bootstrap CI over cases]; `real` is the real test images (reference row).",
        "Evaluators: " + "; ".join(evaluator_notes(frame)) + ".",
    ]
    if demo:
        lines.append(
            "**Demo evaluators** (`demo:`): small networks trained on synthetic phantoms. These numbers are NOT "
            "Inception-FID or torchxrayvision scores and are not comparable with published results."
        )
    return "\n".join(lines) + "\n"


def write_leaderboard(out: Path, frame: pd.DataFrame, decimals: int = 3) -> tuple[Path, Path]:
    csv_path, md_path = out / "leaderboard.csv", out / "leaderboard.md"
    board = leaderboard(frame)
    write_text_atomic(csv_path, board.to_csv(index=False))
    write_text_atomic(md_path, markdown(frame, decimals))
    return csv_path, md_path
