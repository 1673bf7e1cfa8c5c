"""One namespace: the repository's generators/, metrics/, reader_study/ and reports/ folders ship and
import only as ``xreal_bench.*``, from a wheel, from the editable install, and under ``python -m`` and
``torchrun -m``.

Every import check runs in a subprocess whose working directory holds decoy top-level packages named
like the folders; a decoy leaves a marker file and raises when imported, so an import that escapes the
namespace (or a working directory that shadows it) cannot pass unnoticed, even where a caller swallows
the exception."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import textwrap
import tomllib
import zipfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: Repository folder -> the package it installs as.
ROOTS = {
    "xreal_bench": "xreal_bench",
    "generators": "xreal_bench.generators",
    "metrics": "xreal_bench.metrics",
    "reader_study": "xreal_bench.reader_study",
    "reports": "xreal_bench.reports",
}
DECOYS = ("generators", "metrics", "reader_study", "reports")
#: Modules that run a program when imported (the CLI entry and the Streamlit script).
PROGRAMS = {"xreal_bench.__main__", "xreal_bench.reader_study.app"}
#: Folders whose sources may use the bare names (tests use them as decoys) or are not ours.
NOT_SOURCES = {"tests", "docs", "build", "dist", "runs", "__pycache__"}
#: Calls whose first argument names a module to import.
IMPORTING_CALLS = {"import_module", "__import__", "patch", "find_spec", "resolve_name"}

IMPORTED = re.compile(r"import '([\w.]+)' # ")
#: How PYTHONVERBOSE's own lines start (left out of failure messages).
VERBOSE = ("#", "import ", "Processing ", "Adding directory", "Python 3.", 'Type "help"')

DECOY_INIT = textwrap.dedent(
    """
    from pathlib import Path

    Path(__file__).with_name("IMPORTED").touch()
    raise RuntimeError(f"decoy top-level package {__name__!r} imported from {__file__}")
    """
)

IMPORT_ALL = textwrap.dedent(
    """
    import importlib, json, sys

    files = {name: importlib.import_module(name).__file__ for name in json.loads(sys.argv[1])}
    print(json.dumps({"files": files, "bare": sorted(set(sys.modules) & set(json.loads(sys.argv[2])))}))
    """
)


def shipped_files() -> dict[str, Path]:
    """Every file under the five folders, keyed by its path in an installed tree."""
    files = {}
    for root, package in ROOTS.items():
        for path in (REPO / root).rglob("*"):
            rel = path.relative_to(REPO / root).parts
            if path.is_file() and "__pycache__" not in rel and not any(p.startswith(".") for p in rel):
                files["/".join((*package.split("."), *rel))] = path
    return files


def modules() -> dict[str, str]:
    """Importable module name -> its file's path in an installed tree (programs left out)."""
    names = {k.removesuffix(".py").removesuffix("/__init__").replace("/", "."): k for k in shipped_files() if k.endswith(".py")}
    return {name: key for name, key in sorted(names.items()) if name not in PROGRAMS}


@pytest.fixture
def decoy_cwd(tmp_path: Path) -> Path:
    """A working directory holding a decoy package for each bare folder name."""
    cwd = tmp_path / "cwd"
    for name in DECOYS:
        (cwd / name).mkdir(parents=True)
        (cwd / name / "__init__.py").write_text(DECOY_INIT)
    return cwd


def assert_decoys_untouched(cwd: Path) -> None:
    assert sorted(p.parent.name for p in cwd.glob("*/IMPORTED")) == [], "top-level decoy packages were imported"


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return {**env, "OMP_NUM_THREADS": "1", **extra}


def import_all(cwd: Path, env: dict[str, str]) -> dict[str, Path]:
    """Import every module in a fresh interpreter started in ``cwd``; returns each module's resolved file."""
    cmd = [sys.executable, "-c", IMPORT_ALL, json.dumps(list(modules())), json.dumps(DECOYS)]
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["bare"] == []
    return {name: Path(file).resolve() for name, file in out["files"].items()}


