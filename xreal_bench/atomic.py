"""Atomic file writes: the project's one temp-file + rename routine.

A file is written to a hidden temp file in its target folder (``.<name>.<random>.tmp``),
fsynced and renamed over the target, so readers see the old file or the complete new one,
never a torn one. On any failure (also Ctrl-C) the temp file is removed and the old file, if
any, is left as it was.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside ``path`` to write; on a clean exit fsync it and rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> None:
    """Call ``write(fileobj)`` on a binary temp file, then put it in place as :func:`atomic_path` does."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        write(f)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) atomically."""
    write_atomic(path, lambda f: f.write(text.encode()))
