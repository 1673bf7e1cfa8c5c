"""`xreal-bench generators show NAME [--case ID]` through the CLI on a small synthetic demo config:
reference generators, a fake registered generator with cited options and its own protocol steps,
the case's Condition against the one a run builds, missing weights, --json, and the errors."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from xreal_bench.cli import main
from xreal_bench.config import load_config
from xreal_bench.data.dataset import load_dataset
from xreal_bench.data.reports import report_path
from xreal_bench.generators import Generator, register_generator
from xreal_bench.generators.base import ProtocolStep, cited
from xreal_bench.generators.prompts import build_prompt, prompt_rule
from xreal_bench.registry import GENERATORS
from xreal_bench.rundir import seed_for
from xreal_bench.weights import Artifact

FAKE = "test-show-fake"
PRESENT = Artifact(
    "test-show-present", "fake/present.bin", "a test", "none", "fake weights that exist", url="https://x.invalid/a"
)
MISSING = Artifact("test-show-missing", "fake/missing.bin", "https://example.org/fake", "CC0", "fake weights that do not")
SNAPSHOT = Artifact(
    "test-show-snapshot", "fake/snapshot", "hub", "none", "fake snapshot", kind="dir", files=("model.bin",), hub_id="a/b"
)


@dataclass
class FakeOptions:
    steps: int = cited(50, "Fake et al. 2024, Sec. 3.2")
    prompt_rule: str = cited("impression", "fake/repo sample.py line 12")
    snapshot: bool = cited(False, "not stated by the original; chosen because the snapshot is optional")


class FakeGenerator(Generator):
    type_name = FAKE
    description = "a fake generator for `generators show`"
    inputs = frozenset({"text", "labels", "pathology"})
    artifacts = (PRESENT, MISSING, SNAPSHOT)
    Options = FakeOptions

    @classmethod
    def required_artifacts(cls, options):
        return (PRESENT, MISSING, SNAPSHOT) if options.snapshot else (PRESENT, MISSING)

    @classmethod
    def protocol_steps(cls, options, context, condition):
        steps = [ProtocolStep("precision", context.precision, "run.precision"), ProtocolStep("square", context.square, "")]
        if condition is not None:
            prompt = build_prompt(prompt_rule(options.prompt_rule), condition, fallback="No Finding")
            steps.append(ProtocolStep("prompt", repr(prompt.text), f"prompt rule {prompt.rule!r}, from {prompt.field}"))
            steps.append(ProtocolStep("boxes", str(len(condition.boxes)), condition.mask_source))
        return steps

    def generate(self, conditions):
        raise AssertionError("generators show must not generate")


@pytest.fixture(scope="module", autouse=True)
def fake_generator():
    register_generator(FakeGenerator)
    yield
    GENERATORS.unregister(FAKE)


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[Path, Path]:
    """A synthetic demo config (24 subjects at 64 px) with one present and one missing fake weights file."""
    root = tmp_path_factory.mktemp("show")
    weights = root / "weights"
    (weights / "fake").mkdir(parents=True)
    (weights / "fake" / "present.bin").write_bytes(b"weights")
    config = root / "bench.toml"
    config.write_text(
        f"""
