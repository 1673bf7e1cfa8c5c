"""OS errors (disk full, read-only file system, permission denied, a file where a folder should be)
become one line ``error: cannot <operation> <path>: <reason>`` with a non-zero exit, never a traceback."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest
from mimic_tree import write_mimic_tree
from PIL import Image

from xreal_bench.atomic import describe_os_error, write_atomic, write_text_atomic
from xreal_bench.cli import main
from xreal_bench.data.mimic import scan_mimic


def os_error(code: int, *names) -> OSError:
    return OSError(code, os.strerror(code), *names)


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --- atomic writes tag their errors ---------------------------------------------------------------


def test_disk_full_at_fsync_names_the_target_not_the_temp_file(tmp_path, monkeypatch):
    def full(fd):
        raise os_error(errno.ENOSPC)

    monkeypatch.setattr(os, "fsync", full)
    target = tmp_path / "results.json"
    with pytest.raises(OSError) as err:
        write_text_atomic(target, "{}")
    assert err.value.errno == errno.ENOSPC and type(err.value) is OSError
    assert describe_os_error(err.value) == f"cannot write {target}: No space left on device"
    assert files_in(tmp_path) == []


def test_disk_full_inside_the_writer_names_the_target(tmp_path):
    target = tmp_path / "table.csv"

    def write(f):
        f.write(b"half")
        raise os_error(errno.ENOSPC)

    with pytest.raises(OSError) as err:
        write_atomic(target, write)
    assert describe_os_error(err.value) == f"cannot write {target}: No space left on device"


def test_read_only_rename_names_the_target(tmp_path, monkeypatch):
    target = tmp_path / "leaderboard.md"

    def read_only(src, dst):
        raise os_error(errno.EROFS, os.fspath(src), None, os.fspath(dst))

    monkeypatch.setattr(os, "replace", read_only)
    with pytest.raises(OSError) as err:
        write_text_atomic(target, "x")
    assert str(err.value).startswith("[Errno 30] Read-only file system: ")  # the exception itself is unchanged
    assert describe_os_error(err.value) == f"cannot write {target}: Read-only file system"
    assert files_in(tmp_path) == []


def test_a_file_where_the_folder_should_be(tmp_path):
    blocker = tmp_path / "tables"
    blocker.write_text("not a folder")
    with pytest.raises(NotADirectoryError) as err:
        write_text_atomic(blocker / "main.md", "x")
    assert describe_os_error(err.value) == f"cannot create folder {blocker}: Not a directory"


def test_an_error_about_another_file_keeps_that_file(tmp_path):
    other = tmp_path / "source.bin"

    def copy(f):
        f.write(other.read_bytes())

    with pytest.raises(FileNotFoundError) as err:
        write_atomic(tmp_path / "copy.bin", copy)
    assert describe_os_error(err.value) == f"cannot access {other}: No such file or directory"


def test_a_library_message_is_left_as_it_is(tmp_path):
    def encoder(f):
        raise OSError("encoder died")

    with pytest.raises(OSError, match="^encoder died$") as err:
        write_atomic(tmp_path / "x.png", encoder)
    assert describe_os_error(err.value) == "encoder died"


# --- the CLI prints one line ------------------------------------------------------------------------


@pytest.fixture
def import_setup(tmp_path, monkeypatch):
    """A MIMIC tree, a folder with one image for a kept case, and the `import` command line."""
    monkeypatch.chdir(tmp_path)
    tree = write_mimic_tree(tmp_path / "mimic")
    case = scan_mimic(tree.root, progress=False).cases[0]
    source = tmp_path / "incoming"
    source.mkdir()
    Image.fromarray(np.full((40, 40), 90, np.uint8)).save(source / f"{case.case_id}.png")

    def argv(out: Path) -> list[str]:
        return [
            "import", "--generator", "ext", "--from", str(source), "--out", str(out),
            "--set", "dataset.kind='mimic'", "--set", f"dataset.root='{tree.root}'", "--set", "run.resolution=192",
        ]  # fmt: skip

    return argv, case


def one_line_error(capsys) -> str:
    """The one ``error:`` line on stderr; nothing else there but progress bars."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip() and "img/s]" not in line]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_cli_import_works_without_faults(import_setup, tmp_path, capsys):
    argv, case = import_setup
    assert main(argv(tmp_path / "run")) == 0
    assert "ext: imported 1 image(s)" in capsys.readouterr().out


def test_cli_disk_full_is_one_line(import_setup, tmp_path, capsys, monkeypatch):
    argv, case = import_setup

    def full(fd):
        raise os_error(errno.ENOSPC)

    monkeypatch.setattr(os, "fsync", full)
    assert main(argv(tmp_path / "run")) == 1
    line = one_line_error(capsys)
    # the first file import writes is the folder's identity.json (before any image)
    assert line == f"error: cannot write {tmp_path / 'run' / 'ext' / 'identity.json'}: No space left on device"


def test_cli_read_only_file_system_is_one_line(import_setup, tmp_path, capsys, monkeypatch):
    argv, case = import_setup

    def read_only(src, dst):
        raise os_error(errno.EROFS, os.fspath(src), None, os.fspath(dst))

    monkeypatch.setattr(os, "replace", read_only)
    assert main(argv(tmp_path / "run")) == 1
    assert one_line_error(capsys) == f"error: cannot write {tmp_path / 'run' / 'ext' / 'identity.json'}: Read-only file system"


def test_cli_output_under_a_file_is_one_line(import_setup, tmp_path, capsys):
    argv, case = import_setup
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    assert main(argv(blocker / "run")) == 1
    line = one_line_error(capsys)
    assert line.startswith("error: cannot ") and str(blocker) in line and line.endswith(": Not a directory")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
def test_cli_permission_denied_is_one_line(import_setup, tmp_path, capsys):
    argv, case = import_setup
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        assert main(argv(locked / "run")) == 1
    finally:
        locked.chmod(0o755)
    line = one_line_error(capsys)
    assert line.startswith("error: cannot ") and str(locked) in line and line.endswith(": Permission denied")


def test_cli_unreadable_dataset_file_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tree = write_mimic_tree(tmp_path / "mimic")
    split = tree.root / "mimic-cxr-2.0.0-split.csv"
    real_read = Path.read_bytes

    def denied(self):
        if self == split:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
        return real_read(self)

    monkeypatch.setattr(Path, "read_bytes", denied)
    assert main(["data", "summary", "--root", str(tree.root)]) == 2
    assert one_line_error(capsys) == f"error: cannot read {split}: Permission denied"


def test_manifest_append_names_the_manifest(tmp_path, monkeypatch):
    from xreal_bench.rundir import ManifestEntry, append_line

    entry = ManifestEntry(generator="g", case_id="c", sample_index=0, seed=1, status="ok", file="images/c_0.png")
    manifest = tmp_path / "g" / "manifest.jsonl"
    append_line(manifest, entry)

    def full(fd, data):
        raise os_error(errno.ENOSPC)

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(OSError) as caught:
        append_line(manifest, entry)
    assert describe_os_error(caught.value) == f"cannot append to {manifest}: No space left on device"
    (tmp_path / "h").write_text("a file where the folder should be")
    with pytest.raises(OSError) as caught:
        append_line(tmp_path / "h" / "manifest.jsonl", entry)
    assert describe_os_error(caught.value).startswith(f"cannot create folder {tmp_path / 'h'}: ")
