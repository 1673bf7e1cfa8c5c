"""bench.toml validation: every error names the file, the dotted key and what was expected."""

from __future__ import annotations

import enum
import json
import pathlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

import pytest

from xreal_bench.cli import main
from xreal_bench.config import config_from_dict, load_config
from xreal_bench.demo.command import demo_tables
from xreal_bench.generators import Generator
from xreal_bench.names import NAME_RULE
from xreal_bench.registry import GENERATORS
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
        ("[run]\nresolution = 128\n", "run.resolution: expected 161..4096 (MS-SSIM"),
        ("[run]\nresolution = 4097\n", "run.resolution: expected 161..4096 (MS-SSIM's five scales need more than 160 px; above"),
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
    assert message == "--set run.batch_size=0: run.batch_size: expected a positive integer, got 0"


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


class Mode(enum.Enum):
    FAST = "fast"
    CAREFUL = "careful"


@dataclass
class PluginOptions:
    """What plugin authors write: bare containers, fixed tuples, optionals, literals, paths, enums."""

    tags: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)
    size: tuple[int, int] = (64, 64)
    anything: tuple = ()
    scale: float | None = None
    note: str | None = None
    count: Optional[int] = None  # noqa: UP045 - the spelling plugin authors use
    kind: Literal["a", "b"] = "a"
    checkpoint: pathlib.Path = pathlib.Path("model.safetensors")
    prompts: Sequence[str] = ()
    weights: Mapping[str, float] = field(default_factory=dict)
    labels: set[str] = field(default_factory=set)
    mode: Mode = Mode.FAST
    callback: Callable[[int], int] | None = None
    raw: list[Any] = field(default_factory=list)


class PluginGenerator(Generator):
    type_name = "plugin-test"
    description = "options with every plausible annotation"
    Options = PluginOptions

    def generate(self, conditions):
        return []


@pytest.fixture
def plugin():
    GENERATORS.register("plugin-test", PluginGenerator)
    yield PluginGenerator
    GENERATORS.unregister("plugin-test")


def plugin_config(**options):
    return config_from_dict({"generators": {"p": {"type": "plugin-test", **options}}}, "bench.toml")


def test_plugin_options_with_plausible_annotations_validate(plugin):
    cfg = plugin_config(
        tags=[1, "a"],
        extra={"k": [1]},
        size=[256, 320],
        anything=[1, "x"],
        scale=2,
        note="n",
        count=3,
        kind="b",
        checkpoint="/w/m.safetensors",
        prompts=["p"],
        weights={"x": 1},
        labels=["b", "a", "b"],
        mode="careful",
        raw=[{"a": 1}],
    )
    options = cfg.generators["p"].options
    assert options.size == (256, 320) and options.anything == (1, "x") and options.scale == 2.0
    assert options.checkpoint == pathlib.Path("/w/m.safetensors") and options.mode is Mode.CAREFUL
    assert options.labels == {"a", "b"} and options.weights == {"x": 1.0} and options.count == 3
    table = cfg.to_dict()["generators"]["p"]
    assert table["checkpoint"] == "/w/m.safetensors" and table["mode"] == "careful" and table["labels"] == ["a", "b"]
    assert table["size"] == [256, 320]
    assert cfg.hash() == plugin_config(**{**table, "labels": ["a", "b"]}).hash()  # the resolved table reloads to the same hash


@pytest.mark.parametrize(
    "options, expected",
    [
        ({"tags": "a"}, "bench.toml: generators.p.tags: expected a list, got a string ('a')"),
        ({"extra": [1]}, "bench.toml: generators.p.extra: expected a table, got a list ([1])"),
        ({"size": [3]}, "bench.toml: generators.p.size: expected a list of 2 values, got 1 ([3])"),
        ({"size": [3, "x"]}, "bench.toml: generators.p.size[1]: expected an integer, got a string ('x')"),
        ({"scale": "big"}, "bench.toml: generators.p.scale: expected a number, got a string ('big')"),
        ({"count": 1.5}, "bench.toml: generators.p.count: expected an integer, got a number (1.5)"),
        ({"kind": "c"}, "bench.toml: generators.p.kind: expected one of 'a', 'b', got 'c'"),
        ({"checkpoint": 3}, "bench.toml: generators.p.checkpoint: expected a path string, got an integer (3)"),
        ({"labels": [[1]]}, "bench.toml: generators.p.labels[0]: expected a string, got a list ([1])"),
        ({"mode": "slow"}, "bench.toml: generators.p.mode: expected one of 'fast', 'careful', got 'slow'"),
        (
            {"callback": "print"},
            f"bench.toml: generators.p.callback: {__name__}.PluginOptions.callback is annotated "
            "collections.abc.Callable[[int], int] | None; a config file cannot set collections.abc.Callable[[int], int]",
        ),
    ],
)
def test_plugin_option_errors_name_the_field(plugin, options, expected):
    with pytest.raises(ConfigError) as info:
        plugin_config(**options)
    assert str(info.value).startswith(expected)


