"""What the merged leaderboard says beside its numbers: each entry's failed / missing / coverage, the † of an entry
below metrics.min_coverage (not ranked), the CI level of the section's runs, tie chaining, unverified weights and
fallback demographics per run."""

from __future__ import annotations

import math
from collections.abc import Callable

import pandas as pd
from report_runs import edit, write_run

from xreal_bench.reports.board import markdown, notes
from xreal_bench.reports.coverage import COUNTS_NOTE
from xreal_bench.reports.leaderboard_files import write_leaderboard_files
from xreal_bench.reports.merge import merge_runs
from xreal_bench.reports.runs import load_runs


def covered(generator: str, covered_cases: int, failed: int = 0, cases: int = 8) -> Callable[[dict], None]:
    """Record that ``generator`` had an image scored for ``covered_cases`` of ``cases`` cases, ``failed`` failures."""
    record = {
        "planned": cases,
        "ok": covered_cases,
        "manifest_failed": failed,
        "undecodable": 0,
        "missing": cases - covered_cases - failed,
        "no_reference": 0,
        "evaluated": covered_cases,
        "cases": cases,
        "covered_cases": covered_cases,
        "samples_per_condition": 1,
        "samples_scored": [0],
        "ignored": 0,
        "min_coverage": 0.95,
    }
    return lambda doc: doc.setdefault("coverage", {}).setdefault("sources", {}).__setitem__(generator, record)


def test_an_entry_below_min_coverage_is_marked_counted_and_not_ranked(tmp_path):
    run = write_run(tmp_path / "r", sources={"real": {"fid": 0.0}, "a": {"fid": 10.0}, "b": {"fid": 30.0}})
    for change in (covered("real", 8), covered("a", 3, failed=4), covered("b", 8)):
        edit(run, change)
    merged = merge_runs(load_runs([run]))
    board = merged.sections[0].board.set_index("generator")
    assert board.loc["a", ["n", "failed", "missing", "coverage"]].tolist() == [3, 4.0, 1.0, 0.375]
    assert bool(board.loc["a", "below_min_coverage"]) and not board.loc["b", "below_min_coverage"]
    assert board.loc["a", "coverage_note"] == "† coverage 0.375 < metrics.min_coverage 0.95: scored on 3 of 8 cases"
    assert math.isnan(board.loc["a", "rank"]) and board.loc["a", "rank_note"] == "below metrics.min_coverage: not ranked"
    assert board.loc["b", ["rank", "rank_low", "rank_high"]].tolist() == [1.0, 1.0, 1.0]  # a, though better, is not ranked
    footnotes = notes(merged)
    assert COUNTS_NOTE in footnotes
    assert (
        "† run r-0: coverage below metrics.min_coverage = 0.95: a (3 of 8 cases, 4 failed, 1 missing); "
        "its numbers rest on the cases it covers only. Not ranked." in footnotes
    )
    out = tmp_path / "board"
    write_leaderboard_files(merged, out)
    text = (out / "leaderboard.md").read_text()
    assert "| Rank | Tie | Entry | Group | Run | Date | Seeds | n | failed | missing | coverage | FID ↓ |" in text
    assert r"| – |  | a · r \(2026-11-20\)† | Text \+ spatial control | r-0 | 2026-11-20 | 0 | 3 | 4 | 1 | 0.375 |" in text
    page = (out / "leaderboard.html").read_text()
    assert '<td data-sort="a · r (2026-11-20)†">a · r (2026-11-20)†</td>' in page
    assert '<td class="num" data-sort="0.375">0.375</td>' in page and '<td class="num" data-sort="4.0">4</td>' in page
    frame = pd.read_csv(out / "leaderboard.csv").set_index("generator")
    assert frame.loc["a", ["failed", "missing", "coverage", "below_min_coverage"]].tolist() == [4.0, 1.0, 0.375, True]
    assert frame.loc["a", "rank_note"] == "below metrics.min_coverage: not ranked"


