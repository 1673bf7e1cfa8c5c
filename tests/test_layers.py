"""Layers import one way: the core (types, config, data, conditioning, weights, run directory,
registries) never imports the stages above it — not at import time, not inside a function. It
reaches generators and evaluators only through :mod:`xreal_bench.registry`, by name."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import xreal_bench

PACKAGE = Path(xreal_bench.__file__).parent
CORE = [
    "xreal_bench.types",
    "xreal_bench.labels",
    "xreal_bench.errors",
    "xreal_bench.validation",
    "xreal_bench.config",
    "xreal_bench.registry",
    "xreal_bench.weights",
    "xreal_bench.safe_load",
    "xreal_bench.imaging",
    "xreal_bench.atomic",
    "xreal_bench.rundir",
    "xreal_bench.identity",
    "xreal_bench.names",
    "xreal_bench.coverage",
    "xreal_bench.tables",
    "xreal_bench.data",
    "xreal_bench.data.dataset",
    "xreal_bench.data.mimic",
    "xreal_bench.data.csvfile",
    "xreal_bench.data.reports",
    "xreal_bench.data.summary",
    "xreal_bench.data.training",
    "xreal_bench.conditioning",
    "xreal_bench.conditioning.anatomy",
    "xreal_bench.conditioning.boxes",
    "xreal_bench.conditioning.builder",
    "xreal_bench.conditioning.prepare",
    "xreal_bench.cases",
    "xreal_bench.subgroups",
    # the demo's data set is data-level: rendering phantoms needs nothing above the core
    "xreal_bench.demo.synthetic",
    "xreal_bench.demo.phantoms",
]
STAGES = (
    "xreal_bench.generators",
    "xreal_bench.metrics",
    "xreal_bench.reports",
    "xreal_bench.reader_study",
    "xreal_bench.harness",
    "xreal_bench.evaluation",
    "xreal_bench.pipeline",
    "xreal_bench.importer",
    "xreal_bench.results",
    "xreal_bench.commands",
    "xreal_bench.cli",
    "xreal_bench.demo.generator",
    "xreal_bench.demo.evaluators",
    "xreal_bench.demo.command",
    "xreal_bench.demo.study",
)


def module_file(name: str) -> Path:
    parts = name.split(".")[1:]
    folder = PACKAGE.joinpath(*parts)
    return folder / "__init__.py" if folder.is_dir() else folder.with_suffix(".py")


def imported_names(path: Path) -> set[str]:
    """Every module an ``import`` / ``from ... import`` anywhere in ``path`` names (function bodies included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def is_stage(name: str) -> bool:
    return any(name == stage or name.startswith(stage + ".") for stage in STAGES)


def test_core_sources_name_no_stage_module():
    offending = {core: sorted(name for name in imported_names(module_file(core)) if is_stage(name)) for core in CORE}
    assert {k: v for k, v in offending.items() if v} == {}


def test_importing_the_core_loads_no_stage_module():
    code = (
        "import importlib, json, sys\n"
        f"for name in {CORE!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert [name for name in loaded if is_stage(name)] == []


def test_scanner_sees_imports_inside_functions(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from xreal_bench.metrics.evaluators import build_segmenter\n")
    assert any(is_stage(name) for name in imported_names(probe))