def traced(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[str, set[str]]:
    """Run ``cmd`` in ``cwd`` with every Python process logging its imports; returns stdout and the imported modules.

    PYTHONVERBOSE rather than PYTHONPROFILEIMPORTTIME: the latter misses modules loaded by importlib.import_module,
    as the CLI loads its command modules."""
    result = subprocess.run(cmd, cwd=cwd, env={**env, "PYTHONVERBOSE": "1"}, capture_output=True, text=True, timeout=300)
    lines = result.stderr.splitlines()
    assert result.returncode == 0, "\n".join(line for line in lines if not line.startswith(VERBOSE)).strip()[-3000:]
    return result.stdout, {m.group(1) for line in lines if (m := IMPORTED.match(line))}


def assert_namespaced(imported: set[str], expected: set[str]) -> None:
    assert expected <= imported, sorted(expected - imported)
    assert sorted(m for m in imported if m.split(".")[0] in DECOYS) == []


def editable() -> bool:
    """Whether pip installed xreal-bench in editable mode (PEP 610). Not ``metadata.distribution``: run from the
    checkout, that finds the checkout's own xreal_bench.egg-info first, which has no direct_url.json."""
    urls = (d.read_text("direct_url.json") for d in metadata.distributions(name="xreal-bench"))
    return any(json.loads(url).get("dir_info", {}).get("editable", False) for url in urls if url)


# ----------------------------------------------------------------------------- static checks


def test_pyproject_lists_exactly_the_package_folders():
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert setuptools["package-dir"] == {package: root for root, package in ROOTS.items()}
    listed = setuptools["packages"]
    assert len(listed) == len(set(listed))
    inits = [init for root in ROOTS for init in (REPO / root).rglob("__init__.py")]
    found = {".".join((ROOTS[init.relative_to(REPO).parts[0]], *init.parent.relative_to(REPO).parts[1:])) for init in inits}
    assert sorted(found - set(listed)) == [], "package folders missing from [tool.setuptools] packages"
    assert sorted(set(listed) - found) == [], "[tool.setuptools] packages without a folder holding __init__.py"
    # A folder of modules without __init__.py would be an implicit namespace package: not installed.
    loose = {p.parent for root in ROOTS for p in (REPO / root).rglob("*.py")} - {i.parent for i in inits}
    assert sorted(str(p.relative_to(REPO)) for p in loose) == []


def sources() -> Iterator[Path]:
    for folder, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in NOT_SOURCES and not d.startswith(".")]
        yield from (Path(folder) / f for f in files if f.endswith(".py"))


def bare_imports(path: Path) -> list[tuple[int, str]]:
    """Imports of a bare folder name, as (line, code): statements, and calls such as ``mock.patch("generators.x.y")``."""
    hits = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Call) and node.args:
            func, arg = node.func, node.args[0]
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if isinstance(arg, ast.JoinedStr) and arg.values:
                arg = arg.values[0]
            if called in IMPORTING_CALLS and isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                names = [arg.value]
        hits += [(node.lineno, ast.unparse(node)) for name in names if name.split(".")[0] in DECOYS]
    return sorted(hits)


def test_no_source_imports_a_bare_folder_name():
    scanned = list(sources())
    assert REPO / "metrics" / "fid.py" in scanned and REPO / "benchmarks" / "study_load.py" in scanned
    assert [f"{p.relative_to(REPO)}:{line}: {code}" for p in scanned for line, code in bare_imports(p)] == []


def test_the_scan_finds_bare_imports(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import metrics.fid\nfrom reports import tables\nfrom .metrics import x\nimport xreal_bench.metrics\n"
        "mock.patch(f'generators.{m}.require_weights')\nimportlib.import_module('reader_study.design')\n"
        "mock.patch.object(metrics, 'x')\nprint('generators.noise')\n"
    )
    assert [line for line, _ in bare_imports(bad)] == [1, 2, 5, 6]


# ----------------------------------------------------------------------------- (a) the wheel


