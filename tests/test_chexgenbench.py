"""CheXGenBench compatibility: the ready config, its manifest entries, and the test prompt file protocol."""

from __future__ import annotations

import csv
import math
import tomllib
from pathlib import Path

import pytest
from mimic_tree import LABELS, did, write_mimic_tree

from xreal_bench.config import config_from_dict, load_config
from xreal_bench.data.chexgenbench import read_prompt_file
from xreal_bench.data.csvfile import DatasetError
from xreal_bench.data.dataset import load_dataset
from xreal_bench.generators.artifacts_chexgenbench import ARTIFACTS
from xreal_bench.generators.diffusers_pipeline import FAMILIES, DiffusersOptions, check_call_options
from xreal_bench.generators.prompts import build_prompt, prompt_rule
from xreal_bench.types import Condition
from xreal_bench.validation import ConfigError, build
from xreal_bench.weights import collect_artifacts

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "chexgenbench.toml"
# The header of CheXGenBench's LLaVA-Rad annotation CSVs (MIMIC_Splits/*.csv in their repository).
HEADER = ("id", "path", "generate_method", "reason", "impression", "indication", "history", "view", "orientation",
          "chexpert_labels", "conversations", "annotated_prompt")  # fmt: skip
SUBJECT_STUDY = {1: ("10000032", "50000001"), 2: ("10000032", "50000001"), 3: ("10000032", "50000001"),
                 4: ("10000032", "50000002"), 5: ("10000045", "50000003"), 8: ("10000045", "50000004"),
                 9: ("11000011", "50000005"), 10: ("11000011", "50000005")}  # fmt: skip


def labels_literal(**values: float | None) -> str:
    return repr({name: values.get(name.replace(" ", "_")) for name in LABELS})


def row(n: int, prompt: str, labels: str, *, case_id: str | None = None) -> list[str]:
    subject, study = SUBJECT_STUDY[n]
    path = f"files/p{subject[:2]}/p{subject}/s{study}/{did(n)}.jpg"
    conversation = repr([{"from": "human", "value": "<image>\nDescribe the findings of the chest x-ray.\n"}])
    return [case_id or subject + study, path, "gpt4", "cough", "", "", "", "AP", "Erect", labels, conversation, prompt]


def write_prompts(path: Path, rows: list[list[str]], header=HEADER) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


GOOD_ROWS = [
    row(1, "Heart is enlarged.", labels_literal(Cardiomegaly=1.0, Edema=-1.0)),
    row(3, "No acute process.", labels_literal(No_Finding=1.0)),
    row(5, "Right  pleural effusion.\n", labels_literal(Pleural_Effusion=1.0, Cardiomegaly=0.0)),
    row(8, "Heart is enlarged.", labels_literal(Pneumothorax=1.0)),  # repeats row 1's prompt: dropped
    row(9, "Missing image.", labels_literal(Edema=1.0)),
    row(10, "Left lower lobe atelectasis.", labels_literal(Atelectasis=1.0)),
]


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mimic")
    write_mimic_tree(root, reports=False)
    return root


def bench(root: Path, prompts: Path, **dataset) -> object:
    raw = {"dataset": {"kind": "mimic", "root": str(root), "prompts_file": str(prompts), **dataset}}
    return config_from_dict(raw, "test")


