"""Build typed dataclasses from TOML tables with precise errors.

:func:`build` walks a dataclass's fields, checks each value against the field's type
annotation and rejects unknown keys, then runs the dataclass's ``validate()`` hook if it has
one. Every error is a :class:`ConfigError` naming the source (file or ``--set``), the dotted
key path and what was expected, on one line.

Supported annotations (what a TOML value can be checked against and converted to): ``Any``,
``bool``, ``int`` (64-bit), ``float`` (finite), ``str`` (no NUL), ``pathlib.Path`` (from a
string), ``Enum`` subclasses (by value), ``Literal[...]``, ``X | None`` and other unions,
``list``/``Sequence``, ``tuple`` (``tuple[X, ...]`` or fixed ``tuple[X, Y]``), ``set``/
``frozenset``, ``dict``/``Mapping`` (bare or parameterised) and nested dataclasses. A field
annotated with anything else is refused when a config sets it, naming the class and field.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import difflib
import enum
import json
import math
import pathlib
import re
import types
import typing
from typing import Any, Literal, get_args, get_origin, get_type_hints

INT64 = (-(2**63), 2**63 - 1)
BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
SUPPORTED = "bool, int, float, str, pathlib.Path, an Enum, Literal[...], X | None, list/tuple/set/dict of those, or a dataclass"
LISTS = (list, collections.abc.Sequence, collections.abc.MutableSequence, collections.abc.Iterable, collections.abc.Collection)
SETS = (set, frozenset, collections.abc.Set, collections.abc.MutableSet)
MAPPINGS = (dict, collections.abc.Mapping, collections.abc.MutableMapping)


def printable(text: str) -> str:
    """``text`` with control characters escaped, so a message always stays on one line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class ConfigError(ValueError):
    """A configuration value is unknown, of the wrong type or impossible."""

    def __init__(self, source: str, key: str, message: str):
        self.source, self.key, self.detail = source, key, message
        parts = [printable(p) for p in (source, key, message) if p]
        super().__init__(": ".join(parts))


class UnsupportedAnnotation(TypeError):
    """A field annotation that no TOML value can be checked against (internal to :func:`build`)."""

    def __init__(self, annotation: Any):
        super().__init__(annotation)
        self.annotation = annotation


def toml_key(name: str) -> str:
    """``name`` as one part of a dotted key: bare when TOML allows, else quoted (``generators."a.b"``)."""
    return name if name and BARE_KEY.fullmatch(name) else json.dumps(name, ensure_ascii=False)


def join(path: str, key: str) -> str:
    return f"{path}.{toml_key(key)}" if path else toml_key(key)


def type_hints(cls: type, source: str, path: str) -> dict[str, Any]:
    try:
        return get_type_hints(cls)
    except Exception as exc:  # noqa: BLE001 - a plugin's unresolvable annotation (NameError, TypeError, ...)
        raise ConfigError(
            source, path, f"cannot read the field annotations of {qualname(cls)} ({type(exc).__name__}: {exc})"
        ) from None


def build(cls: type, data: Any, source: str, path: str = ""):
    """Instantiate dataclass ``cls`` from ``data`` (a dict), validating recursively."""
    if not isinstance(data, dict):
        raise ConfigError(source, path, f"expected a table, got {describe(data)}")
    hints = type_hints(cls, source, path)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            known = ", ".join(sorted(fields)) or "none"
            raise ConfigError(source, join(path, str(key)), f"unknown key (known keys: {known}){hint}")
    values = {}
    for key, value in data.items():
        try:
            values[key] = check(hints[key], value, source, join(path, key))
        except UnsupportedAnnotation as exc:
            raise ConfigError(
                source,
                join(path, key),
                f"{qualname(cls)}.{key} is annotated {annotation_name(hints[key])}; a config file cannot set "
                f"{annotation_name(exc.annotation)} (supported: {SUPPORTED})",
            ) from None
    try:
        obj = cls(**values)
        validate = getattr(obj, "validate", None)
        if validate is not None:
            validate()
    except ConfigError as exc:
        key = f"{path}.{exc.key}" if path and exc.key else exc.key or path  # exc.key: a dotted key already
        raise ConfigError(source, key, exc.detail) from None
    except (ValueError, TypeError) as exc:  # a plugin's own checks (__post_init__ or validate)
        raise ConfigError(source, path, f"rejected by {qualname(cls)}: {exc}") from None
    return obj


