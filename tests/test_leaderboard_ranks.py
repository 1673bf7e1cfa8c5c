"""Rank intervals from bootstrap draws: a known order gives degenerate intervals, near-equal
generators tie, missing draws give no interval (with a note), draws of other resamples are noted
as not paired, and the rank plot is drawn."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image
from report_runs import write_run

from xreal_bench.reports.board import notes
from xreal_bench.reports.merge import merge_runs
from xreal_bench.reports.ranks import DrawsKey, pairing_notes, rank_intervals, rank_plot
from xreal_bench.reports.runs import load_runs

#: Inserted out of order on purpose; FID (lower is better) puts them b, d, a, c.
SEPARATED = {"real": {"fid": 0.1}, "gen-a": {"fid": 30.0}, "gen-c": {"fid": 40.0}, "gen-b": {"fid": 10.0}, "gen-d": {"fid": 20.0}}


def test_known_order_gives_ranks_one_to_k_with_degenerate_intervals(tmp_path):
    run = write_run(tmp_path / "run", sources=SEPARATED, spread=0.5, resamples=200)
    board = merge_runs(load_runs([run])).sections[0].board
    assert board["generator"].tolist() == ["real", "gen-b", "gen-d", "gen-a", "gen-c"]
    assert math.isnan(board.loc[0, "rank"]) and board.loc[0, "rank_note"] == ""  # the reference is not ranked
    ranked = board.iloc[1:]
    assert ranked["rank"].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert ranked["rank_low"].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert ranked["rank_high"].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert ranked["tie"].tolist() == ["", "", "", ""]


def test_higher_is_better_metric_reverses_the_order(tmp_path):
    per_case = {g: {"ms_ssim": [level + 0.001 * k for k in range(8)]} for g, level in [("low", 0.2), ("high", 0.8), ("mid", 0.5)]}
    run = write_run(tmp_path / "run", sources={"real": {"fid": 0.1}}, per_case=per_case)
    board = merge_runs(load_runs([run]), rank_metric="ms_ssim").sections[0].board
    assert board["generator"].tolist() == ["real", "high", "mid", "low"]
    assert board["rank"].tolist()[1:] == [1.0, 2.0, 3.0] and board["rank_high"].tolist()[1:] == [1.0, 2.0, 3.0]


def test_nearly_equal_generators_get_overlapping_intervals_and_tie(tmp_path):
    sources = {
        "real": {"fid": 0.1},
        "first": {"fid": 10.0},
        "close1": {"fid": 20.0},
        "close2": {"fid": 20.01},
        "last": {"fid": 35.0},
    }
    run = write_run(tmp_path / "run", sources=sources, spread=0.5, resamples=400)
    board = merge_runs(load_runs([run])).sections[0].board.set_index("generator")
    assert board.loc["close1", ["rank_low", "rank_high"]].tolist() == [2.0, 3.0]
    assert board.loc["close2", ["rank_low", "rank_high"]].tolist() == [2.0, 3.0]
    assert board.loc["close1", "tie"] == board.loc["close2", "tie"] == "T1"
    assert board.loc["first", "tie"] == board.loc["last", "tie"] == ""
    assert board.loc["first", "rank_high"] == 1.0 and board.loc["last", "rank_low"] == 4.0


def test_interval_quantiles_on_a_hand_made_case():
    # b beats a in one resample of ten: both span [1, 2]; c has no draws: its point rank, no interval, a note
    draws = {"a": np.full(10, 1.0), "b": np.array([2.0] * 9 + [0.5]), "c": None}
    table = rank_intervals({"a": 1.0, "b": 2.0, "c": 3.0}, draws, lower_is_better=True, metric_name="FID")
    assert table["rank"].tolist() == [1.0, 2.0, 3.0]
    assert table.loc["a", ["rank_low", "rank_high"]].tolist() == [1.0, 2.0]
    assert table.loc["b", ["rank_low", "rank_high"]].tolist() == [1.0, 2.0]
    assert table.loc["a", "tie"] == table.loc["b", "tie"] == "T1"
    assert math.isnan(table.loc["c", "rank_low"]) and math.isnan(table.loc["c", "rank_high"])
    assert table.loc["c", "rank_note"] == "no bootstrap draws of FID: rank interval not available"
    assert table.loc["c", "tie"] == ""


def test_overlapping_intervals_form_one_tie_group_and_nan_values_are_not_ranked():
    draws = {"a": np.array([1.0, 2.5]), "b": np.array([2.0, 2.0]), "c": np.array([3.0, 1.5]), "d": np.array([9.0, 9.0])}
    points = {"a": 1.0, "b": 2.0, "c": 3.0, "d": 9.0, "e": math.nan}
    table = rank_intervals(points, {**draws, "e": None}, lower_is_better=True, confidence=0.5, metric_name="FID")
    assert table.loc[["a", "b", "c"], "tie"].tolist() == ["T1", "T1", "T1"]
    assert table.loc["d", ["rank_low", "rank_high", "tie"]].tolist() == [4.0, 4.0, ""]
    assert math.isnan(table.loc["e", "rank"]) and table.loc["e", "rank_note"] == "no value of FID: not ranked"


def test_missing_draws_in_a_run_give_nan_intervals_with_a_note(tmp_path):
    run = write_run(tmp_path / "run", sources=SEPARATED, spread=0.5)
    archive = dict(np.load(run / "bootstrap.npz"))
    del archive["gen-d|fid|all"]
    np.savez(run / "bootstrap.npz", **archive)
    board = merge_runs(load_runs([run])).sections[0].board.set_index("generator")
    assert board.loc["gen-d", "rank"] == 2.0 and math.isnan(board.loc["gen-d", "rank_low"])
    assert board.loc["gen-d", "rank_note"] == "no bootstrap draws of FID: rank interval not available"
    assert board.loc["gen-a", ["rank_low", "rank_high"]].tolist() == [3.0, 3.0]  # the others still ranked around it


def test_rank_plot_png_and_pdf(tmp_path):
    sources = {"real": {"fid": 0.1}, "first": {"fid": 10.0}, "close1": {"fid": 20.0}, "close2": {"fid": 20.01}}
    run = write_run(tmp_path / "run", sources=sources, spread=0.5, resamples=400)
    board = merge_runs(load_runs([run])).sections[0].board
    png, pdf = rank_plot(board, tmp_path / "out" / "ranks.png", title="Rank by FID")
    assert (png.name, pdf.name) == ("ranks.png", "ranks.pdf")
    assert pdf.read_bytes().startswith(b"%PDF")
    with Image.open(png) as image:
        pixels = np.asarray(image.convert("RGB")).reshape(-1, 3).astype(int)
    band = np.array([0xE6, 0x9F, 0x00]) * 0.3 + 255 * 0.7  # the tie band: Okabe-Ito orange at 30 % on white
    assert (np.abs(pixels - band).max(axis=1) <= 3).sum() > 1000
    assert rank_plot(board.iloc[:1], tmp_path / "none.png") == []  # only the reference: nothing to plot
    assert not (tmp_path / "none.png").exists()


@pytest.mark.parametrize("confidence", [0.95, 0.5])
def test_identical_draws_never_tie_separated_generators(confidence):
    draws = {name: np.full(20, value) for name, value in [("x", 1.0), ("y", 2.0), ("z", 3.0)]}
    table = rank_intervals({"x": 1.0, "y": 2.0, "z": 3.0}, draws, lower_is_better=False, confidence=confidence)
    assert table["rank"].tolist() == [3.0, 2.0, 1.0] and table["rank_low"].tolist() == [3.0, 2.0, 1.0]
    assert set(table["tie"]) == {""}


def paired_runs(tmp_path, other_seed: int) -> list:
    """``a`` and ``b`` (b 0.01 better on every case) in two runs; the second resamples with ``other_seed``."""
    values = np.random.default_rng(5).uniform(0.2, 0.9, 40)
    a = write_run(tmp_path / "x", sources={}, per_case={"a": {"ms_ssim": list(values)}}, n_cases=40, resamples=400)
    b = write_run(
        tmp_path / "y", sources={}, per_case={"b": {"ms_ssim": list(values + 0.01)}}, n_cases=40, resamples=400, seed=other_seed
    )
    return load_runs([a, b])


def test_paired_draws_rank_a_uniformly_better_entry_first_in_every_resample(tmp_path):
    board = merge_runs(paired_runs(tmp_path, 0), rank_metric="ms_ssim").sections[0].board
    assert board["entry"].tolist() == ["b · y (2026-11-20)", "a · x (2026-11-20)"]
    assert board["rank_low"].tolist() == [1.0, 2.0] and board["rank_high"].tolist() == [1.0, 2.0]
    assert board["rank_note"].tolist() == ["", ""] and board["tie"].tolist() == ["", ""]


def test_draws_of_another_bootstrap_seed_are_ranked_but_noted_as_not_paired(tmp_path):
    merged = merge_runs(paired_runs(tmp_path, 7), rank_metric="ms_ssim")
    board = merged.sections[0].board
    assert board["rank_low"].tolist() == [1.0, 1.0] and board["rank_high"].tolist() == [2.0, 2.0]  # conservative
    assert board["rank_note"].tolist() == [
        "draws not paired with a · x (2026-11-20): different bootstrap seed; interval conservative",
        "draws not paired with b · y (2026-11-20): different bootstrap seed; interval conservative",
    ]
    footnotes = notes(merged)
    assert any(line.startswith("Rank intervals compare entries resample by resample; where entries' runs") for line in footnotes)
    assert (
        "b · y (2026-11-20): draws not paired with a · x (2026-11-20): different bootstrap seed; interval conservative."
        in footnotes
    )


def test_pairing_notes_name_each_unpaired_entry_and_why():
    keys = {"p": DrawsKey(0, "h1"), "q": DrawsKey(0, "h1"), "r": DrawsKey(0, "h2"), "s": DrawsKey(None, "h1")}
    assert pairing_notes(keys) == {
        "p": "draws not paired with r, s: different covered cases and unrecorded bootstrap seed; interval conservative",
        "q": "draws not paired with r, s: different covered cases and unrecorded bootstrap seed; interval conservative",
        "r": "draws not paired with p, q, s: different covered cases and unrecorded bootstrap seed; interval conservative",
        "s": "draws not paired with p, q, r: unrecorded bootstrap seed and different covered cases; interval conservative",
    }
    assert pairing_notes({"p": DrawsKey(3, "h"), "q": DrawsKey(3, "h")}) == {}


def test_unranked_entries_are_left_out_of_the_ranks_of_the_others():
    draws = {"a": np.full(10, 1.0), "b": np.full(10, 2.0), "c": np.full(10, 0.5)}
    table = rank_intervals({"a": 1.0, "b": 2.0, "c": 0.5}, draws, lower_is_better=True, unranked={"c": "marked: not ranked"})
    assert table.loc[["a", "b"], "rank"].tolist() == [1.0, 2.0] and table.loc[["a", "b"], "rank_high"].tolist() == [1.0, 2.0]
    assert math.isnan(table.loc["c", "rank"]) and table.loc["c", "rank_note"] == "marked: not ranked"


def test_one_run_without_a_recorded_seed_still_pairs_its_generators_on_the_seed():
    same_run = {"p": DrawsKey(None, "h", "runs/a"), "q": DrawsKey(None, "h", "runs/a")}
    assert pairing_notes(same_run) == {}
    other_run = {"p": DrawsKey(None, "h", "runs/a"), "q": DrawsKey(None, "h", "runs/b")}
    assert pairing_notes(other_run)["p"] == "draws not paired with q: unrecorded bootstrap seed; interval conservative"
    assert pairing_notes({"p": DrawsKey(None, None, "runs/a"), "q": DrawsKey(None, None, "runs/a")})["q"] == (
        "draws not paired with p: unrecorded covered cases; interval conservative"
    )


def test_a_run_without_draws_metadata_still_ranks_with_intervals(tmp_path):
    run = write_run(tmp_path / "run", sources=SEPARATED, spread=0.5, resamples=200)
    archive = dict(np.load(run / "bootstrap.npz"))
    del archive["__meta__"]
    np.savez(run / "bootstrap.npz", **archive)
    board = merge_runs(load_runs([run])).sections[0].board
    assert board["rank_low"].tolist()[1:] == [1.0, 2.0, 3.0, 4.0]
    ranked = board["entry"].tolist()[1:]
    for entry, note in zip(ranked, board["rank_note"].tolist()[1:]):  # one run: seed shared; covered cases unknown
        named, why = note.removeprefix("draws not paired with ").split(": ")
        assert sorted(named.split(", ")) == sorted(e for e in ranked if e != entry)
        assert why == "unrecorded covered cases; interval conservative"