def test_scan_keeps_their_images_prompts_and_labels(tree, tmp_path):
    prompts = write_prompts(tmp_path / "LLAVARAD_ANNOTATIONS_TEST.csv", GOOD_ROWS)
    scan = load_dataset(bench(tree, prompts), progress=False)
    assert [c.case_id for c in scan.cases] == [did(1), did(3), did(5), did(10)]  # sorted ids; did(8) dropped, did(9) missing
    assert scan.missing == [did(9)]
    by_id = {c.case_id: c for c in scan.cases}
    assert by_id[did(5)].prompt_text == "Right  pleural effusion."  # as written (they feed the raw text), ends stripped
    cardio, edema = LABELS.index("Cardiomegaly"), LABELS.index("Edema")
    assert by_id[did(1)].labels[cardio] == 1 and by_id[did(1)].labels[edema] == 0  # -1 -> uncertain policy 0
    assert by_id[did(1)].stated[edema] == 0
    assert scan.positives["Cardiomegaly"] == 1 and scan.positives["Pneumothorax"] == 0
    assert any("1 row(s) of LLAVARAD_ANNOTATIONS_TEST.csv repeat an earlier prompt" in n for n in scan.notes)
    ignore = load_dataset(bench(tree, prompts, label_policy={"uncertain": "ignore"}), progress=False)
    assert {c.case_id: c for c in ignore.cases}[did(1)].labels[edema] == -1
    assert ignore.fingerprint != scan.fingerprint


def test_mimic_labels_option_keeps_label_csv(tree, tmp_path):
    prompts = write_prompts(tmp_path / "p.csv", GOOD_ROWS)
    plain = {
        c.case_id: c
        for c in load_dataset(config_from_dict({"dataset": {"kind": "mimic", "root": str(tree)}}), progress=False).cases
    }
    scan = load_dataset(bench(tree, prompts, prompts_labels="mimic"), progress=False)
    for case in scan.cases:
        assert case.labels == plain[case.case_id].labels
        assert case.prompt_text


def test_chexgenbench_rule_uses_the_file_prompt():
    condition = Condition("c", 0, 0, (0,) * 14, "", "", Path("x.jpg"), impression="imp", prompt_text="Their prompt.")
    built = build_prompt(prompt_rule("chexgenbench"), condition, fallback="chest x-ray")
    assert (built.text, built.field) == ("Their prompt.", "prompt_text")


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            [row(2, "Lateral.", labels_literal())],
            "line 2: image " + did(2) + " is not among the 7 image(s) of split 'test' (views AP, PA)",
        ),
        ([GOOD_ROWS[0], row(4, "Train.", labels_literal())], "line 3: image " + did(4) + " is not among"),
        ([row(1, "a", labels_literal(), case_id="123")], "line 2: id '123' is not <subject_id><study_id> of its path"),
        ([row(1, "a", "{'Atelectasis': 1.0}")], "line 2: chexpert_labels must name the 14 CheXpert labels; missing Cardiomegaly"),
        ([row(1, "a", labels_literal(Edema=2.0))], "line 2: chexpert_labels['Edema'] is 2.0; expected 1.0, 0.0, -1.0 or None"),
        ([row(1, "a", "__import__('os')")], "line 2: chexpert_labels is not a Python dict literal"),
        ([row(1, "a", labels_literal()), row(1, "b", labels_literal())], "line 3: image " + did(1) + " already listed at line 2"),
    ],
)
def test_bad_rows_name_file_and_line(tree, tmp_path, rows, message):
    prompts = write_prompts(tmp_path / "p.csv", rows)
    with pytest.raises(DatasetError) as err:
        load_dataset(bench(tree, prompts), progress=False)
    assert f"{prompts}, {message}" in str(err.value)


def test_missing_column_and_missing_file(tmp_path):
    prompts = write_prompts(tmp_path / "p.csv", [r[:-1] for r in GOOD_ROWS], header=HEADER[:-1])
    with pytest.raises(DatasetError, match="missing column\\(s\\) annotated_prompt"):
        read_prompt_file(prompts)
    with pytest.raises(DatasetError, match="prompt file not found: .*nope.csv"):
        read_prompt_file(tmp_path / "nope.csv")


def test_path_must_match_mimic_layout(tmp_path):
    bad = row(1, "a", labels_literal())
    bad[1] = bad[1].replace("files/p10/", "files/p11/")
    with pytest.raises(DatasetError, match="line 2: path .*folder p11 does not hold subject p10000032"):
        read_prompt_file(write_prompts(tmp_path / "p.csv", [bad]))


