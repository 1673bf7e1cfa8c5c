"""Reading the dataset's CSV files with errors that name the file and the line.

Every fault is a :class:`DatasetError` (printed without a traceback): a truncated or damaged
``.gz`` stream (with how much could be read), text that is not UTF-8, a row with more fields
than the header or an unclosed quote, a blank key, an id that is not an integer, conflicting
duplicate rows. Line numbers are physical lines of the (decompressed) file, the header being
line 1; every frame returned carries them in its :data:`LINE` column.
"""

from __future__ import annotations

import io
import re
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from xreal_bench.errors import UserFacingError
from xreal_bench.names import NAME_PATTERN, NAME_RULE

#: Column of every frame from :func:`read_csv`: the row's line in the file.
LINE = "_line"
INTEGER = re.compile(r"\d+")
INTEGRAL_FLOAT = re.compile(r"(\d+)\.0*")
CHUNK = 1 << 12  # compressed bytes per step: damage loses at most one step's output
GZIP_WBITS = 16 + zlib.MAX_WBITS
EXAMPLES = 5


class DatasetError(UserFacingError):
    """The dataset folder or one of its CSVs is missing or malformed."""


def find_csv(folder: Path, name: str) -> Path | None:
    """``folder/name`` or ``folder/name.gz``, whichever exists (plain first)."""
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def read_bytes(path: Path) -> bytes:
    """The file's bytes, decompressed when its name ends in ``.gz``."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc.strerror or exc}") from None
    return gunzip(path, raw) if path.suffix == ".gz" else raw


def gunzip(path: Path, raw: bytes) -> bytes:
    """Decompress every gzip member, or say where the stream is damaged (header, data, checksum, end)."""
    out = bytearray()
    stream = zlib.decompressobj(GZIP_WBITS)
    try:
        for start in range(0, len(raw), CHUNK):
            out += stream.decompress(raw[start : start + CHUNK])
            while stream.eof and stream.unused_data:  # a further gzip member
                rest, stream = stream.unused_data, zlib.decompressobj(GZIP_WBITS)
                out += stream.decompress(rest)
    except zlib.error as exc:
        raise DatasetError(f"{path}: {gzip_damage(str(exc), out)} — download the file again") from None
    if not stream.eof:
        raise DatasetError(
            f"{path}: truncated gzip file: the data ends after line {line_count(out)} "
            f"({len(out):,} bytes decompressed) — download the file again"
        )
    return bytes(out)


def gzip_damage(reason: str, done: bytearray) -> str:
    if "header check" in reason and not done:
        return f"not a gzip file ({reason})"
    if "data check" in reason or "length check" in reason:
        return f"damaged gzip file: its checksum does not match, the content is corrupt ({reason})"
    return f"damaged gzip file ({reason}): decoding fails after line {line_count(done)}"


def line_count(data: bytes | bytearray) -> int:
    """Complete lines in ``data``."""
    return data.count(b"\n")


def decode(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DatasetError(f"{path}, line {line}: not UTF-8 text (byte {data[exc.start]:#04x})") from None


def parser_message(path: Path, exc: Exception) -> str:
    text = str(exc)
    if found := re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", text):
        expected, line, saw = found.groups()
        return f"{path}, line {line}: {saw} fields where the header has {expected}"
    if found := re.search(r"EOF inside string starting at row (\d+)", text):
        return f"{path}, line {int(found[1]) + 1}: a quote opened here is never closed"
    return f"{path}: malformed CSV ({text})"


def read_csv(
    path: Path,
    required: Iterable[str],
    text: Iterable[str],
    *,
    keys: Sequence[str] = (),
    ids: Sequence[str] = (),
    file_names: Sequence[str] = (),
    notes: list[str] | None = None,
) -> pd.DataFrame:
    """Read a CSV (gzip inferred from the name) with its line numbers in :data:`LINE`.

    ``text`` columns stay strings (blank = NaN), required ones are stripped; ``keys`` must not be
    blank; ``ids`` must be integers (integral floats are normalised, noted in ``notes``);
    ``file_names`` must follow the safe-name rule (they become file names).
    """
    required, text = tuple(required), tuple(text)
    content = decode(path, read_bytes(path))
    try:
        frame = pd.read_csv(io.StringIO(content), dtype=dict.fromkeys(text, str), skip_blank_lines=False)
    except pd.errors.EmptyDataError:
        raise DatasetError(f"{path}: the file is empty (no header line)") from None
    except pd.errors.ParserError as exc:
        raise DatasetError(parser_message(path, exc)) from None
    except ValueError as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from None
    lacking = [c for c in required if c not in frame.columns]
    if lacking:
        raise DatasetError(f"{path}: missing column(s) {', '.join(lacking)} (found: {', '.join(map(str, frame.columns))})")
    blank_line = frame.isna().all(axis=1).to_numpy()
    frame[LINE] = range(2, len(frame) + 2)
    frame = frame.loc[~blank_line].reset_index(drop=True)
    for col in required:
        if col in text:
            frame[col] = frame[col].str.strip()
    for col in keys:
        refuse_rows(path, frame, frame[col].isna() | (frame[col] == ""), f"blank {col}")
    for col in ids:
        normalise_ids(path, frame, col, notes)
    for col in file_names:
        bad = ~frame[col].str.fullmatch(NAME_PATTERN.pattern).fillna(False).astype(bool)
        refuse_rows(path, frame, bad, f"{col} {first(frame, bad, col)!r} is not a safe file name ({NAME_RULE})")
    return frame


def first(frame: pd.DataFrame, mask: pd.Series, col: str) -> object:
    return frame.loc[mask, col].iloc[0] if mask.any() else None


def refuse_rows(path: Path, frame: pd.DataFrame, mask: pd.Series, what: str) -> None:
    """A :class:`DatasetError` naming the first lines where ``mask`` holds."""
    if not mask.any():
        return
    lines = frame.loc[mask, LINE].tolist()
    shown = ", ".join(map(str, lines[:EXAMPLES])) + (", ..." if len(lines) > EXAMPLES else "")
    raise DatasetError(f"{path}, line {lines[0]}: {what} ({len(lines)} row(s); lines {shown})")


def normalise_ids(path: Path, frame: pd.DataFrame, col: str, notes: list[str] | None) -> None:
    """Integral floats (``10000032.0``) become their integer text, with a note; other non-integers are refused."""
    values = frame[col].astype(str)
    floats = values.str.fullmatch(INTEGRAL_FLOAT.pattern)
    if floats.any():
        example = values[floats].iloc[0]
        line = frame.loc[floats, LINE].iloc[0]
        frame.loc[floats, col] = values[floats].str.split(".").str[0]
        if notes is not None:
            notes.append(
                f"{path.name}: {int(floats.sum())} {col} value(s) written as integral floats were read as integers "
                f"(first: {example!r} on line {line} read as {example.split('.')[0]!r})"
            )
    bad = ~frame[col].astype(str).str.fullmatch(INTEGER.pattern)
    refuse_rows(path, frame, bad, f"{col} {first(frame, bad, col)!r} is not an integer id")


def numeric(path: Path, frame: pd.DataFrame, col: str) -> pd.Series:
    """``col`` as floats (blank = NaN); a non-numeric cell is refused naming its line."""
    values = pd.to_numeric(frame[col], errors="coerce")
    bad = values.isna() & frame[col].notna() & (frame[col].astype(str).str.strip() != "")
    refuse_rows(path, frame, bad, f"{col} {first(frame, bad, col)!r} is not a number")
    return values


def drop_identical_duplicates(
    path: Path, frame: pd.DataFrame, key: str, columns: Sequence[str], notes: list[str] | None
) -> pd.DataFrame:
    """Keep one row per ``key``: identical repeats (over ``columns``) are dropped with a note, differing ones refused."""
    repeated = frame.duplicated(key, keep=False)
    if not repeated.any():
        return frame
    rows = frame.loc[repeated]
    conflicting = rows.groupby(key, sort=False)[list(columns)].nunique(dropna=False).gt(1).any(axis=1)
    if conflicting.any():
        ids = conflicting.index[conflicting].tolist()
        lines = rows.loc[rows[key].isin(ids[:EXAMPLES])].groupby(key, sort=False)[LINE].apply(list)
        listed = "; ".join(f"{k} on lines {', '.join(map(str, v))}" for k, v in lines.items())
        raise DatasetError(f"{path}: {len(ids)} {key}(s) listed more than once with different values: {listed}")
    dropped = frame.duplicated(key, keep="first")
    ids = frame.loc[dropped, key].drop_duplicates().tolist()
    if notes is not None:
        shown = ", ".join(ids[:EXAMPLES]) + (", ..." if len(ids) > EXAMPLES else "")
        notes.append(f"{path.name}: {int(dropped.sum())} identical repeated row(s) counted once ({key}: {shown})")
    return frame.loc[~dropped].reset_index(drop=True)