def pip(*args: str) -> None:
    result = subprocess.run([sys.executable, "-m", "pip", *args, "--no-index", "-q"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]


@pytest.mark.slow
def test_wheel_ships_one_namespace_and_its_install_imports_from_itself(tmp_path, decoy_cwd):
    src = tmp_path / "src"  # build from a copy: an in-tree build writes build/ and *.egg-info into the checkout
    for root in ROOTS:
        shutil.copytree(REPO / root, src / root, ignore=shutil.ignore_patterns("__pycache__", ".*"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), str(src))
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (dist_info,) = {n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info")}
        entry_points = archive.read(f"{dist_info}/entry_points.txt").decode()

    assert {n.split("/")[0] for n in names} == {"xreal_bench", dist_info}  # no top-level generators/, metrics/, ...
    assert "xreal-bench = xreal_bench.cli:main" in entry_points
    content = {n for n in names if not n.startswith(dist_info)}
    assert {
        "xreal_bench/generators/base.py",
        "xreal_bench/generators/diffusion/sampler.py",
        "xreal_bench/metrics/evaluators/registry.py",
        "xreal_bench/reader_study/viewer.html",
        "xreal_bench/reports/leaderboard.py",
        "xreal_bench/demo/weights/demo-classifier.safetensors",
        "xreal_bench/demo/weights/demo-segmenter.safetensors",
    } <= content
    assert sorted(set(shipped_files()) - content) == [], "files of the package folders missing from the wheel"
    assert sorted(content - set(shipped_files())) == []

    target = tmp_path / "target"
    pip("install", "--no-deps", "--target", str(target), str(wheel))
    # The venv's editable finder stays on sys.meta_path after PYTHONPATH's entries: it would quietly serve
    # a subpackage the wheel lacks from the checkout, so each module's file is checked, not just the import.
    files = import_all(decoy_cwd, child_env(PYTHONPATH=str(target)))
    expected = {name: (target / key).resolve() for name, key in modules().items()}
    assert {n: f for n, f in files.items() if f != expected[n]} == {}
    assert_decoys_untouched(decoy_cwd)


# ----------------------------------------------------------------------------- (b) the editable install


@pytest.mark.slow
@pytest.mark.skipif(not editable(), reason="xreal-bench is not installed in editable mode here")
def test_editable_install_resolves_every_module_into_the_checkout(decoy_cwd):
    files = import_all(decoy_cwd, child_env())
    shipped = shipped_files()
    expected = {name: shipped[key].resolve() for name, key in modules().items()}
    assert files["xreal_bench.metrics.fid"] == REPO / "metrics" / "fid.py"
    assert files["xreal_bench.reader_study.design"] == REPO / "reader_study" / "design.py"
    assert {n: f for n, f in files.items() if f != expected[n]} == {}
    assert_decoys_untouched(decoy_cwd)


def test_python_m_cli_help_and_generators_list_from_a_decoy_folder(decoy_cwd):
    out, imported = traced([sys.executable, "-m", "xreal_bench", "--help"], decoy_cwd, child_env())
    assert "generators" in out and "torchrun" in out
    assert_namespaced(imported, {"xreal_bench.cli", "xreal_bench.commands.generators", "xreal_bench.reader_study.cli"})

    out, imported = traced([sys.executable, "-m", "xreal_bench", "generators", "list"], decoy_cwd, child_env())
    assert "phantom:" in out and "xreal:" in out and "cannot load" not in out
    assert_namespaced(imported, {"xreal_bench.generators.registry", "xreal_bench.generators.xreal"})
    assert_decoys_untouched(decoy_cwd)


# ----------------------------------------------------------------------------- (c) python -m and torchrun -m


RUN_CONFIG = """
[dataset]
kind = "synthetic"
root = "{out}/data"
views = ["AP", "PA"]
synthetic = {{ n_subjects = 8 }}
[conditioning]
anatomy = "folder"
anatomy_dir = "{out}/data/anatomy"
boxes_csv = "{out}/data/ms-cxr-boxes.csv"
boxes_format = "ms-cxr"
box_fallback = "anatomy"
[generators.phantom]
[generators.noise]
[metrics]
evaluators = "demo"
enabled = ["fid", "ms_ssim", "dice"]
bootstrap = 10
fid_bootstrap = 5
min_subset_n = 2
num_workers = 0
[run]
out = "{out}"
samples_per_condition = 1
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_python_m_run_and_torchrun_m_evaluate_from_a_decoy_folder(tmp_path, decoy_cwd):
    out = tmp_path / "run"
    config = tmp_path / "bench.toml"
    config.write_text(RUN_CONFIG.format(out=out))

    run = [sys.executable, "-m", "xreal_bench", "run", "--config", str(config), "--quiet"]
    stdout, imported = traced(run, decoy_cwd, child_env())
    assert "| phantom |" in stdout and (out / "results.csv").is_file()
    assert_namespaced(imported, {"xreal_bench.generators.reference", "xreal_bench.metrics.engine", "xreal_bench.reports.tables"})

    (out / "results.csv").unlink()
    torchrun = [
        str(Path(sys.executable).with_name("torchrun")), "--nproc-per-node=1", "--master-addr=127.0.0.1",
        f"--master-port={free_port()}", "-m", "xreal_bench", "evaluate", "--config", str(config), "--quiet",
    ]  # fmt: skip
    stdout, imported = traced(torchrun, decoy_cwd, child_env())
    assert "| noise |" in stdout and (out / "results.csv").is_file()
    assert_namespaced(imported, {"xreal_bench.metrics.engine", "xreal_bench.metrics.scoring", "xreal_bench.generators.registry"})
    assert_decoys_untouched(decoy_cwd)
