"""`xreal-bench generate` as users run it: kill -9 and resume, torchrun world sizes, bad input."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from mimic_tree import write_mimic_tree

from xreal_bench.cli import main
from xreal_bench.rundir import GeneratorDir

SLOW_PLUGIN = textwrap.dedent(
    '''
    """A deliberately slow, seeded generator registered in-process (like a plugin)."""
    import time

    import torch

    from xreal_bench.generators import Generator, register_generator


    @register_generator
    class Slow(Generator):
        type_name = "test-slow"
        inputs = frozenset()

        def generate(self, conditions):
            time.sleep(0.15 * len(conditions))
            return [torch.rand(1, 200, 200, generator=torch.Generator().manual_seed(c.seed)) for c in conditions]
    '''
)


def write_config(path: Path, data: Path, out: Path, generators: str) -> Path:
    path.write_text(
        textwrap.dedent(
            f"""
            [dataset]
            kind = "mimic"
            root = "{data}"
            split = "test"
            views = ["AP", "PA", "UNKNOWN"]
            [conditioning]
            anatomy = "none"
            [run]
            out = "{out}"
            batch_size = 2
            samples_per_condition = 2
            resolution = 192
            """
        )
        + generators
    )
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mimic")
    write_mimic_tree(root, n_random=10, seed=3)
    return root


def hashes(out: Path, name: str) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(GeneratorDir(out, name).images.glob("*"))}


def runner(tmp_path: Path, config: Path) -> list[str]:
    script = tmp_path / "run_generate.py"
    (tmp_path / "slow_plugin.py").write_text(SLOW_PLUGIN)
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(tmp_path)!r})\n"
        "import slow_plugin  # noqa: F401\n"
        "from xreal_bench.cli import main\n"
        f"sys.exit(main(['generate', '--config', {str(config)!r}, '--quiet']))\n"
    )
    return [sys.executable, str(script)]


def test_kill_9_then_resume_is_byte_identical(tmp_path, data):
    gens = '[generators.slow]\ntype = "test-slow"\n'
    reference = write_config(tmp_path / "ref.toml", data, tmp_path / "ref", gens)
    subprocess.run(runner(tmp_path, reference), check=True, env={**os.environ, "PYTHONPATH": str(Path.cwd())})

    killed = write_config(tmp_path / "killed.toml", data, tmp_path / "killed", gens)
    cmd = runner(tmp_path, killed)
    proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONPATH": str(Path.cwd())})
    manifest = tmp_path / "killed" / "slow" / "manifest.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline and (not manifest.exists() or len(manifest.read_text().splitlines()) < 5):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = hashes(tmp_path / "killed", "slow")
    total = len(hashes(tmp_path / "ref", "slow"))
    assert 5 <= len([n for n in partial if not n.startswith(".")]) < total, "the kill must land mid-run"

    subprocess.run(cmd, check=True, env={**os.environ, "PYTHONPATH": str(Path.cwd())})
    assert hashes(tmp_path / "killed", "slow") == hashes(tmp_path / "ref", "slow")
    lines = manifest.read_text().splitlines()
    assert len(lines) == total  # one line per image, no duplicates
    assert not list((tmp_path / "killed" / "slow" / "images").glob(".*"))  # no partial files


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(config: Path, nproc: int) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}", "--master-addr=127.0.0.1",
        f"--master-port={free_port()}", "-m", "xreal_bench", "generate", "--config", str(config), "--quiet",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path.cwd())}
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_torchrun_two_ranks_equals_single_process_and_resumes_across_world_sizes(tmp_path, data):
    gens = "[generators.noise]\n[generators.shuffled]\n"
    single = write_config(tmp_path / "single.toml", data, tmp_path / "single", gens)
    assert main(["generate", "--config", str(single), "--quiet"]) == 0

    two = write_config(tmp_path / "two.toml", data, tmp_path / "two", gens)
    result = torchrun(two, 2)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "two" / "cases.jsonl").read_text() == (tmp_path / "single" / "cases.jsonl").read_text()  # all ranks' cases
    for name in ("noise", "shuffled"):
        assert hashes(tmp_path / "two", name) == hashes(tmp_path / "single", name)
        gdir = GeneratorDir(tmp_path / "two", name)
        assert not list(gdir.root.glob("manifest.rank*.jsonl"))  # rank parts consolidated
        assert {e.rank for e in gdir.entries().values()} == {0, 1}

    # Resume with another world size: drop half the images of a 2-rank run, finish with 1 process.
    gdir = GeneratorDir(tmp_path / "two", "noise")
    for path in sorted(gdir.images.glob("*.png"))[::2]:
        path.unlink()
    assert main(["generate", "--config", str(two), "--quiet"]) == 0
    assert hashes(tmp_path / "two", "noise") == hashes(tmp_path / "single", "noise")


def test_cli_leaves_the_process_group_even_when_the_command_fails(tmp_path, data):
    """An undestroyed gloo group aborted rank 0 at interpreter exit in CI; main() must destroy it."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        config = write_config(tmp_path / "bad.toml", data, tmp_path / "bad", "[generators.dalle]\n")
        assert main(["generate", "--config", str(config), "--quiet"]) == 2
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_unknown_generator_lists_available(tmp_path, data, capsys):
    config = write_config(tmp_path / "bad.toml", data, tmp_path / "bad", "[generators.dalle]\n")
    assert main(["generate", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "generators.dalle: unknown generator 'dalle'" in err and "noise" in err and "xreal" in err


def test_generator_needing_anatomy_refused_before_generation(tmp_path, data, capsys):
    config = write_config(tmp_path / "anat.toml", data, tmp_path / "anat", "[generators.phantom]\n")
    assert main(["generate", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "anatomy" in err and "conditioning.anatomy" in err
    assert not list((tmp_path / "anat").rglob("*.png"))
