"""bench.toml validation: every error names the file, the dotted key and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from xreal_bench.cli import main
from xreal_bench.config import config_from_dict, load_config
from xreal_bench.demo.command import demo_tables
from xreal_bench.validation import ConfigError

REPO = Path(__file__).resolve().parents[1]


def error_for(tmp_path: Path, text: str, overrides=()) -> str:
    path = tmp_path / "bench.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path, list(overrides))
    return str(info.value)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[run]\nbatch_size = 0\n", "run.batch_size: expected a positive integer, got 0"),
        ("[run]\nbatch_size = 'big'\n", "run.batch_size: expected an integer, got a string ('big')"),
        ("[run]\nbatchsize = 4\n", "run.batchsize: unknown key (known keys:"),
        ("[run]\nresolution = 128\n", "run.resolution: expected >= 161 (MS-SSIM"),
        ("[run]\ndevice = 'tpu'\n", "run.device: expected auto, cpu, cuda, cuda:N or mps, got 'tpu'"),
        ("[dataset]\nsplit = 'dev'\n", "dataset.split: expected one of 'train', 'validate', 'test', got 'dev'"),
        ("[dataset.label_policy]\nuncertain = 2\n", "dataset.label_policy.uncertain: expected one of 0, 1, 'ignore', got 2"),
        ("[dataset]\nviews = 'AP'\n", "dataset.views: expected a list, got a string ('AP')"),
        ("[metrics]\nenabled = ['fid', 'is']\n", "metrics.enabled[1]: expected one of 'fid'"),
        (
            "[metrics]\nlabel_set = ['Cardiomegally']\n",
            "metrics.label_set[0]: expected 'classifier', 'xreal' or a CheXpert label",
        ),
        ("[metrics]\nconfidence = 1.5\n", "metrics.confidence: expected a level in (0.5, 1), got 1.5"),
        ("[reports]\nformats = ['md']\n", "reports: unknown section (known sections:"),
        ("[generators.dalle]\n", "generators.dalle: unknown generator 'dalle'; available:"),
        ("[generators.g]\ntype = 'noise'\ncontrast = 2.0\n", "generators.g.contrast: expected 0..0.5, got 2.0"),
        ("[generators.g]\ntype = 'noise'\ncontrats = 0.1\n", "generators.g.contrats: unknown key"),
        ("[generators.real]\nbatch_size = -1\n", "generators.real.batch_size: expected >= 0"),
        ("[generators.x]\ntype = 'xreal'\nguidance = 'high'\n", "generators.x.guidance: expected a number"),
        ("[run\n", "not valid TOML"),
    ],
)
def test_errors_name_file_key_and_expectation(tmp_path, text, expected):
    message = error_for(tmp_path, text)
    assert message.startswith(str(tmp_path / "bench.toml"))
    assert expected in message


def test_override_errors_name_the_override(tmp_path):
    message = error_for(tmp_path, "", ["run.batch_size=0"])
    assert message == "--set run.batch_size: run.batch_size: expected a positive integer, got 0"


def test_overrides_parse_toml_values(tmp_path):
    path = tmp_path / "bench.toml"
    path.write_text("[run]\nbatch_size = 4\n")
    cfg = load_config(path, ["run.batch_size=8", "dataset.views=['AP']", "run.out=somewhere", "generators.noise.contrast=0.2"])
    assert cfg.run.batch_size == 8 and cfg.dataset.views == ["AP"] and cfg.run.out == "somewhere"
    assert cfg.generators["noise"].options.contrast == 0.2


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")


def test_shipped_bench_toml_is_the_demo():
    shipped = load_config(REPO / "bench.toml")
    demo = config_from_dict(demo_tables("runs/demo"))
    assert shipped.to_dict() == demo.to_dict()
    assert shipped.hash() == demo.hash()


def test_config_hash_ignores_output_folder_but_not_settings():
    a = config_from_dict({"run": {"out": "a"}})
    assert a.hash() == config_from_dict({"run": {"out": "b"}}).hash()
    assert a.hash() != config_from_dict({"run": {"seed": 1}}).hash()


def test_cli_reports_config_errors_without_traceback(tmp_path, capsys):
    path = tmp_path / "bench.toml"
    path.write_text("[run]\nsamples_per_condition = 0\n")
    assert main(["generate", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "config error:" in err and "run.samples_per_condition: expected >= 1, got 0" in err
    assert "Traceback" not in err
