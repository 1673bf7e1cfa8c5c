"""Atomic file writes: the project's one temp-file + rename routine, and how OS errors are told.

A file is written to a hidden temp file in its target folder (``.<name>.<random>.tmp``),
fsynced and renamed over the target, so readers see the old file or the complete new one,
never a torn one. On any failure (also Ctrl-C) the temp file is removed and the old file, if
any, is left as it was.

An ``OSError`` raised while writing (disk full, read-only file system, permission denied, a
file where a folder should be ...) keeps its type, errno and text but is tagged by
:func:`file_operation` with the operation and the *target* path (never the temp file), so the
CLI prints one line: ``error: cannot write results/x.json: No space left on device``
(:func:`describe_os_error`).
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

#: Attributes set on a tagged ``OSError``: the operation that failed ("write", "create folder") and its target.
OPERATION, TARGET = "xreal_operation", "xreal_target"


def tag_os_error(exc: OSError, operation: str, path: str | os.PathLike, *, stand_ins: tuple = ()) -> None:
    """Record ``operation`` and ``path`` on an OS-level error (errno set) about ``path`` itself.

    The error is about ``path`` when it names no file or one of ``stand_ins`` (the temp file written in
    its place); an error naming another file, one without errno (a library's message) or one already
    tagged is left as it is. The exception's type, errno and text never change.
    """
    if exc.errno is None or getattr(exc, OPERATION, None) is not None:
        return
    if exc.filename is None or os.fspath(exc.filename) in {os.fspath(s) for s in stand_ins if s is not None}:
        setattr(exc, OPERATION, operation)
        setattr(exc, TARGET, os.fspath(path))


@contextmanager
def file_operation(operation: str, path: str | os.PathLike, *, stand_ins: tuple = ()) -> Iterator[None]:
    """Tag an ``OSError`` raised inside with ``operation`` and ``path`` (see :func:`tag_os_error`)."""
    try:
        yield
    except OSError as exc:
        tag_os_error(exc, operation, path, stand_ins=stand_ins)
        raise


def describe_os_error(exc: OSError) -> str:
    """One line: ``cannot <operation> <path>: <reason>``; an untagged error naming a file says ``access``."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    target = getattr(exc, TARGET, None)
    if target is not None:
        return f"cannot {getattr(exc, OPERATION)} {target}: {reason}"
    if exc.filename is not None:
        name = exc.filename
        return f"cannot access {os.fsdecode(name) if isinstance(name, str | bytes) else name}: {reason}"
    return str(exc) or reason


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside ``path`` to write; on a clean exit fsync it and rename it over ``path``."""
    path = Path(path)
    try:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except FileExistsError as exc:  # a file where the folder should be
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), exc.filename) from None
    except OSError as exc:  # the folder that failed may be an ancestor of path.parent
        tag_os_error(exc, "create folder", exc.filename or path.parent, stand_ins=(exc.filename,))
        raise
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        tag_os_error(exc, "write", path, stand_ins=(exc.filename,))  # mkstemp names its random candidate
        raise
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
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):  # also raised by the caller writing into the temp file
            tag_os_error(exc, "write", path, stand_ins=(tmp, name))
        raise


def write_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> None:
    """Call ``write(fileobj)`` on a binary temp file, then put it in place as :func:`atomic_path` does."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        write(f)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) atomically."""
    write_atomic(path, lambda f: f.write(text.encode()))