def register_temporarily(monkeypatch, name: str, obj) -> None:
    monkeypatch.setitem(GENERATORS.registered, name, obj)


def test_plugin_whose_annotations_cannot_be_resolved(monkeypatch):
    namespace: dict[str, Any] = {}
    exec(
        "from __future__ import annotations\nfrom dataclasses import dataclass\n@dataclass\nclass Opts:\n    x: Missing = 1\n",
        namespace,
    )
    register_temporarily(monkeypatch, "unresolved", type("G", (Generator,), {"Options": namespace["Opts"]}))
    with pytest.raises(
        ConfigError, match=r"^bench.toml: generators.g: cannot read the field annotations of .*Opts \(NameError: name 'Missing'"
    ):
        config_from_dict({"generators": {"g": {"type": "unresolved", "x": 2}}}, "bench.toml")


def test_plugin_options_that_are_not_a_dataclass(monkeypatch):
    register_temporarily(monkeypatch, "nodataclass", type("G", (Generator,), {"Options": dict}))
    with pytest.raises(
        ConfigError, match=r"^bench.toml: generators.g.type: generator type 'nodataclass' declares Options = <class 'dict'>"
    ):
        config_from_dict({"generators": {"g": {"type": "nodataclass"}}}, "bench.toml")


def test_plugin_own_checks_become_config_errors(monkeypatch):
    @dataclass
    class Checked:
        steps: int = 10

        def __post_init__(self):
            if self.steps % 2:
                raise ValueError(f"steps must be even, got {self.steps}")

    register_temporarily(monkeypatch, "checked", type("G", (Generator,), {"Options": Checked}))
    with pytest.raises(ConfigError) as info:
        config_from_dict({"generators": {"g": {"type": "checked", "steps": 3}}}, "bench.toml")
    assert str(info.value).endswith(
        f"bench.toml: generators.g: rejected by {__name__}.test_plugin_own_checks_become_config_errors.<locals>.Checked: steps must be even, got 3"
    )


def test_plugin_that_cannot_be_imported(monkeypatch):
    monkeypatch.setitem(GENERATORS.builtins, "broken", "xreal_bench_no_such_module:Generator")
    with pytest.raises(ConfigError) as info:
        config_from_dict({"generators": {"b": {"type": "broken"}}}, "bench.toml")
    assert str(info.value) == (
        "bench.toml: generators.b.type: generator type 'broken' cannot be loaded "
        "(ModuleNotFoundError: No module named 'xreal_bench_no_such_module')"
    )


def test_real_is_reserved_for_the_real_images_only():
    assert config_from_dict({"generators": {"real": {}}}).generators["real"].type == "real"
    with pytest.raises(ConfigError, match="generators.real.type: the name 'real' is reserved for the real test images"):
        config_from_dict({"generators": {"real": {"type": "noise"}}})
    assert config_from_dict({"generators": {"oracle": {"type": "real"}}}).generators["oracle"].type == "real"


@pytest.mark.parametrize("flag, value", [("--n-cases", "0"), ("--duplicates", "0.9"), ("--seed", "-1")])
def test_study_flags_are_blamed_for_their_errors(tmp_path, capsys, flag, value):
    key = {"--n-cases": "study.n_cases", "--duplicates": "study.duplicate_fraction", "--seed": "study.seed"}[flag]
    code = main(
        [
            "study",
            "create",
            "--runs",
            str(tmp_path),
            "--out",
            str(tmp_path / "s"),
            f"{flag}={value}",
            "--config",
            str(REPO / "bench.toml"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"config error: {flag}: {key}: expected"), err
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("name", ["..", "../x", "", "a/b", ".hidden", "dr lee"])
@pytest.mark.parametrize("command", ["readers", "generators", "add-reader"])
def test_hostile_names_refused_at_cli_parse(tmp_path, capsys, name, command):
    argv = {
        "readers": ["study", "create", "--runs", str(tmp_path), "--out", str(tmp_path / "s"), "--readers", "ok", name],
        "generators": ["study", "create", "--runs", str(tmp_path), "--out", str(tmp_path / "s"), "--generators", name],
        "add-reader": ["study", "add-reader", str(tmp_path), name],
    }[command]
    what = "generator name" if command == "generators" else "reader name"
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert f"{what} {name!r} is not a valid name: expected {NAME_RULE}" in err and "Traceback" not in err
    assert not (tmp_path / "s").exists()


def test_config_show_prints_the_resolved_config(tmp_path, capsys):
    path = tmp_path / "bench.toml"
    path.write_text("[run]\nseed = 3\n[generators.n]\ntype = 'noise'\n")
    assert main(["config", "show", "--config", str(path), "--set", "generators.n.grid=4"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["source"] == str(path) and shown["run"]["seed"] == 3 and shown["run"]["resolution"] == 256
    assert shown["generators"]["n"] == {
        "type": "noise",
        "enabled": True,
        "batch_size": 0,
        "contrast": 0.15,
        "grid": 4,
        "mean_from_cases": 32,
    }