[dataset]
kind = "synthetic"
root = "{root / "data"}"
[dataset.synthetic]
n_subjects = 24
image_size = 64
[generators.noise]
contrast = 0.2
[generators.fake]
type = "{FAKE}"
batch_size = 3
[generators.shuffled]
[run]
out = "{root / "out"}"
precision = "bf16"
[weights]
dir = "{weights}"
"""
    )
    return config, weights


def show(capsys, config: Path, *args: str) -> tuple[int, str, str]:
    code = main(["generators", "show", *args, "--config", str(config)])
    out, err = capsys.readouterr()
    return code, out, err


def cases_of(config: Path):
    return load_dataset(load_config(config), progress=False).cases


def test_reference_generator_without_a_case(setup, capsys):
    config, _ = setup
    code, out, err = show(capsys, config, "noise")
    assert (code, err) == (0, "")
    assert out.startswith("generator 'noise' (type 'noise'): smooth noise with the dataset's mean intensity (lower bound)\n")
    assert f"  defined by: [generators.noise] of {config}\n  inputs: none\n" in out
    # the configured value says it was set, the others cite the suite's own reasons
    assert "  contrast = 0.2\n      set in the config (default 0.15)\n" in out
    assert "  grid = 8\n      the suite's own reference generator; chosen because an 8 x 8 grid" in out
    assert "  precision = bf16\n      run.precision\n" in out
    assert "  batch_size = 8\n      run.batch_size (generators.noise.batch_size = 0)\n" in out
    assert "  seed = 0\n      run.seed; image seed = the first 8 bytes" in out
    assert "  report = impression, else findings; not read by this generator\n" in out
    assert out.endswith("weights (nothing is loaded here):\n  none needed\n")
    assert "condition of sample" not in out


def test_reference_generator_with_a_case(setup, capsys):
    config, _ = setup
    case = cases_of(config)[2]
    code, out, err = show(capsys, config, "shuffled", "--case", case.case_id)
    assert (code, err) == (0, "")
    assert "  inputs: image\n" in out
    assert f"case {case.case_id} (as the dataset layer loads it):\n  subject_id = '{case.subject_id}'\n" in out
    assert f"  image_path = '{case.image_path}'\n" in out
    assert "condition of sample 0 (built as a run builds it):\n" in out
    assert f"  seed = {seed_for(0, 'shuffled', case.case_id, 0)}\n" in out
    assert f"  positives = [{', '.join(repr(p) for p in case.positives)}]\n" in out
    assert "  pathology boxes for this case = not read by this generator\n" in out
    assert "  not_computed = none\n" in out


def impression_from_file(config: Path, case) -> str:
    """The IMPRESSION section as the test reads it from the synthetic report file."""
    text = report_path(Path(load_config(config).dataset.root), case.subject_id, case.study_id).read_text()
    return " ".join(text.split("IMPRESSION:")[1].split())


def test_fake_generator_protocol_for_a_case_with_csv_boxes(setup, capsys):
    config, weights = setup
    boxes_csv = Path(load_config(config).dataset.root) / "ms-cxr-boxes.csv"
    boxed = {line.split(",")[0] for line in boxes_csv.read_text().splitlines()[1:]}
    case = next(c for c in cases_of(config) if c.case_id in boxed)
    code, out, err = show(capsys, config, "fake", "--case", case.case_id)
    assert (code, err) == (0, "")
    assert f"generator 'fake' (type '{FAKE}'): a fake generator for `generators show`\n" in out
    assert "  inputs: labels, pathology, text\n" in out
    assert "  steps = 50\n      Fake et al. 2024, Sec. 3.2\n" in out
    assert "  snapshot = False\n      not stated by the original; chosen because the snapshot is optional\n" in out
    assert "  square = crop\n  " in out  # a step without a source prints no source line
    expected = impression_from_file(config, case)
    assert f"  prompt = {expected!r}\n      prompt rule 'impression', from impression\n" in out
    csv_rows = sum(line.startswith(case.case_id + ",") for line in boxes_csv.read_text().splitlines())
    assert f"  boxes = {csv_rows}\n      boxes_csv\n" in out
    assert f"  pathology boxes for this case = {csv_rows} box(es) from {boxes_csv}\n" in out
    assert "  batch_size = 3\n      generators.fake.batch_size\n" in out
    # weights: the present one with its path, the missing one with the manager's wording
    assert f"  present  test-show-present  {weights / 'fake' / 'present.bin'}\n" in out
    assert "  MISSING  test-show-missing\n      missing weights 'test-show-missing' (fake weights that do not):\n" in out
    assert f"        file not found: {weights / 'fake' / 'missing.bin'}\n" in out
    assert "        source: https://example.org/fake\n" in out
    assert "test-show-snapshot" not in out  # not required by these options


def test_condition_matches_the_one_a_run_builds(setup, capsys):
    """The --json condition equals PreparedCases.build's for the same case, sample 0 and seed."""
    from xreal_bench.conditioning import prepare_case_facts

    config, _ = setup
    cfg = load_config(config)
    scan = load_dataset(cfg, progress=False)
    prepared = prepare_case_facts(cfg, scan, reads=FakeGenerator.inputs, progress=False)
    checked = 0
    for case in scan.cases[:6]:
        code, out, _ = show(capsys, config, "fake", "--case", case.case_id, "--json")
        shown = json.loads(out)["condition"]
        built = prepared.build(case, 0, seed_for(cfg.run.seed, "fake", case.case_id, 0), reads=FakeGenerator.inputs)
        if shown["not_computed"]:  # a fallback box needs the anatomy map: named, not computed
            assert shown["not_computed"] == {
                "pathology": "box_fallback = 'anatomy' places them on the anatomy map: not computed by `generators show`"
            }
            assert built.mask_source == "anatomy_rule"
            continue
        checked += 1
        assert shown["seed"] == built.seed
        assert shown["prompt"] == built.prompt and shown["report"] == built.report
        assert shown["impression"] == built.impression and shown["findings"] == built.findings
        assert shown["mask_source"] == built.mask_source and shown["notes"] == list(built.notes)
        assert shown["boxes"] == [{"label": b.label, "x0": b.x0, "y0": b.y0, "x1": b.x1, "y1": b.y1} for b in built.boxes]
    assert checked >= 2


