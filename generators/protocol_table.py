"""The README's protocol table: every built-in generator's options, each default with its source.

One Markdown table per generator type with options (option | default | source), read from the
``Options`` dataclasses and their :func:`~xreal_bench.generators.base.cited` sources. The README
holds the text between :data:`BEGIN` and :data:`END`; ``tests/test_protocol_table.py`` fails when
the two differ. Print it with ``python -m xreal_bench.generators.protocol_table`` or
``xreal-bench generators protocol-table``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from xreal_bench.generators.base import Generator, option_sources

BEGIN = "<!-- protocol-table:begin -->"
END = "<!-- protocol-table:end -->"
#: The source cell of an option whose default cites nothing (every default must cite one).
NOT_CITED = "**no source given**"


def builtin_types() -> list[str]:
    """The built-in generator types, in the registry's order (plugins are not the README's)."""
    from xreal_bench.registry import GENERATORS

    return list(GENERATORS.builtins)


def default_of(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def cell(text: str) -> str:
    """Text safe inside one Markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")


def code(value: Any) -> str:
    """A default as inline code; ``(required)`` for a field without one."""
    if value is dataclasses.MISSING:
        return "(required)"
    text = cell(repr(value))
    return f"``{text}``" if "`" in text else f"`{text}`"


def generator_table(cls: type[Generator]) -> str:
    """``cls``'s options as a Markdown table (option | default | source); "" without options."""
    options = cls.Options
    if not dataclasses.is_dataclass(options) or not dataclasses.fields(options):
        return ""
    sources = option_sources(options)
    lines = [f"#### `{cls.type_name}`", "", "| option | default | source |", "|---|---|---|"]
    for f in dataclasses.fields(options):
        source = cell(sources[f.name]) or NOT_CITED
        lines.append(f"| `{f.name}` | {code(default_of(f))} | {source} |")
    return "\n".join(lines)


def protocol_table(types: Iterable[str] | None = None) -> str:
    """The tables of ``types`` (default: every built-in type), one after the other."""
    from xreal_bench.generators.registry import generator_class

    chosen = builtin_types() if types is None else list(types)
    tables = {t: generator_table(generator_class(t)) for t in chosen}
    parts = [table for table in tables.values() if table]
    if without := [t for t, table in tables.items() if not table]:
        parts.append("Without options of their own: " + ", ".join(f"`{t}`" for t in without) + ".")
    return "\n\n".join(parts) + "\n"


def uncited_options(types: Iterable[str] | None = None) -> list[str]:
    """``"<type>.<option>"`` for every option of ``types`` (default: the built-ins) whose default cites no source."""
    from xreal_bench.generators.registry import generator_class

    found = []
    for type_name in builtin_types() if types is None else types:
        options = generator_class(type_name).Options
        if dataclasses.is_dataclass(options):
            found += [f"{type_name}.{name}" for name, source in option_sources(options).items() if not source.strip()]
    return found


def readme_section(text: str) -> str | None:
    """The README text between :data:`BEGIN` and :data:`END` (without the marker lines); None without both markers."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        return None
    return text[start + len(BEGIN) : end].strip("\n") + "\n"


def main() -> int:
    """Print the table between its markers, ready to paste into README.md."""
    print(f"{BEGIN}\n{protocol_table()}{END}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
