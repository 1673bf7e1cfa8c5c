"""``table_encoder_agreement``: Kendall's τ between the generator rankings of each pair of Fréchet distances
(one per encoder), from each run's ``results.json`` (``encoder_agreement``, written by
:func:`xreal_bench.metrics.agreement.encoder_agreement`) — a user sees when "best model" depends on the encoder.

Markdown and LaTeX show τ with its CI as the paper tables do (:func:`xreal_bench.reports.table_model.value_text`);
the CSV keeps the numbers in their own columns. Every cell goes through :mod:`xreal_bench.tables`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from xreal_bench import tables as safe
from xreal_bench.atomic import write_text_atomic
from xreal_bench.metrics import table as metric_table
from xreal_bench.reports.options import ReportOptions
from xreal_bench.reports.runs import Run
from xreal_bench.reports.table_model import Estimate, value_text

NAME = "table_encoder_agreement"
CAPTION = "Agreement of the encoders: Kendall's tau-b between the generator rankings of two Frechet distances"
FOOTNOTE = (
    "tau-b over the generators with both values (real images excluded): 1 = same order, -1 = reversed. CI: percentile "
    "interval of tau over paired bootstrap draws (every Frechet-distance bootstrap of a run resamples the same cases); "
    "none without metrics.fid_bootstrap."
)


def number(value: object) -> float:
    """A JSON number as float (NaN for null or anything else)."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else math.nan


def whole(value: object) -> int:
    """A JSON count as int (0 for null or anything else)."""
    found = number(value)
    return int(found) if math.isfinite(found) else 0


def display(name: object) -> str:
    """A metric's display name from the metric table (the name itself when this version does not know it)."""
    try:
        return metric_table.row_metric(str(name)).display
    except KeyError:
        return str(name)


def agreement_frame(runs: Sequence[Run]) -> pd.DataFrame:
    """One tidy row per (run, pair of Fréchet distances)."""
    records = []
    for run in runs:
        found = run.provenance.get("encoder_agreement")
        for item in found if isinstance(found, list) else []:
            if not isinstance(item, dict):
                continue
            records.append(
                {
                    "run": run.label,
                    "run_id": run.run_id,
                    "a": str(item.get("a", "")),
                    "b": str(item.get("b", "")),
                    "tau": number(item.get("tau")),
                    "ci_low": number(item.get("ci_low")),
                    "ci_high": number(item.get("ci_high")),
                    "n_generators": whole(item.get("n_generators")),
                    "resamples": whole(item.get("resamples")),
                    "note": str(item.get("note", "")),
                }
            )
    return pd.DataFrame(records)


def shown_frame(frame: pd.DataFrame, options: ReportOptions, *, several_runs: bool, pm: str) -> pd.DataFrame:
    """The table for people: encoder names, τ with its CI as text (``pm``: the ± of the ``pm`` style), generators, note."""
    shown = pd.DataFrame(
        {
            "Encoder A": frame["a"].map(display),
            "Encoder B": frame["b"].map(display),
            "Kendall tau-b": [
                value_text(Estimate(value=r.tau, low=r.ci_low, high=r.ci_high), decimals=options.decimals, ci=options.ci, pm=pm)
                for r in frame.itertuples()
            ],
            "Generators": frame["n_generators"],
            "Note": frame["note"],
        }
    )
    if several_runs:
        shown.insert(0, "Run", frame["run"])
    return shown


def write_agreement_table(runs: Sequence[Run], out: Path, options: ReportOptions) -> list[Path]:
    """Write ``table_encoder_agreement`` in ``options.formats`` (nothing when no run records a pair)."""
    frame = agreement_frame(runs)
    if frame.empty:
        return []
    several = len(runs) > 1
    shown, plain = (
        shown_frame(frame, options, several_runs=several, pm="±"),
        shown_frame(frame, options, several_runs=several, pm="+/-"),
    )
    texts = {
        "csv": safe.to_csv(frame),
        "md": f"**{safe.markdown_cell(CAPTION)}**\n\n{safe.to_markdown(shown)}\n\n{safe.markdown_cell(FOOTNOTE)}\n",
        "tex": safe.to_latex(plain, caption=f"{CAPTION}. {FOOTNOTE}", label="tab:encoder-agreement"),
    }
    written = []
    for ext in options.formats:
        path = out / f"{NAME}.{ext}"
        write_text_atomic(path, texts[ext])
        written.append(path)
    return written