def test_parsed_rows_keep_none_as_nan(tmp_path):
    parsed = read_prompt_file(write_prompts(tmp_path / "p.csv", GOOD_ROWS))
    assert parsed.repeated_prompts == 1 and len(parsed.rows) == 5
    first = parsed.rows[0]
    assert (first.line, first.dicom_id, first.subject_id) == (2, did(1), "10000032")
    assert first.labels[LABELS.index("Cardiomegaly")] == 1.0 and math.isnan(first.labels[0])


def test_config_lists_every_fine_tune_with_manifest_entries():
    raw = tomllib.loads(CONFIG.read_text())
    manifest = {a.name: a for a in ARTIFACTS}
    declared = collect_artifacts().artifacts
    expected = {  # CheXGenBench tools/generate_data_common.py PIPELINE_CONSTANTS (l.315-362)
        "cgb-sd-v1-4": (50, 7.5), "cgb-sd-v1-5": (50, 7.5), "cgb-sd-v2": (50, 7.5), "cgb-sd-v2-1": (50, 7.5),
        "cgb-sd-v3-5": (40, 4.5), "cgb-pixart-sigma": (20, 4.5), "cgb-sana": (20, 4.5), "cgb-lumina2": (50, 4.0),
        "cgb-flux": (28, 3.5),
    }  # fmt: skip
    call_options = {  # the same table: SD 3.5 l.345, Lumina 2 l.359-360
        "cgb-sd-v3-5": {"max_sequence_length": 512}, "cgb-lumina2": {"cfg_trunc_ratio": 0.25, "cfg_normalization": True},
    }  # fmt: skip
    diffusers = {name: t for name, t in raw["generators"].items() if t.get("type") == "diffusers"}
    assert set(diffusers) == set(expected)
    for name, table in diffusers.items():
        assert (table["steps"], table["guidance"]) == expected[name], name
        assert table.get("call_options", {}) == call_options.get(name, {}), name
        build(DiffusersOptions, {k: v for k, v in table.items() if k not in ("type", "enabled")}, str(CONFIG))
        assert table["prompt_rule"] == "chexgenbench"
        for key in ("snapshot", "lora"):
            if key in table:
                assert table[key] in manifest and table[key] in declared, (name, key)
                assert manifest[table[key]].hub_id and manifest[table[key]].license
    for name, pipeline in (("cgb-sd-v3-5", "StableDiffusion3Pipeline"), ("cgb-lumina2", "Lumina2Pipeline")):
        check_call_options(pipeline, FAMILIES[pipeline], call_options[name])  # the pipeline takes them
    assert raw["generators"]["cgb-flux"]["enabled"] is False
    cfg = load_config(CONFIG)  # the whole file, every generator table validated by its type
    assert cfg.dataset.prompts_format == "chexgenbench" and cfg.dataset.square == "stretch"
    radedit = cfg.generators["cgb-radedit"]  # gdc PIPELINE_CONSTANTS['radedit'] (l.316-320) are the type's defaults
    assert (radedit.type, radedit.options.steps, radedit.options.guidance) == ("radedit", 100, 7.5)
    assert radedit.options.prompt_rule == "chexgenbench"


def test_duplicates_are_exact_text_as_pandas_drop_duplicates(tmp_path):
    rows = [row(1, "Heart  is enlarged.", labels_literal()), row(3, "Heart is enlarged.", labels_literal())]
    parsed = read_prompt_file(write_prompts(tmp_path / "p.csv", rows))
    assert [r.prompt for r in parsed.rows] == ["Heart  is enlarged.", "Heart is enlarged."] and parsed.repeated_prompts == 0


def test_chexgenbench_rule_without_a_prompt_file_is_a_config_error():
    raw = tomllib.loads(CONFIG.read_text())
    raw["dataset"].pop("prompts_file")
    with pytest.raises(ConfigError, match=r"generators\.cgb-sd-v1-4\.prompt_rule: rule 'chexgenbench' takes each case's prompt"):
        config_from_dict(raw, str(CONFIG))
