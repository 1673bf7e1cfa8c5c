"""Atomic writes: a failure in the middle of a write leaves the old file intact and no temp file behind."""

from __future__ import annotations

import io
import urllib.request

import numpy as np
import pytest
from PIL import Image

from xreal_bench import rundir
from xreal_bench.atomic import atomic_path, write_atomic
from xreal_bench.imaging import load_grayscale, save_png
from xreal_bench.rundir import GeneratorDir, ManifestEntry, append_line
from xreal_bench.weights import WeightsManager


def files_in(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_write_atomic_replaces_the_file(tmp_path):
    path = tmp_path / "sub" / "table.csv"
    write_atomic(path, lambda f: f.write(b"old"))
    write_atomic(path, lambda f: f.write(b"new"))
    assert path.read_bytes() == b"new"
    assert files_in(path.parent) == ["table.csv"]


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_failure_mid_write_keeps_the_old_file_and_no_temp(tmp_path, error):
    path = tmp_path / "table.csv"
    path.write_bytes(b"old content")

    def interrupted(f):
        f.write(b"half of the new ")
        raise error("stopped")

    with pytest.raises(error):
        write_atomic(path, interrupted)
    assert path.read_bytes() == b"old content"
    assert files_in(tmp_path) == ["table.csv"]
    with pytest.raises(error):
        write_atomic(tmp_path / "new.csv", interrupted)
    assert files_in(tmp_path) == ["table.csv"]  # no new file, no temp file


def test_atomic_path_writes_beside_the_target_and_renames(tmp_path):
    path = tmp_path / "cache.npz"
    with atomic_path(path) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".cache.npz.") and tmp.name.endswith(".tmp")
        with open(tmp, "wb") as f:
            np.savez(f, x=np.arange(3))
        assert not path.exists()
    with np.load(path) as data:
        assert data["x"].tolist() == [0, 1, 2]
    assert files_in(tmp_path) == ["cache.npz"]


def test_a_failed_rename_removes_the_temp_file(tmp_path):
    target = tmp_path / "busy"
    (target / "inside").mkdir(parents=True)  # a non-empty folder cannot be replaced by a file
    with pytest.raises(OSError):
        write_atomic(target, lambda f: f.write(b"data"))
    assert files_in(tmp_path) == ["busy"]


def test_save_png_failing_mid_encode_keeps_the_old_image(tmp_path, monkeypatch):
    path = tmp_path / "c1_0.png"
    save_png(path, np.full((16, 16), 7, np.uint8))

    def broken_save(self, fp, *args, **kwargs):
        fp.write(b"\x89PNG half")
        raise OSError("encoder died")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError, match="encoder died"):
        save_png(path, np.full((16, 16), 200, np.uint8))
    assert (load_grayscale(path) * 255).round().max() == 7
    assert files_in(tmp_path) == ["c1_0.png"]


def test_consolidate_failing_keeps_the_old_manifest(tmp_path, monkeypatch):
    gdir = GeneratorDir(tmp_path, "g")
    for k in range(3):
        entry = ManifestEntry(generator="g", case_id="c", sample_index=k, seed=k, status="ok", file=f"images/c_{k}.png")
        append_line(gdir.manifest, entry)
    before = gdir.manifest.read_bytes()
    calls = []

    def failing_line(entry):
        calls.append(entry)
        if len(calls) == 2:
            raise OSError("stopped while serialising")
        return "{}\n"

    monkeypatch.setattr(rundir, "manifest_line", failing_line)
    with pytest.raises(OSError):
        gdir.consolidate()
    assert gdir.manifest.read_bytes() == before
    assert files_in(gdir.root) == ["manifest.jsonl"]


def test_interrupted_download_leaves_no_partial_file(tmp_path, monkeypatch):
    class Dropping(io.RawIOBase):
        """A response that delivers some bytes, then loses the connection."""

        sent = False

        def readinto(self, buffer):
            if self.sent:
                raise ConnectionResetError("connection reset by peer")
            self.sent = True
            buffer[:4] = b"abcd"
            return 4

    monkeypatch.setattr(urllib.request, "urlopen", lambda *args, **kwargs: Dropping())
    manager = WeightsManager(tmp_path)
    target = manager.path("inception-fid")
    with pytest.raises(ConnectionError, match="connection reset by peer"):
        manager.fetch("inception-fid")
    assert not target.exists()
    assert files_in(target.parent) == []