def test_json_is_one_object_with_every_section(setup, capsys):
    config, weights = setup
    case = cases_of(config)[0]
    code, out, err = show(capsys, config, "fake", "--case", case.case_id, "--json", "--set", "generators.fake.snapshot=true")
    assert (code, err) == (0, "")
    data = json.loads(out)
    assert list(data) == [
        "generator", "type", "description", "defined_by", "enabled", "inputs", "unavailable_inputs",
        "protocol", "run", "conditioning", "case", "condition", "weights",
    ]  # fmt: skip
    assert data["generator"] == "fake" and data["type"] == FAKE and data["inputs"] == ["labels", "pathology", "text"]
    assert data["protocol"][:3] == [
        {"key": "steps", "value": "50", "source": "Fake et al. 2024, Sec. 3.2"},
        {"key": "prompt_rule", "value": "'impression'", "source": "fake/repo sample.py line 12"},
        {"key": "snapshot", "value": "True", "source": "set in the config (default False)"},
    ]
    assert {"key": "precision", "value": "bf16", "source": "run.precision"} in data["protocol"]
    assert {s["key"] for s in data["run"]} == {
        "resolution", "bit_depth", "square", "intensity", "precision", "device", "batch_size", "samples_per_condition", "seed",
    }  # fmt: skip
    assert data["case"]["case_id"] == case.case_id and data["condition"]["sample_index"] == 0
    assert [(w["name"], w["present"]) for w in data["weights"]] == [
        ("test-show-present", True),
        ("test-show-missing", False),
        ("test-show-snapshot", False),
    ]
    snapshot = data["weights"][2]
    assert snapshot["missing_files"] == [str(weights / "fake" / "snapshot")]
    assert f"folder not found: {weights / 'fake' / 'snapshot'}" in snapshot["message"]
    assert "get it: xreal-bench weights fetch test-show-snapshot" in snapshot["message"]


def test_a_type_name_shows_its_default_options(setup, capsys):
    config, _ = setup
    code, out, _ = show(capsys, config, FAKE, "--json")
    data = json.loads(out)
    assert data["defined_by"] == f"generator type '{FAKE}' with its default options (no [generators.{FAKE}] in {config})"
    assert data["protocol"][0] == {"key": "steps", "value": "50", "source": "Fake et al. 2024, Sec. 3.2"}
    assert data["case"] is None and data["condition"] is None
    code, out, _ = show(capsys, config, "real")  # the reserved name of the real images is a type too
    assert code == 0 and "generator 'real' (type 'real')" in out


def test_unknown_and_hostile_names_and_unknown_case(setup, capsys):
    config, _ = setup
    code, out, err = show(capsys, config, "nosuch")
    assert (code, out) == (2, "")
    assert err.startswith(
        f"error: unknown generator 'nosuch': not a [generators.<name>] table of {config} nor a generator type\n"
    )
    assert "  configured: noise, fake, shuffled\n" in err
    assert f"  types: {', '.join(GENERATORS.names())} (`xreal-bench generators list` describes them)\n" in err
    for hostile in ("../etc", "a/b", ".hidden", "x" * 65):
        with pytest.raises(SystemExit) as exit_info:
            main(["generators", "show", hostile, "--config", str(config)])
        assert exit_info.value.code == 2
        assert f"argument NAME: generator name {hostile!r} is not a valid name" in capsys.readouterr().err
    code, out, err = show(capsys, config, "noise", "--case", "not-a-case")
    first = cases_of(config)[0].case_id
    assert code == 2
    assert err.startswith("error: unknown case id 'not-a-case': not among the ")
    assert f"case ids are the images' dicom_id, e.g. {first}, " in err
    assert "`xreal-bench data summary`" in err


def test_help_has_an_example(capsys):
    with pytest.raises(SystemExit):
        main(["generators", "show", "--help"])
    out = capsys.readouterr().out
    assert "examples:\n  xreal-bench generators show noise" in out and "--case ID" in out


@pytest.mark.parametrize(
    ("anatomy", "step", "unavailable"),
    [
        ("none", "none: the run would refuse this generator", ["anatomy"]),
        ("pspnet", "segmented by PSPNet from {image} at run time (not computed by `generators show`)", []),
    ],
)
def test_anatomy_sources_for_a_case(setup, capsys, anatomy, step, unavailable):
    config, _ = setup
    case = cases_of(config)[1]
    code, out, _ = show(capsys, config, "phantom", "--case", case.case_id, "--json", "--set", f"conditioning.anatomy='{anatomy}'")
    data = json.loads(out)
    steps = {s["key"]: s["value"] for s in data["conditioning"]}
    assert steps["anatomy map for this case"] == step.format(image=case.image_path)
    assert list(data["unavailable_inputs"]) == unavailable
    assert (
        data["condition"]["not_computed"]["anatomy"] == f"not computed by `generators show` (conditioning.anatomy = '{anatomy}')"
    )


def test_the_geometry_shown_is_the_configs(setup, capsys):
    config, _ = setup
    code, out, _ = show(capsys, config, "xreal", "--set", 'dataset.square="stretch"', "--set", 'dataset.intensity="minmax"')
    assert code == 0
    assert "  square = stretch\n" in out and "  intensity = minmax\n      dataset.intensity: per-image rule" in out
    assert "with dataset.square = 'stretch', dataset.intensity = 'minmax'" in out  # the adapter's own step sees it too
