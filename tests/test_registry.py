"""The one Registry: generators and evaluators follow the same unknown-name and duplicate rules,
and a plugin's own weight files appear in `generators list` and `weights list`."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from xreal_bench.generators import Generator, register_generator
from xreal_bench.generators.registry import generator_class
from xreal_bench.metrics.evaluators import build_segmenter, register_evaluator
from xreal_bench.registry import EVALUATORS, GENERATORS, Registry, RegistryError
from xreal_bench.weights import WeightsManager


class Dummy(Generator):
    type_name = "noise"  # clashes with the built-in
    description = "dummy"

    def generate(self, conditions):
        return []


@pytest.mark.parametrize(
    "registry, builtin",
    [(GENERATORS, "noise"), (EVALUATORS["segmenter"], "xrv-pspnet"), (EVALUATORS["feature"], "inception")],
)
def test_same_rules_for_every_registry(registry: Registry, builtin: str):
    with pytest.raises(RegistryError, match=rf"unknown {registry.kind} 'nope'; available: .*{builtin}"):
        registry.get("nope")
    with pytest.raises(RegistryError, match=rf"{registry.kind} '{builtin}' is already defined: built in \("):
        registry.register(builtin, object())
    registry.register("fresh-name", object)
    try:
        assert registry.get("fresh-name") is object and "fresh-name" in registry.names()
        with pytest.raises(RegistryError, match="already defined: registered in-process"):
            registry.register("fresh-name", int)
        registry.register("fresh-name", int, replace=True)
        assert registry.get("fresh-name") is int
    finally:
        registry.unregister("fresh-name")
    assert "fresh-name" not in registry.names()


def test_wrappers_raise_the_registry_error():
    with pytest.raises(RegistryError, match="already defined"):
        register_generator(Dummy)
    with pytest.raises(RegistryError, match="unknown generator 'nope'"):
        generator_class("nope")
    with pytest.raises(RegistryError, match="already defined"):
        register_evaluator("segmenter", "demo-segmenter", lambda **kw: None)
    with pytest.raises(RegistryError, match="unknown segmenter evaluator 'nope'"):
        build_segmenter("nope", weights=WeightsManager("/nonexistent"))


PLUGIN = """
from dataclasses import dataclass

from xreal_bench.generators import Generator
from xreal_bench.weights import Artifact

CHECKPOINT = Artifact(
    name="my-checkpoint",
    path="mine/model.safetensors",
    source="https://example.org/my-model",
    license="CC BY 4.0",
    description="my model's weights",
)


@dataclass
class Options:
    steps: int = 10


class MyGenerator(Generator):
    type_name = "my-model"
    description = "a plugin generator with its own weights"
    inputs = frozenset({"labels"})
    artifacts = (CHECKPOINT,)
    Options = Options

    def generate(self, conditions):
        return []
"""


def write_plugin(root: Path, *, entry_name: str = "my-model") -> None:
    """An installed distribution as importlib.metadata sees it: a module and its dist-info."""
    (root / "my_plugin.py").write_text(textwrap.dedent(PLUGIN))
    info = root / "my_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[xreal_bench.generators]\n{entry_name} = my_plugin:MyGenerator\n")


def cli(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [sys.executable, "-m", "xreal_bench", *args], capture_output=True, text=True, cwd=root, env=env, timeout=120
    )


@pytest.mark.slow
def test_plugin_artifacts_are_listed(tmp_path):
    write_plugin(tmp_path)
    weights = tmp_path / "weights"
    listed = cli(tmp_path, "generators", "list", "--weights-dir", str(weights))
    assert listed.returncode == 0, listed.stderr
    assert "my-model: a plugin generator with its own weights" in listed.stdout
    assert "weights: my-checkpoint (missing)" in listed.stdout

    (weights / "mine").mkdir(parents=True)
    (weights / "mine" / "model.safetensors").write_bytes(b"x" * 10)
    table = cli(tmp_path, "weights", "--dir", str(weights), "list")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    row = next(i for i, line in enumerate(lines) if "my-checkpoint" in line)
    assert lines[row].split()[:2] == ["unverified", "my-checkpoint"] and str(weights / "mine" / "model.safetensors") in lines[row]
    assert "my model's weights; licence: CC BY 4.0" in lines[row + 1]
    assert "used by: generator my-model" in lines[row + 2]
    path = cli(tmp_path, "weights", "--dir", str(weights), "path", "my-checkpoint")
    assert path.stdout.strip() == str(weights / "mine" / "model.safetensors")


@pytest.mark.slow
def test_plugin_named_like_a_builtin_is_refused_by_name(tmp_path):
    write_plugin(tmp_path, entry_name="noise")
    config = tmp_path / "bench.toml"
    config.write_text("[generators.noise]\n")
    result = cli(tmp_path, "generate", "--config", str(config))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "generator 'noise' is defined more than once: built in" in result.stderr
    assert "entry point xreal_bench.generators:noise = my_plugin:MyGenerator (package my-plugin)" in result.stderr
