"""Radiologists' scores for Table I: the Anatomy and Pathology columns, from an analysed reader study
of the reported runs.

A study qualifies when its database (meta ``runs``, written by ``study create``) names at least
one of the runs — by ``run_id``, or by config hash and dataset fingerprint — and ``study analyze``
has written ``analysis/summary.csv``. A source's scores go to the rows of the matching runs that
hold that generator (the study takes each generator from one run; the real images from the
first). ``--study`` names the study; without it ``RUN_DIR/study`` of each run is tried in turn.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from xreal_bench.errors import UserFacingError
from xreal_bench.names import NAME_RULE, is_valid_name
from xreal_bench.reader_study.layout import RUNS_META, STUDY_DB
from xreal_bench.reports.runs import Run
from xreal_bench.reports.table_model import Estimate

SUMMARY = Path("analysis") / "summary.csv"
DEFAULT_STUDY = "study"
#: Reader-study criterion -> Table I column, in column order.
READER_COLUMNS = {"anatomy_realism": "Anatomy", "pathology_realism": "Pathology"}
RATINGS = "ratings"


@dataclass(frozen=True, kw_only=True)
class ReaderScores:
    """Mean Likert score with the analysis's CI per (run, generator, criterion)."""

    study: Path
    criteria: tuple[str, ...]  # of READER_COLUMNS, in its order, those the study rated
    scores: Mapping[tuple[Path, str, str], Estimate]
    readers: int
    cases: int

    def get(self, run: Run, generator: str, criterion: str) -> Estimate | None:
        return self.scores.get((run.path, generator, criterion))


def run_description(record: Mapping[str, Any]) -> str:
    fingerprint = str(record.get("dataset_fingerprint") or "?")[:12]
    return f"{record.get('run_id') or '?'} (config {str(record.get('config_hash') or '?')[:12]}, data {fingerprint})"


def matches(run: Run, record: Mapping[str, Any]) -> bool:
    """The study's record names ``run``: the same run id, or the same config hash and dataset fingerprint."""
    if record.get("run_id") and record["run_id"] == run.run_id:
        return True
    fingerprint = run.provenance.get("dataset", {}).get("fingerprint")
    config_hash = run.provenance.get("config_hash")
    return bool(config_hash and fingerprint) and (record.get("config_hash"), record.get("dataset_fingerprint")) == (
        config_hash,
        fingerprint,
    )


def study_runs(study: Path) -> list[dict[str, Any]]:
    """The run records of the study's database (meta ``runs``), read through a read-only connection: a report never
    migrates, journals or otherwise writes a study it reads."""
    db = study / STUDY_DB
    try:
        with contextlib.closing(sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)) as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (RUNS_META,)).fetchone()
    except sqlite3.Error as exc:
        raise UserFacingError(f"{db}: cannot read the study database ({exc})") from None
    value = row[0] if row else None
    try:
        records = json.loads(value) if value is not None else []
    except json.JSONDecodeError:
        records = None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise UserFacingError(f"{study / STUDY_DB}: its {RUNS_META!r} record is not a list of runs")
    return records


def read_summary(study: Path) -> pd.DataFrame:
    path = study / SUMMARY
    try:
        frame = pd.read_csv(path, dtype={"source": str, "criterion": str})
    except (OSError, ValueError) as exc:
        raise UserFacingError(f"{path}: unreadable ({exc}); run `xreal-bench study analyze {study}` again") from None
    missing = {"source", "criterion", "n", "n_readers", "n_cases", "mean", "ci_low", "ci_high"} - set(frame.columns)
    if missing:
        raise UserFacingError(f"{path}: missing column(s) {', '.join(sorted(missing))}; run `xreal-bench study analyze` again")
    bad = sorted({s for s in frame["source"] if not is_valid_name(s)})
    if bad:
        raise UserFacingError(f"{path}: source names that are not valid ({NAME_RULE}): {', '.join(map(repr, bad[:5]))}")
    return frame


def scores_of(study: Path, runs: Sequence[Run], records: list[dict[str, Any]]) -> ReaderScores | None:
    matched = [run for run in runs if any(matches(run, r) for r in records)]
    summary = read_summary(study)
    summary = summary[summary["criterion"].isin(list(READER_COLUMNS))]
    scores: dict[tuple[Path, str, str], Estimate] = {}
    for row in summary.itertuples():
        estimate = Estimate(value=float(row.mean), low=float(row.ci_low), high=float(row.ci_high), n=float(row.n), n_unit=RATINGS)
        for run in matched:
            if str(row.source) in run.generators:
                scores[(run.path, str(row.source), str(row.criterion))] = estimate
    if not scores:
        return None
    criteria = tuple(c for c in READER_COLUMNS if c in set(summary["criterion"]))
    readers, cases = int(summary["n_readers"].max()), int(summary["n_cases"].max())
    return ReaderScores(study=study, criteria=criteria, scores=scores, readers=readers, cases=cases)


def reader_scores(runs: Sequence[Run], study_dir: Path | None) -> ReaderScores | None:
    """The analysed study of these runs (``study_dir``, else ``RUN_DIR/study`` of the first run that has one), or None.

    An explicit ``study_dir`` that is not analysed or names none of the runs is a :class:`UserFacingError`
    saying which runs it was built from and which were given."""
    if study_dir is not None:
        study = Path(study_dir)
        if not (study / STUDY_DB).is_file():
            raise UserFacingError(f"--study {study}: no {STUDY_DB} there (a study folder is made by `xreal-bench study create`)")
        records = study_runs(study)
        if not any(matches(run, r) for run in runs for r in records):
            built = "; ".join(run_description(r) for r in records) or "no recorded runs"
            given = "; ".join(
                run_description(
                    {
                        "run_id": run.run_id,
                        "config_hash": run.provenance.get("config_hash"),
                        "dataset_fingerprint": run.provenance.get("dataset", {}).get("fingerprint"),
                    }
                )
                for run in runs
            )
            raise UserFacingError(
                f"--study {study} is not a study of these runs: it was built from {built}; the report's runs are {given}"
            )
        if not (study / SUMMARY).is_file():
            raise UserFacingError(f"--study {study} has not been analysed: run `xreal-bench study analyze {study}` first")
        scores = scores_of(study, runs, records)
        if scores is None:
            raise UserFacingError(f"--study {study}: {SUMMARY} has no {' or '.join(READER_COLUMNS)} scores for these runs")
        return scores
    for run in runs:
        study = run.path / DEFAULT_STUDY
        if (study / STUDY_DB).is_file() and (study / SUMMARY).is_file():
            records = study_runs(study)
            if any(matches(r, record) for r in runs for record in records):
                found = scores_of(study, runs, records)
                if found is not None:
                    return found
    return None