def test_seed_rows_sum_their_runs_counts_and_carry_a_mark_of_any_run(tmp_path):
    paths = [write_run(tmp_path / f"s{s}", seed=s, bootstrap_seed=0, sources={"a": {"fid": 10.0 + s}}) for s in (0, 1)]
    edit(paths[0], covered("a", 8))
    edit(paths[1], covered("a", 6, failed=2))
    row = merge_runs(load_runs(paths)).sections[0].board.iloc[0]
    assert row["entry"] == "a · s0 (2026-11-20), seeds 0, 1"
    assert [row["n"], row["failed"], row["missing"], row["coverage"]] == [14, 2.0, 0.0, 0.75]
    assert row["coverage_note"] == "s1-1: † coverage 0.750 < metrics.min_coverage 0.95: scored on 6 of 8 cases"
    assert math.isnan(row["rank"])


def set_confidence(level: float) -> Callable[[dict], None]:
    def change(doc: dict) -> None:
        doc["config"]["metrics"]["confidence"] = level
        doc["bootstrap"]["confidence"] = level

    return change


def test_the_ci_level_comes_from_the_sections_runs(tmp_path):
    eighty = [edit(write_run(tmp_path / n, sources={"a": {"fid": 1.0}}), set_confidence(0.8)) for n in ("p", "q")]
    lines = notes(merge_runs(load_runs(eighty)))
    assert lines[0].startswith("Values: point estimate [80 % bootstrap CI over cases]")
    assert lines[2].startswith("Rank: by FID ↓ from the point estimates; [low, high]: the 80 % interval of the ranks")
    usual = write_run(tmp_path / "u", sources={"a": {"fid": 1.0}})
    mixed = notes(merge_runs(load_runs([usual, *eighty]), allow_mixed=True))
    assert mixed[0].startswith(
        "Values: point estimate [level per section: Section 1 of 2 95 %, Section 2 of 2 80 % bootstrap CI over cases]"
    )


def test_the_footnote_explains_tie_chains(tmp_path):
    run = write_run(tmp_path / "r", sources={"a": {"fid": 1.0}})
    assert (
        "Ties: entries share a label (T1, T2, ...) when a chain of overlapping rank intervals links them (A overlaps B "
        "and B overlaps C: A, B and C share one label even if A and C do not overlap)." in notes(merge_runs(load_runs([run])))[2]
    )


def test_unverified_weights_and_fallback_demographics_are_named_per_run(tmp_path):
    def unverified(doc: dict) -> None:
        doc["evaluators"]["classifier"]["weights_status"] = "unverified"

    def fallback(doc: dict) -> None:
        doc["generators"]["a"]["demographics"] = {"images": 16, "fallback": 3, "fallback_values": {"fallback (age 65)": 3}}

    first = edit(write_run(tmp_path / "one", sources={"a": {"fid": 1.0}}, run_id="first"), unverified)
    second = edit(write_run(tmp_path / "two", sources={"a": {"fid": 2.0}}, run_id="second"), fallback)
    merged = merge_runs(load_runs([first, second]))
    lines = notes(merged)
    assert (
        "Unverified weights (no published hash to check the file against; its sha256 is in results.json), run first: "
        "classifier `torchxrayvision:densenet121-res224-all` (sha256 aaaaaaaaaaaa…)." in lines
    )
    fallback_lines = [line for line in lines if line.startswith("Fallback demographics")]
    assert len(fallback_lines) == 1 and fallback_lines[0].endswith(
        " run second: `a`: 3 of 16 images used fallback demographics (age 65)."
    )
    assert not any("run second: classifier" in line or "run first: `a`" in line for line in lines)
    assert "run first: classifier" in markdown(merged).replace("\\", "")


def test_the_reference_row_is_counted_but_never_ranked(tmp_path):
    run = edit(write_run(tmp_path / "r", sources={"real": {"fid": 0.0}, "a": {"fid": 1.0}}), covered("real", 8))
    row = merge_runs(load_runs([run])).sections[0].board.iloc[0]
    assert row["generator"] == "real" and row["coverage"] == 1.0 and math.isnan(row["rank"]) and row["rank_note"] == ""
