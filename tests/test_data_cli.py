"""``xreal-bench data summary`` / ``data synth`` run in-process through ``xreal_bench.cli.main``."""

from __future__ import annotations

import json
import re

import pytest
from mimic_tree import LABELS, write_mimic_tree

from xreal_bench.cli import main


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return write_mimic_tree(tmp_path_factory.mktemp("cli_mimic"), gz=True)


@pytest.fixture(autouse=True)
def no_local_bench_toml(tmp_path, monkeypatch):
    """The CLI reads ./bench.toml when --config is absent: run from an empty folder."""
    monkeypatch.chdir(tmp_path)


def run_json(capsys, *argv):
    code = main(["data", "summary", *argv, "--json"])
    out = capsys.readouterr().out
    assert code == 0
    return json.loads(out)


def test_summary_json_has_exactly_the_keys_and_numbers(tree, capsys):
    got = run_json(capsys, "--root", str(tree.root))
    assert list(got) == ["cases", "by_view", "positives", "missing", "corrupt", "label_policy"]
    expected = tree.summary()
    assert got["cases"] == expected["cases"] == 7
    assert got["missing"] == 1 and got["corrupt"] == 2
    assert got["by_view"] == expected["by_view"]
    assert got["positives"] == expected["positives"] and list(got["positives"]) == list(LABELS)
    assert got["label_policy"] == {"1.0": 1, "0.0": 0, "-1.0": 0, "blank": 0, "missing_study": 0}


def test_summary_flags_and_set_overrides(tree, capsys):
    got = run_json(capsys, "--root", str(tree.root), "--split", "test", "--views", "ap, UNKNOWN")
    assert got == {**tree.summary("test", ("AP", "UNKNOWN")), "label_policy": got["label_policy"]}
    assert got["by_view"] == {"AP": 4, "UNKNOWN": 2}
    policy = {"uncertain": 1, "blank": 0, "missing_study": "ignore"}
    got = run_json(
        capsys,
        "--root", str(tree.root),
        "--set", "dataset.label_policy.uncertain=1",
        "--set", "dataset.label_policy.missing_study='ignore'",
    )  # fmt: skip
    assert got["positives"] == tree.summary(policy=policy)["positives"]
    assert got["label_policy"]["missing_study"] == "ignore"
    assert run_json(capsys, "--root", str(tree.root), "--set", "run.num_cases=3")["cases"] == 3


def test_summary_reads_the_config_file_without_root(tree, tmp_path, capsys):
    config = tmp_path / "bench.toml"
    config.write_text(f'[dataset]\nkind = "mimic"\nroot = "{tree.root}"\nsplit = "train"\n')
    got = run_json(capsys, "--config", str(config))
    assert got["cases"] == len(tree.kept_ids("train")) == 1
    got = run_json(capsys)  # ./bench.toml is picked up from the working directory
    assert got["cases"] == 1


def test_summary_table(tree, capsys):
    assert main(["data", "summary", "--root", str(tree.root)]) == 0
    out = capsys.readouterr().out
    assert "kept images:   7" in out and "corrupt files: 2" in out
    assert "file is empty (0 bytes)" in out


def test_bad_root_exit_code_2_and_clear_message(tmp_path, capsys):
    assert main(["data", "summary", "--root", str(tmp_path / "missing"), "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "MIMIC-CXR-JPG root not found" in captured.err and str(tmp_path / "missing") in captured.err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["data", "summary", "--root", str(empty)]) == 2
    err = capsys.readouterr().err
    assert "not a MIMIC-CXR-JPG root" in err and "mimic-cxr-2.0.0-split.csv" in err
    assert "Traceback" not in err


def test_bad_view_list_is_a_config_error(tree, capsys):
    assert main(["data", "summary", "--root", str(tree.root), "--views", ","]) == 2
    assert "at least one view" in capsys.readouterr().err


def test_synth_writes_a_tree_that_summary_reads(tmp_path, capsys):
    target = tmp_path / "demo"
    assert main(["data", "synth", "--root", str(target), "--n-subjects", "4", "--image-size", "64", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert f"wrote the synthetic MIMIC-CXR-JPG tree to {target}" in out
    stamp = json.loads((target / "xreal-bench-synthetic.json").read_text())
    assert (stamp["n_subjects"], stamp["seed"], stamp["image_size"]) == (4, 1, 64)
    got = run_json(capsys, "--root", str(target))
    assert got["cases"] >= 1 and got["missing"] == got["corrupt"] == 0
    frontal_test = re.search(r"AP/PA images: .*test (\d+)", out)
    assert frontal_test and int(frontal_test.group(1)) == got["cases"]


def test_help_states_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["data", "synth", "--help"])
    out = capsys.readouterr().out
    assert "(default: 120)" in out and "(default: 256)" in out
    with pytest.raises(SystemExit):
        main(["data", "summary", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "(default: [dataset].split" in out and "(default: [dataset].views" in out
