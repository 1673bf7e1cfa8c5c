"""Merging runs into one leaderboard: refusal naming each kind of difference, separate sections with
--allow-mixed, one row per (generator, run), and runs that differ only in the seed combined."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from report_runs import case_ids, draws_for, edit, write_run

from xreal_bench.cli import main
from xreal_bench.errors import UserFacingError
from xreal_bench.reports.board import notes
from xreal_bench.reports.merge import KINDS, STATISTICS_KEYS, comparability, merge_runs
from xreal_bench.reports.runs import load_run, load_runs

SOURCES = {"real": {"fid": 0.5}, "alpha": {"fid": 10.0}, "beta": {"fid": 20.0}}


def case_digest(n: int) -> str:
    return hashlib.sha256("\n".join(sorted(case_ids(n))).encode()).hexdigest()[:12] + "…"


def set_config(section: str, key: str, value: object) -> Callable[[dict], None]:
    return lambda doc: doc["config"][section].__setitem__(key, value)


def set_weights(doc: dict) -> None:
    doc["evaluators"]["classifier"]["weights_sha256"] = "b" * 64


#: kind -> (how the second run is made different, the difference's text after "differ in ")
CHANGES: dict[str, tuple[dict, Callable[[dict], None] | None, str]] = {
    "dataset fingerprint": ({"fingerprint": "e" * 64}, None, f"dataset fingerprint: {'f' * 12}… vs {'e' * 12}…"),
    "case set": ({"n_cases": 6}, None, f"case set: {case_digest(8)} vs {case_digest(6)}"),
    "evaluator weights": ({}, set_weights, f"evaluator weights: classifier {'a' * 12}… vs {'b' * 12}…"),
    "preprocessing": ({}, set_config("dataset", "square", "pad"), "preprocessing: dataset.square crop vs pad"),
    "resolution": ({}, set_config("run", "resolution", 64), "resolution: run.resolution 32 vs 64"),
    "label policy": ({}, set_config("dataset", "labeler", "negbio"), "label policy: dataset.labeler chexpert vs negbio"),
    "threshold policy": ({}, set_config("metrics", "thresholds", "f1"), "threshold policy: metrics.thresholds youden vs f1"),
    "statistics": ({}, set_config("run", "samples_per_condition", 4), "statistics: run.samples_per_condition 1 vs 4"),
}


def test_every_kind_is_covered():
    assert tuple(CHANGES) == KINDS


def different_run(tmp_path: Path, kinds: list[str]) -> Path:
    options: dict = {}
    for kind in kinds:
        options.update(CHANGES[kind][0])
    run = write_run(tmp_path / "b", sources=SOURCES, **options)
    for kind in kinds:
        if (change := CHANGES[kind][1]) is not None:
            edit(run, change)
    return run


@pytest.mark.parametrize("kind", KINDS)
def test_refusal_names_the_difference(tmp_path, kind):
    a = write_run(tmp_path / "a", sources=SOURCES)
    b = different_run(tmp_path, [kind])
    runs = load_runs([a, b])
    [difference] = comparability(runs)
    assert difference.kind == kind
    assert difference.message() == f"runs {a} and {b} differ in {CHANGES[kind][2]}"
    with pytest.raises(UserFacingError) as refused:
        merge_runs(runs)
    assert str(refused.value).endswith(f"\n  - runs {a} and {b} differ in {CHANGES[kind][2]}")
    mixed = merge_runs(runs, allow_mixed=True)
    assert [s.title for s in mixed.sections] == ["Section 1 of 2", "Section 2 of 2"]
    assert mixed.sections[0].differences == () and mixed.sections[1].differences == (difference,)


def test_refusal_lists_every_difference_at_once(tmp_path, capsys):
    a = write_run(tmp_path / "a", sources=SOURCES)
    b = different_run(tmp_path, list(KINDS))
    assert main(["leaderboard", str(a), str(b)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        "error: the runs are not comparable (8 difference(s)); merge only comparable runs, or pass --allow-mixed"
    )
    listed = [line for line in err.splitlines() if line.startswith("  - ")]
    assert listed == [f"  - runs {a} and {b} differ in {CHANGES[kind][2]}" for kind in KINDS]


def test_allow_mixed_puts_each_run_in_its_section(tmp_path, capsys):
    a = write_run(tmp_path / "a", sources=SOURCES)
    b = different_run(tmp_path, ["resolution"])
    c = write_run(tmp_path / "c", sources={"real": {"fid": 0.5}, "gamma": {"fid": 5.0}})
    merged = merge_runs(load_runs([a, b, c]), allow_mixed=True)
    assert [[r.path for r in s.runs] for s in merged.sections] == [[a, c], [b]]
    first = merged.sections[0].board
    assert first["entry"].tolist() == ["real", "gamma · c (2026-11-20)", "alpha · a (2026-11-20)", "beta · a (2026-11-20)"]
    assert first["run_id"].tolist() == ["a-0", "c-0", "a-0", "a-0"]  # real once, from the section's first run
    assert main(["leaderboard", str(a), str(b), str(c), "--allow-mixed"]) == 0
    out = capsys.readouterr().out
    assert "## Section 2 of 2" in out
    assert f"Not comparable with section 1: runs {a} and {b} differ in resolution: run.resolution 32 vs 64" in out.replace(
        "\\", ""
    )


def test_comparable_runs_one_row_per_generator_and_run(tmp_path):
    a = write_run(tmp_path / "a", sources=SOURCES, written="2026-11-20T10:00:00+00:00", run_id="monday")
    b = write_run(tmp_path / "b", sources={"real": {"fid": 0.5}, "alpha": {"fid": 12.0}}, written="2026-12-01T09:00:00+00:00")
    merged = merge_runs(load_runs([a, b]))
    [section] = merged.sections
    board = section.board
    assert board["entry"].tolist() == ["real", "alpha · a (2026-11-20)", "alpha · b (2026-12-01)", "beta · a (2026-11-20)"]
    assert board["run_id"].tolist() == ["monday", "monday", "b-0", "monday"]
    assert board["date"].tolist() == ["2026-11-20", "2026-11-20", "2026-12-01", "2026-11-20"]
    assert board["fid"].tolist() == [0.5, 10.0, 12.0, 20.0]
    assert board["n"].tolist() == [8, 16, 16, 16]
    assert "fid_spread" not in board  # no row combines seeds
    row = load_run(b).frame.query("generator == 'alpha'").iloc[0]
    assert board.loc[2, ["fid_ci_low", "fid_ci_high"]].tolist() == [row["ci_low"], row["ci_high"]]


def seed_runs(tmp_path: Path, seeds=(0, 1, 2), bootstrap_seed: int | None = 0) -> list[Path]:
    """Runs that differ in ``run.seed`` only; ``bootstrap_seed`` None: each run resamples with its own seed."""
    return [
        write_run(
            tmp_path / f"seed{s}",
            seed=s,
            bootstrap_seed=bootstrap_seed,
            sources={"real": {"fid": 0.5}, "alpha": {"fid": 10.0 + s}, "beta": {"fid": 30.0 - 2 * s}},
            per_case={"alpha": {"ms_ssim": [0.5 + 0.1 * s + 0.01 * k for k in range(8)]}},
        )
        for s in seeds
    ]


def test_runs_differing_only_in_the_seed_are_combined(tmp_path):
    paths = seed_runs(tmp_path)
    merged = merge_runs(load_runs(paths))
    board = merged.sections[0].board.set_index("generator")
    alpha = board.loc["alpha"]
    assert alpha["entry"] == "alpha · seed0 (2026-11-20), seeds 0, 1, 2"
    assert alpha["seeds"] == "0, 1, 2" and alpha["run_id"] == "seed0-0, seed1-1, seed2-2"
    assert alpha["fid"] == pytest.approx(11.0) and alpha["fid_spread"] == pytest.approx(1.0)
    assert board.loc["beta", "fid"] == pytest.approx(28.0) and board.loc["beta", "fid_spread"] == pytest.approx(2.0)
    assert alpha["ms_ssim"] == pytest.approx(0.635) and alpha["ms_ssim_spread"] == pytest.approx(0.1)
    # CI: percentile interval of the seeds' draws averaged per resample index
    draws = [np.load(p / "bootstrap.npz")["alpha|fid|all"] for p in paths]
    low, high = np.percentile(np.mean(draws, axis=0), [2.5, 97.5])
    assert (alpha["fid_ci_low"], alpha["fid_ci_high"]) == (pytest.approx(low), pytest.approx(high))
    # one bootstrap seed, the same cases: that is the paired bootstrap of the per-case mean over the seeds
    per_case_mean = np.mean([[0.5 + 0.1 * s + 0.01 * k for k in range(8)] for s in (0, 1, 2)], axis=0)
    low, high = np.percentile(draws_for(per_case_mean, 50, 0), [2.5, 97.5])
    assert (alpha["ms_ssim_ci_low"], alpha["ms_ssim_ci_high"]) == (pytest.approx(low), pytest.approx(high))
    assert alpha["ci_note"] == ""
    assert board.loc["real", "entry"] == "real" and np.isnan(board.loc["real", "fid_spread"])
    assert list(board.index).count("real") == 1


def test_runs_differing_in_more_than_the_seed_stay_apart(tmp_path):
    paths = seed_runs(tmp_path, seeds=(0, 1))
    edit(paths[1], lambda doc: doc["config"]["metrics"].__setitem__("batch_size", 999))  # not a comparability kind
    board = merge_runs(load_runs(paths)).sections[0].board
    assert board.loc[board.generator == "alpha", "entry"].tolist() == ["alpha · seed0 (2026-11-20)", "alpha · seed1 (2026-11-20)"]
    assert board.loc[board.generator == "alpha", "seeds"].tolist() == ["0", "1"]


def test_a_repeated_seed_is_not_combined(tmp_path):
    first = seed_runs(tmp_path / "x", seeds=(0,))[0]
    again = seed_runs(tmp_path / "y", seeds=(0,))[0]
    board = merge_runs(load_runs([first, again])).sections[0].board
    assert board.loc[board.generator == "alpha", "seeds"].tolist() == ["0", "0"]


def test_identity_other_than_the_seed_keeps_generators_apart(tmp_path):
    paths = seed_runs(tmp_path, seeds=(0, 1))

    def retrain(doc: dict) -> None:
        doc["generators"]["alpha"]["identity"]["fields"]["weights.unet"] = "c" * 64

    edit(paths[1], retrain)
    board = merge_runs(load_runs(paths)).sections[0].board
    assert board.loc[board.generator == "alpha", "seeds"].tolist() == ["0", "1"]  # other weights: two rows
    assert board.loc[board.generator == "beta", "seeds"].tolist() == ["0, 1"]  # same identity: combined


#: Every setting that changes how numbers are computed -> two values runs may record (kind "statistics", label set
#: under "label policy").
SETTINGS = {
    "run.samples_per_condition": (1, 4),
    "metrics.dice_reference": ("real", "input"),
    "metrics.f1_zero_division": (0, 1),
    "metrics.kid_subsets": (100, 50),
    "metrics.kid_subset_size": (1000, 50),
    "metrics.confidence": (0.95, 0.9),
    "metrics.bootstrap": (50, 999),
    "metrics.fid_bootstrap": (0, 200),
    "metrics.bootstrap_seed": (0, 7),
    "metrics.min_subset_n": (10, 5),
    "metrics.subsets": (True, False),
    "metrics.subgroups": (True, False),
    "metrics.age_edges": ([0, 40, 60, 80], [18, 65]),
    "metrics.min_coverage": (0.95, 0.5),
    "metrics.label_set": (["classifier"], ["xreal"]),
}


def test_every_statistics_setting_is_listed():
    assert set(SETTINGS) == {*STATISTICS_KEYS, "metrics.label_set"}


@pytest.mark.parametrize("key", SETTINGS)
def test_a_setting_that_changes_numbers_makes_runs_not_comparable(tmp_path, key):
    section, _, name = key.partition(".")
    first, second = SETTINGS[key]
    a = edit(write_run(tmp_path / "a", sources=SOURCES), set_config(section, name, first))
    b = edit(write_run(tmp_path / "b", sources=SOURCES), set_config(section, name, second))
    [difference] = comparability(load_runs([a, b]))
    kind = "label policy" if key == "metrics.label_set" else "statistics"
    shown = [v if isinstance(v, str) else json.dumps(v) for v in (first, second)]  # text as is, the rest as JSON
    assert difference.message() == f"runs {a} and {b} differ in {kind}: {key} {shown[0]} vs {shown[1]}"
    with pytest.raises(UserFacingError):
        merge_runs(load_runs([a, b]))
    c = edit(write_run(tmp_path / "c", sources=SOURCES), set_config(section, name, first))
    assert comparability(load_runs([a, c])) == []  # the same value recorded: comparable


def unrecord(run: Path) -> Path:
    """The run as written before the dataset fingerprint and cases.jsonl existed."""
    (run / "cases.jsonl").unlink()
    return edit(run, lambda doc: doc["dataset"].pop("fingerprint"))


def test_fingerprint_and_case_set_recorded_in_neither_run_are_differences(tmp_path):
    a, b = (unrecord(write_run(tmp_path / name, sources=SOURCES)) for name in "ab")
    found = comparability(load_runs([a, b]))
    assert [d.message() for d in found] == [
        f"runs {a} and {b} differ in dataset fingerprint: not recorded in either run",
        f"runs {a} and {b} differ in case set: not recorded in either run",
    ]
    with pytest.raises(UserFacingError, match=r"\(2 difference\(s\)\)"):
        merge_runs(load_runs([a, b]))
    mixed = merge_runs(load_runs([a, b]), allow_mixed=True)
    assert [len(s.runs) for s in mixed.sections] == [1, 1] and mixed.sections[1].differences == tuple(found)
    alone = merge_runs(load_runs([a]))  # one run has nothing to disagree with
    assert alone.sections[0].differences == () and alone.sections[0].board["fid"].tolist() == [0.5, 10.0, 20.0]


def test_runs_in_folders_of_one_name_get_distinct_entries_ranks_and_draws(tmp_path):
    first = write_run(tmp_path / "d1" / "run", sources={"a": {"fid": 10.0}, "b": {"fid": 20.0}}, run_id="R1")
    second = write_run(tmp_path / "d2" / "run", sources={"a": {"fid": 30.0}}, run_id="R2")
    section = merge_runs(load_runs([first, second])).sections[0]
    board = section.board
    a1, a2 = "a · run (2026-11-20) [run id R1]", "a · run (2026-11-20) [run id R2]"
    assert board["entry"].tolist() == [a1, "b · run (2026-11-20)", a2]  # only the colliding names change
    assert board["rank"].tolist() == [1.0, 2.0, 3.0] and board["rank_high"].tolist() == [1.0, 2.0, 3.0]
    assert np.array_equal(section.draws[a1]["fid"], np.load(first / "bootstrap.npz")["a|fid|all"])
    assert np.array_equal(section.draws[a2]["fid"], np.load(second / "bootstrap.npz")["a|fid|all"])
    assert [r.path for r in section.sources[a2]] == [second]


def test_entries_colliding_in_run_id_too_get_the_run_position(tmp_path):
    paths = [write_run(tmp_path / d / "run", sources={"a": {"fid": v}}, run_id="same") for d, v in [("x", 10.0), ("y", 30.0)]]
    board = merge_runs(load_runs(paths)).sections[0].board
    assert board["entry"].tolist() == [
        "a · run (2026-11-20) [run id same, RUN_DIR #1]",
        "a · run (2026-11-20) [run id same, RUN_DIR #2]",
    ]
    assert board["rank"].tolist() == [1.0, 2.0]


def test_seed_runs_with_their_own_bootstrap_seeds_get_no_combined_ci(tmp_path):
    paths = seed_runs(tmp_path, bootstrap_seed=None)  # bootstrap seed = run seed: each run resampled other cases
    merged = merge_runs(load_runs(paths), rank_metric="ms_ssim")
    alpha = merged.sections[0].board.set_index("generator").loc["alpha"]
    assert alpha["ms_ssim"] == pytest.approx(0.635) and alpha["ms_ssim_spread"] == pytest.approx(0.1)
    assert np.isnan(alpha["ms_ssim_ci_low"]) and np.isnan(alpha["ms_ssim_ci_high"]) and np.isnan(alpha["fid_ci_low"])
    assert alpha["ci_note"] == "no seed-combined CI (the runs' bootstrap seeds differ (0, 1, 2))"
    assert alpha["rank_note"] == "no bootstrap draws of MS-SSIM: rank interval not available"
    assert (
        "alpha · seed0 (2026-11-20), seeds 0, 1, 2; beta · seed0 (2026-11-20), seeds 0, 1, 2: "
        "no seed-combined CI (the runs' bootstrap seeds differ (0, 1, 2))." in notes(merged)
    )


def test_seed_runs_covering_different_cases_get_no_combined_ci(tmp_path):
    paths = seed_runs(tmp_path, seeds=(0, 1))
    archive = dict(np.load(paths[1] / "bootstrap.npz"))
    meta = json.loads(str(archive["__meta__"]))
    meta["cases"]["alpha"] = "0" * 64  # alpha's second run covered other cases
    np.savez(paths[1] / "bootstrap.npz", **{**archive, "__meta__": np.array(json.dumps(meta))})
    board = merge_runs(load_runs(paths)).sections[0].board.set_index("generator")
    assert np.isnan(board.loc["alpha", "fid_ci_low"]) and board.loc["alpha", "ci_note"] == (
        "no seed-combined CI (the runs cover different cases)"
    )
    assert not np.isnan(board.loc["beta", "fid_ci_low"]) and board.loc["beta", "ci_note"] == ""
