"""Names that become paths: generator names, study names, reader ids, imported file stems.

One rule for all of them (:data:`NAME_RULE`): 1 to 64 characters from ASCII letters, digits,
``.``, ``_`` and ``-``, starting with a letter or a digit. A name that passes can never be
``""``, ``.``, ``..``, hidden, absolute, or hold a path separator, so ``folder / name`` always
stays inside ``folder``. :func:`inside` checks that for resolved paths (symbolic links
included) before anything is written or deleted.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from pathlib import Path

from xreal_bench.errors import UserFacingError

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
NAME_RULE = "1-64 characters from letters, digits, '.', '_' and '-', starting with a letter or digit"
#: Generator names with a fixed meaning in a run directory (``real`` is the reference row).
RESERVED_GENERATOR_NAMES = frozenset({"real"})


class InvalidNameError(UserFacingError):
    """A user-supplied name that would not be a safe single path component."""


def is_valid_name(value: object) -> bool:
    return isinstance(value, str) and NAME_PATTERN.fullmatch(value) is not None


def check_name(value: object, *, what: str) -> str:
    """``value`` if it follows :data:`NAME_RULE`, else :class:`InvalidNameError` naming ``what``."""
    if not is_valid_name(value):
        raise InvalidNameError(f"{what} {value!r} is not a valid name: expected {NAME_RULE}")
    return str(value)


def check_generator_name(value: object, *, what: str = "generator name") -> str:
    """A valid name that is not reserved (``real`` is the real images' reference row)."""
    name = check_name(value, what=what)
    if name in RESERVED_GENERATOR_NAMES:
        raise InvalidNameError(f"{what} {name!r} is reserved (the real test images' reference row); choose another name")
    return name


def name_argument(what: str, *, generator: bool = False) -> Callable[[str], str]:
    """An argparse ``type=`` that refuses invalid names at parse time with the rule."""
    check = check_generator_name if generator else check_name

    def parse(text: str) -> str:
        try:
            return check(text, what=what)
        except InvalidNameError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def inside(base: Path, path: Path) -> bool:
    """Whether ``path`` resolves (links followed) to ``base`` itself or somewhere below it."""
    base, path = Path(base).resolve(), Path(path).resolve()
    return path == base or base in path.parents