def check(tp: Any, value: Any, source: str, path: str) -> Any:
    """Check ``value`` against type annotation ``tp``; return the (possibly converted) value."""
    origin = get_origin(tp) or tp
    args = get_args(tp)
    if tp is Any or tp is object:
        return value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return build(tp, value, source, path)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return check_enum(tp, value, source, path)
    if origin is Literal:
        if any(value == a and type(value) is type(a) for a in args):
            return value
        raise ConfigError(source, path, f"expected one of {', '.join(map(repr, args))}, got {value!r}")
    if origin in (typing.Union, types.UnionType):
        return check_union(args, value, source, path)
    if origin in LISTS:
        (item,) = args or (Any,)
        return [check(item, v, source, f"{path}[{i}]") for i, v in enumerate(expect_list(value, source, path))]
    if origin is tuple:
        return check_tuple(args, value, source, path)
    if origin in SETS:
        (item,) = args or (Any,)
        items = [check(item, v, source, f"{path}[{i}]") for i, v in enumerate(expect_list(value, source, path))]
        try:
            return frozenset(items) if origin is frozenset else set(items)
        except TypeError:
            raise ConfigError(source, path, f"expected a list of single values (a set), got {describe(value)}") from None
    if origin in MAPPINGS:
        key_tp, item = args or (str, Any)
        if not isinstance(value, dict):
            raise ConfigError(source, path, f"expected a table, got {describe(value)}")
        return {check(key_tp, k, source, join(path, k)): check(item, v, source, join(path, k)) for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(source, path, f"expected true or false, got {describe(value)}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            if not INT64[0] <= value <= INT64[1]:
                raise ConfigError(source, path, f"expected a 64-bit integer, got {value}")
            return value
        raise ConfigError(source, path, f"expected an integer, got {describe(value)}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if isinstance(value, int) and not INT64[0] <= value <= INT64[1]:
                raise ConfigError(source, path, f"expected a number in the 64-bit range, got {value}")
            if not math.isfinite(value):
                raise ConfigError(source, path, f"expected a finite number, got {value!r}")
            return float(value)
        raise ConfigError(source, path, f"expected a number, got {describe(value)}")
    if tp is str:
        return check_text(value, source, path)
    if isinstance(tp, type) and issubclass(tp, pathlib.PurePath):
        return tp(check_text(value, source, path, what="a path string"))
    raise UnsupportedAnnotation(tp)


def check_union(options: tuple[Any, ...], value: Any, source: str, path: str) -> Any:
    if value is None and type(None) in options:  # from code or a resolved table; TOML has no null
        return None
    errors: list[str] = []
    for option in options:
        if option is type(None):
            if value is None:
                return None
            continue
        try:
            return check(option, value, source, path)
        except ConfigError as exc:
            errors.append(exc.detail)
    if not errors:  # only None allowed, and TOML has no null
        raise ConfigError(source, path, f"cannot be set from a config file (TOML has no null), got {describe(value)}")
    raise ConfigError(source, path, " or ".join(dict.fromkeys(errors)))


def check_tuple(args: tuple[Any, ...], value: Any, source: str, path: str) -> tuple[Any, ...]:
    items = expect_list(value, source, path)
    if not args or (len(args) == 2 and args[1] is Ellipsis):
        item = args[0] if args else Any
        return tuple(check(item, v, source, f"{path}[{i}]") for i, v in enumerate(items))
    if args == ((),):  # tuple[()]
        args = ()
    if len(items) != len(args):
        raise ConfigError(source, path, f"expected a list of {len(args)} values, got {len(items)} ({value!r})")
    return tuple(check(t, v, source, f"{path}[{i}]") for i, (t, v) in enumerate(zip(args, items)))


def check_enum(tp: type[enum.Enum], value: Any, source: str, path: str) -> enum.Enum:
    for member in tp:
        if value == member.value and type(value) is type(member.value):
            return member
    allowed = ", ".join(repr(m.value) for m in tp)
    raise ConfigError(source, path, f"expected one of {allowed}, got {value!r}")


def check_text(value: Any, source: str, path: str, what: str = "a string") -> str:
    if not isinstance(value, str):
        raise ConfigError(source, path, f"expected {what}, got {describe(value)}")
    if "\x00" in value:
        raise ConfigError(source, path, f"expected {what} without NUL characters, got {value!r}")
    return value


def expect_list(value: Any, source: str, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise ConfigError(source, path, f"expected a list, got {describe(value)}")
    return value


def describe(value: Any) -> str:
    name = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list", dict: "a table"}
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return f"{name.get(type(value), type(value).__name__)} ({shown})"


def qualname(cls: Any) -> str:
    return f"{getattr(cls, '__module__', '?')}.{getattr(cls, '__qualname__', repr(cls))}"


def annotation_name(tp: Any) -> str:
    return tp.__name__ if isinstance(tp, type) and not get_args(tp) else repr(tp).replace("typing.", "")


def require(condition: bool, key: str, message: str) -> None:
    """Raise a :class:`ConfigError` for ``key`` (relative to the dataclass) unless ``condition``."""
    if not condition:
        raise ConfigError("", key, message)


def to_dict(obj: Any) -> Any:
    """Dataclass tree to plain TOML/JSON-compatible values (paths as strings, enums as values)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted((to_dict(v) for v in obj), key=repr)  # a stable order for the config hash
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, pathlib.PurePath):
        return str(obj)
    return obj
