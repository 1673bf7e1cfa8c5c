"""Build typed dataclasses from TOML tables with precise errors.

:func:`build` walks a dataclass's fields, checks each value against the field's type
annotation (``bool``, ``int``, ``float``, ``str``, ``list[T]``, ``dict[str, T]``,
``Literal[...]``, unions with ``None`` and nested dataclasses), rejects unknown keys, then
runs the dataclass's ``validate()`` hook if it has one. Every error names the source file,
the dotted key path and what was expected.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, Literal, get_args, get_origin, get_type_hints


class ConfigError(ValueError):
    """A configuration value is unknown, of the wrong type or impossible."""

    def __init__(self, source: str, key: str, message: str):
        self.source, self.key, self.detail = source, key, message
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {message}")


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def build(cls: type, data: Any, source: str, path: str = ""):
    """Instantiate dataclass ``cls`` from ``data`` (a dict), validating recursively."""
    if not isinstance(data, dict):
        raise ConfigError(source, path, f"expected a table, got {describe(data)}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(source, join(path, str(key)), f"unknown key (known keys: {', '.join(sorted(fields))}){hint}")
    values = {key: check(hints[key], value, source, join(path, key)) for key, value in data.items()}
    obj = cls(**values)
    validate = getattr(obj, "validate", None)
    if validate is not None:
        try:
            validate()
        except ConfigError as exc:
            raise ConfigError(source, join(path, exc.key) if exc.key else path, exc.detail) from None
    return obj


def check(tp: Any, value: Any, source: str, path: str) -> Any:
    """Check ``value`` against type annotation ``tp``; return the (possibly converted) value."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return build(tp, value, source, path)
    if origin is Literal:
        allowed = get_args(tp)
        if any(value == a and type(value) is type(a) for a in allowed):
            return value
        raise ConfigError(source, path, f"expected one of {', '.join(map(repr, allowed))}, got {value!r}")
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in get_args(tp):
            if option is type(None):
                if value is None:
                    return None
                continue
            try:
                return check(option, value, source, path)
            except ConfigError as exc:
                errors.append(exc.detail)
        raise ConfigError(source, path, " or ".join(errors))
    if origin is list:
        (item,) = get_args(tp) or (Any,)
        if not isinstance(value, list):
            raise ConfigError(source, path, f"expected a list, got {describe(value)}")
        return [check(item, v, source, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        _, item = get_args(tp) or (str, Any)
        if not isinstance(value, dict):
            raise ConfigError(source, path, f"expected a table, got {describe(value)}")
        return {k: check(item, v, source, join(path, k)) for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(source, path, f"expected true or false, got {describe(value)}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(source, path, f"expected an integer, got {describe(value)}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(source, path, f"expected a number, got {describe(value)}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(source, path, f"expected a string, got {describe(value)}")
    raise TypeError(f"unsupported annotation {tp!r} at {path}")


def describe(value: Any) -> str:
    name = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list", dict: "a table"}
    return f"{name.get(type(value), type(value).__name__)} ({value!r})"


def require(condition: bool, key: str, message: str) -> None:
    """Raise a :class:`ConfigError` for ``key`` (relative to the dataclass) unless ``condition``."""
    if not condition:
        raise ConfigError("", key, message)


def to_dict(obj: Any) -> Any:
    """Dataclass tree to plain TOML/JSON-compatible values."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj
